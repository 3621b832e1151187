"""SLA targets per priority, where a ticket's SLA clocks stand, SLA alerts, and business hours for merchants."""

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from core.outbox import service as outbox_service
from core.settings import get_settings
from ticketing.calendar import BusinessCalendar, calendar_from_settings
from ticketing.models import ASSIGNED, NEW, PRIORITIES, PRIORITY_LABELS, WAITING, Ticket
from ticketing.service import record_event

log = logging.getLogger(__name__)

# Clock states.
OK = "ok"
WARNING = "warning"
BREACHED = "breached"
PAUSED = "paused"
MET = "met"
STOPPED = "stopped"  # the ticket ended without this clock's event (closed unanswered or unresolved)
SEVERITY = {BREACHED: 4, WARNING: 3, OK: 2, PAUSED: 1, MET: 0, STOPPED: 0}

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
CLOCK_LABELS = {FIRST_RESPONSE: "首次响应", RESOLUTION: "解决"}
WEBHOOK_CHANNEL = "webhook"
WEBHOOK_RECIPIENT = "sla-alerts"


@dataclass(frozen=True)
class SlaPolicy:
    """Business-second targets per priority for the first response and for resolution."""

    first_response: Mapping[str, int]
    resolution: Mapping[str, int]
    warning_ratio: float = 0.8

    def targets(self, priority: str) -> tuple[int, int]:
        """(first response, resolution) targets of a priority; unknown priorities get the normal ones."""
        key = priority if priority in self.first_response and priority in self.resolution else "normal"
        return int(self.first_response[key]), int(self.resolution[key])


def policy_from_settings() -> SlaPolicy:
    """The SLA policy configured in settings."""
    settings = get_settings()
    for name in ("ticket_sla_first_response_seconds", "ticket_sla_resolution_seconds"):
        missing = set(PRIORITIES) - set(getattr(settings, name))
        if missing:
            raise ValueError(f"{name.upper()} lacks priorities {sorted(missing)}")
    return SlaPolicy(
        first_response=dict(settings.ticket_sla_first_response_seconds),
        resolution=dict(settings.ticket_sla_resolution_seconds),
        warning_ratio=settings.ticket_sla_warning_ratio,
    )


@dataclass(frozen=True)
class SlaClock:
    """One SLA clock of a ticket: its state, due moment (None when paused or stopped) and business seconds left
    (negative once breached; frozen while paused; None once stopped)."""

    name: str
    target_seconds: int
    state: str
    due_at: datetime | None
    remaining_seconds: float | None


@dataclass(frozen=True)
class SlaStatus:
    """Both clocks of a ticket and the worst state among them (the console's countdown and badge)."""

    state: str
    first_response: SlaClock
    resolution: SlaClock

    @property
    def current(self) -> SlaClock:
        """The clock the console counts down: the running one closest to its due (else the first response)."""
        running = [c for c in (self.first_response, self.resolution) if c.remaining_seconds is not None]
        if not running:
            return self.first_response
        return min(running, key=lambda c: c.remaining_seconds or 0.0)


def _clock_status(
    ticket: Ticket,
    name: str,
    target: int,
    stopped_at: datetime | None,
    stored_due: datetime | None,
    now: datetime,
    calendar: BusinessCalendar,
    policy: SlaPolicy,
) -> SlaClock:
    started = utc(ticket.sla_started_at)
    if stopped_at is not None:
        due = utc(stored_due) if stored_due is not None else calendar.add_business_seconds(started, target)
        state = MET if utc(stopped_at) <= due else BREACHED
        return SlaClock(name, target, state, due, None)
    if ticket.closed_at is not None or ticket.resolved_at is not None:
        return SlaClock(name, target, STOPPED, None, None)
    paused = ticket.paused_seconds or 0
    if ticket.state == WAITING and ticket.waiting_since is not None:
        used = calendar.business_seconds_between(started, utc(ticket.waiting_since)) - paused
        return SlaClock(name, target, PAUSED, None, target - used)
    used = calendar.business_seconds_between(started, now) - paused
    remaining = target - used
    if remaining <= 0:
        state = BREACHED
    elif used >= policy.warning_ratio * target:
        state = WARNING
    else:
        state = OK
    return SlaClock(name, target, state, calendar.add_business_seconds(started, target + paused), remaining)


