"""What staff attach to a ticket: internal notes, tags, priority and category, each change recorded as an event."""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation import service as conversation_service
from ticketing.models import PRIORITIES, PRIORITY_LABELS, Ticket, TicketNote, TicketTag
from ticketing.service import TicketError, clean_text, get_tags, lock, record_event, require, touch
from ticketing.sla import refresh_due

MAX_TAG_CHARS = 32

T = TypeVar("T")


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
    cleaned = " ".join(conversation_service.storable(tag).split())[:MAX_TAG_CHARS]
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
    wanted = sorted({normalise_tag(tag) for tag in tags})
    _change(
        db_session,
        ticket_id,
        "tags",
        wanted,
        actor_id=actor_id,
        now=now,
        read=lambda ticket: get_tags(db_session=db_session, ticket_id=ticket.id),
        write=lambda ticket, before, after: _replace_tags(db_session, ticket, before, after),
    )
    return wanted


def _replace_tags(db_session: Session, ticket: Ticket, current: list[str], wanted: list[str]) -> None:
    for tag in set(current) - set(wanted):
        db_session.delete(db_session.get(TicketTag, (ticket.id, tag)))
    db_session.add_all(TicketTag(ticket_id=ticket.id, tag=tag) for tag in set(wanted) - set(current))


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


def check_priority(priority: str) -> None:
    """TicketError unless `priority` is one of PRIORITIES."""
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
    check_priority(priority)
    return _change(db_session, ticket_id, "priority", priority, actor_id=actor_id, now=now, refresh_sla=True)


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
    return _change(db_session, ticket_id, "category", category, actor_id=actor_id, now=now)


def _change(
    db_session: Session,
    ticket_id: int,
    field: str,
    value: T,
    *,
    actor_id: int | None,
    now: datetime | None,
    read: Callable[[Ticket], T] | None = None,
    write: Callable[[Ticket, T, T], None] | None = None,
    refresh_sla: bool = False,
) -> Ticket:
    """Lock the ticket and, when its `field` differs from `value`, set it, touch the ticket, record a `field` event
    with before and after, and flush. `read` and `write` (ticket, before, after) default to the ticket attribute of
    that name; `refresh_sla` recomputes the SLA due moments after the change."""
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    before = read(ticket) if read is not None else getattr(ticket, field)
    if before == value:
        return ticket
    if write is not None:
        write(ticket, before, value)
    else:
        setattr(ticket, field, value)
    if refresh_sla:
        refresh_due(ticket)
    touch(ticket, utc(now))
    record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=actor_id,
        action=field,
        before={field: before},
        after={field: value},
        now=now,
    )
    db_session.flush()
    return ticket
