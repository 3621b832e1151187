"""The web chat's routes: the page, its messages (sent and fetched) and its live stream.

A visitor is known by a random token in an HttpOnly cookie that the page's first visit sets; the chat identity is a
hash of it (channel "web"), so nobody can read another visitor's messages without that visitor's cookie. An
integration can open the page for its own logged-in users instead, with the same signed identity as POST /api/chat
in the page's query (`integration`, `user_id`, `expires`, `signature`): they chat as "<slug>:<user_id>" on channel
"api" and see what the integration's own widget sees. Messages are POSTed only from the page's own origin.
"""

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from bot.channels import MessageRouter, pull
from bot.channels.api import MAX_TEXT_CHARS, OptionOut
from bot.channels.pull import MAX_AFTER, MessageOut
from core.conversation import state as chat_state
from core.messages import IncomingMessage
from core.settings import get_settings
from core.store import get_store
from core.web import DbSession, sse_response
from integrations import service as integrations

CHANNEL = "web"
SIGNED_CHANNEL = "api"  # an integration's users are the same identities on the page as through its own widget
COOKIE = "ma_chat"
COOKIE_MAX_AGE = 365 * 24 * 3600
TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
SIGNED_FIELDS = ("integration", "user_id", "expires", "signature")
MAX_PAYLOAD_CHARS = 200
BASE_PATH = "/chat"
HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

EXPIRED_OPTION = "该选项已失效，请直接输入您的问题。"
EMPTY_TEXT = "请输入要咨询的内容。"
SESSION_LOST = "会话已失效，请刷新页面后再试。"
WRONG_ORIGIN = "请求来源与聊天页面不一致，已拒绝。"
SIGNATURE_REFUSED = "身份校验失败或已过期，请从原页面重新打开客服窗口。"
INTEGRATION_DISABLED = "该接入已停用，请联系平台客服。"

router = APIRouter(tags=["web-chat"])


@dataclass(frozen=True)
class Visitor:
    """Who is chatting on the page: the chat identity (channel and user id) and whether it may bind a merchant."""

    channel: str
    user_id: str
    may_bind: bool
    query: str = ""  # the signed identity the page sends back with each request ("" for a cookie visitor)


class WebIn(BaseModel):
    """A message typed on the page, or an option button pressed (its payload)."""

    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS, description="the message, UTF-8")
    payload: str | None = Field(default=None, max_length=MAX_PAYLOAD_CHARS, description="a pressed option's payload")


class WebOut(BaseModel):
    """The bot's reply (empty text while a person has the conversation: the agent answers through the stream)."""

    text: str
    options: list[OptionOut]
    intent: str


def visitor_id(token: str) -> str:
    """The chat identity of a visitor's cookie token (a one-way hash: the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()[:40]


def _signed_visitor(request: Request, db_session: Session) -> Visitor | None:
    """The integration user the page was opened for, when the query holds a signed identity; 401/403 when it is
    wrong, expired or the integration disabled."""
    params = request.query_params
    if not any(name in params for name in ("integration", "expires", "signature")):
        return None
    slug, user_id = params.get("integration", ""), params.get("user_id", "")
    expires, signature = params.get("expires", ""), params.get("signature", "")
    if not (slug and 0 < len(user_id) <= integrations.USER_ID_MAX_CHARS and expires.isdigit() and len(expires) < 13):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, SIGNATURE_REFUSED)
    try:
        integration = integrations.authenticate_signature(
            db_session=db_session,
            slug=slug,
            user_id=user_id,
            expires=int(expires),
            signature=signature,
            max_ahead_seconds=get_settings().chat_api_signature_max_seconds,
        )
    except integrations.AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, SIGNATURE_REFUSED) from exc
    except integrations.IntegrationDisabled as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, INTEGRATION_DISABLED) from exc
    query = urlencode({"integration": slug, "user_id": user_id, "expires": expires, "signature": signature})
    return Visitor(SIGNED_CHANNEL, integrations.namespaced(integration.slug, user_id), integration.allow_binding, query)


def _cookie_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE, "")
    return token if TOKEN.fullmatch(token) else None


def current_visitor(request: Request, db_session: DbSession) -> Visitor:
    """The visitor of a request from the page: its signed identity, else its cookie; 401 without either."""
    signed = _signed_visitor(request, db_session)
    if signed is not None:
        return signed
    token = _cookie_token(request)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, SESSION_LOST)
    return Visitor(CHANNEL, visitor_id(token), may_bind=True)


CurrentVisitor = Annotated[Visitor, Depends(current_visitor)]
After = Annotated[int, Query(ge=0, le=MAX_AFTER, description="only messages with a larger id (the last id seen)")]


def same_origin(request: Request) -> None:
    """Refuse a POST that another site's page made (CSRF): its Origin (else Referer) must be this host."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    host = request.headers.get("host", "").lower()
    if not host or urlsplit(source).netloc.lower() != host:
        raise HTTPException(status.HTTP_403_FORBIDDEN, WRONG_ORIGIN)


