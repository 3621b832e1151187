"""Tickets: reading and locking them, their errors, the audit events, and the small helpers every ticket write uses."""

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.orm import Session

from core import events
from core.clock import utc
from core.conversation import service as conversation_service
from core.text import unix_newlines
from ticketing.models import (
    ACTIVE,
    UNCLOSED,
    AssignmentCursor,
    Ticket,
    TicketEvent,
    TicketMessage,
    TicketNote,
    TicketTag,
)

MAX_TEXT_CHARS = 4000
QUEUE_NOTICE_TICKETS = 50  # a queue notice names at most this many changed tickets


class TicketError(Exception):
    """A ticket action that cannot be done; the message (Chinese) is fit for the console."""


class TicketNotFound(TicketError):
    """No ticket with that id or number."""


class InvalidTransition(TicketError):
    """The state machine does not allow the requested change of state."""


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


def lock_identity(*, db_session: Session, channel: str, user_id: str) -> None:
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
        Ticket.channel == channel, Ticket.user_id == conversation_service.storable(user_id), Ticket.state.in_(UNCLOSED)
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
        .where(Ticket.channel == channel, Ticket.user_id == conversation_service.storable(user_id))
        .order_by(Ticket.id.desc())
        .limit(limit)
    )
    return list(db_session.scalars(query))


def get_for_merchant(
    *, db_session: Session, merchant_id: int, identities: Iterable[tuple[str, str]] = (), limit: int = 50
) -> list[Ticket]:
    """A merchant's tickets (and those of its bound identities opened before the binding), newest first."""
    matches = [Ticket.merchant_id == merchant_id]
    matches += [and_(Ticket.channel == channel, Ticket.user_id == user_id) for channel, user_id in identities]
    query = select(Ticket).where(or_(*matches)).order_by(Ticket.id.desc()).limit(limit)
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


# --- events and writing --------------------------------------------------------------------------------------


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
    """Write one audit event (a ticket's, or a staff account's when `ticket_id` is None); a ticket's is announced to
    live pages once the transaction commits."""
    event = TicketEvent(
        ticket_id=ticket_id, actor_id=actor_id, action=action, before=before, after=after, created_at=utc(now)
    )
    db_session.add(event)
    if ticket_id is not None:
        ticket = db_session.get(Ticket, ticket_id)
        known = after or {}
        announce(
            db_session=db_session,
            ticket=ticket,
            ticket_id=ticket_id,
            action=action,
            by=actor_id,
            assignee=known.get("assignee_id", _UNKNOWN),
            state=known.get("state") if isinstance(known.get("state"), str) else None,
        )
    return event


_UNKNOWN: Any = object()


def announce(
    *,
    db_session: Session,
    ticket_id: int,
    action: str,
    ticket: Ticket | None = None,
    by: int | None = None,
    assignee: Any = _UNKNOWN,
    state: str | None = None,
) -> None:
    """Tell live pages, after commit, that the ticket changed (one notice per ticket and transaction, with the
    actions taken, by whom, its state and assignee; never content) and that the queue changed."""
    facts = events.publish_after_commit(db_session, events.TICKET, str(ticket_id))
    actions = facts.setdefault("actions", [])
    if action not in actions:
        actions.append(action)
    facts["action"] = action
    if by is not None:
        facts["by"] = by
    if assignee is not _UNKNOWN:
        facts["assignee_id"] = assignee
    elif ticket is not None and "assignee_id" not in facts:
        facts["assignee_id"] = ticket.assignee_id
    if state is not None:
        facts["state"] = state
    elif ticket is not None:
        facts["state"] = ticket.state
    changed = events.publish_after_commit(db_session, events.QUEUE).setdefault("tickets", [])
    if ticket_id not in changed and len(changed) < QUEUE_NOTICE_TICKETS:
        changed.append(ticket_id)


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Text as stored: NUL replaced, line breaks as LF, trimmed; TicketError when empty or longer than `limit`."""
    cleaned = unix_newlines(conversation_service.storable(text)).strip()
    if not cleaned:
        raise TicketError("内容不能为空")
    if len(cleaned) > limit:
        raise TicketError(f"内容过长（最多 {limit} 字）")
    return cleaned


def add_message(
    db_session: Session,
    ticket: Ticket,
    kind: str,
    text: str,
    now: datetime,
    *,
    author_id: int | None = None,
    source_turn_id: int | None = None,
) -> TicketMessage:
    """Put a line in the ticket's transcript (no flush); live pages hear of it after commit."""
    message = TicketMessage(
        ticket_id=ticket.id,
        author_kind=kind,
        author_id=author_id,
        text=conversation_service.storable(text),
        source_turn_id=source_turn_id,
        created_at=now,
    )
    db_session.add(message)
    announce(db_session=db_session, ticket=ticket, ticket_id=ticket.id, action=f"{kind}_message", by=author_id)
    return message


def touch(ticket: Ticket, now: datetime) -> None:
    """Mark the ticket as changed at `now`."""
    ticket.updated_at = now
