"""Tickets: handoff from the bot, the state machine, transcript, notes, tags, priority and the audit events."""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import false, func, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation import service as conversation_service
from core.outbox import service as outbox_service
from core.settings import get_settings
from merchants import service as merchant_service
from ticketing import rules
from ticketing.models import (
    ACTIVE,
    ASSIGNED,
    BOT,
    CLOSED,
    CLOSED_AFTER_RESOLVE,
    CLOSED_BY_AGENT,
    GENERAL,
    HANDED_BACK,
    IDLE,
    MERCHANT,
    NEW,
    NORMAL,
    PRIORITIES,
    PRIORITY_LABELS,
    RESOLVED,
    STATE_LABELS,
    SYSTEM,
    UNCLOSED,
    WAITING,
    AssignmentCursor,
    StaffUser,
    Ticket,
    TicketEvent,
    TicketMessage,
    TicketNote,
    TicketTag,
)
from ticketing.sla import BusinessStatus, business_status, calendar_from_settings, refresh_due

MAX_SUBJECT_CHARS = 80
MAX_TAG_CHARS = 32
MAX_TEXT_CHARS = 4000
DEDUPE_SECONDS = 300  # a recorded turn this close to an identical merchant line is the same message
WINDOW_CLOSED_NOTICE = "微信客服消息窗口已关闭（48小时）"
CSAT_QUESTION = "您的问题已处理完毕。请为本次服务打分：回复 1-5（5 分为非常满意）。"
HANDED_BACK_NOTICE = "本次人工服务已结束，已为您转回智能助手。如仍需人工帮助，请随时回复“人工”。"
IDLE_NOTICE = "由于较长时间未收到您的回复，本次人工服务已结束，已为您转回智能助手。如仍需帮助，请随时回复“人工”。"

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({ASSIGNED, CLOSED}),
    ASSIGNED: frozenset({NEW, WAITING, RESOLVED, CLOSED}),
    WAITING: frozenset({NEW, ASSIGNED, RESOLVED, CLOSED}),
    RESOLVED: frozenset({NEW, ASSIGNED, CLOSED}),
    CLOSED: frozenset({NEW, ASSIGNED}),
}


class TicketError(Exception):
    """A ticket action that cannot be done; the message (Chinese) is fit for the console."""


class TicketNotFound(TicketError):
    """No ticket with that id or number."""


class InvalidTransition(TicketError):
    """The state machine does not allow the requested change of state."""


def can_transition(from_state: str, to_state: str) -> bool:
    """Whether the state machine allows going from one state to another."""
    return to_state in ALLOWED_TRANSITIONS.get(from_state, frozenset())


# --- locking -------------------------------------------------------------------------------------------------


def write_lock(*, db_session: Session) -> None:
    """On SQLite, take the database's write lock now, so what this transaction reads next stays true until it commits
    (SQLite has one writer; a 0-row UPDATE opens the write transaction). No-op on PostgreSQL."""
    if db_session.get_bind().dialect.name == "sqlite":
        db_session.execute(
            update(AssignmentCursor).where(false()).values(name=AssignmentCursor.name),
            execution_options={"synchronize_session": False},
        )


def lock(*, db_session: Session, ticket_id: int) -> Ticket:
    """The ticket, locked for this transaction (FOR UPDATE on PostgreSQL, the write lock on SQLite) and re-read."""
    write_lock(db_session=db_session)
    query = select(Ticket).where(Ticket.id == ticket_id).execution_options(populate_existing=True)
    if db_session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    ticket = db_session.scalar(query)
    if ticket is None:
        raise TicketNotFound(f"工单 {ticket_id} 不存在")
    return ticket


def _lock_identity(db_session: Session, channel: str, user_id: str) -> None:
    """Serialise handoffs of one chat identity: a transaction-scoped advisory lock on PostgreSQL, the write lock on
    SQLite."""
    if db_session.get_bind().dialect.name == "postgresql":
        digest = hashlib.blake2b(f"ticket\x00{channel}\x00{user_id}".encode(), digest_size=8).digest()
        db_session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
    else:
        write_lock(db_session=db_session)


# --- reading -------------------------------------------------------------------------------------------------


def get(*, db_session: Session, ticket_id: int) -> Ticket | None:
    """One ticket by id, as currently stored."""
    return db_session.get(Ticket, ticket_id, populate_existing=True)


def require(*, db_session: Session, ticket_id: int) -> Ticket:
    """One ticket by id; TicketNotFound when there is none."""
    ticket = get(db_session=db_session, ticket_id=ticket_id)
    if ticket is None:
        raise TicketNotFound(f"工单 {ticket_id} 不存在")
    return ticket


