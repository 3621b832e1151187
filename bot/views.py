"""Public routes: health and the JSON chat API."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from bot.bootstrap import get_router
from bot.deps import get_db
from bot.messages import IncomingMessage

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


@router.post("/api/chat", response_model=ChatOut)
def chat(body: ChatIn, db_session: Annotated[Session, Depends(get_db)]) -> dict:
    """Send one message as a merchant and get the bot's reply."""
    message = IncomingMessage(channel="api", user_id=body.user_id, text=body.text)
    return get_router().handle(message, db_session=db_session).as_dict()
