"""FastAPI dependencies shared by every domain's routes."""

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Header, HTTPException, Request, status
from sqlalchemy.orm import Session

from bot.config import get_settings
from bot.database import session_scope


def get_db() -> Iterator[Session]:
    """A database session for one request, committed when the request succeeds."""
    with session_scope() as db_session:
        yield db_session


def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
    """Admit only requests bearing the ADMIN_TOKEN."""
    expected = get_settings().admin_token
    if not expected:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin API disabled: set ADMIN_TOKEN to enable it")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
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
