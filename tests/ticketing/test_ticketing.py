"""Ticketing on each database: the state machine, handoff, priority rules, business calendar and SLAs, assignment
(round robin, capacity, concurrent claims), agent replies through the outbox, canned replies, CSAT, staff accounts."""

import json
import threading
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import func, inspect, select
from typer.testing import CliRunner

from bot.bootstrap import prepare_database
from bot.cli import user_app
from bot.models import metadata
from core.clock import utc
from core.conversation import service as conversation_service
from core.database import get_engine, session_scope
from core.messages import IncomingMessage, Reply
from core.outbox.models import OutboxMessage
from core.outbox.senders import RetryLater, Undeliverable
from core.settings import get_settings
from merchants import service as merchant_service
from merchants.models import ChatBinding
from ticketing import assignment, flows, labels, lifecycle, queue, replies, rules, search, service, sla, staff
from ticketing import handoff as ticket_handoff
from ticketing.calendar import BusinessCalendar, parse_clock_time
from ticketing.models import ASSIGNED, CLOSED, NEW, RESOLVED, WAITING, StaffUser, Ticket, TicketEvent, TicketMessage
from ticketing.webhook import WebhookSender

SH = ZoneInfo("Asia/Shanghai")
TAX_ID = "91110108MA01ABCD5T"
TICKET_TABLES = {
    "staff_user",
    "ticket",
    "ticket_message",
    "ticket_note",
    "ticket_tag",
    "ticket_event",
    "canned_reply",
    "assignment_cursor",
}


def at(day: int, hour: int, minute: int = 0, *, month: int = 11) -> datetime:
    """A Shanghai wall-clock moment in 2026 (30 Nov 2026 is a Monday)."""
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


MON_9 = at(30, 9)


@pytest.fixture
def tdb(app_env, monkeypatch):
    """The application on a fresh, migrated database of each kind; cheap argon2 parameters for speed."""
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    prepare_database()
    yield app_env
    get_engine().dispose()


