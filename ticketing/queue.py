"""What the console reads: the queue with filters and SLA countdowns, counts for badges, and one ticket in full."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.redact import mask_binding_code
from merchants.models import Merchant
from ticketing import replies, service
from ticketing import search as search_service
from ticketing.assignment import PRIORITY_RANK
from ticketing.calendar import calendar_from_settings
from ticketing.lifecycle import ReplyWindow, reply_window
from ticketing.models import (
    ACTIVE,
    ASSIGNED,
    MERCHANT,
    NEW,
    STATES,
    StaffUser,
    Ticket,
    TicketEvent,
    TicketMessage,
    TicketNote,
    TicketTag,
)
from ticketing.sla import SlaStatus, policy_from_settings, sla_status

ORDERS = ("priority", "due", "oldest", "newest", "updated")


@dataclass(frozen=True)
class QueueItem:
    """One row of the queue: the ticket with its SLA countdown, people's names, tags and reply window."""

    ticket: Ticket
    sla: SlaStatus
    assignee_name: str | None
    merchant_name: str | None
    tags: list[str]
    window: ReplyWindow


def _filtered(
    query: Select,
    *,
    db_session: Session,
    states: Iterable[str] | None,
    assignee_id: int | None,
    unassigned: bool,
    priority: str | None,
    category: str | None,
    channel: str | None,
    tag: str | None,
    merchant_id: int | None,
    search: str | None,
    overdue: bool,
    now: datetime,
) -> Select:
    if states is not None:
        query = query.where(Ticket.state.in_(list(states)))
    if assignee_id is not None:
        query = query.where(Ticket.assignee_id == assignee_id)
    if unassigned:
        query = query.where(Ticket.assignee_id.is_(None))
    if priority is not None:
        query = query.where(Ticket.priority == priority)
    if category is not None:
        query = query.where(Ticket.category == category)
    if channel is not None:
        query = query.where(Ticket.channel == channel)
    if merchant_id is not None:
        query = query.where(Ticket.merchant_id == merchant_id)
    if tag is not None:
        query = query.where(Ticket.id.in_(select(TicketTag.ticket_id).where(TicketTag.tag == tag)))
    if overdue:
        query = query.where(Ticket.state.in_((NEW, ASSIGNED)), Ticket.sla_due_at <= now)
    if search and search.strip():
        needle = search.strip()
        conditions = [
            Ticket.subject.contains(needle, autoescape=True),
            Ticket.user_id.contains(needle, autoescape=True),
            search_service.matches(db_session=db_session, needle=needle),
        ]
        ticket_id = service.parse_number(needle)
        if ticket_id is not None:
            conditions.append(Ticket.id == ticket_id)
        query = query.where(or_(*conditions))
    return query


def _ordered(query: Select, order: str) -> Select:
    if order == "priority":
        return query.order_by(PRIORITY_RANK, Ticket.created_at, Ticket.id)
    if order == "due":
        return query.order_by(Ticket.sla_due_at.asc().nulls_last(), PRIORITY_RANK, Ticket.id)
    if order == "oldest":
        return query.order_by(Ticket.created_at, Ticket.id)
    if order == "newest":
        return query.order_by(Ticket.created_at.desc(), Ticket.id.desc())
    if order == "updated":
        return query.order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    raise ValueError(f"order must be one of {ORDERS}, not {order!r}")


