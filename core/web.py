"""What every route shares: the database session per request, ids in paths, bearer tokens and the body reader."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from sqlalchemy.orm import Session

from core.database import session_scope
from core.settings import get_settings


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
