"""Channel-neutral messages: what a channel adapter hands in and what it renders out."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Intent = Literal[
    "answer",
    "guide",
    "clarify",
    "invoice_lookup",
    "invoice_watch",
    "binding",
    "handoff",
    "human",  # the conversation is with a person: the message went to the ticket
    "greeting",
    "smalltalk",  # thanks, ok, goodbye, laughter, "你是谁": a short reply, never a miss
    "fallback",
    "out_of_scope",  # a tax or business subject the bot does not cover: said so, with where to ask
    "throttled",  # over the per-minute message limit: paused, not answered (nor passed to a ticket)
]


@dataclass(frozen=True)
class IncomingMessage:
    """A merchant's message as every channel delivers it to the router."""

    channel: str
    user_id: str
    text: str
    message_id: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    may_bind: bool = True  # False: this identity may not bind a merchant (chat API demo mode, some integrations)


@dataclass(frozen=True)
class Option:
    """A choice offered to the merchant; `payload` is what choosing it means to the router."""

    label: str
    payload: str


@dataclass(frozen=True)
class Decision:
    """How the FAQ matcher decided on the message a reply answers: its outcome, the policy setting that decided it and
    that setting's value, the best score and its margin to the runner-up, and the ranked topics with their scores."""

    outcome: str  # answer, clarify, out_of_scope, not_sure
    gate: str  # answer_at, clarify_at, outside_at, min_score, generic, empty (knowledge.matcher.Gate)
    threshold: float | None
    score: float
    margin: float
    reranked: bool = False
    candidates: tuple[tuple[str, float], ...] = ()


@dataclass
class Reply:
    """What the bot answers: text plus numbered options, and how it understood the message."""

    text: str
    intent: Intent
    options: list[Option] = field(default_factory=list)
    topic: str | None = None
    confidence: float | None = None
    candidates: list[str] = field(default_factory=list)
    invoice: dict[str, str] | None = None
    decision: Decision | None = None  # when the matcher decided: why (admins' "try a question"; never sent out)

    @property
    def silent(self) -> bool:
        """True when there is nothing to send (a person is handling the conversation)."""
        return not self.text and not self.options

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "text": self.text,
            "options": [{"label": o.label, "payload": o.payload} for o in self.options],
            "intent": self.intent,
            "topic": self.topic,
            "confidence": self.confidence,
            "candidates": self.candidates,
            "invoice": self.invoice,
        }

    def render_text(self) -> str:
        """Plain-text rendering with numbered options (terminal, WeChat passive reply)."""
        if not self.options:
            return self.text
        lines = [self.text, ""]
        lines += [f"{i}. {o.label}" for i, o in enumerate(self.options, 1)]
        lines.append(f"请回复数字 1-{len(self.options)} 选择。")
        return "\n".join(lines)
