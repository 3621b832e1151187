"""Handoff intake: opening, reopening or appending to a ticket when the bot hands a merchant to people, and the
merchant's and the bot's lines in its transcript."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation import service as conversation_service
from core.redact import mask_private
from core.settings import get_settings
from merchants import service as merchant_service
from ticketing import rules, subjects
from ticketing.labels import check_priority
from ticketing.lifecycle import apply_reopen, apply_transition
from ticketing.models import (
    ACTIVE,
    ASSIGNED,
    BOT,
    CLOSED,
    CLOSED_AFTER_RESOLVE,
    GENERAL,
    MERCHANT,
    NEW,
    NORMAL,
    RESOLVED,
    STATE_LABELS,
    WAITING,
    Ticket,
    TicketMessage,
)
from ticketing.service import (
    TicketError,
    add_message,
    clean_text,
    get_unclosed_for,
    lock,
    lock_identity,
    record_event,
    require,
    touch,
)
from ticketing.sla import BusinessStatus, business_status, refresh_due
from ticketing.subjects import MAX_SUBJECT_CHARS

DEDUPE_SECONDS = 300  # a recorded turn this close to an identical merchant line is the same message


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
    check_priority(priority)
    existing = get_unclosed_for(db_session=db_session, channel=channel, user_id=user_id)
    if existing is not None:
        raise TicketError(f"该会话已有未关闭的工单 {existing.number}")
    ticket = Ticket(
        channel=channel,
        user_id=conversation_service.storable(user_id),
        merchant_id=merchant_id,
        state=NEW,
        priority=priority,
        category=category or GENERAL,
        subject=mask_private(conversation_service.storable(subject).strip())[:MAX_SUBJECT_CHARS],
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
    user_id = conversation_service.storable(user_id)
    lock_identity(db_session=db_session, channel=channel, user_id=user_id)
    ticket, outcome = _ticket_for_handoff(db_session, channel, user_id, now)
    lines = _copy_turns(db_session, ticket, now)
    said = conversation_service.storable(text).strip() if text else ""
    if said and (not lines or lines[-1][0] != said):
        add_message(db_session, ticket, MERCHANT, said, now)
        lines.append((said, None))
    merchant_texts = [line for line, _ in lines]
    ticket.context = _merged_context(ticket.context, topic, learned, guide, invoice, now)
    category = rules.category_for_topic(db_session=db_session, topic=topic)
    invoice_status = str(invoice.get("status")) if invoice and invoice.get("status") else None
    found = rules.classify(texts=merchant_texts, category=category, invoice_status=invoice_status, now=now)
    if outcome == "created":
        ticket.priority, ticket.category = found.priority, found.category
        ticket.subject = subjects.pick(lines, learned)
    else:
        _escalate(db_session, ticket, found, now)
    if ticket.merchant_id is None:
        ticket.merchant_id = merchant_id or _bound_merchant(db_session, channel, user_id)
    ticket.last_merchant_message_at = now
    if ticket.state == WAITING:
        apply_transition(db_session, ticket, ASSIGNED if ticket.assignee_id else NEW, now=now, reason="merchant_reply")
    refresh_due(ticket)
    touch(ticket, now)
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
        apply_reopen(db_session, ticket, now, actor_id=None, reason="handoff")
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
        apply_reopen(db_session, last, now, actor_id=None, reason="handoff")
        return last, "reopened"
    return create(db_session=db_session, channel=channel, user_id=user_id, now=now), "created"


def _copy_turns(db_session: Session, ticket: Ticket, now: datetime) -> list[tuple[str, str | None]]:
    """Copy the identity's recent conversation turns no ticket has seen (merchant text and bot reply); return the
    merchant texts with the intent the bot gave each.
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
            add_message(db_session, ticket, MERCHANT, turn.text, at, source_turn_id=turn.id)
            texts.append((turn.text.strip(), turn.intent))
        if turn.reply:
            add_message(db_session, ticket, BOT, turn.reply, at, source_turn_id=turn.id)
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


# --- the transcript ------------------------------------------------------------------------------------------


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
    touch(ticket, now)
    db_session.flush()
    return message


def _log_merchant_message(db_session: Session, ticket: Ticket, text: str, now: datetime) -> TicketMessage:
    message = add_message(db_session, ticket, MERCHANT, clean_text(text), now)
    ticket.last_merchant_message_at = now
    touch(ticket, now)
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
    message = add_message(db_session, require(db_session=db_session, ticket_id=ticket_id), BOT, clean_text(text), now)
    db_session.flush()
    return message
