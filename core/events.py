"""Change notices shared by every worker, for live pages (server-sent events).

A notice is the next number of one counter in the store plus a short-lived record under that number. Each process
polls the counter once for all of its live connections (`Hub`) and hands new notices to each of them. A connection
that fell too far behind, or lost notices to a store outage, gets a "resync" notice: the page then reloads its data.
Notices say what changed (a ticket, the queue, a merchant's chat), never the content: pages fetch that themselves,
through the same authenticated routes as without live updates.
"""

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from core.store import Store, best_effort, get_store

log = logging.getLogger(__name__)

SEQ_KEY = "events:seq"
RECORD_TTL_SECONDS = 120
POLL_SECONDS = 0.2
GAP_PATIENCE_SECONDS = 1.0
RECENT = 2000
PENDING_KEY = "live_events"

TICKET = "ticket"
QUEUE = "queue"
CHAT = "chat"
PRESENCE = "presence"
RESYNC = "resync"
PING = "ping"


@dataclass(frozen=True)
class Event:
    """One change notice: what kind of thing changed, which one, and small facts about it."""

    seq: int
    kind: str
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_sse(self, *, name: str | None = None) -> str:
        """The notice as one server-sent event (its number as the event id, so a reconnect resumes after it)."""
        body = json.dumps({"kind": self.kind, "key": self.key, **self.data}, ensure_ascii=False)
        return f"id: {self.seq}\nevent: {name or self.kind}\ndata: {body}\n\n"


def _record_key(seq: int) -> str:
    return f"events:{seq}"


def publish(kind: str, key: str = "", *, store: Store | None = None, **data: Any) -> None:
    """Tell every live page that `kind`/`key` changed (best effort: a store outage only delays pages to a resync)."""
    store = store or get_store()

    def write() -> None:
        seq = store.incr(SEQ_KEY)
        store.set(_record_key(seq), json.dumps([kind, key, data], ensure_ascii=False), ttl=RECORD_TTL_SECONDS)

    best_effort(write, None, what=f"live notice {kind}")


def publish_after_commit(db_session: Session, kind: str, key: str = "", **data: Any) -> dict[str, Any]:
    """Publish `kind`/`key` once the session's transaction (the one holding the change announced) commits: never for
    a rolled-back change, never before readers can see it. Several changes to one thing in one transaction make one
    notice: its facts (returned, for the caller to fill in) are merged."""
    pending = db_session.info.setdefault(PENDING_KEY, [])
    for pending_kind, pending_key, facts in pending:
        if (pending_kind, pending_key) == (kind, key):
            facts.update(data)
            return facts
    facts = dict(data)
    pending.append((kind, key, facts))
    return facts


@sa_event.listens_for(Session, "after_commit")
def _publish_pending(db_session: Session) -> None:
    for kind, key, data in db_session.info.pop(PENDING_KEY, ()):
        publish(kind, key, **data)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_pending(db_session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        db_session.info.pop(PENDING_KEY, None)


def current(store: Store) -> int:
    """The number of the latest notice."""
    return int(store.get(SEQ_KEY) or 0)


def read(store: Store, *, after: int, limit: int = 500) -> tuple[int, list[Event], bool]:
    """Notices after number `after`: (the last number read, the notices, whether a record was missing there)."""
    latest = current(store)
    if latest <= after:
        return after, [], False
    first = max(after + 1, latest - limit + 1)
    numbers = list(range(first, latest + 1))
    events: list[Event] = []
    for seq, raw in zip(numbers, store.get_many([_record_key(seq) for seq in numbers]), strict=True):
        if raw is None:
            return seq - 1, events, True
        kind, key, data = json.loads(raw)
        events.append(Event(seq=seq, kind=kind, key=key, data=data))
    return latest, events, first > after + 1


class Hub:
    """One process's view of the notices: one poller for all of its live connections, started on first use."""

    def __init__(self, store_factory: Callable[[], Store] = get_store, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._store_factory = store_factory
        self._poll_seconds = poll_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners = 0

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = asyncio.Condition()
        self._recent: deque[Event] = deque(maxlen=RECENT)
        self._seq = best_effort(lambda: current(self._store_factory()), 0, what="live notices")
        self._task: asyncio.Task | None = None

    def _ensure_poller(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._reset(loop)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._poll(), name="live-notices")

    async def _poll(self) -> None:
        gap_since: float | None = None
        store = self._store_factory()
        while self._listeners > 0:
            after = self._seq
            seq, events, gap = await asyncio.to_thread(
                best_effort, partial(read, store, after=after), (after, [], False), what="live notices"
            )
            if gap and not events:
                gap_since = gap_since or time.monotonic()
                if time.monotonic() - gap_since > GAP_PATIENCE_SECONDS:  # a notice lost: everyone reloads
                    latest = best_effort(lambda: current(store), seq, what="live notices")
                    events, seq, gap_since = [Event(seq=latest, kind=RESYNC)], latest, None
            else:
                gap_since = None
            if events:
                self._recent.extend(events)
                self._seq = seq
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(self._poll_seconds)

    async def listen(self, *, after: int | None = None, heartbeat_seconds: float = 15.0) -> AsyncIterator[Event]:
        """Every notice after number `after` (now when None), as it arrives; a PING when nothing came for a while."""
        self._ensure_poller()
        self._listeners += 1
        cursor = self._seq if after is None or after > self._seq else after
        try:
            while True:
                if self._seq <= cursor:
                    try:
                        async with self._changed:
                            await asyncio.wait_for(
                                self._changed.wait_for(lambda seen=cursor: self._seq > seen), timeout=heartbeat_seconds
                            )
                    except TimeoutError:
                        yield Event(seq=cursor, kind=PING)
                        continue
                oldest = self._recent[0].seq if self._recent else self._seq + 1
                if cursor + 1 < oldest:
                    yield Event(seq=self._seq, kind=RESYNC)
                else:
                    fresh = []
                    for item in reversed(self._recent):
                        if item.seq <= cursor:
                            break
                        fresh.append(item)
                    for item in reversed(fresh):
                        yield item
                cursor = self._seq
        finally:
            self._listeners -= 1


@lru_cache
def get_hub() -> Hub:
    """This process's hub."""
    return Hub()