def set_env(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def agent(name: str, *, online: bool = True, capacity: int = 5, role: str = "agent") -> int:
    with session_scope() as db_session:
        user = staff.create(
            db_session=db_session, username=name, password="correct horse", role=role, capacity=capacity
        )
        if online:
            staff.set_online(db_session=db_session, staff_id=user.id, online=True)
        return user.id


def new_ticket(user_id: str = "u1", *, channel: str = "telegram", now: datetime = MON_9, **kwargs) -> int:
    with session_scope() as db_session:
        return ticket_handoff.create(db_session=db_session, channel=channel, user_id=user_id, now=now, **kwargs).id


def fetch(ticket_id: int) -> Ticket:
    with session_scope() as db_session:
        return service.require(db_session=db_session, ticket_id=ticket_id)


def handoff(
    user_id: str = "u1", *, channel: str = "telegram", now: datetime = MON_9, **kwargs
) -> ticket_handoff.Handoff:
    with session_scope() as db_session:
        return ticket_handoff.open_for_handoff(
            db_session=db_session, channel=channel, user_id=user_id, now=now, **kwargs
        )


def record_turn(
    user_id: str, text: str, reply: str, *, channel: str = "telegram", topic: str | None = None, when: datetime = MON_9
) -> None:
    """Record a conversation turn as the router does, stamped `when` (the tests' clock, not the database's)."""
    with session_scope() as db_session:
        turn = conversation_service.record_turn(
            db_session=db_session,
            message=IncomingMessage(channel=channel, user_id=user_id, text=text),
            reply=Reply(text=reply, intent="answer", topic=topic),
        )
        turn.created_at = utc(when)


def outbox_rows(channel: str | None = None) -> list[OutboxMessage]:
    with session_scope() as db_session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        if channel is not None:
            query = query.where(OutboxMessage.channel == channel)
        return list(db_session.scalars(query))


def do(action, **kwargs):
    """Run one service call in its own transaction."""
    with session_scope() as db_session:
        return action(db_session=db_session, **kwargs)


# --- schema ----------------------------------------------------------------------------------------------------


def test_migration_creates_the_tables_the_models_describe(tdb):
    engine = get_engine()
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= TICKET_TABLES
    indexes = {i["name"]: i for i in inspector.get_indexes("ticket")}
    assert indexes["uq_ticket_unclosed_identity"]["unique"]
    assert indexes["uq_ticket_unclosed_identity"]["column_names"] == ["channel", "user_id"]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": search.include_name})
        differences = compare_metadata(context, metadata)
    assert [d for d in differences if any(table in repr(d) for table in TICKET_TABLES)] == []


# --- the state machine ---------------------------------------------------------------------------------------


def test_state_machine_allows_the_documented_transitions_and_refuses_the_rest(tdb):
    assert lifecycle.can_transition(NEW, ASSIGNED) and lifecycle.can_transition(RESOLVED, ASSIGNED)
    assert not lifecycle.can_transition(NEW, WAITING) and not lifecycle.can_transition(CLOSED, RESOLVED)
    alice = agent("alice")
    ticket_id = new_ticket()
    for refused in (WAITING, RESOLVED, NEW):
        with pytest.raises(service.InvalidTransition, match="不能从「待分配」"):
            do(lifecycle.transition, ticket_id=ticket_id, to_state=refused)
    with pytest.raises(service.InvalidTransition, match="还没有指定客服"):
        do(lifecycle.transition, ticket_id=ticket_id, to_state=ASSIGNED)
    do(assignment.take, ticket_id=ticket_id, agent_id=alice, now=MON_9)
    do(lifecycle.wait_for_merchant, ticket_id=ticket_id, actor_id=alice, now=at(30, 10))
    assert fetch(ticket_id).state == WAITING
    do(lifecycle.resume, ticket_id=ticket_id, actor_id=alice, now=at(30, 11))
    assert fetch(ticket_id).state == ASSIGNED
    do(lifecycle.resolve, ticket_id=ticket_id, actor_id=alice, now=at(30, 12))
    with pytest.raises(service.InvalidTransition, match="不能从「已解决」变为「等待商户回复」"):
        do(lifecycle.wait_for_merchant, ticket_id=ticket_id, now=at(30, 12))
    do(lifecycle.close, ticket_id=ticket_id, actor_id=alice, now=at(30, 13))
    closed = fetch(ticket_id)
    assert (closed.state, closed.close_reason) == (CLOSED, "resolved")
    for refused in (RESOLVED, WAITING, CLOSED):
        with pytest.raises(service.InvalidTransition):
            do(lifecycle.transition, ticket_id=ticket_id, to_state=refused)
    reopened = do(lifecycle.reopen, ticket_id=ticket_id, actor_id=alice, now=at(30, 14))
    assert (reopened.state, reopened.assignee_id, reopened.reopened_count) == (ASSIGNED, alice, 1)
    assert reopened.resolved_at is None and reopened.closed_at is None and reopened.first_response_at is None
    with pytest.raises(service.InvalidTransition, match="无需重新打开"):
        do(lifecycle.reopen, ticket_id=ticket_id)
    with session_scope() as db_session:
        actions = [e.action for e in service.get_events(db_session=db_session, ticket_id=ticket_id)]
    assert actions.count("state") == 5 and "reopened" in actions and actions[-1] == "created"


def test_a_reopened_ticket_of_a_disabled_agent_goes_back_to_the_queue(tdb):
    bob = agent("bob")
    ticket_id = new_ticket()
    do(assignment.take, ticket_id=ticket_id, agent_id=bob, now=MON_9)
    do(lifecycle.resolve, ticket_id=ticket_id, actor_id=bob, now=at(30, 10))
    do(flows.disable_staff, staff_id=bob)
    reopened = do(lifecycle.reopen, ticket_id=ticket_id, now=at(30, 11))
    assert (reopened.state, reopened.assignee_id) == (NEW, None)


# --- handoff ---------------------------------------------------------------------------------------------------


def test_handoff_copies_the_conversation_and_later_handoffs_append(tdb):
    record_turn("u1", "开票提示失败", "麻烦把完整的报错提示发我", topic="issue_failed_generic", when=at(30, 8, 50))
    record_turn("u1", "还是不行", "好的，正在为您转接人工客服。", when=at(30, 8, 55))
    learned = {"topic": "issue_failed_generic", "title": "开票失败", "note": "已排查额度", "checked": []}
    first = handoff("u1", text="转人工", topic="issue_failed_generic", learned=learned, invoice={"number": "123"})
    ticket = first.ticket
    assert first.outcome == "created" and ticket.number == f"T{ticket.id:06d}"
    assert (ticket.subject, ticket.category, ticket.priority) == ("开票失败", "issuing", "urgent")
    assert ticket.context["learned"]["note"] == "已排查额度" and ticket.context["invoice"] == {"number": "123"}
    with session_scope() as db_session:
        lines = [(m.author_kind, m.text) for m in service.get_messages(db_session=db_session, ticket_id=ticket.id)]
    assert lines == [
        ("merchant", "开票提示失败"),
        ("bot", "麻烦把完整的报错提示发我"),
        ("merchant", "还是不行"),
        ("bot", "好的，正在为您转接人工客服。"),
        ("merchant", "转人工"),
    ]
    assert first.merchant_text.startswith(f"已为您创建人工服务工单 {ticket.number}。客服工作时间为工作日 9:00–18:00")
    record_turn("u1", "转人工", "好的，正在为您转接人工客服。")  # the router records the handoff turn afterwards
    record_turn("u1", "人呢", "客服马上就到", when=at(30, 9, 5))
    second = handoff("u1", text="人呢", now=at(30, 9, 5))
    assert (second.outcome, second.ticket.id) == ("appended", ticket.id)
    with session_scope() as db_session:
        texts = [m.text for m in service.get_messages(db_session=db_session, ticket_id=ticket.id)]
    assert texts.count("转人工") == 1, "the recorded handoff turn is linked to the line already added"
    assert texts.count("人呢") == 1 and texts[-1] == "客服马上就到"
    assert handoff("u2").ticket.id != ticket.id


def test_handoff_reopens_a_recent_ticket_and_opens_a_new_one_after_the_reopen_window(tdb):
    alice = agent("alice")
    first = handoff("u1", text="发票开不出来").ticket.id
    do(assignment.take, ticket_id=first, agent_id=alice, now=MON_9)
    do(lifecycle.resolve, ticket_id=first, actor_id=alice, now=at(30, 10))
    again = handoff("u1", text="又不行了", now=at(30, 10) + timedelta(days=3))
    assert (again.outcome, again.ticket.id, again.ticket.state, again.ticket.reopened_count) == (
        "reopened",
        first,
        ASSIGNED,
        1,
    )
    do(replies.send, ticket_id=first, agent_id=alice, text="请再试一次", now=at(1, 9, month=12) + timedelta(days=3))
    do(lifecycle.hand_back_to_bot, ticket_id=first, actor_id=alice, now=at(1, 10, month=12) + timedelta(days=3))
    later = handoff("u1", text="还有问题", now=at(1, 10, month=12) + timedelta(days=11))
    assert later.outcome == "created" and later.ticket.id != first
    stale = handoff("u3", text="你好").ticket.id
    do(assignment.take, ticket_id=stale, agent_id=alice, now=MON_9)
    do(lifecycle.resolve, ticket_id=stale, actor_id=alice, now=MON_9)
    fresh = handoff("u3", text="新问题", now=MON_9 + timedelta(days=8))
    assert fresh.outcome == "created" and fetch(stale).state == CLOSED


def test_concurrent_handoffs_of_one_identity_make_one_ticket(tdb):
    barrier = threading.Barrier(8)
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def hand_off(index: int) -> None:
        try:
            barrier.wait(10)
            done = handoff("u-race", text=f"转人工 {index}")
            results.append((done.ticket.id, done.outcome))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hand_off, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len({ticket_id for ticket_id, _ in results}) == 1
    assert Counter(outcome for _, outcome in results) == {"created": 1, "appended": 7}
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count(Ticket.id))) == 1
        assert len(service.get_messages(db_session=db_session, ticket_id=results[0][0])) == 8


