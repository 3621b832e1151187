"""Per-conversation state kept in the store with a TTL, keyed by channel and user."""

from dataclasses import asdict, dataclass, field

from bot.store import Store


@dataclass
class SessionState:
    """What the bot remembers between two messages of one merchant."""

    pending: list[dict[str, str]] = field(default_factory=list)
    last_topic: str | None = None
    unsure_streak: int = 0
    turns: int = 0


def session_key(channel: str, user_id: str) -> str:
    """The store key of a conversation."""
    return f"session:{channel}:{user_id}"


def load(*, store: Store, channel: str, user_id: str) -> SessionState:
    """Return the saved state, or a fresh one."""
    data = store.get_json(session_key(channel, user_id)) or {}
    known = SessionState.__dataclass_fields__
    return SessionState(**{k: v for k, v in data.items() if k in known})


def save(*, store: Store, channel: str, user_id: str, state: SessionState, ttl: float) -> None:
    """Persist the state until `ttl` seconds of silence."""
    store.set_json(session_key(channel, user_id), asdict(state), ttl=ttl)
