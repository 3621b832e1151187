"""Multi-step ticketing: routing a merchant's message while a ticket is open, periodic housekeeping, disabling staff."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core import metrics
from core.background import BatchWorker
from core.clock import utc
from core.database import session_scope
from core.settings import get_settings
from knowledge import wording
from ticketing import assignment, handoff, lifecycle, replies, service, sla, staff
from ticketing.models import ACTIVE, RESOLVED, StaffUser, Ticket

log = logging.getLogger(__name__)

COURTESY_REPLY = "不客气，祝您工作顺利！如还有问题，随时留言。"


@dataclass(frozen=True)
class InboundOutcome:
    """What ticketing did with a merchant's message: "appended" (an agent has the conversation), "reopened",
    "csat" (a rating), "acknowledged" (thanks after resolve) or "none" (the bot answers as usual). `reply` is what
    to answer at once (None: stay silent, the agent answers)."""

    action: str
    ticket: Ticket | None = None
    reply: str | None = None

    @property
    def handled(self) -> bool:
        """Whether the bot should leave this message alone."""
        return self.action != "none"


def route_merchant_message(
    *,
    db_session: Session,
    channel: str,
    user_id: str,
    text: str,
    now: datetime | None = None,
) -> InboundOutcome:
    """Call before the bot routes a message: an active ticket takes the message; a resolved one takes a rating or a
    thank-you or "ok" (logged, no reopen), and any other message within TICKET_REOPEN_DAYS
    reopens it; otherwise the bot carries on."""
    now = utc(now)
    ticket = service.get_unclosed_for(db_session=db_session, channel=channel, user_id=user_id)
    if ticket is None or not text.strip():
        return InboundOutcome("none")
    if ticket.state in ACTIVE:
        handoff.append_merchant_message(db_session=db_session, ticket_id=ticket.id, text=text, now=now)
        return InboundOutcome("appended", ticket)
    if ticket.state != RESOLVED:
        return InboundOutcome("none")
    rating = replies.parse_csat(text)
    if rating is not None and ticket.csat_requested_at is not None and ticket.csat_score is None:
        handoff.log_merchant_message(db_session=db_session, ticket_id=ticket.id, text=text, now=now)
        replies.record_csat(db_session=db_session, ticket_id=ticket.id, score=rating[0], comment=rating[1], now=now)
        return InboundOutcome("csat", ticket, replies.CSAT_THANKS)
    if wording.is_courtesy(text):
        handoff.log_merchant_message(db_session=db_session, ticket_id=ticket.id, text=text, now=now)
        return InboundOutcome("acknowledged", ticket, COURTESY_REPLY)
    if utc(ticket.resolved_at or now) < now - timedelta(days=get_settings().ticket_reopen_days):
        return InboundOutcome("none")
    lifecycle.reopen(db_session=db_session, ticket_id=ticket.id, reason="merchant_message", now=now)
    handoff.append_merchant_message(db_session=db_session, ticket_id=ticket.id, text=text, now=now)
    business = sla.business_status(now, priority=ticket.priority)
    return InboundOutcome("reopened", ticket, f"已为您重新打开工单 {ticket.number}，客服会尽快回复。{business.text}")


def disable_staff(
    *, db_session: Session, staff_id: int, actor_id: int | None = None, now: datetime | None = None
) -> tuple[StaffUser, list[Ticket]]:
    """Disable an account and put the tickets it held back in the queue."""
    user = staff.disable(db_session=db_session, staff_id=staff_id, actor_id=actor_id, now=now)
    return user, assignment.release_all(db_session=db_session, agent_id=staff_id, now=now)


@dataclass(frozen=True)
class Housekeeping:
    """What one housekeeping round did."""

    closed: int
    returned_to_bot: int
    assigned: int
    alerts: list[sla.SlaAlert]


def housekeeping(*, now: datetime | None = None) -> Housekeeping:
    """One round of periodic work, each step in its own transaction: close tickets resolved long ago, hand idle ones
    back to the bot, auto-assign the queue to online agents, and raise SLA warnings and breaches."""
    with session_scope() as db_session:
        closed = lifecycle.close_resolved(db_session=db_session, now=now)
    with session_scope() as db_session:
        returned = len(lifecycle.return_idle_to_bot(db_session=db_session, now=now))
    with session_scope() as db_session:
        assigned = len(assignment.auto_assign(db_session=db_session, now=now))
    with session_scope() as db_session:
        alerts = sla.check_sla(db_session=db_session, now=now)
    return Housekeeping(closed, returned, assigned, alerts)


class TicketingWorker(BatchWorker):
    """Runs ticketing housekeeping on a daemon thread every `poll_seconds`."""

    name = "ticketing-worker"

    def __init__(self, *, poll_seconds: float = 30.0) -> None:
        super().__init__(limit=1_000_000, poll_seconds=poll_seconds)

    def run_once(self) -> int:
        """One housekeeping round; return how many tickets were auto-assigned."""
        done = housekeeping()
        for alert in done.alerts:
            metrics.SLA_ALERTS.labels(alert.kind).inc()
        if done.closed or done.returned_to_bot or done.assigned or done.alerts:
            log.info(
                "ticketing: %d closed, %d returned to the bot, %d assigned, %d SLA alerts",
                done.closed,
                done.returned_to_bot,
                done.assigned,
                len(done.alerts),
            )
        return done.assigned