# --- priority rules --------------------------------------------------------------------------------------------


def test_priority_rules(tdb):
    complaint = handoff("c1", text="我要投诉你们的服务", now=at(28, 22))  # Saturday night
    assert (complaint.ticket.priority, complaint.ticket.category) == ("urgent", "complaint")
    in_hours = handoff("f1", text="转人工", topic="issue_failed_generic", now=at(30, 10))
    assert (in_hours.ticket.priority, in_hours.ticket.category) == ("urgent", "issuing")
    off_hours = handoff("f2", text="转人工", topic="issue_failed_generic", now=at(30, 20))
    assert (off_hours.ticket.priority, off_hours.ticket.category) == ("high", "issuing")
    invoice_failed = handoff("f3", text="这张票开具失败了", invoice={"number": "1", "status": "failed"}, now=at(30, 10))
    assert (invoice_failed.ticket.priority, invoice_failed.ticket.category) == ("urgent", "invoice")
    other = handoff("n1", text="转人工", topic="deduct_how", now=at(30, 10))
    assert (other.ticket.priority, other.ticket.category) == ("normal", "deduction")
    do(ticket_handoff.append_merchant_message, ticket_id=other.ticket.id, text="再不处理我就投诉", now=at(30, 11))
    escalated = fetch(other.ticket.id)
    assert (escalated.priority, escalated.category) == ("urgent", "complaint")
    assert rules.more_urgent("low", "high") == "high"


# --- business calendar and SLA ---------------------------------------------------------------------------------


def calendar(**kwargs) -> BusinessCalendar:
    values = {"timezone": SH, "days": frozenset(range(5)), "start": parse_clock_time("09:00")}
    values |= {"end": parse_clock_time("18:00"), **kwargs}
    return BusinessCalendar(**values)


def test_business_calendar_arithmetic():
    cal = calendar()
    hour = 3600
    assert cal.add_business_seconds(at(30, 17, 30), hour) == utc(at(1, 9, 30, month=12)), "overnight"
    assert cal.add_business_seconds(at(30, 20), hour) == utc(at(1, 10, month=12)), "starts at the next opening"
    assert cal.add_business_seconds(at(30, 17), hour) == utc(at(30, 18)), "ends at closing on the same day"
    assert cal.add_business_seconds(at(27, 17), 2 * hour) == utc(at(30, 10)), "Friday to Monday over the weekend"
    assert cal.business_seconds_between(at(27, 17), at(30, 10)) == 2 * hour
    assert cal.business_seconds_between(at(28, 9), at(29, 18)) == 0, "a weekend has no business time"
    holiday = calendar(holidays=frozenset({date(2026, 11, 30)}))
    assert holiday.add_business_seconds(at(27, 17), 2 * hour) == utc(at(1, 10, month=12)), "Monday is a holiday"
    makeup = calendar(workdays=frozenset({date(2026, 11, 28)}))
    assert makeup.add_business_seconds(at(27, 17), 2 * hour) == utc(at(28, 10)), "Saturday is a make-up workday"
    assert makeup.business_seconds_between(at(27, 9), at(30, 18)) == 3 * 9 * hour
    assert cal.is_open(at(30, 9)) and not cal.is_open(at(30, 18)) and not cal.is_open(at(28, 12))
    assert cal.next_opening(at(28, 12)) == utc(at(30, 9)) and cal.next_opening(at(30, 12)) == utc(at(30, 12))
    with pytest.raises(ValueError):
        calendar(start=parse_clock_time("18:00"), end=parse_clock_time("09:00"))
    assert cal.describe_hours() == "工作日 9:00–18:00"


