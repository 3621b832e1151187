"""The JSON chat API channel: POST /api/chat, for a merchant platform's own chat window or scripts."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

from bot.channels import MessageRouter
from core.messages import IncomingMessage
from core.web import DbSession

CHANNEL = "api"
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


@router.post("/api/chat", response_model=ChatOut)
def chat(body: ChatIn, db_session: DbSession, message_router: MessageRouter) -> dict:
    """Send one message as a merchant and get the bot's reply."""
    message = IncomingMessage(channel=CHANNEL, user_id=body.user_id, text=body.text)
    return message_router.handle(message, db_session=db_session).as_dict()
