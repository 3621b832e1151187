"""The live knowledge base: a snapshot of the enabled FAQ and its matcher, rebuilt when entries change."""

import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session

from core.settings import VAR_DIR, get_settings
from knowledge import service
from knowledge.embedding import Embedder, load_embedder
from knowledge.matcher import Matcher, MatcherConfig, Topic, load_lexicon


@dataclass(frozen=True)
class FaqView:
    """An FAQ entry as the handlers read it."""

    id: str
    category: str
    question: str
    answer: str


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """The enabled FAQ entries and the matcher built from them, at one moment."""

    entries: dict[str, FaqView]
    matcher: Matcher
    signature: tuple


class LiveKnowledge:
    """Keeps a snapshot in step with the database; a changed FAQ rebuilds it on the next message."""

    def __init__(self, embedder: Embedder | None, *, refresh_seconds: float = 1.0) -> None:
        self._embedder = embedder
        self._refresh_seconds = refresh_seconds
        self._checked_at = float("-inf")
        self._lexicon = load_lexicon()
        self._config = MatcherConfig.load()
        self._snapshot: KnowledgeSnapshot | None = None
        self._lock = threading.Lock()

    def current(self, *, db_session: Session) -> KnowledgeSnapshot:
        """Return the snapshot of the FAQ, checking the database for edits at most every `refresh_seconds`."""
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and now - self._checked_at < self._refresh_seconds:
            return snapshot
        signature = service.signature(db_session=db_session)
        self._checked_at = now
        if snapshot is not None and snapshot.signature == signature:
            return snapshot
        with self._lock:
            if self._snapshot is None or self._snapshot.signature != signature:
                self._snapshot = self._build(db_session, signature)
            return self._snapshot

    @property
    def built(self) -> bool:
        """Whether a snapshot exists (the first message will not wait for the index build)."""
        return self._snapshot is not None

    def invalidate(self) -> None:
        """Check the database on the next message (this process just wrote to the FAQ)."""
        self._checked_at = float("-inf")

    def _build(self, db_session: Session, signature: tuple) -> KnowledgeSnapshot:
        rows = service.get_all(db_session=db_session, enabled_only=True)
        topics = [Topic(r.id, r.question, tuple(r.alternates), tuple(r.keywords), r.answer) for r in rows]
        matcher = Matcher(topics, lexicon=self._lexicon, embedder=self._embedder, config=self._config)
        save = getattr(self._embedder, "save", None)
        if save is not None:
            save()
        entries = {r.id: FaqView(r.id, r.category, r.question, r.answer) for r in rows}
        return KnowledgeSnapshot(entries, matcher, signature)


@lru_cache
def get_live_knowledge() -> LiveKnowledge:
    """The process-wide live knowledge base."""
    settings = get_settings()
    embedder = load_embedder(VAR_DIR / "embeddings.npz") if settings.matcher_embeddings else None
    return LiveKnowledge(embedder, refresh_seconds=settings.knowledge_refresh_seconds)