def test_business_status_tells_the_merchant_when_to_expect_an_answer(tdb):
    assert (
        sla.business_status(at(30, 10), priority="urgent").text
        == "客服工作时间为工作日 9:00–18:00，预计 15 分钟内回复。"
    )
    assert sla.business_status(at(30, 10), priority="normal").text.endswith("预计 4 小时内回复。")
    late = sla.business_status(at(30, 17), priority="normal")
    assert late.open and late.text.endswith("预计 明天 12:00 前回复。")
    friday = sla.business_status(at(27, 20))
    assert not friday.open and friday.next_opening == utc(at(30, 9))
    assert friday.text == "现在是非工作时间（客服工作时间为工作日 9:00–18:00），客服将于 周一 9:00 后尽快回复。"
    assert "明天 9:00" in sla.business_status(at(29, 10)).text


def test_calendar_and_sla_targets_come_from_settings(tdb, monkeypatch):
    set_env(
        monkeypatch,
        TICKET_HOLIDAYS='["2026-11-30"]',
        TICKET_BUSINESS_START="08:30",
        TICKET_SLA_FIRST_RESPONSE_SECONDS='{"urgent": 60, "high": 120, "normal": 600, "low": 900}',
    )
    assert sla.business_status(at(27, 20)).next_opening == utc(at(1, 8, 30, month=12)), "Monday is a holiday"
    assert sla.policy_from_settings().targets("high") == (120, 8 * 3600)
    set_env(monkeypatch, TICKET_SLA_FIRST_RESPONSE_SECONDS='{"urgent": 60}')
    with pytest.raises(ValueError, match="lacks priorities"):
        sla.policy_from_settings()


def test_sla_clock_pauses_while_waiting_on_the_merchant(tdb):
    alice = agent("alice")
    ticket_id = new_ticket(now=MON_9)  # normal: 4 h first response, 2 business days (18 h) resolution
    ticket = fetch(ticket_id)
    assert utc(ticket.sla_first_response_due_at) == utc(at(30, 13))
    assert utc(ticket.sla_resolution_due_at) == utc(at(1, 18, month=12))
    do(replies.send, ticket_id=ticket_id, agent_id=alice, text="请提供报错截图", wait_for_merchant=True, now=at(30, 10))
    waiting = fetch(ticket_id)
    assert waiting.state == WAITING and waiting.sla_due_at is None
    status = sla.sla_status(waiting, at(30, 13))
    assert status.resolution.state == "paused" and status.resolution.remaining_seconds == 17 * 3600
    assert status.first_response.state == "met"
    do(ticket_handoff.append_merchant_message, ticket_id=ticket_id, text="截图在这里", now=at(30, 14))
    resumed = fetch(ticket_id)
    assert (resumed.state, resumed.paused_seconds) == (ASSIGNED, 4 * 3600)
    assert utc(resumed.sla_resolution_due_at) == utc(at(2, 13, month=12)), "4 business hours later"
    running = sla.sla_status(resumed, at(30, 15))
    assert running.resolution.state == "ok" and running.resolution.remaining_seconds == 16 * 3600


def test_sla_warning_and_breach_fire_once_and_reach_the_webhook(tdb, monkeypatch):
    set_env(monkeypatch, SLA_ALERT_WEBHOOK_URL="https://hooks.example.com/sla")
    urgent = handoff("c1", text="我要投诉", now=MON_9).ticket.id  # 15 min first response
    waiting_id = new_ticket("w1", priority="urgent", now=MON_9)
    bob = agent("bob")
    do(assignment.take, ticket_id=waiting_id, agent_id=bob, now=MON_9)
    do(lifecycle.wait_for_merchant, ticket_id=waiting_id, now=MON_9)

    def check(minute: int) -> list[tuple[str, int, str]]:
        alerts = do(sla.check_sla, now=at(30, 9, minute))
        return [(a.kind, a.ticket_id, a.clock) for a in alerts]

    assert check(11) == []
    assert check(12) == [("warning", urgent, "first_response")]
    assert check(13) == []
    assert check(15) == [("breach", urgent, "first_response")]
    assert check(20) == []
    ticket = fetch(urgent)
    assert ticket.sla_breached and utc(ticket.sla_first_response_breached_at) == utc(at(30, 9, 15))
    webhook = outbox_rows("webhook")
    assert [row.recipient for row in webhook] == ["sla-alerts", "sla-alerts"]
    assert '"event": "sla_breach"' in webhook[1].payload["text"] and "首次响应已超时" in webhook[1].payload["text"]
    with session_scope() as db_session:
        events = service.get_events(db_session=db_session, actions=["sla_warning", "sla_breach"])
        assert [e.ticket_id for e in events] == [urgent, urgent]
        counts = queue.queue_counts(db_session=db_session, now=at(30, 9, 20))
    assert counts["overdue"] == 1 and counts["breach_alerted"] == 1


# --- assignment ------------------------------------------------------------------------------------------------