def list_queue(
    *,
    db_session: Session,
    states: Iterable[str] | None = ACTIVE,
    assignee_id: int | None = None,
    unassigned: bool = False,
    priority: str | None = None,
    category: str | None = None,
    channel: str | None = None,
    tag: str | None = None,
    merchant_id: int | None = None,
    search: str | None = None,
    overdue: bool = False,
    order: str = "priority",
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> list[QueueItem]:
    """Tickets matching the filters (active ones by default), in the chosen order, each with its SLA countdown.
    `search` matches the subject, the chat user id, a ticket number, a merchant message, the merchant's name or
    taxpayer id, or an invoice number (ticketing.search); `overdue` keeps tickets past an SLA due."""
    now = utc(now)
    query = _filtered(
        select(Ticket),
        db_session=db_session,
        states=states,
        assignee_id=assignee_id,
        unassigned=unassigned,
        priority=priority,
        category=category,
        channel=channel,
        tag=tag,
        merchant_id=merchant_id,
        search=search,
        overdue=overdue,
        now=now,
    )
    tickets = list(db_session.scalars(_ordered(query, order).limit(limit).offset(offset)))
    return _items(db_session, tickets, now)


def _items(db_session: Session, tickets: list[Ticket], now: datetime) -> list[QueueItem]:
    ids = [ticket.id for ticket in tickets]
    tags: dict[int, list[str]] = {ticket_id: [] for ticket_id in ids}
    for ticket_id, tag in db_session.execute(
        select(TicketTag.ticket_id, TicketTag.tag).where(TicketTag.ticket_id.in_(ids)).order_by(TicketTag.tag)
    ):
        tags[ticket_id].append(tag)
    staff = _names(db_session, StaffUser, StaffUser.display_name, {t.assignee_id for t in tickets})
    merchants = _names(db_session, Merchant, Merchant.name, {t.merchant_id for t in tickets})
    calendar, policy = calendar_from_settings(), policy_from_settings()
    return [
        QueueItem(
            ticket=ticket,
            sla=sla_status(ticket, now, calendar=calendar, policy=policy),
            assignee_name=staff.get(ticket.assignee_id),
            merchant_name=merchants.get(ticket.merchant_id),
            tags=tags[ticket.id],
            window=reply_window(ticket, now),
        )
        for ticket in tickets
    ]


def _names(db_session: Session, model: Any, column: Any, ids: set[int | None]) -> dict[int | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {key: name for key, name in db_session.execute(select(model.id, column).where(model.id.in_(wanted)))}


def queue_counts(*, db_session: Session, agent_id: int | None = None, now: datetime | None = None) -> dict[str, int]:
    """Badge numbers: tickets per state, unassigned, overdue (an SLA due passed, not waiting on the merchant),
    with a breach alert recorded, and — for an agent — the active tickets they hold."""
    now = utc(now)
    counts = dict.fromkeys(STATES, 0)
    by_state = select(Ticket.state, func.count(Ticket.id)).group_by(Ticket.state)
    counts.update({state: n for state, n in db_session.execute(by_state)})
    active = Ticket.state.in_(ACTIVE)

    def count(*conditions: Any) -> int:
        return db_session.scalar(select(func.count(Ticket.id)).where(*conditions)) or 0

    counts["unassigned"] = count(Ticket.state == NEW, Ticket.assignee_id.is_(None))
    counts["overdue"] = count(Ticket.state.in_((NEW, ASSIGNED)), Ticket.sla_due_at <= now)
    counts["breach_alerted"] = count(
        active,
        or_(Ticket.sla_first_response_breached_at.is_not(None), Ticket.sla_resolution_breached_at.is_not(None)),
    )
    if agent_id is not None:
        counts["mine"] = count(active, Ticket.assignee_id == agent_id)
    return counts


@dataclass(frozen=True)
class TranscriptLine:
    """One transcript line as the console shows it, with the delivery state of what went to the merchant."""

    id: int
    author_kind: str
    author_name: str | None
    text: str
    created_at: datetime
    delivery: replies.Delivery | None
    source_turn_id: int | None = None  # set on lines copied from the conversation with the bot


@dataclass(frozen=True)
class NoteLine:
    """One internal note with its author's name."""

    id: int
    author_id: int | None
    author_name: str | None
    text: str
    created_at: datetime


@dataclass(frozen=True)
class TicketDetail:
    """Everything the console shows for one ticket."""

    ticket: Ticket
    sla: SlaStatus
    window: ReplyWindow
    assignee_name: str | None
    merchant_name: str | None
    tags: list[str]
    transcript: list[TranscriptLine]
    notes: list[NoteLine]
    events: list[TicketEvent]
    earlier_tickets: list[Ticket]


def _shown(message: TicketMessage) -> str:
    """A transcript line as staff see it: a merchant's binding code never (it may still be valid)."""
    return mask_binding_code(message.text) if message.author_kind == MERCHANT else message.text


def detail(*, db_session: Session, ticket_id: int, now: datetime | None = None) -> TicketDetail:
    """One ticket in full: transcript with delivery states, notes, tags, SLA, reply window, events and the merchant's
    earlier tickets (TicketNotFound when there is none)."""
    now = utc(now)
    ticket = service.require(db_session=db_session, ticket_id=ticket_id)
    messages = service.get_messages(db_session=db_session, ticket_id=ticket_id)
    notes: list[TicketNote] = service.get_notes(db_session=db_session, ticket_id=ticket_id)
    author_ids = {m.author_id for m in messages} | {n.author_id for n in notes} | {ticket.assignee_id}
    staff = _names(db_session, StaffUser, StaffUser.display_name, author_ids)
    merchants = _names(db_session, Merchant, Merchant.name, {ticket.merchant_id})
    sent = replies.deliveries(db_session=db_session, ticket_id=ticket_id)
    transcript = [
        TranscriptLine(
            m.id, m.author_kind, staff.get(m.author_id), _shown(m), utc(m.created_at), sent.get(m.id), m.source_turn_id
        )
        for m in messages
    ]
    note_lines = [NoteLine(n.id, n.author_id, staff.get(n.author_id), n.text, utc(n.created_at)) for n in notes]
    earlier = [
        t
        for t in service.get_for_identity(db_session=db_session, channel=ticket.channel, user_id=ticket.user_id)
        if t.id != ticket.id
    ]
    return TicketDetail(
        ticket=ticket,
        sla=sla_status(ticket, now),
        window=reply_window(ticket, now),
        assignee_name=staff.get(ticket.assignee_id),
        merchant_name=merchants.get(ticket.merchant_id),
        tags=service.get_tags(db_session=db_session, ticket_id=ticket_id),
        transcript=transcript,
        notes=note_lines,
        events=service.get_events(db_session=db_session, ticket_id=ticket_id),
        earlier_tickets=earlier,
    )
