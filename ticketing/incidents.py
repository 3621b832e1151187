"""Incident detection: when many merchants hit the same watched error topic within minutes, open an incident, alert
staff, link the related tickets, and let an admin publish a notice the bot gives those merchants until it closes.

- `detect` (run by IncidentWorker every INCIDENT_POLL_SECONDS) counts the distinct chat identities whose recorded
  turns carry a watched topic (INCIDENT_TOPICS) in the last INCIDENT_WINDOW_MINUTES; at INCIDENT_THRESHOLD or more
  it opens an incident for that topic (never a second one while one is open). Every round it also adds the
  identities that hit the topic since, and links tickets: those created or written to since the first hit whose
  bot context names the topic, or whose identity is affected.
- The alert: a warning log line, an audit event ("incident_opened"), the console banner (`open_incidents`), and with
  SLA_ALERT_WEBHOOK_URL set a JSON message on the outbox channel "webhook".
- `notice_for(topic)` is the published notice while the topic's incident is open (the router prepends it to answers);
  `push_notice` sends it once, through the outbox, to each identity that hit the topic before it was published.
"""

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.background import BatchWorker
from core.clock import utc
from core.conversation.models import ConversationTurn
from core.database import session_scope
from core.outbox import service as outbox_service
from core.settings import get_settings
from core.text import unix_newlines
from ticketing import service as ticket_service
from ticketing.incident_models import CLOSED, OPEN, Incident, IncidentIdentity, IncidentTicket
from ticketing.models import Ticket
from ticketing.sla import WEBHOOK_CHANNEL

log = logging.getLogger(__name__)

ALERT_RECIPIENT = "incident-alerts"
MAX_NOTICE_CHARS = 1000
Identity = tuple[str, str]


class IncidentError(Exception):
    """An incident action that cannot be done; the message (Chinese) is fit for the console."""


# --- reading -------------------------------------------------------------------------------------------------


def get(*, db_session: Session, incident_id: int) -> Incident | None:
    """One incident by id."""
    return db_session.get(Incident, incident_id, populate_existing=True)


def get_all(*, db_session: Session, limit: int = 100) -> list[Incident]:
    """Incidents, open ones first, newest first."""
    query = select(Incident).order_by((Incident.status == OPEN).desc(), Incident.opened_at.desc()).limit(limit)
    return list(db_session.scalars(query))


def open_incidents(*, db_session: Session) -> list[Incident]:
    """The open incidents, oldest first (the console banner)."""
    query = select(Incident).where(Incident.status == OPEN).order_by(Incident.opened_at)
    return list(db_session.scalars(query))


def open_for_topic(*, db_session: Session, topic: str) -> Incident | None:
    """The topic's open incident, if any."""
    query = select(Incident).where(Incident.topic == topic, Incident.status == OPEN)
    return db_session.scalar(query.execution_options(populate_existing=True))


def notice_for(*, db_session: Session, topic: str | None) -> str | None:
    """The notice to give a merchant whose message is about `topic`: published and its incident still open."""
    if not topic:
        return None
    query = select(Incident.notice).where(
        Incident.topic == topic, Incident.status == OPEN, Incident.notice_published_at.is_not(None)
    )
    return db_session.scalar(query) or None


def linked_tickets(*, db_session: Session, incident_id: int) -> list[Ticket]:
    """The tickets linked to an incident, newest first."""
    query = (
        select(Ticket)
        .join(IncidentTicket, IncidentTicket.ticket_id == Ticket.id)
        .where(IncidentTicket.incident_id == incident_id)
        .order_by(Ticket.id.desc())
    )
    return list(db_session.scalars(query))


def affected(*, db_session: Session, incident_id: int) -> list[IncidentIdentity]:
    """The chat identities that hit the incident's topic, in the order they did."""
    query = (
        select(IncidentIdentity)
        .where(IncidentIdentity.incident_id == incident_id)
        .order_by(IncidentIdentity.first_seen_at, IncidentIdentity.channel, IncidentIdentity.user_id)
    )
    return list(db_session.scalars(query))


