"""Chat state: what the bot remembers between two messages of one conversation, kept in the store with a TTL."""

from dataclasses import asdict, dataclass, field
from typing import Any

from core.store import Store, best_effort


@dataclass
class GuideProgress:
    """Where a merchant is in a troubleshooting guide, and the answers that led there."""

    guide: str
    step: str
    # One [guide, step, chosen label] per answered question, oldest first: for 返回 and for the handoff summary.
    path: list[list[str]] = field(default_factory=list)
    # The fix was shown and the bot waits for "解决了吗？".
    feedback: bool = False
    # The merchant asked something else; the guide waits to be resumed.
    paused: bool = False
    # Replies given while paused (the guide is dropped after a few).
    idle: int = 0
    # Values the merchant pasted at steps that accept one (step id → value), for the handoff summary.
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> "GuideProgress | None":
        """Rebuild saved progress; None when the saved data is not usable."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("guide", "step")):
            return None
        path = data.get("path") or []
        if not isinstance(path, list) or not all(isinstance(p, list) and len(p) == 3 for p in path):
            path = []
        values = data.get("values")
        return cls(
            guide=data["guide"],
            step=data["step"],
            path=[[str(x) for x in p] for p in path],
            feedback=bool(data.get("feedback")),
            paused=bool(data.get("paused")),
            idle=data["idle"] if isinstance(data.get("idle"), int) else 0,
            values={str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {},
        )


@dataclass
class ChatState:
    """What the bot remembers between two messages of one merchant."""

    pending: list[dict[str, str]] = field(default_factory=list)
    last_topic: str | None = None
    unsure_streak: int = 0
    turns: int = 0
    guide: GuideProgress | None = None
    # What the bot learned before the last handoff (kept for the ticket).
    handoff_note: dict[str, Any] | None = None
    # A multi-message step waiting for the merchant's next message, e.g. "binding" (taxpayer id + code).
    awaiting: str | None = None
    # An invoice asked about before binding: looked up as soon as the binding succeeds.
    pending_invoice: dict[str, str] | None = None
    # The last guide started (kept after it ends), so that "还是不行" can go on with it.
    last_guide: str | None = None
    # The message the last FAQ answer replied to, and the other topics the matcher considered for it.
    last_question: str | None = None
    last_candidates: list[str] = field(default_factory=list)
    # The last question recorded for the unanswered list ("没解决", typed "还是不行"): recorded once.
    recorded_question: str | None = None
    # When the bot last told the merchant, while a person has the conversation, that staff will see it (epoch s).
    human_ack_at: float | None = None
    # When it last answered "有人吗" or another 转人工 (epoch s); the first one after a handoff is always answered.
    human_nudge_at: float | None = None
    # The last invoice looked up in this conversation and what the lookup found (carried into a handoff's ticket).
    last_invoice: dict[str, str] | None = None


def state_key(channel: str, user_id: str) -> str:
    """The store key of a conversation's chat state."""
    return f"chat:{channel}:{user_id}"


def load(*, store: Store, channel: str, user_id: str) -> ChatState:
    """Return the saved state, or a fresh one (also when the store is down: the bot answers without memory)."""
    data = best_effort(lambda: store.get_json(state_key(channel, user_id)), None, what="chat state load") or {}
    known = ChatState.__dataclass_fields__
    state = ChatState(**{k: v for k, v in data.items() if k in known and k != "guide"})
    state.guide = GuideProgress.from_dict(data.get("guide"))
    return state


def save(*, store: Store, channel: str, user_id: str, state: ChatState, ttl: float) -> None:
    """Persist the state until `ttl` seconds of silence; a store outage is logged and counted, not raised."""
    best_effort(
        lambda: store.set_json(state_key(channel, user_id), asdict(state), ttl=ttl), None, what="chat state save"
    )