def parse_number(number: str) -> int | None:
    """The ticket id in a ticket number such as "T000042" (or "42"); None when it is not one."""
    digits = number.strip().upper().removeprefix("T")
    return int(digits) if digits.isdigit() and len(digits) <= 12 else None


def get_by_number(*, db_session: Session, number: str) -> Ticket | None:
    """One ticket by its number."""
    ticket_id = parse_number(number)
    return None if ticket_id is None else get(db_session=db_session, ticket_id=ticket_id)


def get_unclosed_for(*, db_session: Session, channel: str, user_id: str) -> Ticket | None:
    """The identity's ticket that is not closed (new, assigned, waiting or resolved), if any."""
    query = select(Ticket).where(
        Ticket.channel == channel, Ticket.user_id == _storable(user_id), Ticket.state.in_(UNCLOSED)
    )
    return db_session.scalar(query.execution_options(populate_existing=True))


def get_active_for(*, db_session: Session, channel: str, user_id: str) -> Ticket | None:
    """The identity's ticket a person is handling (new, assigned or waiting on the merchant), if any."""
    ticket = get_unclosed_for(db_session=db_session, channel=channel, user_id=user_id)
    return ticket if ticket is not None and ticket.state in ACTIVE else None


def get_for_identity(*, db_session: Session, channel: str, user_id: str, limit: int = 20) -> list[Ticket]:
    """The identity's tickets, newest first."""
    query = (
        select(Ticket)
        .where(Ticket.channel == channel, Ticket.user_id == _storable(user_id))
        .order_by(Ticket.id.desc())
        .limit(limit)
    )
    return list(db_session.scalars(query))


def get_messages(*, db_session: Session, ticket_id: int) -> list[TicketMessage]:
    """A ticket's transcript, oldest first."""
    query = select(TicketMessage).where(TicketMessage.ticket_id == ticket_id).order_by(TicketMessage.id)
    return list(db_session.scalars(query))


def get_notes(*, db_session: Session, ticket_id: int) -> list[TicketNote]:
    """A ticket's internal notes, oldest first."""
    query = select(TicketNote).where(TicketNote.ticket_id == ticket_id).order_by(TicketNote.id)
    return list(db_session.scalars(query))


def get_events(
    *,
    db_session: Session,
    ticket_id: int | None = None,
    actor_id: int | None = None,
    actions: Iterable[str] | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[TicketEvent]:
    """Audit events, newest first, filtered by ticket, actor, action and time."""
    query = select(TicketEvent).order_by(TicketEvent.id.desc()).limit(limit)
    if ticket_id is not None:
        query = query.where(TicketEvent.ticket_id == ticket_id)
    if actor_id is not None:
        query = query.where(TicketEvent.actor_id == actor_id)
    if actions is not None:
        query = query.where(TicketEvent.action.in_(list(actions)))
    if since is not None:
        query = query.where(TicketEvent.created_at >= utc(since))
    return list(db_session.scalars(query))


def get_tags(*, db_session: Session, ticket_id: int) -> list[str]:
    """A ticket's tags, sorted."""
    query = select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id).order_by(TicketTag.tag)
    return list(db_session.scalars(query))


def all_tags(*, db_session: Session) -> list[tuple[str, int]]:
    """Every tag in use with how many tickets carry it, most used first (for the console's filter)."""
    count = func.count(TicketTag.ticket_id)
    query = select(TicketTag.tag, count).group_by(TicketTag.tag).order_by(count.desc(), TicketTag.tag)
    return [(tag, n) for tag, n in db_session.execute(query)]


# --- events and transcript -----------------------------------------------------------------------------------