def test_round_robin_is_fair_respects_capacity_and_continues_across_calls(tdb):
    a, b, c = agent("a", capacity=2), agent("b", capacity=2), agent("c", capacity=2)
    agent("offline", online=False, capacity=10)
    first = [new_ticket(f"u{i}") for i in range(3)]
    given = do(assignment.auto_assign, now=MON_9)
    assert [(g.ticket.id, g.agent.id) for g in given] == list(zip(first, [a, b, c], strict=True))
    fourth = new_ticket("u3")
    assert [(g.ticket.id, g.agent.id) for g in do(assignment.auto_assign, now=MON_9)] == [(fourth, a)]
    more = [new_ticket(f"v{i}") for i in range(4)]
    given = do(assignment.auto_assign, now=MON_9)
    assert [g.agent.id for g in given] == [b, c], "a is full; b and c fill up; one ticket waits"
    assert fetch(more[-1]).state == NEW
    with session_scope() as db_session:
        assert assignment.loads(db_session=db_session) == {a: 2, b: 2, c: 2}
    do(lifecycle.resolve, ticket_id=first[1], actor_id=b, now=MON_9)
    assert [g.agent.id for g in do(assignment.auto_assign, now=MON_9)] == [b]
    do(staff.set_capacity, staff_id=c, capacity=3)
    do(staff.set_online, staff_id=c, online=False)
    assert do(assignment.auto_assign, now=MON_9) == [], "offline agents get nothing"


def test_claim_take_and_transfer(tdb):
    alice, bob = agent("alice", capacity=2), agent("bob", capacity=1)
    admin = agent("root", role="admin", online=False)
    old = new_ticket("u1", now=at(30, 9))
    urgent = new_ticket("u2", now=at(30, 10), priority="urgent")
    low = new_ticket("u3", now=at(30, 8), priority="low")
    assert do(assignment.claim_next, agent_id=alice, now=MON_9).id == urgent
    assert do(assignment.claim_next, agent_id=alice, now=MON_9).id == old
    assert do(assignment.claim_next, agent_id=alice, now=MON_9) is None, "alice is at capacity"
    with pytest.raises(assignment.AssignmentError, match="已由"):
        do(assignment.take, ticket_id=old, agent_id=bob)
    with pytest.raises(assignment.AssignmentError, match="只有当前处理人或管理员"):
        do(assignment.transfer, ticket_id=old, to_agent_id=bob, actor_id=bob)
    moved = do(assignment.transfer, ticket_id=old, to_agent_id=bob, actor_id=alice, now=MON_9)
    assert (moved.assignee_id, moved.state) == (bob, ASSIGNED)
    with pytest.raises(assignment.AtCapacity, match="接单上限"):
        do(assignment.take, ticket_id=low, agent_id=bob)
    taken = do(assignment.take, ticket_id=low, agent_id=bob, force=True)
    assert taken.assignee_id == bob
    do(assignment.transfer, ticket_id=urgent, to_agent_id=bob, actor_id=admin, force=True)
    released = do(assignment.release, ticket_id=urgent, actor_id=admin)
    assert (released.state, released.assignee_id) == (NEW, None)


def test_concurrent_claims_never_give_one_ticket_to_two_agents(tdb):
    workers, tickets, batch = 8, 1000, 20
    agents = [agent(f"agent{i}", capacity=tickets) for i in range(workers)]
    with session_scope() as db_session:
        for i in range(tickets):
            ticket_handoff.create(db_session=db_session, channel="telegram", user_id=f"c{i}", now=MON_9)
    barrier = threading.Barrier(workers)
    claimed: dict[int, list[int]] = {agent_id: [] for agent_id in agents}
    errors: list[BaseException] = []

    def work(agent_id: int) -> None:
        try:
            barrier.wait(30)
            while True:
                with session_scope() as db_session:
                    got = [t.id for t in assignment.claim(db_session=db_session, agent_id=agent_id, limit=batch)]
                if not got:
                    return
                claimed[agent_id].extend(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(agent_id,)) for agent_id in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    every = [ticket_id for ids in claimed.values() for ticket_id in ids]
    assert len(every) == tickets and len(set(every)) == tickets, "each ticket claimed exactly once"
    assert sum(1 for ids in claimed.values() if ids) >= 2, "more than one worker got tickets"
    with session_scope() as db_session:
        stored = {
            ticket_id: assignee for ticket_id, assignee in db_session.execute(select(Ticket.id, Ticket.assignee_id))
        }
        assert all(stored[ticket_id] == agent_id for agent_id, ids in claimed.items() for ticket_id in ids)
        assigned_events = db_session.scalar(select(func.count(TicketEvent.id)).where(TicketEvent.action == "assigned"))
    assert assigned_events == tickets


# --- replies, canned replies, CSAT ---------------------------------------------------------------------------


def test_agent_reply_goes_to_the_merchants_channel_through_the_outbox(tdb):
    alice = agent("alice")
    ticket_id = handoff("42", channel="telegram", text="转人工").ticket.id
    message = do(replies.send, ticket_id=ticket_id, agent_id=alice, text="您好，我是客服小王", now=at(30, 9, 5))
    rows = outbox_rows()
    assert [(r.channel, r.recipient, r.payload["text"]) for r in rows] == [("telegram", "42", "您好，我是客服小王")]
    assert message.outbox_message_id == rows[0].id and message.author_kind == "agent"
    ticket = fetch(ticket_id)
    assert (ticket.state, ticket.assignee_id) == (ASSIGNED, alice), "replying to a new ticket takes it"
    assert utc(ticket.first_response_at) == utc(at(30, 9, 5))
    with session_scope() as db_session:
        shown = queue.detail(db_session=db_session, ticket_id=ticket_id, now=at(30, 9, 6))
    assert shown.transcript[-1].author_name == "alice" and shown.transcript[-1].delivery.status == "pending"
    assert shown.sla.first_response.state == "met" and shown.window.open
    bob = agent("bob")
    with pytest.raises(replies.ReplyError, match="已分配给其他客服"):
        do(replies.send, ticket_id=ticket_id, agent_id=bob, text="我来")
    with pytest.raises(service.TicketError, match="内容不能为空"):
        do(replies.send, ticket_id=ticket_id, agent_id=alice, text="   ")


