"""The JSON chat API channel: POST /api/chat, for a merchant platform's own chat window, widgets or scripts.

Every call is made for an integration (see integrations/): with its API key as a bearer token (server to server),
or with a user id signed by its signing secret (browser widgets, where the key must not go). The router sees the
user as "<slug>:<user_id>", so one integration can never address another's users. With CHAT_API_DEMO on, calls
without credentials are accepted from the loopback address only, as "demo:<user_id>", and may not bind a merchant.

What reaches the user later (an agent's answer, the rating question) waits in the outbox until the caller fetches it:
GET /api/chat/messages, or GET /api/chat/stream for server-sent events.
"""

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from bot.channels import MessageRouter, pull
from bot.channels.pull import MAX_AFTER, MessageOut, OptionOut
from core.messages import IncomingMessage
from core.settings import get_settings
from core.web import DbSession, sse_response
from integrations import service as integrations
from integrations.schemas import SLUG_PATTERN

CHANNEL = "api"
MAX_TEXT_CHARS = 20000
SIGNATURE_PATTERN = r"^[0-9a-fA-F]{64}$"
USER_ID_DOC = "the merchant user's id in the calling system (the integration's own namespace)"
SLUG_DOC = "signed identity: the integration's slug"
EXPIRES_DOC = "signed identity: unix seconds until which the signature holds"
SIGNATURE_DOC = 'signed identity: hex HMAC-SHA256(signing_secret, f"{user_id}.{expires}")'
REALM = 'Bearer realm="merchant-assist"'
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
router = APIRouter()
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="IntegrationKey",
    description=(
        "An integration's API key (mak_…), created by an admin (POST /api/admin/integrations or "
        "`merchant-assist integration add`). Browser widgets send a signed identity instead (in the body of "
        "POST /api/chat, in the query of the GETs): `integration`, `expires` and `signature`."
    ),
)


class ChatIn(BaseModel):
    """A message sent to the bot over the API, with a signed identity when no API key is sent."""

    user_id: str = Field(min_length=1, max_length=integrations.USER_ID_MAX_CHARS, description=USER_ID_DOC)
    text: str = Field(max_length=MAX_TEXT_CHARS, description="the message, UTF-8")
    integration: str | None = Field(default=None, pattern=SLUG_PATTERN, description=SLUG_DOC)
    expires: int | None = Field(default=None, ge=0, le=2**40, description=EXPIRES_DOC)
    signature: str | None = Field(default=None, pattern=SIGNATURE_PATTERN, description=SIGNATURE_DOC)


class ChatOut(BaseModel):
    """The bot's reply and how it understood the message."""

    text: str
    options: list[OptionOut]
    intent: str
    topic: str | None
    confidence: float | None
    candidates: list[str]
    invoice: dict[str, str] | None


class RefusedOut(BaseModel):
    """Why the call was refused."""

    detail: str


@dataclass(frozen=True)
class Caller:
    """Who is calling: the namespace of its users and whether they may bind a merchant."""

    namespace: str
    may_bind: bool