def sla_status(
    ticket: Ticket,
    now: datetime | None = None,
    *,
    calendar: BusinessCalendar | None = None,
    policy: SlaPolicy | None = None,
) -> SlaStatus:
    """Where the ticket's first-response and resolution clocks stand at `now`."""
    now = utc(now)
    calendar = calendar or calendar_from_settings()
    policy = policy or policy_from_settings()
    first_target, resolution_target = policy.targets(ticket.priority)
    first = _clock_status(
        ticket,
        FIRST_RESPONSE,
        first_target,
        ticket.first_response_at,
        ticket.sla_first_response_due_at,
        now,
        calendar,
        policy,
    )
    resolution = _clock_status(
        ticket, RESOLUTION, resolution_target, ticket.resolved_at, ticket.sla_resolution_due_at, now, calendar, policy
    )
    state = max((first.state, resolution.state), key=SEVERITY.__getitem__)
    return SlaStatus(state, first, resolution)


def refresh_due(ticket: Ticket, *, calendar: BusinessCalendar | None = None, policy: SlaPolicy | None = None) -> None:
    """Recompute the stored due moments of the running clocks (after creation, reopen, resume or a priority change);
    while waiting on the merchant the clocks stand still and `sla_due_at` is cleared."""
    calendar = calendar or calendar_from_settings()
    policy = policy or policy_from_settings()
    first_target, resolution_target = policy.targets(ticket.priority)
    started, paused = utc(ticket.sla_started_at), ticket.paused_seconds or 0
    if ticket.first_response_at is None:
        ticket.sla_first_response_due_at = calendar.add_business_seconds(started, first_target + paused)
    if ticket.resolved_at is None:
        ticket.sla_resolution_due_at = calendar.add_business_seconds(started, resolution_target + paused)
    running = []
    if ticket.first_response_at is None:
        running.append(ticket.sla_first_response_due_at)
    if ticket.resolved_at is None:
        running.append(ticket.sla_resolution_due_at)
    paused_now = ticket.state == WAITING or ticket.closed_at is not None
    ticket.sla_due_at = None if paused_now or not running else min(utc(d) for d in running if d is not None)


