"""The ticket state machine: transitions and their bookkeeping, resolve, close, reopen, the hand-back to the bot,
notices to the merchant and the WeChat reply window, and the idle and resolved housekeeping."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.outbox import service as outbox_service
from core.settings import get_settings
from ticketing.calendar import calendar_from_settings
from ticketing.models import (
    ASSIGNED,
    CLOSED,
    CLOSED_AFTER_RESOLVE,
    CLOSED_BY_AGENT,
    HANDED_BACK,
    IDLE,
    NEW,
    RESOLVED,
    STATE_LABELS,
    SYSTEM,
    WAITING,
    StaffUser,
    Ticket,
    TicketMessage,
)
from ticketing.service import (
    InvalidTransition,
    TicketError,
    add_message,
    get_unclosed_for,
    lock,
    lock_identity,
    record_event,
    require,
    touch,
)
from ticketing.sla import refresh_due

WINDOW_CLOSED_NOTICE = "微信客服消息窗口已关闭（48小时）"
CSAT_QUESTION = "您的问题已处理完毕。请为本次服务打分：回复 1-5（5 分为非常满意）。"
HANDED_BACK_NOTICE = "本次人工服务已结束，已为您转回智能助手。如仍需人工帮助，请随时回复“人工”。"
IDLE_NOTICE = "由于较长时间未收到您的回复，本次人工服务已结束，已为您转回智能助手。如仍需帮助，请随时回复“人工”。"

# --- the state machine ---------------------------------------------------------------------------------------

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({ASSIGNED, CLOSED}),
    ASSIGNED: frozenset({NEW, WAITING, RESOLVED, CLOSED}),
    WAITING: frozenset({NEW, ASSIGNED, RESOLVED, CLOSED}),
    RESOLVED: frozenset({NEW, ASSIGNED, CLOSED}),
    CLOSED: frozenset({NEW, ASSIGNED}),
}


def can_transition(from_state: str, to_state: str) -> bool:
    """Whether the state machine allows going from one state to another."""
    return to_state in ALLOWED_TRANSITIONS.get(from_state, frozenset())


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
        apply_reopen(db_session, ticket, now, actor_id=actor_id, reason=reason or "manual", to_state=to_state)
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
    touch(ticket, now)
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


def apply_reopen(
    db_session: Session,
    ticket: Ticket,
    now: datetime,
    *,
    actor_id: int | None,
    reason: str,
    to_state: str | None = None,
) -> None:
    """Bring a resolved or closed ticket the caller holds locked back: to its agent when that account is still active,
    else to the queue; the SLA clocks start again."""
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
    touch(ticket, now)
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
    # the identity before the row, as handoffs take them
    lock_identity(db_session=db_session, channel=found.channel, user_id=found.user_id)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in (RESOLVED, CLOSED):
        raise InvalidTransition(f"工单 {ticket.number} {STATE_LABELS[ticket.state]}，无需重新打开")
    if ticket.state == CLOSED and get_unclosed_for(
        db_session=db_session, channel=ticket.channel, user_id=ticket.user_id
    ):
        raise TicketError("该会话已有未关闭的工单，不能重新打开这张")
    apply_reopen(db_session, ticket, now, actor_id=actor_id, reason=reason)
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
    """Close the ticket and let the bot answer the merchant again, telling the merchant so. Staff may hand back only
    a ticket a person has answered (an agent reply, or resolved): TicketError otherwise."""
    now = utc(now)
    ticket = lock(db_session=db_session, ticket_id=ticket_id)
    if reason == HANDED_BACK and ticket.last_agent_message_at is None and ticket.state != RESOLVED:
        raise TicketError(
            f"工单 {ticket.number} 还没有客服回复过商户，不能转回智能助手：请先回复商户，或将工单标记为已解决"
        )
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
    message = add_message(db_session, ticket, kind, text, now, author_id=author_id)
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


def mark_agent_message(ticket: Ticket, now: datetime) -> None:
    """Bookkeeping after an agent's message reached the outbox: first response, last agent message."""
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.last_agent_message_at = now
    refresh_due(ticket)
    touch(ticket, now)


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
