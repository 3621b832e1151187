"""WeChat push endpoint: URL verification (GET) and messages (POST) in plain, compatible and safe (AES) modes."""

import hashlib
import hmac
import logging
import time
from typing import Annotated

import xmltodict
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.messages import BaseMessage

from bot.channels import MessageRouter
from bot.channels.wechat import inbound
from core.settings import Settings, get_settings, wechat_encryption_required
from core.store import best_effort, get_store
from core.web import read_body

log = logging.getLogger(__name__)

router = APIRouter(prefix="/wechat", tags=["wechat"])

SUCCESS = "success"
Param = Annotated[str, Query()]


def sign(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts joined."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signature_ok(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(expected.encode("utf-8"), given.strip().lower().encode("utf-8"))


def _settings_or_404() -> Settings:
    settings = get_settings()
    if not settings.wechat_token:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "wechat channel not configured: set WECHAT_TOKEN")
    return settings


def _check_signature(token: str, signature: str, timestamp: str, nonce: str) -> None:
    if not (signature and timestamp and nonce):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing signature, timestamp or nonce")
    if not signature_ok(sign(token, timestamp, nonce), signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad signature")


def _check_fresh(timestamp: str, window: int) -> None:
    try:
        skew = abs(time.time() - int(timestamp))
    except (ValueError, OverflowError):  # OverflowError: more digits than a float holds
        raise HTTPException(status.HTTP_403_FORBIDDEN, "stale: timestamp is not a number") from None
    if skew > window:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "stale timestamp")


def _check_not_replayed(signature: str, timestamp: str, nonce: str, body: bytes, window: int) -> None:
    """403 for a signed URL seen before with another body (a captured push replayed); the same body again is one of
    WeChat's retries and passes, to be answered from the retry cache. Remembered for the whole timestamp window."""
    seen = hashlib.sha1(f"{signature.strip().lower()}|{timestamp}|{nonce}".encode()).hexdigest()
    body_hash = hashlib.sha256(body).hexdigest()
    key, store = f"wx:nonce:{seen}", get_store()
    if best_effort(lambda: store.add(key, body_hash, ttl=2 * window + 60), True, what="wechat replay check"):
        return
    first = best_effort(lambda: store.get(key), None, what="wechat replay check")
    if first is not None and first != body_hash:
        log.warning("wechat push refused: nonce %r at %s replayed with another body", nonce[:40], timestamp[:20])
        raise HTTPException(status.HTTP_403_FORBIDDEN, "replayed: this signature and nonce came with another body")


def _crypto(settings: Settings) -> WeChatCrypto:
    if not (settings.wechat_aes_key and settings.wechat_app_id):
        raise LookupError("encrypted push but WECHAT_AES_KEY / WECHAT_APP_ID are not set")
    return WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)


def _decrypt(settings: Settings, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The plaintext XML of an AES push; 403 on a bad msg_signature, other failures raise for the caller to ack."""
    encrypted = xmltodict.parse(body)["xml"]["Encrypt"]
    if not isinstance(encrypted, str) or not msg_signature:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing msg_signature or Encrypt")
    expected = sign(settings.wechat_token, timestamp, nonce, encrypted)
    if not signature_ok(expected, msg_signature):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad msg_signature")
    return _crypto(settings).decrypt_message({"Encrypt": encrypted}, expected, timestamp, nonce)


def _check_fields(message: BaseMessage) -> None:
    """Raise for a push whose fields we use are missing or malformed (wechatpy converts them only when read)."""
    if not (isinstance(message.source, str) and isinstance(message.target, str)):
        raise ValueError("FromUserName and ToUserName must be text")
    if any(not isinstance(getattr(message, name, None) or "", str) for name in ("content", "recognition", "key")):
        raise ValueError("a text field holds markup")
    if not isinstance(message.id, int) or not isinstance(message.time, int):  # int() raises on "abc" or "1.5"
        raise ValueError("MsgId and CreateTime must be integers")


@router.get("", response_class=PlainTextResponse)
def verify_url(signature: Param = "", timestamp: Param = "", nonce: Param = "", echostr: Param = "") -> str:
    """Server URL verification: echo `echostr` when the signature is right."""
    settings = _settings_or_404()
    _check_signature(settings.wechat_token, signature, timestamp, nonce)
    return echostr


@router.post("")
async def receive(
    request: Request,
    message_router: MessageRouter,
    signature: Param = "",
    timestamp: Param = "",
    nonce: Param = "",
    openid: Param = "",
    encrypt_type: Param = "",
    msg_signature: Param = "",
) -> Response:
    """A message or event pushed by WeChat; answered passively within the budget or acknowledged with success."""
    started = time.monotonic()
    settings = _settings_or_404()
    _check_signature(settings.wechat_token, signature, timestamp, nonce)
    _check_fresh(timestamp, settings.wechat_timestamp_window_seconds)
    encrypted = encrypt_type.lower() == "aes"
    if not encrypted and wechat_encryption_required(settings):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "plaintext push refused: encryption is required")
    body = await read_body(request, settings.wechat_max_body_bytes)
    _check_not_replayed(signature, timestamp, nonce, body, settings.wechat_timestamp_window_seconds)
    try:
        xml = _decrypt(settings, body, msg_signature, timestamp, nonce) if encrypted else body
        message = parse_message(xml)
        if message is None:
            raise ValueError("empty body")
        _check_fields(message)
    except HTTPException:
        raise
    except Exception as exc:  # undecryptable, malformed, entity-laden: ack so WeChat stops retrying
        log.warning("wechat push ignored (%s: %s), openid=%s", type(exc).__name__, exc, openid or "-")
        return PlainTextResponse(SUCCESS)
    try:
        reply = await inbound.respond(
            message, router=message_router, deadline=started + settings.wechat_reply_budget_seconds
        )
    except Exception:
        log.exception("wechat push handling failed")
        reply = None
    if reply is None:
        return PlainTextResponse(SUCCESS)
    if encrypted:
        reply = _crypto(settings).encrypt_message(reply, nonce, timestamp)
    return Response(reply, media_type="application/xml")