# --- alerts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlaAlert:
    """A warning before, or a breach of, one SLA clock of one ticket; each fires once."""

    kind: str  # "warning" or "breach"
    ticket_id: int
    number: str
    clock: str
    priority: str
    assignee_id: int | None
    due_at: datetime | None
    remaining_seconds: float

    def text(self) -> str:
        """A one-line summary for staff."""
        label = f"工单 {self.number}（{PRIORITY_LABELS.get(self.priority, self.priority)}）{CLOCK_LABELS[self.clock]}"
        minutes = abs(round(self.remaining_seconds / 60))
        if self.kind == "breach":
            return f"{label}已超时 {minutes} 分钟"
        return f"{label}即将超时，剩余 {minutes} 分钟"

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the log event and the webhook."""
        return {
            "event": f"sla_{self.kind}",
            "ticket_id": self.ticket_id,
            "ticket": self.number,
            "clock": self.clock,
            "priority": self.priority,
            "assignee_id": self.assignee_id,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "remaining_seconds": round(self.remaining_seconds),
            "text": self.text(),
        }


_FLAGS = {
    FIRST_RESPONSE: ("sla_first_response_warned_at", "sla_first_response_breached_at"),
    RESOLUTION: ("sla_resolution_warned_at", "sla_resolution_breached_at"),
}


def _candidates(db_session: Session) -> Iterable[Ticket]:
    """Tickets whose clocks run (not waiting on the merchant) and may still owe an alert."""
    query = (
        select(Ticket)
        .where(Ticket.state.in_((NEW, ASSIGNED)))
        .where(
            or_(
                and_(Ticket.first_response_at.is_(None), Ticket.sla_first_response_breached_at.is_(None)),
                and_(Ticket.resolved_at.is_(None), Ticket.sla_resolution_breached_at.is_(None)),
            )
        )
        .order_by(Ticket.id)
    )
    return db_session.scalars(query.execution_options(populate_existing=True)).all()


def _mark_once(db_session: Session, ticket: Ticket, column: str, now: datetime) -> bool:
    """Set a flag column only when still unset; True when this call set it (so the alert fires once)."""
    attribute = getattr(Ticket, column)
    statement = (
        update(Ticket)
        .where(Ticket.id == ticket.id, attribute.is_(None))
        .values({column: now})
        .execution_options(synchronize_session=False)
    )
    changed = db_session.execute(statement).rowcount == 1
    db_session.expire(ticket, [column])
    return changed


def check_sla(*, db_session: Session, now: datetime | None = None) -> list[SlaAlert]:
    """Record each warning (≥ the warning ratio of a target used) and each breach once, and return the new alerts;
    every alert is logged, written to the ticket's events and, with SLA_ALERT_WEBHOOK_URL set, queued for the
    webhook (outbox channel "webhook")."""
    now = utc(now)
    calendar, policy = calendar_from_settings(), policy_from_settings()
    alerts = []
    for ticket in _candidates(db_session):
        status = sla_status(ticket, now, calendar=calendar, policy=policy)
        for clock in (status.first_response, status.resolution):
            if clock.state not in (WARNING, BREACHED) or clock.remaining_seconds is None:
                continue
            warned, breached = _FLAGS[clock.name]
            if clock.state == BREACHED:
                _mark_once(db_session, ticket, warned, now)  # a breach found first silences its warning
                kind = "breach" if _mark_once(db_session, ticket, breached, now) else None
            else:
                kind = "warning" if _mark_once(db_session, ticket, warned, now) else None
            if kind is not None:
                alert = SlaAlert(
                    kind,
                    ticket.id,
                    ticket.number,
                    clock.name,
                    ticket.priority,
                    ticket.assignee_id,
                    clock.due_at,
                    clock.remaining_seconds,
                )
                _publish(db_session, ticket, alert, now)
                alerts.append(alert)
    return alerts


def _publish(db_session: Session, ticket: Ticket, alert: SlaAlert, now: datetime) -> None:
    data = alert.as_dict()
    log.warning("sla_alert %s", json.dumps(data, ensure_ascii=False), extra={"sla_alert": data})
    record_event(db_session=db_session, ticket_id=ticket.id, action=data["event"], after=data, now=now)
    if get_settings().sla_alert_webhook_url:
        outbox_service.enqueue(
            db_session=db_session,
            channel=WEBHOOK_CHANNEL,
            recipient=WEBHOOK_RECIPIENT,
            text=json.dumps(data, ensure_ascii=False),
            dedupe_key=f"sla:{ticket.id}:{ticket.reopened_count}:{alert.clock}:{alert.kind}",
            now=now,
        )
    db_session.flush()


# --- business hours for merchants -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessStatus:
    """Whether staff are working now, when they next are, when to expect a first response, and that in Chinese."""

    open: bool
    next_opening: datetime
    expected_by: datetime
    text: str


def business_status(
    now: datetime | None = None,
    *,
    priority: str = "normal",
    calendar: BusinessCalendar | None = None,
    policy: SlaPolicy | None = None,
) -> BusinessStatus:
    """What to tell a merchant at handoff about opening hours and the expected first response."""
    now = utc(now)
    calendar = calendar or calendar_from_settings()
    policy = policy or policy_from_settings()
    target, _ = policy.targets(priority)
    opening = calendar.next_opening(now)
    expected = calendar.add_business_seconds(now, target)
    hours = calendar.describe_hours()
    if not calendar.is_open(now):
        text = f"现在是非工作时间（客服工作时间为{hours}），客服将于 {calendar.day_label(now, opening)} 后尽快回复。"
        return BusinessStatus(False, opening, expected, text)
    if calendar.local_date(expected) == calendar.local_date(now):
        promise = f"预计 {_duration(target)}内回复"
    else:
        promise = f"预计 {calendar.day_label(now, expected)} 前回复"
    return BusinessStatus(True, opening, expected, f"客服工作时间为{hours}，{promise}。")


def _duration(seconds: int) -> str:
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} 分钟"
    hours, rest = divmod(minutes, 60)
    return f"{hours} 小时" if rest == 0 else f"{hours} 小时 {rest} 分钟"
