"""Deliver outbox messages through the 客服 API (customer-service messages) with a shared access token."""

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.channels.wechat import CHANNEL
from bot.channels.wechat.render import CUSTOM_LIMIT_BYTES, payload_text, split_text
from core.outbox.senders import RetryLater, Undeliverable
from core.settings import Settings, get_settings
from core.store import Store, get_store

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential / invalid token / expired token
PERMANENT_ERRORS = {
    45015: "window closed",  # 48 h since the user's last message passed, or the user unfollowed
    45047: "quota used",  # 客服 messages per user message used up
    48001: "not permitted",  # account lacks the 客服 API (unverified or personal subject)
    43004: "not subscribed",
    40003: "invalid openid",
    45002: "content too long",
}
RATE_LIMITED = 45009
TOKEN_SAFETY_SECONDS = 120
KF_UNAVAILABLE_SECONDS = 24 * 3600
PROGRESS_SECONDS = 24 * 3600


def token_key(appid: str) -> str:
    """Store key of the cached access token."""
    return f"wechat:token:{appid}"


def kf_unavailable_key(appid: str) -> str:
    """Store key of the flag saying the 客服 API answered 48001 (not permitted)."""
    return f"wechat:kf_unavailable:{appid}"


def kf_unavailable(store: Store, appid: str | None) -> bool:
    """True when the account recently proved unable to send 客服 messages; inbound then answers passively only."""
    return store.get(kf_unavailable_key(appid or "")) is not None


class TokenCache:
    """The access token shared by every worker through the store, refreshed by one worker at a time."""

    def __init__(
        self,
        *,
        store: Store,
        appid: str,
        fetch: Callable[[], dict[str, Any]],
        lock_seconds: float = 15.0,
        wait_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.key = token_key(appid)
        self.lock_key = f"{self.key}:lock"
        self.fetch = fetch
        self.lock_seconds = lock_seconds
        self.wait_seconds = wait_seconds

    def get(self) -> str:
        """The cached token, fetched first when there is none."""
        return self.store.get(self.key) or self.refresh()

    def refresh(self, stale: str | None = None) -> str:
        """A token other than `stale`: another worker's fresh one, or one this call fetches under the lock."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            current = self.store.get(self.key)
            if current and current != stale:
                return current
            if self.store.add(self.lock_key, "1", ttl=self.lock_seconds):
                try:
                    current = self.store.get(self.key)
                    if current and current != stale:
                        return current
                    result = self.fetch()
                    token = str(result["access_token"])
                    ttl = max(60, int(result.get("expires_in", 7200)) - TOKEN_SAFETY_SECONDS)
                    self.store.set(self.key, token, ttl=ttl)
                    return token
                finally:
                    self.store.delete(self.lock_key)
            if time.monotonic() >= deadline:
                raise RetryLater("access token refresh in progress elsewhere", retry_after=5)
            time.sleep(0.05)


class ApiClient(WeChatClient):
    """wechatpy's client on a configurable API base, using the token the caller hands it for this thread."""

    def __init__(self, *, appid: str, secret: str, api_base: str, timeout: float) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/")
        self.API_BASE_URL = f"{self.api_base}/cgi-bin/"
        self._local = threading.local()

    @property
    def access_token(self) -> str:
        """The token set for the current thread by `use_token`."""
        return self._local.token

    def use_token(self, token: str) -> None:
        """Make the next calls from this thread use `token`."""
        self._local.token = token

    def fetch_access_token(self) -> dict[str, Any]:
        """GET /cgi-bin/token on the configured base; raise WeChatClientException on an error code."""
        response = self._http.get(
            f"{self.api_base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            timeout=self.timeout,
        )
        response.raise_for_status()
        result = response.json()
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self, response=response)
        return result


class WeChatSender:
    """Sender for the outbox: text messages to an openid through the 客服 API."""

    channel = CHANNEL

    def __init__(self, *, settings: Settings | None = None, store: Store | None = None, timeout: float = 10.0) -> None:
        settings = settings or get_settings()
        if not (settings.wechat_app_id and settings.wechat_app_secret):
            raise ValueError("WECHAT_APP_ID and WECHAT_APP_SECRET are required to send WeChat messages")
        self.appid = settings.wechat_app_id
        self.store = store or get_store()
        self.client = ApiClient(
            appid=settings.wechat_app_id,
            secret=settings.wechat_app_secret,
            api_base=settings.wechat_api_base,
            timeout=timeout,
        )
        self.tokens = TokenCache(store=self.store, appid=self.appid, fetch=self._fetch_token)

    def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Send the payload's text in parts; parts already delivered by an earlier attempt are skipped."""
        parts = split_text(payload_text(payload), CUSTOM_LIMIT_BYTES)
        progress_key = self._progress_key(recipient, parts)
        done = int(self.store.get(progress_key) or 0) if len(parts) > 1 else 0
        for index in range(done, len(parts)):
            self._send_part(recipient, parts[index])
            if len(parts) > 1:
                self.store.set(progress_key, str(index + 1), ttl=PROGRESS_SECONDS)
        if len(parts) > 1:
            self.store.delete(progress_key)

    def _progress_key(self, recipient: str, parts: list[str]) -> str:
        digest = hashlib.sha256("\x00".join([recipient, *parts]).encode("utf-8")).hexdigest()[:32]
        return f"wechat:sent:{digest}"

    def _send_part(self, recipient: str, text: str) -> None:
        token = self._token()
        try:
            self._call(token, recipient, text)
            return
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise self._translate(exc) from exc
            log.info("wechat access token rejected (%s); refreshing once", exc.errcode)
        token = self._token(stale=token)
        try:
            self._call(token, recipient, text)
        except WeChatClientException as exc:
            if exc.errcode in TOKEN_ERRORS:
                raise RetryLater(f"access token rejected after refresh ({exc.errcode})", retry_after=30) from exc
            raise self._translate(exc) from exc

    def _call(self, token: str, recipient: str, text: str) -> None:
        self.client.use_token(token)
        try:
            self.client.message.send_text(recipient, text)
        except requests.RequestException as exc:
            raise RetryLater(f"network error: {type(exc).__name__}") from exc

    def _token(self, stale: str | None = None) -> str:
        try:
            return self.tokens.refresh(stale) if stale else self.tokens.get()
        except WeChatClientException as exc:
            log.error("wechat access token fetch failed: %s %s", exc.errcode, exc.errmsg)
            raise RetryLater(f"access token fetch failed ({exc.errcode})", retry_after=60) from exc
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise RetryLater(f"access token fetch failed: {type(exc).__name__}", retry_after=30) from exc

    def _fetch_token(self) -> dict[str, Any]:
        log.info("fetching wechat access token")
        return self.client.fetch_access_token()

    def _translate(self, exc: WeChatClientException) -> RetryLater | Undeliverable:
        code = exc.errcode
        if code in PERMANENT_ERRORS:
            if code == 48001:
                self.store.set(kf_unavailable_key(self.appid), "1", ttl=KF_UNAVAILABLE_SECONDS)
                log.warning("wechat 客服 API not permitted (48001); inbound falls back to passive replies only")
            return Undeliverable(PERMANENT_ERRORS[code], code=str(code))
        if code == RATE_LIMITED:
            return RetryLater("api rate limit (45009)", retry_after=60)
        if code is None:
            return RetryLater("http error from wechat api")
        return RetryLater(f"wechat error {code}: {exc.errmsg}")