# --- detection -----------------------------------------------------------------------------------------------


def hits(
    *, db_session: Session, topics: Iterable[str], since: datetime, until: datetime
) -> dict[str, dict[Identity, datetime]]:
    """For each topic, the identities whose turns carried it in [since, until] and when each did first."""
    t = ConversationTurn
    topics = list(topics)
    if not topics:
        return {}
    query = (
        select(t.topic, t.channel, t.user_id, func.min(t.created_at))
        .where(t.topic.in_(topics), t.created_at >= since, t.created_at <= until)
        .group_by(t.topic, t.channel, t.user_id)
    )
    found: dict[str, dict[Identity, datetime]] = {}
    for topic, channel, user_id, first in db_session.execute(query):
        found.setdefault(topic, {})[(channel, user_id)] = utc(first)
    return found


def detect(*, db_session: Session, now: datetime | None = None) -> list[Incident]:
    """Open an incident for each watched topic that reached the threshold within the window (counting only hits
    after the topic's last incident closed); keep open incidents' identities and tickets up to date. Return the
    incidents opened now."""
    settings = get_settings()
    now = utc(now)
    window_start = now - timedelta(minutes=settings.incident_window_minutes)
    closed = _last_closed(db_session, settings.incident_topics)
    opened = []
    for topic in sorted(set(settings.incident_topics)):
        if open_for_topic(db_session=db_session, topic=topic) is not None:
            continue
        since = max(window_start, closed.get(topic, window_start))
        seen = hits(db_session=db_session, topics=[topic], since=since, until=now).get(topic, {})
        if len(seen) >= settings.incident_threshold:
            incident = _open(db_session, topic, seen, now)
            if incident is not None:
                opened.append(incident)
    for incident in open_incidents(db_session=db_session):
        _lock_topic(db_session, incident.topic)  # one worker at a time adds identities and links tickets
        since = utc(incident.window_started_at)
        seen = hits(db_session=db_session, topics=[incident.topic], since=since, until=now).get(incident.topic, {})
        _track(db_session, incident, seen)
        _link_tickets(db_session, incident, now)
    return opened


def _last_closed(db_session: Session, topics: Iterable[str]) -> dict[str, datetime]:
    """When each topic's last incident closed."""
    query = (
        select(Incident.topic, func.max(Incident.closed_at))
        .where(Incident.topic.in_(list(topics)), Incident.status == CLOSED)
        .group_by(Incident.topic)
    )
    return {topic: utc(at) for topic, at in db_session.execute(query) if at is not None}


def _lock_topic(db_session: Session, topic: str) -> None:
    """Serialise opening an incident for one topic across workers."""
    if db_session.get_bind().dialect.name == "postgresql":
        digest = hashlib.blake2b(f"incident\x00{topic}".encode(), digest_size=8).digest()
        db_session.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))
    else:
        ticket_service.write_lock(db_session=db_session)


def _open(db_session: Session, topic: str, seen: dict[Identity, datetime], now: datetime) -> Incident | None:
    _lock_topic(db_session, topic)
    if open_for_topic(db_session=db_session, topic=topic) is not None:
        return None  # another worker just opened it
    incident = Incident(
        topic=topic,
        status=OPEN,
        window_started_at=min(seen.values()),
        opened_at=now,
        affected_count=0,
        created_at=now,
    )
    db_session.add(incident)
    db_session.flush()
    _track(db_session, incident, seen)
    _alert(db_session, incident, now)
    return incident


def _identities(db_session: Session, incident_id: int) -> set[Identity]:
    i = IncidentIdentity
    return {
        (channel, user_id)
        for channel, user_id in db_session.execute(select(i.channel, i.user_id).where(i.incident_id == incident_id))
    }


