"""Batch triage: each message as the first of a fresh conversation, described as one JSON-ready row."""

import json
from typing import Any

from core.database import get_sessionmaker
from core.messages import IncomingMessage
from core.store import MemoryStore
from handlers.router import Router, make_router


def make_triage_router() -> Router:
    """A router that remembers nothing between lines and records no turns."""
    return make_router(store=MemoryStore(), record=False)


def line_text(line: str) -> str:
    """The message of an input line: the line itself, or the "text" of a JSON object; always valid UTF-8."""
    text = line
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            text = data["text"]
    return text.encode("utf-8", errors="replace").decode("utf-8")


def triage_one(router: Router, text: str, number: int) -> dict[str, Any]:
    """What the bot would do with a first message: action, topic, score, candidates (and invoice fields)."""
    with get_sessionmaker()() as db_session:  # rolled back: triage never opens tickets or writes anything
        reply = router.handle(
            IncomingMessage(channel="triage", user_id=f"line-{number}", text=text), db_session=db_session
        )
        db_session.rollback()
    row: dict[str, Any] = {
        "text": text,
        "action": reply.intent,
        "topic": reply.topic,
        "score": reply.confidence if reply.confidence is not None else 0.0,
        "candidates": reply.candidates,
    }
    if reply.intent == "invoice_lookup":
        row["invoice"] = reply.invoice or {}
    return row
