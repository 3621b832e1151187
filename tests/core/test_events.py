"""Live change notices: published after commit, read by every worker through the store, one poller per process."""

import asyncio

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import events
from core.events import Event, Hub


def test_notices_are_read_back_in_order_with_their_facts(store):
    events.publish(events.TICKET, "7", store=store, status="open")
    events.publish(events.QUEUE, store=store)
    seq, got, gap = events.read(store, after=0)
    assert (seq, gap) == (2, False)
    assert [(e.kind, e.key, e.data) for e in got] == [("ticket", "7", {"status": "open"}), ("queue", "", {})]
    assert events.read(store, after=2) == (2, [], False)


def test_a_notice_whose_record_is_missing_holds_the_reader_back(store):
    events.publish(events.QUEUE, store=store)
    store.incr(events.SEQ_KEY)  # numbered but not yet written (or expired)
    events.publish(events.QUEUE, store=store)
    seq, got, gap = events.read(store, after=0)
    assert (seq, len(got), gap) == (1, 1, True)


def test_a_notice_is_published_only_when_its_transaction_commits(engine, store, monkeypatch):
    monkeypatch.setattr(events, "get_store", lambda: store)
    with Session(engine) as db_session:
        db_session.execute(text("SELECT 1"))  # the change being announced
        events.publish_after_commit(db_session, events.TICKET, "1")
        db_session.rollback()
        assert events.current(store) == 0, "a rolled-back change is never announced"
        db_session.execute(text("SELECT 1"))
        events.publish_after_commit(db_session, events.TICKET, "2")
        assert events.current(store) == 0, "nothing before the commit"
        db_session.commit()
    assert [e.key for e in events.read(store, after=0)[1]] == ["2"]


def test_every_listener_of_a_process_gets_each_notice_once(store):
    async def scenario() -> list[list[Event]]:
        hub = Hub(lambda: store, poll_seconds=0.01)
        received: list[list[Event]] = [[], []]

        async def listen(into: list[Event]) -> None:
            async for item in hub.listen(heartbeat_seconds=5):
                into.append(item)
                if len(into) == 3:
                    return

        tasks = [asyncio.create_task(listen(into)) for into in received]
        await asyncio.sleep(0.05)
        for key in ("1", "2", "3"):
            await asyncio.to_thread(events.publish, events.TICKET, key, store=store)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        return received

    received = asyncio.run(scenario())
    assert [[e.key for e in got] for got in received] == [["1", "2", "3"], ["1", "2", "3"]]


def test_a_listener_resuming_after_a_number_gets_what_it_missed_and_a_quiet_line_gets_a_heartbeat(store):
    async def scenario() -> tuple[list[str], str]:
        hub = Hub(lambda: store, poll_seconds=0.01)
        first = hub.listen(heartbeat_seconds=0.05)
        assert (await anext(first)).kind == events.PING
        events.publish(events.CHAT, "web:a", store=store)
        events.publish(events.CHAT, "web:b", store=store)
        assert (await anext(first)).key == "web:a"
        await first.aclose()
        resumed = hub.listen(after=1, heartbeat_seconds=1)
        key = (await asyncio.wait_for(anext(resumed), 2)).key
        await resumed.aclose()
        return [key], "ok"

    assert asyncio.run(scenario()) == (["web:b"], "ok")


def test_a_listener_too_far_behind_is_told_to_resync(store):
    async def scenario() -> str:
        hub = Hub(lambda: store, poll_seconds=0.01)
        for _ in range(3):
            events.publish(events.QUEUE, store=store)
        waiting = hub.listen(heartbeat_seconds=1)
        events.publish(events.QUEUE, store=store)
        await asyncio.wait_for(anext(waiting), 2)
        stale = hub.listen(after=0, heartbeat_seconds=1)  # notices 1-3 predate this process's memory
        kind = (await asyncio.wait_for(anext(stale), 2)).kind
        await waiting.aclose()
        await stale.aclose()
        return kind

    assert asyncio.run(scenario()) == events.RESYNC