def _track(db_session: Session, incident: Incident, seen: dict[Identity, datetime]) -> None:
    """Add the identities not yet on the incident and update its count."""
    known = _identities(db_session, incident.id)
    for (channel, user_id), first in sorted(seen.items(), key=lambda item: item[1]):
        if (channel, user_id) not in known:
            db_session.add(
                IncidentIdentity(incident_id=incident.id, channel=channel, user_id=user_id, first_seen_at=first)
            )
            known.add((channel, user_id))
    incident.affected_count = len(known)
    db_session.flush()


def _link_tickets(db_session: Session, incident: Incident, now: datetime) -> list[int]:
    """Link the tickets created or written to since the first hit that are about the topic or its identities."""
    since = utc(incident.window_started_at)
    identities = _identities(db_session, incident.id)
    linked = set(db_session.scalars(select(IncidentTicket.ticket_id).where(IncidentTicket.incident_id == incident.id)))
    query = select(Ticket).where(or_(Ticket.created_at >= since, Ticket.last_merchant_message_at >= since))
    added = []
    for ticket in db_session.scalars(query.order_by(Ticket.id)):
        if ticket.id in linked:
            continue
        about_topic = (ticket.context or {}).get("topic") == incident.topic or ticket.category == incident.topic
        if about_topic or (ticket.channel, ticket.user_id) in identities:
            db_session.add(IncidentTicket(incident_id=incident.id, ticket_id=ticket.id, linked_at=now))
            ticket_service.record_event(
                db_session=db_session,
                ticket_id=ticket.id,
                action="incident_linked",
                after={"incident_id": incident.id, "topic": incident.topic},
                now=now,
            )
            added.append(ticket.id)
    db_session.flush()
    return added


def describe(incident: Incident) -> dict:
    """JSON form for the log, the audit event and the webhook."""
    return {
        "event": "incident_opened",
        "incident_id": incident.id,
        "topic": incident.topic,
        "affected": incident.affected_count,
        "window_started_at": utc(incident.window_started_at).isoformat(),
        "opened_at": utc(incident.opened_at).isoformat(),
        "text": f"疑似故障：{incident.affected_count} 位商户在短时间内遇到「{incident.topic}」问题，已自动创建事件。",
    }


def _alert(db_session: Session, incident: Incident, now: datetime) -> None:
    data = describe(incident)
    log.warning("incident_opened %s", json.dumps(data, ensure_ascii=False), extra={"incident": data})
    ticket_service.record_event(db_session=db_session, action="incident_opened", after=data, now=now)
    if get_settings().sla_alert_webhook_url:
        outbox_service.enqueue(
            db_session=db_session,
            channel=WEBHOOK_CHANNEL,
            recipient=ALERT_RECIPIENT,
            text=json.dumps(data, ensure_ascii=False),
            dedupe_key=f"incident:{incident.id}:opened",
            now=now,
        )


# --- admin actions -------------------------------------------------------------------------------------------


def _require_open(db_session: Session, incident_id: int) -> Incident:
    incident = get(db_session=db_session, incident_id=incident_id)
    if incident is None:
        raise IncidentError(f"事件 {incident_id} 不存在")
    if incident.status != OPEN:
        raise IncidentError("事件已关闭")
    return incident


def publish_notice(
    *, db_session: Session, incident_id: int, text: str, actor_id: int | None = None, now: datetime | None = None
) -> Incident:
    """Publish (or reword) the notice merchants on this topic get while the incident is open."""
    now = utc(now)
    cleaned = unix_newlines(text.replace("\x00", "")).strip()
    if not cleaned:
        raise IncidentError("公告内容不能为空")
    if len(cleaned) > MAX_NOTICE_CHARS:
        raise IncidentError(f"公告内容不能超过 {MAX_NOTICE_CHARS} 字")
    incident = _require_open(db_session, incident_id)
    before = {"notice": incident.notice}
    incident.notice = cleaned
    incident.notice_author_id = actor_id
    if incident.notice_published_at is None:
        incident.notice_published_at = now
    ticket_service.record_event(
        db_session=db_session,
        actor_id=actor_id,
        action="incident_notice",
        before=before,
        after={"incident_id": incident.id, "topic": incident.topic, "notice": cleaned},
        now=now,
    )
    db_session.flush()
    return incident