def test_wechat_reply_is_refused_once_the_48_hour_window_closed(tdb):
    alice = agent("alice")
    ticket_id = handoff("oWx1", channel="wechat", text="人工", now=MON_9).ticket.id
    do(replies.send, ticket_id=ticket_id, agent_id=alice, text="在的", now=MON_9 + timedelta(hours=47))
    late = MON_9 + timedelta(hours=48, minutes=1)
    with pytest.raises(replies.WindowClosed) as refused:
        do(replies.send, ticket_id=ticket_id, agent_id=alice, text="还在吗", now=late)
    assert str(refused.value) == "微信客服消息窗口已关闭（48小时）"
    assert [r.payload["text"] for r in outbox_rows()] == ["在的"], "nothing queued after the window closed"
    window = lifecycle.reply_window(fetch(ticket_id), late)
    assert not window.open and window.notice == "微信客服消息窗口已关闭（48小时）"
    do(ticket_handoff.append_merchant_message, ticket_id=ticket_id, text="在", now=late)
    do(replies.send, ticket_id=ticket_id, agent_id=alice, text="好的", now=late)
    assert len(outbox_rows("wechat")) == 2


def test_canned_replies_fill_variables_and_leave_unknown_ones_visible(tdb):
    with session_scope() as db_session:
        merchant = merchant_service.create(db_session=db_session, name="甲公司", tax_ids=[TAX_ID])
        db_session.add(ChatBinding(channel="telegram", user_id="m1", merchant_id=merchant.id))
    alice = agent("alice")
    do(staff.set_display_name, staff_id=alice, display_name="小王")
    ticket = handoff("m1", text="转人工").ticket
    assert ticket.merchant_id is not None
    body = "{merchant_name}您好，工单 {ticket_number} 由{agent_name}处理。{unknown} {0} {a.b} { 单独的括号 {"
    canned = do(replies.create_canned, title="问候", body=body, actor_id=alice)
    with pytest.raises(replies.ReplyError, match="已存在"):
        do(replies.create_canned, title="问候", body="x")
    text = do(replies.render_canned, canned_id=canned.id, ticket_id=ticket.id, agent_id=alice)
    assert text == f"甲公司您好，工单 {ticket.number} 由小王处理。{{unknown}} {{0}} {{a.b}} {{ 单独的括号 {{"
    assert replies.unknown_variables(body) == ["unknown"]
    assert replies.render_template("{merchant_name}", {}) == "{merchant_name}"
    assert [c.title for c in do(replies.list_canned, search="处理")] == ["问候"]
    do(replies.update_canned, canned_id=canned.id, body="{agent_name}为您服务")
    assert do(replies.render_canned, canned_id=canned.id, ticket_id=ticket.id, agent_id=None) == "客服为您服务"
    assert do(replies.delete_canned, canned_id=canned.id) is True


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("{merchant_name}您好，请稍等", "您好，请稍等"),
        ("您好 {merchant_name}，请稍等", "您好，请稍等"),
        ("{merchant_name}，您好", "您好"),
        ("尊敬的{merchant_name}，您好", "尊敬的客户，您好"),
        ("{merchant_name}的发票已开出", "您的发票已开出"),
    ],
)
def test_canned_replies_address_an_unbound_merchant_naturally(tdb, body, text):
    ticket = handoff("m1", text="转人工").ticket
    assert ticket.merchant_id is None
    canned = do(replies.create_canned, title="问候", body=body)
    assert do(replies.render_canned, canned_id=canned.id, ticket_id=ticket.id, agent_id=None) == text


def test_resolve_asks_for_a_rating_and_the_answer_is_recorded(tdb):
    alice = agent("alice")
    ticket_id = handoff("42", text="转人工").ticket.id
    do(replies.send, ticket_id=ticket_id, agent_id=alice, text="已处理", now=at(30, 9, 10))
    do(lifecycle.resolve, ticket_id=ticket_id, actor_id=alice, now=at(30, 9, 20))
    assert outbox_rows()[-1].payload["text"] == lifecycle.CSAT_QUESTION
    assert "请为本次服务打分：回复 1-5" in lifecycle.CSAT_QUESTION
    outcome = do(flows.route_merchant_message, channel="telegram", user_id="42", text="５分，很满意", now=at(30, 9, 30))
    assert (outcome.action, outcome.reply, outcome.handled) == ("csat", replies.CSAT_THANKS, True)
    rated = fetch(ticket_id)
    assert (rated.csat_score, rated.csat_comment, rated.state) == (5, "很满意", RESOLVED)
    thanks = do(flows.route_merchant_message, channel="telegram", user_id="42", text="谢谢！", now=at(30, 9, 31))
    assert thanks.action == "acknowledged" and fetch(ticket_id).state == RESOLVED
    with pytest.raises(replies.ReplyError, match="1-5"):
        do(replies.record_csat, ticket_id=ticket_id, score=6)
    assert do(replies.csat_summary).average == 5.0
    assert [replies.parse_csat(t) for t in ("3", "五星", "4 还行", "3号发票", "1000", "12")] == [
        (3, None),
        (5, None),
        (4, "还行"),
        None,
        None,
        None,
    ]
    back = do(flows.route_merchant_message, channel="telegram", user_id="42", text="又报错了", now=at(30, 10))
    assert back.action == "reopened" and back.reply.startswith(f"已为您重新打开工单 {fetch(ticket_id).number}")
    assert (fetch(ticket_id).state, fetch(ticket_id).assignee_id) == (ASSIGNED, alice)
    appended = do(flows.route_merchant_message, channel="telegram", user_id="42", text="截图", now=at(30, 10, 1))
    assert (appended.action, appended.reply) == ("appended", None)
    assert do(flows.route_merchant_message, channel="telegram", user_id="nobody", text="你好").handled is False


