"""Invoice watches: create, list, cancel, and claim the due ones for a re-check."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from invoices.models import ACTIVE, CANCELLED, DONE, EXPIRED, NO_CODE, InvoiceWatch

MAX_ACTIVE_PER_IDENTITY = 20


class WatchLimitReached(Exception):
    """The identity already watches as many invoices as allowed."""


def add(
    *,
    db_session: Session,
    channel: str,
    user_id: str,
    code: str | None,
    number: str,
    last_status: str | None,
    first_check_seconds: float,
    max_hours: float,
    now: datetime | None = None,
) -> InvoiceWatch:
    """Watch an invoice for an identity; an active watch of the same invoice is returned instead of a second one."""
    now = utc(now)
    existing = db_session.scalar(
        select(InvoiceWatch).where(
            InvoiceWatch.channel == channel,
            InvoiceWatch.user_id == user_id,
            InvoiceWatch.code == (code or NO_CODE),
            InvoiceWatch.number == number,
            InvoiceWatch.state == ACTIVE,
        )
    )
    if existing is not None:
        return existing
    if len(list_active(db_session=db_session, channel=channel, user_id=user_id)) >= MAX_ACTIVE_PER_IDENTITY:
        raise WatchLimitReached
    watch = InvoiceWatch(
        channel=channel,
        user_id=user_id,
        code=code or NO_CODE,
        number=number,
        last_status=last_status,
        state=ACTIVE,
        checks=0,
        next_check_at=now + timedelta(seconds=first_check_seconds),
        expires_at=now + timedelta(hours=max_hours),
    )
    db_session.add(watch)
    db_session.flush()
    return watch


def list_active(*, db_session: Session, channel: str, user_id: str) -> list[InvoiceWatch]:
    """An identity's active watches, oldest first."""
    query = (
        select(InvoiceWatch)
        .where(InvoiceWatch.channel == channel, InvoiceWatch.user_id == user_id, InvoiceWatch.state == ACTIVE)
        .order_by(InvoiceWatch.id)
    )
    return list(db_session.scalars(query))


def list_for_identities(
    *, db_session: Session, identities: Iterable[tuple[str, str]], limit: int = 50
) -> list[InvoiceWatch]:
    """The watches (any state) of the given (channel, user id) identities, newest first."""
    wanted = list(identities)
    if not wanted:
        return []
    matches = [and_(InvoiceWatch.channel == channel, InvoiceWatch.user_id == user_id) for channel, user_id in wanted]
    query = select(InvoiceWatch).where(or_(*matches)).order_by(InvoiceWatch.id.desc()).limit(limit)
    return list(db_session.scalars(query))


def cancel(*, db_session: Session, channel: str, user_id: str, watch_id: int | None = None) -> int:
    """Cancel one of an identity's active watches (all of them when `watch_id` is None); return how many."""
    query = update(InvoiceWatch).where(
        InvoiceWatch.channel == channel, InvoiceWatch.user_id == user_id, InvoiceWatch.state == ACTIVE
    )
    if watch_id is not None:
        query = query.where(InvoiceWatch.id == watch_id)
    return db_session.execute(query.values(state=CANCELLED, lease_until=None)).rowcount


def claim_due(*, db_session: Session, limit: int, lease_seconds: float, now: datetime | None = None) -> list[int]:
    """Lease up to `limit` due watches for a re-check; no other worker takes them until the lease ends."""
    now = utc(now)
    lease_until = now + timedelta(seconds=lease_seconds)
    due = and_(
        InvoiceWatch.state == ACTIVE,
        InvoiceWatch.next_check_at <= now,
        or_(InvoiceWatch.lease_until.is_(None), InvoiceWatch.lease_until <= now),
    )
    query = select(InvoiceWatch.id).where(due).order_by(InvoiceWatch.next_check_at).limit(limit)
    if db_session.get_bind().dialect.name == "postgresql":
        ids = list(db_session.scalars(query.with_for_update(skip_locked=True)))
        if ids:
            db_session.execute(update(InvoiceWatch).where(InvoiceWatch.id.in_(ids)).values(lease_until=lease_until))
        return ids
    claimed = []
    for watch_id in db_session.scalars(query).all():
        taken = db_session.execute(
            update(InvoiceWatch).where(InvoiceWatch.id == watch_id, due).values(lease_until=lease_until)
        )
        if taken.rowcount == 1:
            claimed.append(watch_id)
    return claimed


def get(*, db_session: Session, watch_id: int) -> InvoiceWatch | None:
    """One watch, as currently stored."""
    return db_session.get(InvoiceWatch, watch_id, populate_existing=True)


def next_interval(*, checks: int, first_seconds: float, max_seconds: float) -> float:
    """Seconds until the next check: doubling from the first interval, capped."""
    return min(max_seconds, first_seconds * 2 ** min(checks, 30))


def reschedule(*, db_session: Session, watch: InvoiceWatch, status: str | None, delay: float, now: datetime) -> None:
    """Record a check that found nothing to report yet (or a change that was reported) and plan the next one."""
    watch.checks += 1
    watch.last_status = status
    watch.lease_until = None
    if utc(watch.expires_at) <= now:
        watch.state = EXPIRED
    watch.next_check_at = now + timedelta(seconds=delay)


def finish(*, db_session: Session, watch: InvoiceWatch, status: str | None) -> None:
    """Close a watch whose invoice reached a final state."""
    watch.checks += 1
    watch.last_status = status
    watch.state = DONE
    watch.lease_until = None