def record_event(
    *,
    db_session: Session,
    action: str,
    ticket_id: int | None = None,
    actor_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> TicketEvent:
    """Write one audit event (a ticket's, or a staff account's when `ticket_id` is None)."""
    event = TicketEvent(
        ticket_id=ticket_id, actor_id=actor_id, action=action, before=before, after=after, created_at=utc(now)
    )
    db_session.add(event)
    return event


def _storable(text: str) -> str:
    return conversation_service.storable(text)


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Text as stored: NUL replaced, trimmed; TicketError when empty or longer than `limit`."""
    cleaned = _storable(text).strip()
    if not cleaned:
        raise TicketError("内容不能为空")
    if len(cleaned) > limit:
        raise TicketError(f"内容过长（最多 {limit} 字）")
    return cleaned


def _add_message(
    db_session: Session,
    ticket: Ticket,
    kind: str,
    text: str,
    now: datetime,
    *,
    author_id: int | None = None,
    source_turn_id: int | None = None,
) -> TicketMessage:
    message = TicketMessage(
        ticket_id=ticket.id,
        author_kind=kind,
        author_id=author_id,
        text=_storable(text),
        source_turn_id=source_turn_id,
        created_at=now,
    )
    db_session.add(message)
    return message


def _touch(ticket: Ticket, now: datetime) -> None:
    ticket.updated_at = now


# --- creating and handing off --------------------------------------------------------------------------------


def create(
    *,
    db_session: Session,
    channel: str,
    user_id: str,
    subject: str = "",
    priority: str = NORMAL,
    category: str = GENERAL,
    merchant_id: int | None = None,
    context: dict[str, Any] | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Open a new ticket for a chat identity (TicketError when it already has one that is not closed)."""
    now = utc(now)
    _check_priority(priority)
    existing = get_unclosed_for(db_session=db_session, channel=channel, user_id=user_id)
    if existing is not None:
        raise TicketError(f"该会话已有未关闭的工单 {existing.number}")
    ticket = Ticket(
        channel=channel,
        user_id=_storable(user_id),
        merchant_id=merchant_id,
        state=NEW,
        priority=priority,
        category=category or GENERAL,
        subject=_storable(subject).strip()[:MAX_SUBJECT_CHARS],
        context=dict(context or {}),
        reopened_count=0,
        paused_seconds=0,
        created_at=now,
        updated_at=now,
        sla_started_at=now,
        last_merchant_message_at=now,
    )
    refresh_due(ticket)
    db_session.add(ticket)
    db_session.flush()
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action="created",
        after={"state": NEW, "priority": priority, "category": ticket.category},
        now=now,
    )
    return ticket


@dataclass(frozen=True)
class Handoff:
    """The ticket a handoff landed on, how ("created", "reopened" or "appended"), and what to tell the merchant."""

    ticket: Ticket
    outcome: str
    business: BusinessStatus

    @property
    def merchant_text(self) -> str:
        """The ticket number and the business-hours promise, for the bot's handoff reply."""
        opening = {
            "created": f"已为您创建人工服务工单 {self.ticket.number}。",
            "reopened": f"已为您重新打开工单 {self.ticket.number}。",
        }.get(self.outcome, f"您的工单 {self.ticket.number} 正在处理中，新消息已转给客服。")
        return opening + self.business.text


def open_for_handoff(
    *,
    db_session: Session,
    channel: str,
    user_id: str,
    text: str | None = None,
    topic: str | None = None,
    learned: dict[str, Any] | None = None,
    guide: dict[str, Any] | None = None,
    invoice: dict[str, Any] | None = None,
    merchant_id: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """Hand a conversation to people: the identity's open ticket gets the new lines, else its last ticket is reopened
    when resolved or closed within TICKET_REOPEN_DAYS, else a new ticket is opened with the recent conversation
    copied in. Exactly one ticket per identity is not closed, whatever runs at the same time.

    `text` is the merchant's handoff message when its turn is not recorded yet; `learned` is what the bot found out
    (handlers.handoff.Learned.as_dict()), `guide` the troubleshooting guide progress, `invoice` the invoice
    discussed ({"number", "status", ...})."""
    now = utc(now)
    user_id = _storable(user_id)
    _lock_identity(db_session, channel, user_id)
    ticket, outcome = _ticket_for_handoff(db_session, channel, user_id, now)
    merchant_texts = _copy_turns(db_session, ticket, now)
    if text and text.strip() and (not merchant_texts or merchant_texts[-1] != _storable(text).strip()):
        _add_message(db_session, ticket, MERCHANT, _storable(text).strip(), now)
        merchant_texts.append(_storable(text).strip())
    ticket.context = _merged_context(ticket.context, topic, learned, guide, invoice, now)
    category = rules.category_for_topic(db_session=db_session, topic=topic)
    invoice_status = str(invoice.get("status")) if invoice and invoice.get("status") else None
    found = rules.classify(texts=merchant_texts, category=category, invoice_status=invoice_status, now=now)
    if outcome == "created":
        ticket.priority, ticket.category = found.priority, found.category
        ticket.subject = _subject(learned, merchant_texts)
    else:
        _escalate(db_session, ticket, found, now)
    if ticket.merchant_id is None:
        ticket.merchant_id = merchant_id or _bound_merchant(db_session, channel, user_id)
    ticket.last_merchant_message_at = now
    if ticket.state == WAITING:
        apply_transition(db_session, ticket, ASSIGNED if ticket.assignee_id else NEW, now=now, reason="merchant_reply")
    refresh_due(ticket)
    _touch(ticket, now)
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        action="handoff",
        after={"outcome": outcome, "priority": ticket.priority, "category": ticket.category, "rule": found.rule},
        now=now,
    )
    db_session.flush()
    return Handoff(ticket, outcome, business_status(now, priority=ticket.priority))