def push_notice(*, db_session: Session, incident_id: int, now: datetime | None = None) -> int:
    """Queue the notice once for each identity that hit the topic before it was published (later ones got it with
    the bot's answer); return how many were queued. Nothing for a closed incident or one without a notice."""
    now = utc(now)
    incident = get(db_session=db_session, incident_id=incident_id)
    if incident is None or incident.status != OPEN or not incident.notice or incident.notice_published_at is None:
        return 0
    pushed = 0
    for identity in db_session.scalars(_owed(incident).order_by(IncidentIdentity.first_seen_at)):
        outbox_service.enqueue(
            db_session=db_session,
            channel=identity.channel,
            recipient=identity.user_id,
            text=incident.notice,
            dedupe_key=f"incident:{incident.id}:{identity.channel}:{identity.user_id}",
            now=now,
        )
        identity.notified_at = now
        pushed += 1
    db_session.flush()
    return pushed


def _owed(incident: Incident):
    """The identities owed the pushed notice: they hit the topic before it was published and have not had it."""
    return select(IncidentIdentity).where(
        IncidentIdentity.incident_id == incident.id,
        IncidentIdentity.notified_at.is_(None),
        IncidentIdentity.first_seen_at <= incident.notice_published_at,
    )


def owed_count(*, db_session: Session, incident_id: int) -> int:
    """How many identities a push would reach now."""
    incident = get(db_session=db_session, incident_id=incident_id)
    if incident is None or incident.status != OPEN or not incident.notice or incident.notice_published_at is None:
        return 0
    return len(db_session.scalars(_owed(incident)).all())


def close(
    *, db_session: Session, incident_id: int, actor_id: int | None = None, now: datetime | None = None
) -> Incident:
    """Close an incident: its notice stops at once."""
    now = utc(now)
    incident = _require_open(db_session, incident_id)
    incident.status, incident.closed_at, incident.closed_by = CLOSED, now, actor_id
    ticket_service.record_event(
        db_session=db_session,
        actor_id=actor_id,
        action="incident_closed",
        before={"status": OPEN},
        after={"incident_id": incident.id, "topic": incident.topic, "status": CLOSED},
        now=now,
    )
    db_session.flush()
    return incident


# --- background ----------------------------------------------------------------------------------------------


def run_round(*, now: datetime | None = None) -> tuple[list[int], int]:
    """One round, each step in its own transaction: detect, then push published notices still owed. Return the ids
    of the incidents opened and how many notices were queued."""
    with session_scope() as db_session:
        opened = [incident.id for incident in detect(db_session=db_session, now=now)]
    pushed = 0
    with session_scope() as db_session:
        for incident in open_incidents(db_session=db_session):
            pushed += push_notice(db_session=db_session, incident_id=incident.id, now=now)
    return opened, pushed


class IncidentWorker(BatchWorker):
    """Runs incident detection and notice pushes on a daemon thread every INCIDENT_POLL_SECONDS."""

    name = "incident-worker"

    def __init__(self, *, poll_seconds: float | None = None) -> None:
        seconds = get_settings().incident_poll_seconds if poll_seconds is None else poll_seconds
        super().__init__(limit=1_000_000, poll_seconds=seconds)

    def run_once(self) -> int:
        """One round; return how many incidents were opened."""
        opened, pushed = run_round()
        if opened or pushed:
            log.info("incidents: %d opened, %d notices queued", len(opened), pushed)
        return len(opened)