def page_headers() -> dict[str, str]:
    """The page may be framed (embedding) by WEB_CHAT_FRAME_ANCESTORS, and loads nothing from elsewhere."""
    ancestors = re.sub(r"[;\r\n]", " ", get_settings().web_chat_frame_ancestors).strip() or "'none'"
    policy = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


@router.get("/chat", response_class=HTMLResponse, include_in_schema=False)
def page(request: Request, db_session: DbSession) -> Response:
    """The chat page; a first visit gets its visitor cookie."""
    base = request.scope.get("root_path", "") + BASE_PATH
    try:
        signed = _signed_visitor(request, db_session)
    except HTTPException as exc:
        context = {"base": base, "query": "", "refused": exc.detail}
        return templates.TemplateResponse(request, "chat.html", context, exc.status_code, headers=page_headers())
    context = {"base": base, "query": signed.query if signed else "", "refused": None}
    response = templates.TemplateResponse(request, "chat.html", context, headers=page_headers())
    if signed is None and _cookie_token(request) is None:
        response.set_cookie(
            COOKIE,
            secrets.token_urlsafe(32),
            max_age=COOKIE_MAX_AGE,
            path=BASE_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


def _option_text(visitor: Visitor, payload: str) -> str | None:
    """What pressing an option means, as the merchant would type it (its number among the options last offered);
    None when the option is no longer on offer."""
    pending = chat_state.load(store=get_store(), channel=visitor.channel, user_id=visitor.user_id).pending
    for number, option in enumerate(pending, 1):
        if option.get("payload") == payload:
            return str(number)
    return None


@router.post(
    "/chat/messages",
    response_model=WebOut,
    dependencies=[Depends(same_origin)],
    responses={401: {"description": "no visitor cookie or signed identity"}, 403: {"description": "other origin"}},
)
def send(body: WebIn, visitor: CurrentVisitor, db_session: DbSession, message_router: MessageRouter) -> dict:
    """Send a message (or press an option) from the web chat page and get the bot's reply."""
    if body.payload is not None:
        text = _option_text(visitor, body.payload)
        if text is None:
            return {"text": EXPIRED_OPTION, "options": [], "intent": "fallback"}
    else:
        text = (body.text or "").strip()
        if not text:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, EMPTY_TEXT)
    message = IncomingMessage(channel=visitor.channel, user_id=visitor.user_id, text=text, may_bind=visitor.may_bind)
    reply = message_router.handle(message, db_session=db_session)
    return {"text": reply.text, "options": reply.as_dict()["options"], "intent": reply.intent}


@router.get("/chat/messages", response_model=list[MessageOut])
def messages(visitor: CurrentVisitor, after: After = 0) -> list[dict]:
    """What agents sent the visitor (and the rating question), after message id `after`; fetching delivers it."""
    return pull.fetch(channel=visitor.channel, recipient=visitor.user_id, after=after)


@router.get("/chat/stream", response_class=StreamingResponse, responses=pull.SSE_RESPONSE_DOC)
async def stream(request: Request, visitor: CurrentVisitor, after: After = 0) -> StreamingResponse:
    """The visitor's messages as server-sent events, live."""
    start = pull.resume_after(request, after)
    return sse_response(pull.stream(channel=visitor.channel, recipient=visitor.user_id, after=start))


def install(app: FastAPI) -> None:
    """Add the web chat's routes and static files to `app`."""
    app.include_router(router)
    app.mount(f"{BASE_PATH}/static", StaticFiles(directory=STATIC_DIR), name="web_chat_static")
