"""The outbox: migration, enqueue/claim/outcomes, the delivery worker and concurrent draining, on each database."""

import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError

from bot.models import metadata
from core.clock import utc
from core.database import get_engine, make_engine, session_scope, upgrade_schema
from core.messages import Option
from core.outbox import service, worker
from core.outbox.models import OutboxMessage
from core.outbox.senders import RetryLater, Undeliverable
from core.outbox.worker import OutboxWorker, deliver_due
from core.settings import get_settings
from tests.conftest import clear_process_caches

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def outbox_db(database_url, monkeypatch) -> Iterator[str]:
    """The application pointed at a fresh, migrated database of each kind."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    clear_process_caches()
    upgrade_schema()
    yield database_url
    get_engine().dispose()
    clear_process_caches()


@dataclass
class RecordingSender:
    """Records every send; raises the error set for a text."""

    channel: str = "wechat"
    errors: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    delay: float = 0.0

    def send(self, recipient: str, payload: dict) -> None:
        self.calls.append((recipient, payload))
        time.sleep(self.delay)
        if payload["text"] in self.errors:
            raise self.errors[payload["text"]]

    def texts(self) -> list[str]:
        return [payload["text"] for _, payload in self.calls]


def add(text: str = "您好", *, channel: str = "wechat", now: datetime | None = T0, **kwargs) -> int:
    with session_scope() as db_session:
        return service.enqueue(
            db_session=db_session, channel=channel, recipient="oUser1", text=text, now=now, **kwargs
        ).id


def claim(*, now: datetime = T0, limit: int = 10, **kwargs) -> list[int]:
    with session_scope() as db_session:
        return [m.id for m in service.claim_due(db_session=db_session, limit=limit, now=now, **kwargs)]


def fetch(message_id: int) -> OutboxMessage:
    with session_scope() as db_session:
        return service.get(db_session=db_session, message_id=message_id)


def counts() -> dict[str, int]:
    with session_scope() as db_session:
        return service.backlog(db_session=db_session)


def retry(message_id: int, *, now: datetime, **kwargs) -> bool:
    with session_scope() as db_session:
        return service.mark_retry(db_session=db_session, message_id=message_id, error="timeout", now=now, **kwargs)


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- schema ---------------------------------------------------------------------------------------------


def test_upgrade_schema_creates_the_outbox_as_the_model_describes(database_url):
    eng = make_engine(database_url)
    try:
        assert upgrade_schema(eng) is True
        inspector = inspect(eng)
        columns = {c["name"]: c for c in inspector.get_columns("outbox_message")}
        assert set(columns) == {
            "id",
            "channel",
            "recipient",
            "payload",
            "status",
            "attempts",
            "last_error",
            "next_attempt_at",
            "lease_until",
            "dedupe_key",
            "created_at",
            "sent_at",
        }
        assert {name for name, c in columns.items() if c["nullable"]} == {
            "last_error",
            "lease_until",
            "dedupe_key",
            "sent_at",
        }
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("outbox_message")}
        assert indexes["ix_outbox_message_due"] == ["status", "next_attempt_at"]
        uniques = inspector.get_unique_constraints("outbox_message")
        assert [(u["name"], u["column_names"]) for u in uniques] == [("uq_outbox_message_dedupe_key", ["dedupe_key"])]
        with eng.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert [d for d in differences if "outbox_message" in repr(d)] == []
    finally:
        eng.dispose()


# --- enqueue and claim ----------------------------------------------------------------------------------


def test_enqueue_claim_and_mark_sent(outbox_db):
    options = [Option("查发票", "invoice_lookup"), {"label": "转人工", "payload": "handoff"}]
    message_id = add("请选择：", options=options)
    message = fetch(message_id)
    assert (message.channel, message.recipient, message.status, message.attempts) == ("wechat", "oUser1", "pending", 0)
    assert message.payload == {
        "text": "请选择：",
        "options": [{"label": "查发票", "payload": "invoice_lookup"}, {"label": "转人工", "payload": "handoff"}],
    }
    assert claim() == [message_id]
    message = fetch(message_id)
    assert (message.status, message.attempts, utc(message.lease_until)) == ("sending", 1, T0 + timedelta(seconds=60))
    assert claim() == [], "a leased message is not claimed twice"
    with session_scope() as db_session:
        assert service.mark_sent(db_session=db_session, message_id=message_id, now=T0) is True
        assert service.mark_sent(db_session=db_session, message_id=message_id, now=T0) is False
    message = fetch(message_id)
    assert (message.status, utc(message.sent_at), message.lease_until) == ("sent", T0, None)
    assert counts() == {"pending": 0, "sending": 0, "sent": 1, "failed": 0}
    assert claim(now=T0 + timedelta(days=1)) == []


def test_enqueue_with_a_dedupe_key_is_idempotent(outbox_db):
    first = add("第一条", dedupe_key="wechat:msg:1001")
    assert add("第二条", dedupe_key="wechat:msg:1001") == first
    assert fetch(first).payload["text"] == "第一条"
    with session_scope() as db_session:
        one = service.enqueue(db_session=db_session, channel="telegram", recipient="42", text="a", dedupe_key="tg:7")
        two = service.enqueue(db_session=db_session, channel="telegram", recipient="42", text="b", dedupe_key="tg:7")
        assert one is two
    assert add("无键") != add("无键"), "messages without a key are never merged"
    assert counts()["pending"] == 4


def test_concurrent_enqueue_of_one_key_makes_one_row(outbox_db):
    barrier = threading.Barrier(8)
    ids: list[int] = []

    def enqueue_same(index: int) -> None:
        barrier.wait()
        ids.append(add(f"thread {index}", dedupe_key="wechat:msg:concurrent"))

    threads = [threading.Thread(target=enqueue_same, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert counts()["pending"] == 1


def test_enqueue_rolls_back_with_the_callers_transaction(outbox_db):
    with pytest.raises(RuntimeError), session_scope() as db_session:
        service.enqueue(db_session=db_session, channel="wechat", recipient="u", text="x", dedupe_key="k1")
        raise RuntimeError("the handler failed after enqueueing")
    assert sum(counts().values()) == 0
    assert fetch(add("again", dedupe_key="k1")).payload["text"] == "again"


def test_claim_respects_next_attempt_at_and_limit(outbox_db):
    later = add("later", delay_seconds=30)
    due = [add(f"m{i}") for i in range(3)]
    assert claim(limit=2) == due[:2]
    assert claim() == [due[2]]
    assert claim(now=T0 + timedelta(seconds=29)) == []
    assert claim(now=T0 + timedelta(seconds=30)) == [later]


def test_expired_lease_is_reclaimed_and_the_stale_outcome_ignored(outbox_db):
    message_id = add()
    assert claim(lease_seconds=30) == [message_id]
    assert claim(now=T0 + timedelta(seconds=29)) == []
    assert claim(now=T0 + timedelta(seconds=30)) == [message_id]
    assert fetch(message_id).attempts == 2
    assert retry(message_id, now=T0, attempt=1) is False, "the first claimer lost its lease"
    with session_scope() as db_session:
        assert service.mark_failed(db_session=db_session, message_id=message_id, error="x", attempt=1) is False
        assert service.mark_sent(db_session=db_session, message_id=message_id, now=T0) is True
    assert retry(message_id, now=T0) is False, "a sent message never goes back to pending"
    assert fetch(message_id).status == "sent"


# --- retries --------------------------------------------------------------------------------------------


def test_retry_backoff_grows_and_honours_retry_after(outbox_db):
    message_id = add()
    now, delays = T0, []
    for _ in range(4):
        assert claim(now=now) == [message_id]
        assert retry(message_id, now=now) is True
        message = fetch(message_id)
        assert (message.status, message.last_error, message.lease_until) == ("pending", "timeout", None)
        delays.append((utc(message.next_attempt_at) - now).total_seconds())
        assert claim(now=utc(message.next_attempt_at) - timedelta(milliseconds=1)) == []
        now = utc(message.next_attempt_at)
    assert 1.5 <= delays[0] <= 2 and delays[-1] <= 16
    assert all(b > a for a, b in pairwise(delays))
    assert claim(now=now) == [message_id]
    assert retry(message_id, now=now, retry_after=120) is True
    assert utc(fetch(message_id).next_attempt_at) == now + timedelta(seconds=120)
    now += timedelta(seconds=120)
    assert claim(now=now) == [message_id]
    assert retry(message_id, now=now, retry_after=1) is True
    assert (utc(fetch(message_id).next_attempt_at) - now).total_seconds() >= 48, "a shorter retry_after is ignored"


def test_backoff_is_capped_at_ten_minutes():
    assert all(450 <= service.backoff_seconds(attempts=n) <= 600 for n in (10, 30, 1000))
    assert service.backoff_seconds(attempts=10, retry_after=3600) == 3600


def test_max_attempts_marks_failed(outbox_db, monkeypatch):
    monkeypatch.setenv("OUTBOX_MAX_ATTEMPTS", "3")
    get_settings.cache_clear()
    message_id, now = add(), T0
    for attempt in (1, 2, 3):
        assert claim(now=now) == [message_id]
        assert retry(message_id, now=now, attempt=attempt) is True
        now += timedelta(hours=1)
    message = fetch(message_id)
    assert (message.status, message.attempts, message.last_error) == ("failed", 3, "timeout")
    assert claim(now=now + timedelta(days=1)) == []
    assert retry(message_id, now=now) is False


def test_mark_failed_and_backlog(outbox_db):
    failed, sent, _pending = add("a"), add("b"), add("c", delay_seconds=5)
    assert claim() == [failed, sent]
    with session_scope() as db_session:
        assert service.mark_failed(db_session=db_session, message_id=failed, error="48001: api unauthorized\x00")
        assert service.mark_sent(db_session=db_session, message_id=sent)
        assert service.mark_failed(db_session=db_session, message_id=sent, error="late") is False
        assert service.get(db_session=db_session, message_id=10_000) is None
    assert fetch(failed).last_error == "48001: api unauthorized\ufffd"
    assert counts() == {"pending": 1, "sending": 0, "sent": 1, "failed": 1}


# --- delivery -------------------------------------------------------------------------------------------


def test_deliver_due_sends_each_due_message_exactly_once(outbox_db):
    due = [add(f"m{i}") for i in range(5)]
    later = add("later", delay_seconds=60)
    sender = RecordingSender()
    assert deliver_due(senders={"wechat": sender}, now=T0) == 5
    assert deliver_due(senders={"wechat": sender}, now=T0) == 0
    assert sender.texts() == [f"m{i}" for i in range(5)]
    assert all(recipient == "oUser1" for recipient, _ in sender.calls)
    assert {fetch(i).status for i in due} == {"sent"} and fetch(later).status == "pending"


def test_deliver_due_records_every_outcome_and_finishes_the_batch(outbox_db, caplog):
    sender = RecordingSender(
        errors={
            "busy": RetryLater("rate limited", retry_after=90),
            "blocked": Undeliverable("bot was blocked by the user", code="403"),
            "boom": ValueError("bad payload"),
        }
    )
    busy, blocked, boom, fine = (add(text) for text in ("busy", "blocked", "boom", "fine"))
    orphan = add("no channel", channel="line")
    with caplog.at_level(logging.WARNING, logger="core.outbox.worker"):
        assert deliver_due(senders={"wechat": sender}, now=T0) == 4
    assert sender.texts() == ["busy", "blocked", "boom", "fine"]
    assert (fetch(busy).status, fetch(busy).last_error) == ("pending", "rate limited")
    assert utc(fetch(busy).next_attempt_at) == T0 + timedelta(seconds=90)
    assert (fetch(blocked).status, fetch(blocked).last_error) == ("failed", "403: bot was blocked by the user")
    assert (fetch(boom).status, fetch(boom).last_error) == ("pending", "ValueError('bad payload')")
    assert 1.5 <= (utc(fetch(boom).next_attempt_at) - T0).total_seconds() <= 2
    assert fetch(fine).status == "sent"
    assert (fetch(orphan).status, fetch(orphan).attempts) == ("pending", 0)  # left for a worker that can send it
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


def test_deliver_due_hands_back_what_it_cannot_send_within_the_lease(outbox_db):
    first, second, third = add("a", now=None), add("b", now=None), add("c", now=None)
    sender = RecordingSender(delay=0.4)
    assert deliver_due(senders={"wechat": sender}, lease_seconds=1.0) == 3
    assert sender.texts() == ["a", "b"]
    assert [fetch(i).status for i in (first, second)] == ["sent", "sent"]
    message = fetch(third)
    assert (message.status, message.attempts, message.lease_until) == ("pending", 0, None)


def test_worker_delivers_when_woken(outbox_db):
    sender = RecordingSender()
    outbox_worker = OutboxWorker({"wechat": sender}, poll_seconds=60)
    assert outbox_worker.stop() is True, "stopping a worker that never started is harmless"
    outbox_worker.start()
    try:
        time.sleep(0.1)
        add("唤醒", now=None)
        outbox_worker.wake()
        assert wait_until(lambda: sender.texts() == ["唤醒"])
    finally:
        assert outbox_worker.stop(timeout=5) is True
    assert not outbox_worker.running
    assert counts()["sent"] == 1
    add("手动", now=None)
    assert outbox_worker.run_once() == 1


# --- pull delivery (chat API, web chat, terminal) --------------------------------------------------------


def pull(recipient: str = "oUser1", *, channel: str = "web", after_id: int = 0, now: datetime = T0) -> list[str]:
    with session_scope() as db_session:
        messages = service.pull(db_session=db_session, channel=channel, recipient=recipient, after_id=after_id, now=now)
        return [m.payload["text"] for m in messages]


def test_pull_returns_the_recipients_messages_oldest_first_and_marks_them_sent(outbox_db):
    first = add("客服：您好", channel="web")
    second = add("请为本次服务打分", channel="web", options=[Option("5分", "5")])
    with session_scope() as db_session:
        service.enqueue(db_session=db_session, channel="web", recipient="someone-else", text="别人的", now=T0)
        service.enqueue(db_session=db_session, channel="api", recipient="oUser1", text="另一个渠道", now=T0)
    cancelled = add("作废", channel="web", dedupe_key="stand-in")
    with session_scope() as db_session:
        assert service.cancel_unsent(db_session=db_session, dedupe_key="stand-in", reason="replaced")
    assert {fetch(first).status, fetch(second).status} == {"pending"}
    assert pull() == ["客服：您好", "请为本次服务打分"], "never another recipient's or channel's, nor a cancelled one"
    assert (fetch(first).status, fetch(second).status, fetch(cancelled).status) == ("sent", "sent", "failed")
    assert utc(fetch(first).sent_at) == T0
    assert pull(after_id=first) == ["请为本次服务打分"], "a client resumes after the last id it has"
    assert pull(after_id=second) == []
    assert pull() == ["客服：您好", "请为本次服务打分"], "delivered messages stay readable (another tab, a reload)"
    with session_scope() as db_session:
        assert service.last_delivered_id(db_session=db_session, channel="web", recipient="oUser1") == second
        assert service.last_delivered_id(db_session=db_session, channel="web", recipient="nobody") == 0


def test_pull_stops_before_a_message_not_yet_due(outbox_db):
    add("现在", channel="web")
    later = add("稍后", channel="web", delay_seconds=60)
    add("之后", channel="web")
    assert pull() == ["现在"]
    assert fetch(later).status == "pending"
    assert pull(now=T0 + timedelta(minutes=2)) == ["现在", "稍后", "之后"]


def test_pull_channels_are_never_claimed_by_a_push_worker_nor_counted_as_a_backlog(outbox_db):
    from core.outbox.backlog import OutboxBacklog
    from core.outbox.models import PULL_CHANNELS

    assert {"api", "web", "terminal"} == PULL_CHANNELS
    pulled = [add(f"to {channel}", channel=channel) for channel in sorted(PULL_CHANNELS)]
    pushed = add("to wechat", channel="wechat")
    assert claim() == [pushed], "claiming every channel still leaves the pulled ones alone"
    assert claim(channels=["api", "web", "terminal"]) == []
    assert deliver_due(senders={"web": RecordingSender(channel="web")}, now=T0) == 0
    assert {fetch(i).status for i in pulled} == {"pending"}
    [gauge] = OutboxBacklog().collect()
    assert {sample.labels["channel"] for sample in gauge.samples} == {"wechat"}


def test_enqueue_tells_live_listeners_of_the_recipients_chat_once_committed(outbox_db, monkeypatch):
    from core import events
    from core.store import MemoryStore

    store = MemoryStore()
    monkeypatch.setattr(events, "get_store", lambda: store)
    with session_scope() as db_session:
        service.enqueue(db_session=db_session, channel="web", recipient="abc", text="您好", now=T0)
        assert events.current(store) == 0, "not before the commit"
    with pytest.raises(RuntimeError), session_scope() as db_session:
        service.enqueue(db_session=db_session, channel="web", recipient="gone", text="回滚", now=T0)
        raise RuntimeError
    assert [(e.kind, e.key) for e in events.read(store, after=0)[1]] == [("chat", "web:abc")]


def test_worker_survives_database_errors(outbox_db, monkeypatch, caplog):
    calls: list[int] = []

    def flaky_deliver_due(**kwargs) -> int:
        calls.append(1)
        if len(calls) <= 2:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return deliver_due(**kwargs)

    monkeypatch.setattr(worker, "deliver_due", flaky_deliver_due)
    sender = RecordingSender()
    add("after the outage", now=None)
    outbox_worker = OutboxWorker({"wechat": sender}, poll_seconds=0.02)
    with caplog.at_level(logging.ERROR, logger="core.background"):
        outbox_worker.start()
        try:
            assert wait_until(lambda: sender.texts() == ["after the outage"])
        finally:
            assert outbox_worker.stop(timeout=5) is True
    assert sum("outbox-worker: batch failed" in r.getMessage() for r in caplog.records) == 2


# --- concurrency ----------------------------------------------------------------------------------------


@dataclass
class FileSender:
    """Appends "<worker> <text>" to a file shared by threads and processes."""

    path: str
    worker: str
    channel: str = "wechat"

    def send(self, recipient: str, payload: dict) -> None:
        time.sleep(0.001)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{self.worker} {payload['text']}\n".encode())
        finally:
            os.close(fd)


def open_count() -> int:
    backlog = counts()
    return backlog["pending"] + backlog["sending"]


def drain(path: str, name: str, barrier=None, database_url: str | None = None, timeout: float = 30.0) -> None:
    """Deliver in small batches until nothing is pending or sending (also the body of each spawned process)."""
    if database_url is not None:
        os.environ["DATABASE_URL"] = database_url
        clear_process_caches()
    if barrier is not None:
        barrier.wait(60)
    senders = {"wechat": FileSender(path, name)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if deliver_due(senders=senders, limit=10) == 0:
            if open_count() == 0:
                return
            time.sleep(0.005)
    raise TimeoutError(f"{name} did not drain the outbox")


def test_concurrent_workers_send_each_message_exactly_once(outbox_db, tmp_path: Path):
    with session_scope() as db_session:
        for i in range(300):
            service.enqueue(db_session=db_session, channel="wechat", recipient="u", text=f"m{i}")
    path = str(tmp_path / "sent.log")
    processes = []
    if outbox_db.startswith("postgresql"):
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(3)
        processes = [context.Process(target=drain, args=(path, f"process-{i}", barrier, outbox_db)) for i in range(2)]
        for process in processes:
            process.start()
        barrier.wait(60)
    errors: list[BaseException] = []

    def drain_thread(name: str) -> None:
        try:
            drain(path, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain_thread, args=(f"thread-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(40)
    for process in processes:
        process.join(40)
    assert errors == []
    assert [process.exitcode for process in processes] == [0] * len(processes)
    lines = [line.split() for line in Path(path).read_text().splitlines()]
    assert Counter(text for _, text in lines) == Counter(f"m{i}" for i in range(300)), "each message sent once"
    assert len({name for name, _ in lines}) >= 2
    assert counts() == {"pending": 0, "sending": 0, "sent": 300, "failed": 0}
