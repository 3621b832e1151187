"""The live knowledge base: a snapshot of the enabled FAQ and its matcher, rebuilt when entries change.

A rebuild (after an edit or an import) runs on a background thread while the old snapshot keeps answering; the new
one replaces it in one assignment when done. Changes that arrive during a rebuild coalesce into one more rebuild.
"""

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy.orm import Session

from core.database import session_scope
from core.settings import VAR_DIR, get_settings
from knowledge import service
from knowledge.embedding import Embedder, load_embedder
from knowledge.matcher import Matcher, MatcherConfig, RerankGate, Topic, load_lexicon
from knowledge.outside import outside_topics

log = logging.getLogger(__name__)
_builds = itertools.count(1)


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
    build: int = 0  # unique in this process: caches of what the matcher said key on it

    @property
    def version(self) -> tuple:
        """What identifies this snapshot's matcher in caches."""
        return (self.build, *self.signature)


@dataclass(frozen=True)
class _Rows:
    """What a rebuild needs of the database, read in the requesting thread."""

    signature: tuple
    topics: list[Topic]
    entries: dict[str, FaqView]


class LiveKnowledge:
    """Keeps a snapshot in step with the database; a changed FAQ is rebuilt in the background."""

    def __init__(
        self,
        embedder: Embedder | None,
        *,
        refresh_seconds: float = 1.0,
        gate: RerankGate | None = None,
        rebuild_wait_seconds: float = 10.0,
    ) -> None:
        self._embedder = embedder
        self._refresh_seconds = refresh_seconds
        self._rebuild_wait_seconds = rebuild_wait_seconds
        self._checked_at = float("-inf")
        self._lexicon = load_lexicon()
        self._config = MatcherConfig.load()
        self._gate = gate
        self._snapshot: KnowledgeSnapshot | None = None
        self._lock = threading.Lock()  # guards the fields below
        self._pending: _Rows | None = None  # the newest rows not yet built
        self._building: tuple | None = None  # the signature being built now
        self._worker_running = False
        self._done = threading.Condition(self._lock)

    def current(self, *, db_session: Session, wait_seconds: float = 0.0) -> KnowledgeSnapshot:
        """Return the snapshot of the FAQ, checking the database for edits at most every `refresh_seconds`.

        The first snapshot is built at once; later ones in the background: a caller that noticed the change waits
        up to `wait_seconds` for it (chat does not wait), and gets the previous snapshot meanwhile."""
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and now - self._checked_at < self._refresh_seconds:
            return snapshot
        signature = service.signature(db_session=db_session)
        self._checked_at = now
        if snapshot is not None and snapshot.signature == signature:
            return snapshot
        if snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    self._snapshot = self._build(self._read(db_session, signature))
                return self._snapshot
        with self._lock:
            underway = signature in (self._building, getattr(self._pending, "signature", None))
        if not underway:
            self.schedule(self._read(db_session, signature))
        return self.wait(signature, wait_seconds) if wait_seconds > 0 else snapshot

    def refresh(self, *, wait_seconds: float | None = None) -> KnowledgeSnapshot | None:
        """After this process wrote to the FAQ (and committed): start the rebuild now and wait for it up to
        `wait_seconds` (KNOWLEDGE_REBUILD_WAIT_SECONDS); an import too big for that finishes in the background."""
        self.invalidate()
        wait = self._rebuild_wait_seconds if wait_seconds is None else wait_seconds
        with session_scope() as db_session:
            return self.current(db_session=db_session, wait_seconds=wait)

    def schedule(self, rows: "_Rows") -> None:
        """Build a snapshot of these rows in the background (replacing any rows still waiting to be built)."""
        with self._lock:
            self._pending = rows
            if not self._worker_running:  # else the running worker takes these rows after its current build
                self._worker_running = True
                threading.Thread(target=self._rebuild_loop, name="knowledge-rebuild", daemon=True).start()

    def wait(self, signature: tuple, timeout: float) -> KnowledgeSnapshot:
        """The snapshot once it has this signature, or the current one after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._snapshot is None or self._snapshot.signature != signature:
                left = deadline - time.monotonic()
                if left <= 0 or (self._pending is None and self._building is None):
                    break
                self._done.wait(left)
            return self._snapshot  # type: ignore[return-value]

    @property
    def rebuilding(self) -> bool:
        """Whether a rebuild is under way or waiting."""
        with self._lock:
            return self._building is not None or self._pending is not None

    @property
    def built(self) -> bool:
        """Whether a snapshot exists (the first message will not wait for the index build)."""
        return self._snapshot is not None

    def invalidate(self) -> None:
        """Check the database on the next message (this process just wrote to the FAQ)."""
        self._checked_at = float("-inf")

    def _rebuild_loop(self) -> None:
        while True:
            with self._lock:
                rows, self._pending = self._pending, None
                self._building = rows.signature if rows is not None else None
                if rows is None:
                    self._worker_running = False
                    self._done.notify_all()
                    return
            try:
                snapshot = self._build(rows)
            except Exception:
                log.exception("knowledge rebuild failed; the previous FAQ snapshot keeps answering")
                snapshot = None
            with self._lock:
                if snapshot is not None:
                    self._snapshot = snapshot  # the swap: readers see the old or the new snapshot, never a mix
                self._building = None
                self._done.notify_all()

    def _read(self, db_session: Session, signature: tuple) -> _Rows:
        rows = service.get_all(db_session=db_session, enabled_only=True)
        topics = [Topic(r.id, r.question, tuple(r.alternates), tuple(r.keywords), r.answer) for r in rows]
        entries = {r.id: FaqView(r.id, r.category, r.question, r.answer) for r in rows}
        return _Rows(signature, topics, entries)

    def _build(self, rows: _Rows) -> KnowledgeSnapshot:
        matcher = Matcher(
            [*rows.topics, *outside_topics()],
            lexicon=self._lexicon,
            embedder=self._embedder,
            config=self._config,
            gate=self._gate,
        )
        save = getattr(self._embedder, "save", None)
        if save is not None:
            save()
        return KnowledgeSnapshot(rows.entries, matcher, rows.signature, next(_builds))


@lru_cache
def get_live_knowledge() -> LiveKnowledge:
    """The process-wide live knowledge base."""
    settings = get_settings()
    embedder = load_embedder(VAR_DIR / "embeddings.npz") if settings.matcher_embeddings else None
    gate = RerankGate(concurrency=settings.rerank_concurrency, wait_seconds=settings.rerank_wait_seconds)
    return LiveKnowledge(
        embedder,
        refresh_seconds=settings.knowledge_refresh_seconds,
        gate=gate,
        rebuild_wait_seconds=settings.knowledge_rebuild_wait_seconds,
    )
