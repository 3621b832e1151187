"""What the outbox holds for a merchant whose client fetches it (chat API, web chat): a JSON list, or a live stream of
server-sent events. Fetching a pending message delivers it (the console then shows it sent)."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field

from core import events
from core.clock import UtcDateTime, utc
from core.database import session_scope
from core.outbox import service as outbox
from core.outbox.models import OutboxMessage
from core.store import best_effort, get_store
from core.web import SSE_MEDIA_TYPE

HEARTBEAT_SECONDS = 15.0
STREAM_SECONDS = 300.0  # then the stream ends and the client reconnects (EventSource does, with Last-Event-ID)
RETRY_MILLISECONDS = 3000
MAX_AFTER = 2**63 - 1


class OptionOut(BaseModel):
    label: str
    payload: str


class MessageOut(BaseModel):
    """A message sent to the merchant outside a reply: an agent's answer, the rating question, a notice."""

    id: int = Field(description="increasing; pass the last one seen as `after` (or Last-Event-ID) to resume")
    text: str
    options: list[OptionOut]
    created_at: UtcDateTime


def message_dict(message: OutboxMessage) -> dict[str, Any]:
    """One outbox message as the merchant's client sees it."""
    created = utc(message.created_at) if isinstance(message.created_at, datetime) else utc()
    return {
        "id": message.id,
        "text": message.payload.get("text", ""),
        "options": list(message.payload.get("options", [])),
        "created_at": created.isoformat(),
    }


def fetch(*, channel: str, recipient: str, after: int = 0) -> list[dict[str, Any]]:
    """The recipient's messages after id `after`, oldest first, delivered by being fetched (blocking)."""
    with session_scope() as db_session:
        messages = outbox.pull(db_session=db_session, channel=channel, recipient=recipient, after_id=after)
        return [message_dict(message) for message in messages]


def resume_after(request: Request, after: int) -> int:
    """Where a stream resumes: after the Last-Event-ID the client sends on reconnecting, else after `after`."""
    given = request.headers.get("last-event-id", "").strip()
    if given.isdigit() and len(given) < 19:
        return max(int(given), after)
    return after


def as_sse(message: dict[str, Any]) -> str:
    """One message as a server-sent event (its id as the event id: a reconnect resumes after it)."""
    return f"id: {message['id']}\nevent: message\ndata: {json.dumps(message, ensure_ascii=False)}\n\n"


async def stream(
    *,
    channel: str,
    recipient: str,
    after: int,
    hub: events.Hub | None = None,
    heartbeat_seconds: float | None = None,
    lifetime_seconds: float | None = None,
) -> AsyncIterator[str]:
    """Server-sent events: the messages after `after`, then each new one as it is queued (woken by the live notices
    of this chat, and checked again at every heartbeat in case a notice was lost), for `lifetime_seconds`
    (STREAM_SECONDS by default)."""
    hub = hub or events.get_hub()
    heartbeat_seconds = HEARTBEAT_SECONDS if heartbeat_seconds is None else heartbeat_seconds
    lifetime_seconds = STREAM_SECONDS if lifetime_seconds is None else lifetime_seconds
    key = outbox.chat_key(channel, recipient)
    seen = await asyncio.to_thread(best_effort, lambda: events.current(get_store()), None, what="live notices")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime_seconds
    yield f"retry: {RETRY_MILLISECONDS}\n\n"

    async def fresh() -> AsyncIterator[str]:
        nonlocal after
        while True:
            batch = await asyncio.to_thread(fetch, channel=channel, recipient=recipient, after=after)
            for message in batch:
                after = message["id"]
                yield as_sse(message)
            if len(batch) < outbox.PULL_LIMIT:
                return

    async for chunk in fresh():
        yield chunk
    listener = hub.listen(after=seen, heartbeat_seconds=heartbeat_seconds)
    try:
        async for notice in listener:
            if notice.kind == events.PING:
                yield ": ping\n\n"
            if notice.kind in (events.PING, events.RESYNC) or (notice.kind == events.CHAT and notice.key == key):
                async for chunk in fresh():
                    yield chunk
            if loop.time() >= deadline:
                break
    finally:
        await listener.aclose()


SSE_RESPONSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-sent events: `event: message` with `id` (the message id) and `data` (a MessageOut as JSON) for "
            "each message, oldest first, then live; `: ping` comments as heartbeats. The stream ends after a few "
            "minutes; reconnect with the Last-Event-ID header (EventSource does this by itself)."
        ),
        "content": {SSE_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}
