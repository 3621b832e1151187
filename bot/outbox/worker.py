"""Delivering due outbox messages through each channel's sender, in batches or on a background thread."""

import copy
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import get_settings
from bot.database import session_scope
from bot.outbox import service
from bot.outbox.senders import RetryLater, Sender, Undeliverable

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
LEASE_MARGIN_SECONDS = 15.0
MAX_IDLE_BACKOFF_SECONDS = 30.0


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
        logger.warning("outbox message %s: will retry (%s)", claim.id, exc)
        return Outcome("retry", error=str(exc), retry_after=exc.retry_after)
    except Undeliverable as exc:
        logger.warning("outbox message %s: undeliverable (%s)", claim.id, exc)
        return Outcome("failed", error=str(exc))
    except Exception as exc:
        logger.exception("outbox message %s: sender %s raised", claim.id, claim.channel)
        return Outcome("retry", error=repr(exc))
    return Outcome("sent")


def _record(claim: Claim, outcome: Outcome, now: datetime | None) -> None:
    """Store the outcome of one send in its own short transaction."""
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
    logger.warning("outbox: lease nearly over, handing back %d unsent messages", len(claims))
    with session_scope() as db_session:
        for claim in claims:
            service.release(db_session=db_session, message_id=claim.id, attempt=claim.attempts)


class OutboxWorker:
    """Delivers due messages on a daemon thread: every poll interval, at once when woken, and again straight away
    while batches come back full. Database errors are logged and retried with a growing pause."""

    def __init__(self, senders: Mapping[str, Sender], *, limit: int = 50, poll_seconds: float | None = None) -> None:
        self.senders = dict(senders)
        self.limit = limit
        self.poll_seconds = get_settings().outbox_poll_seconds if poll_seconds is None else poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def run_once(self) -> int:
        """Deliver one batch now; return how many messages were claimed."""
        return deliver_due(senders=self.senders, limit=self.limit)

    def wake(self) -> None:
        """Make the thread look for due messages now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        """Start the delivery thread (no-op when it is running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the thread to finish its current batch and stop; return True when it has stopped."""
        self._stopping.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether the delivery thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            pause = self._step()
            self._wake.wait(pause)
            self._wake.clear()

    def _step(self) -> float:
        """Deliver one batch; return how long to pause before the next."""
        try:
            claimed = self.run_once()
        except Exception:
            self._failures += 1
            pause = min(MAX_IDLE_BACKOFF_SECONDS, max(self.poll_seconds, 0.1) * 2 ** min(self._failures, 10))
            logger.exception("outbox delivery failed; trying again in %.1f s", pause)
            return pause
        self._failures = 0
        return 0.0 if claimed >= self.limit else self.poll_seconds