def test_idle_tickets_go_back_to_the_bot_with_a_notice(tdb, monkeypatch):
    set_env(monkeypatch, TICKET_IDLE_HOURS="2")
    alice = agent("alice")
    waiting = handoff("w1", text="转人工").ticket.id
    do(replies.send, ticket_id=waiting, agent_id=alice, text="请发截图", wait_for_merchant=True, now=at(30, 9, 5))
    unanswered = handoff("w2", text="转人工").ticket.id
    do(replies.send, ticket_id=unanswered, agent_id=alice, text="还需要帮忙吗", now=at(30, 9, 5))
    talking = handoff("w3", text="转人工").ticket.id
    do(replies.send, ticket_id=talking, agent_id=alice, text="您好", now=at(30, 9, 5))
    do(ticket_handoff.append_merchant_message, ticket_id=talking, text="在的", now=at(30, 10))
    with session_scope() as db_session:
        assert lifecycle.find_idle(db_session=db_session, now=at(30, 11)) == []
    returned = do(lifecycle.return_idle_to_bot, now=at(30, 11, 6))
    assert sorted(t.id for t in returned) == [waiting, unanswered]
    assert all(fetch(t).close_reason == "idle" and fetch(t).state == CLOSED for t in (waiting, unanswered))
    assert fetch(talking).state == ASSIGNED
    assert [r.payload["text"] for r in outbox_rows()][-2:] == [lifecycle.IDLE_NOTICE, lifecycle.IDLE_NOTICE]
    assert do(flows.route_merchant_message, channel="telegram", user_id="w1", text="你好").action == "none"


# --- queue and detail ------------------------------------------------------------------------------------------


def test_queue_filters_tags_notes_and_detail(tdb):
    alice = agent("alice")
    first = handoff("q1", text="我要投诉", now=MON_9).ticket.id
    second = handoff("q2", text="发票问题", now=at(30, 9, 30)).ticket.id
    do(assignment.take, ticket_id=second, agent_id=alice, now=at(30, 9, 31))
    assert do(labels.add_tag, ticket_id=second, tag=" 红冲 ", actor_id=alice) == ["红冲"]
    assert do(labels.set_tags, ticket_id=second, tags=["红冲", "VIP"], actor_id=alice) == ["VIP", "红冲"]
    do(labels.add_note, ticket_id=second, author_id=alice, text="商户很着急")
    do(labels.set_priority, ticket_id=second, priority="high", actor_id=alice)
    with pytest.raises(service.TicketError, match="未知的优先级"):
        do(labels.set_priority, ticket_id=second, priority="asap")
    with session_scope() as db_session:
        items = queue.list_queue(db_session=db_session, now=at(30, 10))
        assert [i.ticket.id for i in items] == [first, second]
        assert items[0].sla.state == "breached" and items[1].assignee_name == "alice"
        assert [i.ticket.id for i in queue.list_queue(db_session=db_session, unassigned=True)] == [first]
        assert [i.ticket.id for i in queue.list_queue(db_session=db_session, tag="VIP")] == [second]
        assert [i.ticket.id for i in queue.list_queue(db_session=db_session, search=f"T{second:06d}")] == [second]
        assert [i.ticket.id for i in queue.list_queue(db_session=db_session, search="投诉")] == [first]
        overdue = queue.list_queue(db_session=db_session, overdue=True, now=at(30, 10))
        assert [i.ticket.id for i in overdue] == [first]
        assert next(i.ticket.id for i in queue.list_queue(db_session=db_session, order="due")) == first
        counts = queue.queue_counts(db_session=db_session, agent_id=alice, now=at(30, 10))
        assert (counts["new"], counts["assigned"], counts["unassigned"], counts["mine"]) == (1, 1, 1, 1)
        shown = queue.detail(db_session=db_session, ticket_id=second, now=at(30, 10))
        assert shown.tags == ["VIP", "红冲"] and [n.text for n in shown.notes] == ["商户很着急"]
        assert shown.notes[0].author_name == "alice" and shown.transcript[0].text == "发票问题"
        assert {e.action for e in shown.events} >= {"created", "handoff", "assigned", "tags", "note", "priority"}
        assert service.all_tags(db_session=db_session) == [("VIP", 1), ("红冲", 1)]
        assert service.get_by_number(db_session=db_session, number=f"T{second:06d}").id == second


# --- staff accounts --------------------------------------------------------------------------------------------


