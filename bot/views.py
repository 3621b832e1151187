"""Public routes: health and the JSON chat API."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from bot import metrics
from bot.bootstrap import get_router
from bot.config import get_settings
from bot.database import session_scope
from bot.deps import get_db
from bot.messages import IncomingMessage
from bot.store import get_store

router = APIRouter()


class ChatIn(BaseModel):
    """A message sent to the bot over the API."""

    user_id: str = Field(min_length=1, max_length=128, description="the merchant's id in the calling system")
    text: str = Field(max_length=20000, description="the message, UTF-8")


class OptionOut(BaseModel):
    label: str
    payload: str


class ChatOut(BaseModel):
    """The bot's reply and how it understood the message."""

    text: str
    options: list[OptionOut]
    intent: str
    topic: str | None
    confidence: float | None
    candidates: list[str]
    invoice: dict[str, str] | None


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz() -> Response:
    """The database and the store answer: 200, else 503 naming what is down."""
    problems = {}
    try:
        with session_scope() as db_session:
            db_session.execute(text("SELECT 1"))
    except Exception as exc:
        metrics.INFRA_ERRORS.labels("database").inc()
        problems["database"] = type(exc).__name__
    try:
        if not get_store().ping():
            problems["store"] = "no answer"
    except Exception as exc:
        metrics.INFRA_ERRORS.labels("store").inc()
        problems["store"] = type(exc).__name__
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics (bearer METRICS_TOKEN when it is set)."""
    token = get_settings().metrics_token
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.post("/api/chat", response_model=ChatOut)
def chat(body: ChatIn, db_session: Annotated[Session, Depends(get_db)]) -> dict:
    """Send one message as a merchant and get the bot's reply."""
    message = IncomingMessage(channel="api", user_id=body.user_id, text=body.text)
    return get_router().handle(message, db_session=db_session).as_dict()
