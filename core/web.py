"""What every route shares: the database session per request, ids in paths, bearer tokens and the body reader."""

import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from core.database import session_scope
from core.settings import get_settings

log = logging.getLogger(__name__)
ECHOED_INPUT_CHARS = 200  # a refused value is echoed back at most this long


def get_db() -> Iterator[Session]:
    """A database session for one request, committed when the request succeeds."""
    with session_scope() as db_session:
        yield db_session


# scope="function": the session commits when the route returns, BEFORE the response is sent, so a 200 means the
# request's writes are durable, and a failed commit is a 5xx (503 for OperationalError), never a 200. (The default,
# "request", commits after the response went out: a crash in between lost acknowledged tickets and turns.)
DbDepends = Depends(get_db, scope="function")
DbSession = Annotated[Session, DbDepends]
# Ids in URLs: a value beyond the id column is a 422, not an overflow inside the database driver (a 500).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _require_bearer(authorization: str | None, tokens: list[str | None], disabled: str) -> None:
    """Admit a request whose bearer token equals one of the configured `tokens`."""
    configured = [token for token in tokens if token]
    if not configured:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, disabled)
    scheme, _, given = (authorization or "").partition(" ")
    matches = [hmac.compare_digest(given.encode(), token.encode()) for token in configured]
    if scheme.lower() != "bearer" or not any(matches):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
    """Admit only requests bearing the ADMIN_TOKEN."""
    _require_bearer(authorization, [get_settings().admin_token], "admin API disabled: set ADMIN_TOKEN to enable it")


def require_invoice_feed(authorization: Annotated[str | None, Header()] = None) -> None:
    """Admit requests bearing the INVOICE_FEED_TOKEN (the merchant platform) or the ADMIN_TOKEN."""
    settings = get_settings()
    _require_bearer(
        authorization,
        [settings.invoice_feed_token, settings.admin_token],
        "invoice feed disabled: set INVOICE_FEED_TOKEN (or ADMIN_TOKEN) to enable it",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 once it exceeds `limit` bytes, whether declared or streamed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body larger than {limit} bytes")
    return bytes(body)


def _printable(value: Any) -> Any:
    """A refused input made JSON-safe: bytes decoded with replacement characters, long text cut."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value[: ECHOED_INPUT_CHARS * 4]).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value[:ECHOED_INPUT_CHARS]
    if isinstance(value, dict):
        return {str(_printable(k)): _printable(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value[:50]]
    return value


def _error_detail(error: dict[str, Any]) -> dict[str, Any]:
    """One validation error as JSON; its input is dropped when it cannot be encoded."""
    detail = {key: value for key, value in error.items() if key not in ("input", "url")}
    try:
        detail = jsonable_encoder(detail)
    except Exception:  # an unencodable ctx: keep only what is plain text
        detail = {key: str(value) for key, value in detail.items()}
    if "input" in error:
        try:
            detail["input"] = jsonable_encoder(_printable(error["input"]))
        except Exception:
            detail["input"] = None
    return detail


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with the reasons, for any body (raw non-UTF-8 bytes included): never a 500 while reporting the error."""
    errors = exc.errors()
    detail = [_error_detail(dict(error)) for error in errors[:50]]
    log.info("request refused on %s %s: %d validation errors", request.method, request.url.path, len(errors))
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


SSE_MEDIA_TYPE = "text/event-stream"


def sse_response(events_text: AsyncIterator[str]) -> StreamingResponse:
    """A server-sent events response that no proxy buffers or caches."""
    headers = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events_text, media_type=SSE_MEDIA_TYPE, headers=headers)