def test_staff_passwords_are_argon2_hashed_and_checked(tdb, monkeypatch):
    monkeypatch.setattr(staff, "_hasher", PasswordHasher())  # the real parameters here
    staff._dummy_hash.cache_clear()
    with session_scope() as db_session:
        user = staff.create(db_session=db_session, username="Alice", password="correct horse", role="admin")
        assert user.username == "alice" and user.password_hash.startswith("$argon2id$")
        assert "correct horse" not in user.password_hash
        with pytest.raises(staff.StaffError, match="已存在"):
            staff.create(db_session=db_session, username="alice", password="another one")
        with pytest.raises(staff.StaffError, match="密码长度"):
            staff.create(db_session=db_session, username="bob", password="short")
        with pytest.raises(staff.StaffError, match="角色"):
            staff.create(db_session=db_session, username="bob", password="long enough", role="boss")
    calls: list[str] = []
    real_verify = staff.verify_password
    monkeypatch.setattr(staff, "verify_password", lambda h, p: calls.append(h) or real_verify(h, p))
    with session_scope() as db_session:
        assert staff.authenticate(db_session=db_session, username="ALICE", password="correct horse").id == user.id
        assert staff.authenticate(db_session=db_session, username="alice", password="wrong horse") is None
        assert staff.authenticate(db_session=db_session, username="mallory", password="correct horse") is None
    assert len(calls) == 3 and calls[2] == staff._dummy_hash(), "an unknown user costs one verification too"
    do(staff.disable, staff_id=user.id)
    with session_scope() as db_session:
        assert staff.authenticate(db_session=db_session, username="alice", password="correct horse") is None
        assert db_session.get(StaffUser, user.id).online is False
        with pytest.raises(staff.StaffError, match="已停用"):
            staff.set_online(db_session=db_session, staff_id=user.id, online=True)
    do(staff.enable, staff_id=user.id)
    do(staff.set_password, staff_id=user.id, password="battery staple")
    with session_scope() as db_session:
        assert staff.authenticate(db_session=db_session, username="alice", password="battery staple") is not None
    assert staff.verify_password("not a hash", "x") is False


def test_user_cli_creates_a_user_with_the_password_from_stdin(tdb):
    result = CliRunner().invoke(
        user_app, ["create", "Carol", "--role", "admin", "--password-stdin"], input="s3cret pw\n"
    )
    assert result.exit_code == 0, result.output
    assert "user carol (admin) created" in result.output
    with session_scope() as db_session:
        user = staff.authenticate(db_session=db_session, username="carol", password="s3cret pw")
        assert user is not None and user.role == "admin"
    again = CliRunner().invoke(user_app, ["create", "carol", "--password-stdin"], input="s3cret pw\n")
    assert again.exit_code == 2 and "已存在" in again.output
    bad_role = CliRunner().invoke(
        user_app, ["create", "dave", "--role", "boss", "--password-stdin"], input="pw12345678\n"
    )
    assert bad_role.exit_code == 2


def test_transcript_lines_keep_their_authors(tdb):
    alice = agent("alice")
    ticket_id = handoff("a1", text="转人工").ticket.id
    do(ticket_handoff.append_bot_message, ticket_id=ticket_id, text="已为您转接")
    do(replies.send, ticket_id=ticket_id, agent_id=alice, text="您好")
    with session_scope() as db_session:
        kinds = [m.author_kind for m in db_session.scalars(select(TicketMessage).order_by(TicketMessage.id))]
    assert kinds == ["merchant", "bot", "agent"]


# --- housekeeping and the webhook sender -----------------------------------------------------------------------


def test_housekeeping_closes_old_resolved_tickets_assigns_the_queue_and_raises_alerts(tdb):
    alice = agent("alice", capacity=3)
    old = new_ticket("h1", now=MON_9 - timedelta(days=10))
    do(assignment.take, ticket_id=old, agent_id=alice, now=MON_9 - timedelta(days=10))
    do(lifecycle.resolve, ticket_id=old, actor_id=alice, now=MON_9 - timedelta(days=9))
    fresh = handoff("h2", text="我要投诉", now=MON_9).ticket.id
    done = flows.housekeeping(now=at(30, 9, 20))
    assert (done.closed, done.returned_to_bot, done.assigned) == (1, 0, 1)
    assert [(a.kind, a.ticket_id) for a in done.alerts] == [("breach", fresh)], "found late: breach only"
    assert fetch(old).state == CLOSED and fetch(fresh).assignee_id == alice
    assert flows.housekeeping(now=at(30, 9, 21)).alerts == []


def test_webhook_sender_posts_alerts_and_sorts_failures():
    seen: list[dict] = []
    statuses = iter([200, 503, 400])

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(next(statuses))

    sender = WebhookSender("https://hooks.example.com/sla", client=httpx.Client(transport=httpx.MockTransport(reply)))
    alert = '{"event": "sla_breach", "ticket": "T000001"}'
    sender.send("sla-alerts", {"text": alert, "options": []})
    with pytest.raises(RetryLater):
        sender.send("sla-alerts", {"text": alert, "options": []})
    with pytest.raises(Undeliverable):
        sender.send("sla-alerts", {"text": "not json", "options": []})
    assert seen == [{"event": "sla_breach", "ticket": "T000001"}] * 2 + [{"text": "not json"}]
    sender.close()