def _ticket_for_handoff(db_session: Session, channel: str, user_id: str, now: datetime) -> tuple[Ticket, str]:
    """The identity's unclosed ticket, or its recently ended one reopened, or a new one (the identity is locked)."""
    reopen_after = now - timedelta(days=get_settings().ticket_reopen_days)
    ticket = get_unclosed_for(db_session=db_session, channel=channel, user_id=user_id)
    if ticket is not None:
        ticket = lock(db_session=db_session, ticket_id=ticket.id)
    if ticket is not None and ticket.state != RESOLVED:
        return ticket, "appended"
    if ticket is not None and utc(ticket.resolved_at or now) >= reopen_after:
        _reopen(db_session, ticket, now, actor_id=None, reason="handoff")
        return ticket, "reopened"
    if ticket is not None:
        apply_transition(db_session, ticket, CLOSED, now=now, reason=CLOSED_AFTER_RESOLVE)
    last = db_session.scalar(
        select(Ticket)
        .where(Ticket.channel == channel, Ticket.user_id == user_id, Ticket.state == CLOSED)
        .order_by(Ticket.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if last is not None and utc(last.resolved_at or last.closed_at or now) >= reopen_after:
        last = lock(db_session=db_session, ticket_id=last.id)
        _reopen(db_session, last, now, actor_id=None, reason="handoff")
        return last, "reopened"
    return create(db_session=db_session, channel=channel, user_id=user_id, now=now), "created"


def _copy_turns(db_session: Session, ticket: Ticket, now: datetime) -> list[str]:
    """Copy the identity's recent conversation turns no ticket has seen (merchant text and bot reply); return the
    merchant texts.
    A turn matching a merchant line already added (same text, within DEDUPE_SECONDS) is linked, not copied twice."""
    seen = db_session.scalar(
        select(func.max(TicketMessage.source_turn_id))
        .join(Ticket, Ticket.id == TicketMessage.ticket_id)
        .where(Ticket.channel == ticket.channel, Ticket.user_id == ticket.user_id)
    )
    limit = get_settings().ticket_transcript_turns
    turns = conversation_service.get_history(
        db_session=db_session, channel=ticket.channel, user_id=ticket.user_id, limit=limit
    )
    unlinked = list(
        db_session.scalars(
            select(TicketMessage).where(
                TicketMessage.ticket_id == ticket.id,
                TicketMessage.author_kind == MERCHANT,
                TicketMessage.source_turn_id.is_(None),
            )
        )
    )
    texts = []
    for turn in turns:
        if seen is not None and turn.id <= seen:
            continue
        at = utc(turn.created_at) if turn.created_at is not None else now
        twin = next(
            (
                m
                for m in unlinked
                if m.text == turn.text and abs((utc(m.created_at) - at).total_seconds()) <= DEDUPE_SECONDS
            ),
            None,
        )
        if twin is not None:
            twin.source_turn_id = turn.id
            unlinked.remove(twin)
        else:
            _add_message(db_session, ticket, MERCHANT, turn.text, at, source_turn_id=turn.id)
            texts.append(turn.text.strip())
        if turn.reply:
            _add_message(db_session, ticket, BOT, turn.reply, at, source_turn_id=turn.id)
    return texts


def _merged_context(
    context: dict[str, Any] | None,
    topic: str | None,
    learned: dict[str, Any] | None,
    guide: dict[str, Any] | None,
    invoice: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    merged = dict(context or {})
    for key, value in (("topic", topic), ("learned", learned), ("guide", guide), ("invoice", invoice)):
        if value:
            merged[key] = value
    merged["handoffs"] = [*merged.get("handoffs", []), now.isoformat()][-20:]
    return merged


def _subject(learned: dict[str, Any] | None, merchant_texts: list[str]) -> str:
    if learned and learned.get("title"):
        return str(learned["title"])[:MAX_SUBJECT_CHARS]
    first = next((t for t in merchant_texts if t), "")
    return first[:MAX_SUBJECT_CHARS]


def _bound_merchant(db_session: Session, channel: str, user_id: str) -> int | None:
    binding = merchant_service.get_binding(db_session=db_session, channel=channel, user_id=user_id)
    return binding.merchant_id if binding is not None else None


def _escalate(db_session: Session, ticket: Ticket, found: rules.Classification, now: datetime) -> None:
    """Raise the priority (never lower it) when new words call for it; a complaint also becomes the category."""
    priority = rules.more_urgent(ticket.priority, found.priority)
    category = found.category if found.rule == "complaint" else ticket.category
    if (priority, category) == (ticket.priority, ticket.category):
        return
    before = {"priority": ticket.priority, "category": ticket.category}
    ticket.priority, ticket.category = priority, category
    refresh_due(ticket)
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        action="escalated",
        before=before,
        after={"priority": priority, "category": category, "rule": found.rule},
        now=now,
    )


def append_merchant_message(
    *, db_session: Session, ticket_id: int, text: str, now: datetime | None = None
) -> TicketMessage:
    """Add a merchant message to an active ticket; it resumes a ticket waiting on the merchant and a complaint raises
    the priority."""
    now = utc(now)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in ACTIVE:
        raise TicketError(f"工单 {ticket.number} {STATE_LABELS[ticket.state]}，不能追加消息")
    message = _log_merchant_message(db_session, ticket, text, now)
    if ticket.state == WAITING:
        apply_transition(db_session, ticket, ASSIGNED if ticket.assignee_id else NEW, now=now, reason="merchant_reply")
    if rules.is_complaint(text):
        _escalate(db_session, ticket, rules.classify(texts=[text], now=now), now)
    _touch(ticket, now)
    db_session.flush()
    return message


def _log_merchant_message(db_session: Session, ticket: Ticket, text: str, now: datetime) -> TicketMessage:
    message = _add_message(db_session, ticket, MERCHANT, clean_text(text), now)
    ticket.last_merchant_message_at = now
    _touch(ticket, now)
    return message


def log_merchant_message(
    *, db_session: Session, ticket_id: int, text: str, now: datetime | None = None
) -> TicketMessage:
    """Add a merchant message to any ticket's transcript without changing its state (e.g. "谢谢" after resolve); it
    reopens the WeChat reply window."""
    now = utc(now)
    message = _log_merchant_message(db_session, lock(db_session=db_session, ticket_id=ticket_id), text, now)
    db_session.flush()
    return message


def append_bot_message(*, db_session: Session, ticket_id: int, text: str, now: datetime | None = None) -> TicketMessage:
    """Add a line the bot said (e.g. its handoff reply) to a ticket's transcript."""
    now = utc(now)
    message = _add_message(db_session, require(db_session=db_session, ticket_id=ticket_id), BOT, clean_text(text), now)
    db_session.flush()
    return message


# --- the state machine ---------------------------------------------------------------------------------------


def apply_transition(
    db_session: Session,
    ticket: Ticket,
    to_state: str,
    *,
    now: datetime,
    actor_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Move a ticket the caller holds locked to another state, with the bookkeeping each state needs
    (InvalidTransition when the state machine forbids it)."""
    from_state = ticket.state
    if not can_transition(from_state, to_state):
        raise InvalidTransition(
            f"工单 {ticket.number} 不能从「{STATE_LABELS[from_state]}」变为「{STATE_LABELS.get(to_state, to_state)}」"
        )
    if from_state in (RESOLVED, CLOSED) and to_state in (NEW, ASSIGNED):
        _reopen(db_session, ticket, now, actor_id=actor_id, reason=reason or "manual", to_state=to_state)
        return
    if from_state == WAITING:
        _stop_waiting(ticket, now)
    if to_state == WAITING:
        ticket.waiting_since = now
    elif to_state == NEW:
        ticket.assignee_id = None
        ticket.assigned_at = None
    elif to_state == ASSIGNED and ticket.assignee_id is None:
        raise InvalidTransition(f"工单 {ticket.number} 还没有指定客服")
    elif to_state == RESOLVED:
        ticket.resolved_at = now
    elif to_state == CLOSED:
        ticket.closed_at = now
        ticket.close_reason = reason or (CLOSED_AFTER_RESOLVE if from_state == RESOLVED else CLOSED_BY_AGENT)
    ticket.state = to_state
    refresh_due(ticket)
    _touch(ticket, now)
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action="state",
        before={"state": from_state},
        after={"state": to_state, "reason": reason},
        now=now,
    )
    db_session.flush()


def _stop_waiting(ticket: Ticket, now: datetime) -> None:
    """End a wait on the merchant: the business time it took is added to the paused seconds."""
    if ticket.waiting_since is not None:
        waited = calendar_from_settings().business_seconds_between(utc(ticket.waiting_since), now)
        ticket.paused_seconds = (ticket.paused_seconds or 0) + round(waited)
    ticket.waiting_since = None


def _reopen(
    db_session: Session,
    ticket: Ticket,
    now: datetime,
    *,
    actor_id: int | None,
    reason: str,
    to_state: str | None = None,
) -> None:
    """Bring a resolved or closed ticket back: to its agent when that account is still active, else to the queue;
    the SLA clocks start again."""
    from_state = ticket.state
    agent = db_session.get(StaffUser, ticket.assignee_id) if ticket.assignee_id else None
    if to_state is None:
        to_state = ASSIGNED if agent is not None and agent.active else NEW
    if to_state == ASSIGNED and ticket.assignee_id is None:
        raise InvalidTransition(f"工单 {ticket.number} 还没有指定客服")
    if to_state == NEW:
        ticket.assignee_id, ticket.assigned_at = None, None
    ticket.state = to_state
    ticket.reopened_count = (ticket.reopened_count or 0) + 1
    ticket.resolved_at = ticket.closed_at = ticket.close_reason = None
    ticket.sla_started_at, ticket.paused_seconds, ticket.waiting_since = now, 0, None
    ticket.first_response_at = None
    ticket.sla_first_response_warned_at = ticket.sla_first_response_breached_at = None
    ticket.sla_resolution_warned_at = ticket.sla_resolution_breached_at = None
    ticket.csat_requested_at = None
    refresh_due(ticket)
    _touch(ticket, now)
    db_session.flush()
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action="reopened",
        before={"state": from_state},
        after={"state": to_state, "reason": reason, "reopened_count": ticket.reopened_count},
        now=now,
    )


def transition(
    *,
    db_session: Session,
    ticket_id: int,
    to_state: str,
    actor_id: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Change a ticket's state as the state machine allows (InvalidTransition otherwise)."""
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    apply_transition(db_session, ticket, to_state, now=utc(now), actor_id=actor_id, reason=reason)
    return ticket


def wait_for_merchant(
    *, db_session: Session, ticket_id: int, actor_id: int | None = None, now: datetime | None = None
) -> Ticket:
    """Mark the ticket as waiting on the merchant: its SLA clocks stop until the merchant writes or it resumes."""
    return transition(db_session=db_session, ticket_id=ticket_id, to_state=WAITING, actor_id=actor_id, now=now)


def resume(*, db_session: Session, ticket_id: int, actor_id: int | None = None, now: datetime | None = None) -> Ticket:
    """Stop waiting on the merchant: back to the agent (or the queue) with the SLA clocks running again."""
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state != WAITING:
        raise InvalidTransition(f"工单 {ticket.number} 不在等待商户回复")
    apply_transition(
        db_session, ticket, ASSIGNED if ticket.assignee_id else NEW, now=utc(now), actor_id=actor_id, reason="resumed"
    )
    return ticket


def resolve(
    *,
    db_session: Session,
    ticket_id: int,
    actor_id: int | None = None,
    ask_csat: bool = True,
    now: datetime | None = None,
) -> Ticket:
    """Mark the ticket resolved and (when the channel can still reach the merchant) ask for a 1–5 rating."""
    now = utc(now)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    apply_transition(db_session, ticket, RESOLVED, now=now, actor_id=actor_id)
    if ask_csat and notify_merchant(db_session=db_session, ticket=ticket, text=CSAT_QUESTION, now=now) is not None:
        ticket.csat_requested_at = now
    db_session.flush()
    return ticket


def close(
    *,
    db_session: Session,
    ticket_id: int,
    actor_id: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Close the ticket (from any state but closed); the reason defaults to "resolved" for a resolved ticket and
    "closed" otherwise."""
    return transition(
        db_session=db_session, ticket_id=ticket_id, to_state=CLOSED, actor_id=actor_id, reason=reason, now=now
    )


def reopen(
    *,
    db_session: Session,
    ticket_id: int,
    actor_id: int | None = None,
    reason: str = "manual",
    now: datetime | None = None,
) -> Ticket:
    """Reopen a resolved or closed ticket (to its agent when still active, else to the queue)."""
    now = utc(now)
    found = require(db_session=db_session, ticket_id=ticket_id)
    _lock_identity(db_session, found.channel, found.user_id)  # before the row, as handoffs take them
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in (RESOLVED, CLOSED):
        raise InvalidTransition(f"工单 {ticket.number} {STATE_LABELS[ticket.state]}，无需重新打开")
    if ticket.state == CLOSED and get_unclosed_for(
        db_session=db_session, channel=ticket.channel, user_id=ticket.user_id
    ):
        raise TicketError("该会话已有未关闭的工单，不能重新打开这张")
    _reopen(db_session, ticket, now, actor_id=actor_id, reason=reason)
    return ticket


def hand_back_to_bot(
    *,
    db_session: Session,
    ticket_id: int,
    actor_id: int | None = None,
    notify: bool = True,
    reason: str = HANDED_BACK,
    now: datetime | None = None,
) -> Ticket:
    """Close the ticket and let the bot answer the merchant again, telling the merchant so."""
    now = utc(now)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    apply_transition(db_session, ticket, CLOSED, now=now, actor_id=actor_id, reason=reason)
    if notify:
        text = IDLE_NOTICE if reason == IDLE else HANDED_BACK_NOTICE
        notify_merchant(db_session=db_session, ticket=ticket, text=text, now=now)
    return ticket


# --- messages to the merchant --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyWindow:
    """Whether the merchant's channel accepts a message now, until when, and what the console should say if not."""

    open: bool
    closes_at: datetime | None
    notice: str | None


def reply_window(ticket: Ticket, now: datetime | None = None) -> ReplyWindow:
    """WeChat 客服 messages are allowed for TICKET_WECHAT_WINDOW_HOURS after the merchant's last message; other
    channels are always open."""
    if ticket.channel != "wechat":
        return ReplyWindow(True, None, None)
    if ticket.last_merchant_message_at is None:
        return ReplyWindow(False, None, WINDOW_CLOSED_NOTICE)
    closes_at = utc(ticket.last_merchant_message_at) + timedelta(hours=get_settings().ticket_wechat_window_hours)
    if utc(now) >= closes_at:
        return ReplyWindow(False, closes_at, WINDOW_CLOSED_NOTICE)
    return ReplyWindow(True, closes_at, None)


def notify_merchant(
    *,
    db_session: Session,
    ticket: Ticket,
    text: str,
    kind: str = SYSTEM,
    author_id: int | None = None,
    now: datetime | None = None,
) -> TicketMessage | None:
    """Put a message to the merchant in the transcript and the outbox (to the ticket's channel and user); None, and
    nothing queued, when the channel's reply window is closed."""
    now = utc(now)
    if not reply_window(ticket, now).open:
        record_event(db_session=db_session, ticket_id=ticket.id, action="notice_skipped", after={"text": text}, now=now)
        return None
    message = _add_message(db_session, ticket, kind, text, now, author_id=author_id)
    db_session.flush()
    outbox = outbox_service.enqueue(
        db_session=db_session,
        channel=ticket.channel,
        recipient=ticket.user_id,
        text=text,
        dedupe_key=f"ticket-message:{message.id}",
        now=now,
    )
    message.outbox_message_id = outbox.id
    db_session.flush()
    return message


# --- notes, tags, priority, category -------------------------------------------------------------------------


def add_note(
    *, db_session: Session, ticket_id: int, author_id: int | None, text: str, now: datetime | None = None
) -> TicketNote:
    """Add an internal note (never shown to the merchant)."""
    now = utc(now)
    require(db_session=db_session, ticket_id=ticket_id)
    note = TicketNote(ticket_id=ticket_id, author_id=author_id, text=clean_text(text), created_at=now)
    db_session.add(note)
    db_session.flush()
    record_event(db_session=db_session, ticket_id=ticket_id, actor_id=author_id, action="note", now=now)
    return note


def normalise_tag(tag: str) -> str:
    """A tag as stored: trimmed, at most MAX_TAG_CHARS (TicketError when empty)."""
    cleaned = " ".join(_storable(tag).split())[:MAX_TAG_CHARS]
    if not cleaned:
        raise TicketError("标签不能为空")
    return cleaned


def set_tags(
    *,
    db_session: Session,
    ticket_id: int,
    tags: Iterable[str],
    actor_id: int | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Replace a ticket's tags; return them sorted."""
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    wanted = sorted({normalise_tag(tag) for tag in tags})
    current = get_tags(db_session=db_session, ticket_id=ticket.id)
    if wanted == current:
        return current
    for tag in set(current) - set(wanted):
        db_session.delete(db_session.get(TicketTag, (ticket.id, tag)))
    db_session.add_all(TicketTag(ticket_id=ticket.id, tag=tag) for tag in set(wanted) - set(current))
    _touch(ticket, utc(now))
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action="tags",
        before={"tags": current},
        after={"tags": wanted},
        now=now,
    )
    db_session.flush()
    return wanted


def add_tag(
    *, db_session: Session, ticket_id: int, tag: str, actor_id: int | None = None, now: datetime | None = None
) -> list[str]:
    """Add one tag; return the ticket's tags."""
    current = get_tags(db_session=db_session, ticket_id=ticket_id)
    return set_tags(db_session=db_session, ticket_id=ticket_id, tags=[*current, tag], actor_id=actor_id, now=now)


def remove_tag(
    *, db_session: Session, ticket_id: int, tag: str, actor_id: int | None = None, now: datetime | None = None
) -> list[str]:
    """Remove one tag; return the ticket's tags."""
    current = get_tags(db_session=db_session, ticket_id=ticket_id)
    remaining = [t for t in current if t != normalise_tag(tag)]
    return set_tags(db_session=db_session, ticket_id=ticket_id, tags=remaining, actor_id=actor_id, now=now)


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise TicketError(f"未知的优先级：{priority}（可选：{'、'.join(PRIORITY_LABELS.values())}）")


def set_priority(
    *,
    db_session: Session,
    ticket_id: int,
    priority: str,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Change the priority; the SLA due moments follow the new targets."""
    _check_priority(priority)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.priority != priority:
        before = ticket.priority
        ticket.priority = priority
        refresh_due(ticket)
        _touch(ticket, utc(now))
        record_event(
            db_session=db_session,
            ticket_id=ticket.id,
            actor_id=actor_id,
            action="priority",
            before={"priority": before},
            after={"priority": priority},
            now=now,
        )
        db_session.flush()
    return ticket


def set_category(
    *,
    db_session: Session,
    ticket_id: int,
    category: str,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Change the category (an FAQ category, "invoice", "complaint", "general" …)."""
    category = category.strip()[:64]
    if not category:
        raise TicketError("分类不能为空")
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.category != category:
        before = ticket.category
        ticket.category = category
        _touch(ticket, utc(now))
        record_event(
            db_session=db_session,
            ticket_id=ticket.id,
            actor_id=actor_id,
            action="category",
            before={"category": before},
            after={"category": category},
            now=now,
        )
        db_session.flush()
    return ticket


# --- housekeeping --------------------------------------------------------------------------------------------


def find_idle(*, db_session: Session, now: datetime | None = None, idle_hours: float | None = None) -> list[Ticket]:
    """Tickets whose merchant has been silent for TICKET_IDLE_HOURS while people wait on them: waiting on the merchant
    that long, or assigned with an agent's reply unanswered that long."""
    now = utc(now)
    hours = get_settings().ticket_idle_hours if idle_hours is None else idle_hours
    cutoff = now - timedelta(hours=hours)
    waiting = select(Ticket.id).where(Ticket.state == WAITING, Ticket.waiting_since <= cutoff)
    unanswered = select(Ticket.id).where(
        Ticket.state == ASSIGNED,
        Ticket.last_agent_message_at <= cutoff,
        Ticket.last_agent_message_at > func.coalesce(Ticket.last_merchant_message_at, Ticket.created_at),
    )
    ids = set(db_session.scalars(waiting)) | set(db_session.scalars(unanswered))
    query = select(Ticket).where(Ticket.id.in_(ids)).order_by(Ticket.id)
    tickets = db_session.scalars(query.execution_options(populate_existing=True))
    return [t for t in tickets if utc(t.last_merchant_message_at or t.created_at) <= cutoff]


def return_idle_to_bot(*, db_session: Session, now: datetime | None = None) -> list[Ticket]:
    """Hand every idle ticket back to the bot with a notice to the merchant; return them."""
    now = utc(now)
    returned = []
    for ticket in find_idle(db_session=db_session, now=now):
        try:
            returned.append(hand_back_to_bot(db_session=db_session, ticket_id=ticket.id, reason=IDLE, now=now))
        except InvalidTransition:
            continue  # changed since it was found
    return returned


def close_resolved(*, db_session: Session, now: datetime | None = None) -> int:
    """Close tickets resolved longer than TICKET_REOPEN_DAYS ago; return how many."""
    now = utc(now)
    cutoff = now - timedelta(days=get_settings().ticket_reopen_days)
    query = select(Ticket.id).where(Ticket.state == RESOLVED, Ticket.resolved_at <= cutoff).order_by(Ticket.id)
    closed = 0
    for ticket_id in list(db_session.scalars(query)):
        ticket = lock(db_session=db_session, ticket_id=ticket_id)
        if ticket.state == RESOLVED:
            apply_transition(db_session, ticket, CLOSED, now=now, reason=CLOSED_AFTER_RESOLVE)
            closed += 1
    return closed


def mark_agent_message(ticket: Ticket, now: datetime) -> None:
    """Bookkeeping after an agent's message reached the outbox: first response, last agent message."""
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.last_agent_message_at = now
    refresh_due(ticket)
    _touch(ticket, now)