def _unauthorized(reason: str, *, invalid: bool = True) -> HTTPException:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return HTTPException(status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": challenge})


def is_local(request: Request) -> bool:
    """True for a request from the loopback address that no proxy forwarded."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False


def authenticate(
    request: Request,
    *,
    user_id: str,
    integration: str | None,
    expires: int | None,
    signature: str | None,
    credentials: HTTPAuthorizationCredentials | None,
    db_session: Session,
) -> Caller:
    """The caller of one chat request (its identity in the body or in the query); 401 for missing or wrong
    credentials, 403 for a disabled integration."""
    settings = get_settings()
    signed = (integration, expires, signature)
    try:
        if request.headers.get("authorization") is not None:
            if credentials is None:
                raise _unauthorized("the Authorization header must be: Bearer <integration API key>")
            found = integrations.authenticate_key(db_session=db_session, api_key=credentials.credentials)
        elif any(value is not None for value in signed):
            if integration is None or expires is None or signature is None:
                raise _unauthorized("a signed identity needs integration, expires and signature")
            found = integrations.authenticate_signature(
                db_session=db_session,
                slug=integration,
                user_id=user_id,
                expires=expires,
                signature=signature,
                max_ahead_seconds=settings.chat_api_signature_max_seconds,
            )
        elif settings.chat_api_demo and is_local(request):
            return Caller(namespace=integrations.DEMO_NAMESPACE, may_bind=False)
        else:
            raise _unauthorized(
                "credentials required: an integration API key (Authorization: Bearer mak_...) "
                "or a signed identity (integration, expires, signature)",
                invalid=False,
            )
    except integrations.AuthenticationFailed as exc:
        raise _unauthorized(str(exc)) from exc
    except integrations.IntegrationDisabled as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "integration disabled") from exc
    return Caller(namespace=found.slug, may_bind=found.allow_binding)


def query_recipient(
    request: Request,
    db_session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    user_id: Annotated[str, Query(min_length=1, max_length=integrations.USER_ID_MAX_CHARS, description=USER_ID_DOC)],
    integration: Annotated[str | None, Query(pattern=SLUG_PATTERN, description=SLUG_DOC)] = None,
    expires: Annotated[int | None, Query(ge=0, le=2**40, description=EXPIRES_DOC)] = None,
    signature: Annotated[str | None, Query(pattern=SIGNATURE_PATTERN, description=SIGNATURE_DOC)] = None,
) -> str:
    """The identity ("<slug>:<user_id>") whose messages a GET may read, authenticated as POST /api/chat is, with
    the signed identity in the query."""
    caller = authenticate(
        request,
        user_id=user_id,
        integration=integration,
        expires=expires,
        signature=signature,
        credentials=credentials,
        db_session=db_session,
    )
    return integrations.namespaced(caller.namespace, user_id)


Recipient = Annotated[str, Depends(query_recipient)]
After = Annotated[int, Query(ge=0, le=MAX_AFTER, description="only messages with a larger id (the last id seen)")]
REFUSALS: dict[int | str, dict] = {
    status.HTTP_401_UNAUTHORIZED: {"model": RefusedOut, "description": "missing, unknown or wrong credentials"},
    status.HTTP_403_FORBIDDEN: {"model": RefusedOut, "description": "the integration is disabled"},
}


@router.post(
    "/api/chat",
    response_model=ChatOut,
    responses=REFUSALS,
)
def chat(
    body: ChatIn,
    request: Request,
    db_session: DbSession,
    message_router: MessageRouter,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> dict:
    """Send one message as a user of the calling integration and get the bot's reply.

    Authenticate with the integration's API key (`Authorization: Bearer mak_…`) or, from a browser, with a signed
    identity in the body: `integration` (slug), `expires` (unix seconds, at most CHAT_API_SIGNATURE_MAX_SECONDS
    ahead) and `signature` = hex HMAC-SHA256(signing_secret, f"{user_id}.{expires}"). The conversation belongs to
    "<slug>:<user_id>": users of different integrations never share conversations, bindings or tickets.
    """
    caller = authenticate(
        request,
        user_id=body.user_id,
        integration=body.integration,
        expires=body.expires,
        signature=body.signature,
        credentials=credentials,
        db_session=db_session,
    )
    message = IncomingMessage(
        channel=CHANNEL,
        user_id=integrations.namespaced(caller.namespace, body.user_id),
        text=body.text,
        may_bind=caller.may_bind,
    )
    return message_router.handle(message, db_session=db_session).as_dict()


@router.get("/api/chat/messages", response_model=list[MessageOut], responses=REFUSALS)
def messages(recipient: Recipient, after: After = 0) -> list[dict]:
    """What was sent to the user outside the replies to its messages (an agent's answers, the rating question after
    a ticket is resolved, notices), oldest first, after message id `after`, at most 100 at a time (ask again after
    the last id); fetching a message delivers it.

    Authenticated as POST /api/chat: the API key as a bearer token, or the signed identity (`integration`, `expires`,
    `signature` for `user_id`) as query parameters.
    """
    return pull.fetch(channel=CHANNEL, recipient=recipient, after=after)


@router.get(
    "/api/chat/stream",
    response_class=StreamingResponse,
    responses={**pull.SSE_RESPONSE_DOC, **REFUSALS},
)
async def stream(request: Request, recipient: Recipient, after: After = 0) -> StreamingResponse:
    """The same messages as GET /api/chat/messages as server-sent events: those after `after` (or after the
    Last-Event-ID header), then each new one as it is sent, with heartbeats. Authenticated as GET /api/chat/messages.
    """
    start = pull.resume_after(request, after)
    return sse_response(pull.stream(channel=CHANNEL, recipient=recipient, after=start))
