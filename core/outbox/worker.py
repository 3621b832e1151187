"""Delivering due outbox messages through each channel's sender, in batches or on a background thread."""

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import metrics
from core.background import BatchWorker
from core.database import session_scope
from core.outbox import service
from core.outbox.senders import RetryLater, Sender, Undeliverable
from core.settings import get_settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
LEASE_MARGIN_SECONDS = 15.0


@dataclass(frozen=True)
class Claim:
    """What a worker needs of one claimed message, detached from the session that claimed it."""

    id: int
    channel: str
    recipient: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Outcome:
    """How one send ended: "sent", "retry" or "failed"."""

    kind: str
    error: str | None = None
    retry_after: float | None = None


def deliver_due(
    *, senders: Mapping[str, Sender], limit: int = 50, now: datetime | None = None, lease_seconds: float = LEASE_SECONDS
) -> int:
    """Claim due messages of the channels there are senders for (others wait for a worker that has one), send each
    and record how it went; return how many were claimed. Messages still unsent near the lease's end go back untried."""
    claims = _claim(limit=limit, now=now, lease_seconds=lease_seconds, channels=list(senders))
    deadline = time.monotonic() + lease_seconds - min(LEASE_MARGIN_SECONDS, lease_seconds / 4)
    for index, claim in enumerate(claims):
        if time.monotonic() > deadline:
            _release(claims[index:])
            break
        _record(claim, _send(claim, senders[claim.channel]), now)
    return len(claims)


def _claim(*, limit: int, now: datetime | None, lease_seconds: float, channels: list[str]) -> list[Claim]:
    with session_scope() as db_session:
        messages = service.claim_due(
            db_session=db_session, limit=limit, now=now, lease_seconds=lease_seconds, channels=channels
        )
        return [Claim(m.id, m.channel, m.recipient, m.payload, m.attempts) for m in messages]


def _send(claim: Claim, sender: Sender) -> Outcome:
    """Send one message; every failure becomes an outcome, none escapes."""
    try:
        sender.send(claim.recipient, copy.deepcopy(claim.payload))
    except RetryLater as exc:
        log.warning("outbox message %s: will retry (%s)", claim.id, exc)
        return Outcome("retry", error=str(exc), retry_after=exc.retry_after)
    except Undeliverable as exc:
        log.warning("outbox message %s: undeliverable (%s)", claim.id, exc)
        return Outcome("failed", error=str(exc))
    except Exception as exc:
        log.exception("outbox message %s: sender %s raised", claim.id, claim.channel)
        return Outcome("retry", error=repr(exc))
    return Outcome("sent")


def _record(claim: Claim, outcome: Outcome, now: datetime | None) -> None:
    """Store the outcome of one send in its own short transaction."""
    metrics.OUTBOX_SENDS.labels(claim.channel, outcome.kind).inc()
    with session_scope() as db_session:
        if outcome.kind == "sent":
            service.mark_sent(db_session=db_session, message_id=claim.id, now=now)
        elif outcome.kind == "retry":
            service.mark_retry(
                db_session=db_session,
                message_id=claim.id,
                error=outcome.error or "",
                retry_after=outcome.retry_after,
                now=now,
                attempt=claim.attempts,
            )
        else:
            service.mark_failed(
                db_session=db_session, message_id=claim.id, error=outcome.error or "", attempt=claim.attempts
            )


def _release(claims: list[Claim]) -> None:
    log.warning("outbox: lease nearly over, handing back %d unsent messages", len(claims))
    with session_scope() as db_session:
        for claim in claims:
            service.release(db_session=db_session, message_id=claim.id, attempt=claim.attempts)


class OutboxWorker(BatchWorker):
    """Delivers due outbox messages on a daemon thread."""

    name = "outbox-worker"

    def __init__(self, senders: Mapping[str, Sender], *, limit: int = 50, poll_seconds: float | None = None) -> None:
        poll = get_settings().outbox_poll_seconds if poll_seconds is None else poll_seconds
        super().__init__(limit=limit, poll_seconds=poll)
        self.senders = dict(senders)

    def run_once(self) -> int:
        """Deliver one batch now; return how many messages were claimed."""
        return deliver_due(senders=self.senders, limit=self.limit)
