"""The outbox: enqueue outbound messages, claim the due ones for delivery and record each outcome."""

import random
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Update, and_, func, or_, select, update
from sqlalchemy.orm import Session

from core import events
from core.clock import utc
from core.database import dialect_insert
from core.messages import Option
from core.outbox.models import FAILED, PENDING, PULL_CHANNELS, SENDING, SENT, STATUSES, OutboxMessage
from core.settings import get_settings

BASE_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 600.0
MAX_ERROR_CHARS = 2000
OPEN = (PENDING, SENDING)
PULL_LIMIT = 100


def make_payload(text: str, options: Sequence[Option | Mapping[str, str]] | None = None) -> dict[str, Any]:
    """The stored payload: text plus options as {"label", "payload"} dicts."""
    return {"text": text, "options": [_option_dict(option) for option in options or ()]}


def _option_dict(option: Option | Mapping[str, str]) -> dict[str, str]:
    if isinstance(option, Option):
        return {"label": option.label, "payload": option.payload}
    return {"label": option["label"], "payload": option["payload"]}


def get(*, db_session: Session, message_id: int) -> OutboxMessage | None:
    """Return one message by id, as currently stored."""
    return db_session.get(OutboxMessage, message_id, populate_existing=True)


def get_by_dedupe_key(*, db_session: Session, dedupe_key: str) -> OutboxMessage | None:
    """Return the message enqueued with this dedupe key."""
    query = select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)
    return db_session.scalar(query.execution_options(populate_existing=True))


def enqueue(
    *,
    db_session: Session,
    channel: str,
    recipient: str,
    text: str,
    options: Sequence[Option | Mapping[str, str]] | None = None,
    dedupe_key: str | None = None,
    delay_seconds: float = 0.0,
    now: datetime | None = None,
) -> OutboxMessage:
    """Add a message to the outbox; a dedupe key already used returns that earlier message and adds nothing. Live
    listeners of the recipient's chat are told once the transaction commits."""
    events.publish_after_commit(db_session, events.CHAT, chat_key(channel, recipient))
    values = {
        "channel": channel,
        "recipient": recipient,
        "payload": make_payload(text, options),
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": utc(now) + timedelta(seconds=delay_seconds),
        "dedupe_key": dedupe_key,
    }
    if dedupe_key is None:
        message = OutboxMessage(**values)
        db_session.add(message)
        db_session.flush()
        return message
    message_id = _insert_unless_duplicate(db_session, values)
    if message_id is not None:
        return get(db_session=db_session, message_id=message_id)
    existing = get_by_dedupe_key(db_session=db_session, dedupe_key=dedupe_key)
    if existing is None:
        raise LookupError(f"dedupe key {dedupe_key!r} conflicted but its message is gone")
    return existing


def chat_key(channel: str, recipient: str) -> str:
    """The live-notice key of one recipient's chat."""
    return f"{channel}:{recipient}"


def pull(
    *,
    db_session: Session,
    channel: str,
    recipient: str,
    after_id: int = 0,
    limit: int = PULL_LIMIT,
    now: datetime | None = None,
) -> list[OutboxMessage]:
    """The recipient's messages after `after_id`, oldest first, as its client fetches them: pending ones become
    sent. Cancelled (failed) ones are left out; the list stops before a message not yet due."""
    now = utc(now)
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.channel == channel,
            OutboxMessage.recipient == recipient,
            OutboxMessage.id > after_id,
            OutboxMessage.status != FAILED,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    messages = []
    for message in db_session.scalars(query):
        if message.status != SENT and utc(message.next_attempt_at) > now:
            break
        messages.append(message)
    for message in messages:
        if message.status != SENT:
            message.status, message.sent_at, message.lease_until, message.last_error = SENT, now, None, None
    db_session.flush()
    return messages


def last_delivered_id(*, db_session: Session, channel: str, recipient: str) -> int:
    """The id of the recipient's latest message already delivered (0 when none): where a new client starts to
    show only what it has not seen."""
    query = select(func.max(OutboxMessage.id)).where(
        OutboxMessage.channel == channel, OutboxMessage.recipient == recipient, OutboxMessage.status == SENT
    )
    return db_session.scalar(query) or 0


def _insert_unless_duplicate(db_session: Session, values: dict[str, Any]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING: atomic on both databases, and needs no SAVEPOINT.

    (pysqlite's SAVEPOINT, when it is the first statement of a transaction, commits on RELEASE — the enqueue
    would then survive a rollback of the caller's transaction.)
    """
    insert = dialect_insert(db_session)
    statement = (
        insert(OutboxMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[OutboxMessage.dedupe_key])
        .returning(OutboxMessage.id)
    )
    return db_session.execute(statement).scalar()


def replace_unsent(
    *,
    db_session: Session,
    dedupe_key: str,
    text: str,
    options: Sequence[Option | Mapping[str, str]] | None = None,
    now: datetime | None = None,
) -> bool:
    """Put new text in the message queued under `dedupe_key` and make it due now, provided it was never attempted (a
    stand-in queued ahead of the real text); False when there is none or it was attempted (it goes out as it is)."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key == dedupe_key, OutboxMessage.status == PENDING, OutboxMessage.attempts == 0)
        .values(payload=make_payload(text, options), next_attempt_at=utc(now))
    )
    return _changed(db_session, statement)


def cancel_unsent(*, db_session: Session, dedupe_key: str, reason: str) -> bool:
    """Mark the message queued under `dedupe_key` failed, provided it was never attempted; False when there is none
    or it was attempted."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key == dedupe_key, OutboxMessage.status == PENDING, OutboxMessage.attempts == 0)
        .values(status=FAILED, last_error=_error_text(reason))
    )
    return _changed(db_session, statement)


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now),
        and_(OutboxMessage.status == SENDING, OutboxMessage.lease_until <= now),
    )


def claim_due(
    *,
    db_session: Session,
    limit: int,
    now: datetime | None = None,
    lease_seconds: float = 60.0,
    channels: Collection[str] | None = None,
) -> list[OutboxMessage]:
    """Take up to `limit` due messages (or ones whose lease expired) for delivery: each becomes sending under a lease,
    its attempt counted, and no other claimer can take it until the lease expires. Messages of PULL_CHANNELS are
    never claimed: their merchants' clients fetch them (`pull`)."""
    now = utc(now)
    lease_until = now + timedelta(seconds=lease_seconds)
    query = _due_query(now, channels)
    if db_session.get_bind().dialect.name == "postgresql":
        return _claim_skip_locked(db_session, query, limit, lease_until)
    return _claim_conditionally(db_session, query, limit, now, lease_until)


def _due_query(now: datetime, channels: Collection[str] | None) -> Select[tuple[OutboxMessage]]:
    query = select(OutboxMessage).where(_due(now), OutboxMessage.channel.not_in(sorted(PULL_CHANNELS)))
    query = query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
    return query if channels is None else query.where(OutboxMessage.channel.in_(list(channels)))


def _claim_skip_locked(
    db_session: Session, query: Select[tuple[OutboxMessage]], limit: int, lease_until: datetime
) -> list[OutboxMessage]:
    """PostgreSQL: lock due rows no one else holds, then mark them claimed in the same transaction."""
    query = query.limit(limit).with_for_update(skip_locked=True)
    messages = list(db_session.scalars(query.execution_options(populate_existing=True)))
    for message in messages:
        message.status = SENDING
        message.lease_until = lease_until
        message.attempts += 1
    db_session.flush()
    return messages


def _claim_conditionally(
    db_session: Session, query: Select[tuple[OutboxMessage]], limit: int, now: datetime, lease_until: datetime
) -> list[OutboxMessage]:
    """SQLite (no SKIP LOCKED): claim each candidate with an UPDATE that only matches while it is still due."""
    candidates = list(db_session.scalars(query.with_only_columns(OutboxMessage.id).limit(limit)))
    claimed = [message_id for message_id in candidates if _claim_one(db_session, message_id, now, lease_until)]
    if not claimed:
        return []
    query = select(OutboxMessage).where(OutboxMessage.id.in_(claimed))
    query = query.order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).execution_options(populate_existing=True)
    return list(db_session.scalars(query))


def _claim_one(db_session: Session, message_id: int, now: datetime, lease_until: datetime) -> bool:
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, _due(now))
        .values(status=SENDING, lease_until=lease_until, attempts=OutboxMessage.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return db_session.execute(statement).rowcount == 1


def backoff_seconds(*, attempts: int, retry_after: float | None = None) -> float:
    """Delay before the next attempt: 2, 4, 8 … s (jittered down by up to a quarter) capped at 10 min, or
    `retry_after` when that is longer."""
    base = min(MAX_BACKOFF_SECONDS, BASE_BACKOFF_SECONDS ** min(max(attempts, 1), 30))
    delay = base * random.uniform(0.75, 1.0)
    return max(delay, retry_after) if retry_after else delay


def mark_sent(*, db_session: Session, message_id: int, now: datetime | None = None) -> bool:
    """Record that the message was delivered (whatever else was recorded since); False when already sent or gone."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status != SENT)
        .values(status=SENT, sent_at=utc(now), lease_until=None, last_error=None)
    )
    return _changed(db_session, statement)


def mark_retry(
    *,
    db_session: Session,
    message_id: int,
    error: str,
    retry_after: float | None = None,
    now: datetime | None = None,
    attempt: int | None = None,
) -> bool:
    """Schedule another attempt after a backoff, or mark the message failed once its attempts are used up.

    `attempt` is the attempt count the caller claimed it with; when the message was claimed again since (its lease
    expired), or it is no longer pending or sending, nothing changes and False is returned.
    """
    message = get(db_session=db_session, message_id=message_id)
    if message is None or message.status not in OPEN or attempt not in (None, message.attempts):
        return False
    if message.attempts >= get_settings().outbox_max_attempts:
        values = {"status": FAILED}
    else:
        delay = backoff_seconds(attempts=message.attempts, retry_after=retry_after)
        values = {"status": PENDING, "next_attempt_at": utc(now) + timedelta(seconds=delay)}
    return _update_open(db_session, message_id, message.attempts, {**values, "last_error": _error_text(error)})


def mark_failed(*, db_session: Session, message_id: int, error: str, attempt: int | None = None) -> bool:
    """Give up on the message for good; False (nothing changed) when it is not pending or sending, or was re-claimed."""
    message = get(db_session=db_session, message_id=message_id)
    if message is None or message.status not in OPEN or attempt not in (None, message.attempts):
        return False
    return _update_open(db_session, message_id, message.attempts, {"status": FAILED, "last_error": _error_text(error)})


def release(*, db_session: Session, message_id: int, attempt: int) -> bool:
    """Hand back a claimed message that was not attempted, so it is due again at once and the attempt is not counted."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status == SENDING, OutboxMessage.attempts == attempt)
        .values(status=PENDING, attempts=OutboxMessage.attempts - 1, lease_until=None)
    )
    return _changed(db_session, statement)


def _update_open(db_session: Session, message_id: int, attempts: int, values: dict[str, Any]) -> bool:
    """Apply `values` only if the message is still open at the attempt count it was read with."""
    statement = (
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.status.in_(OPEN), OutboxMessage.attempts == attempts)
        .values(**values, lease_until=None)
    )
    return _changed(db_session, statement)


def _changed(db_session: Session, statement: Update) -> bool:
    return db_session.execute(statement).rowcount == 1


def _error_text(error: str) -> str:
    """An error every database stores: NUL (rejected by PostgreSQL) replaced, and at most MAX_ERROR_CHARS long."""
    return error.replace("\x00", "\ufffd")[:MAX_ERROR_CHARS]


def backlog(*, db_session: Session) -> dict[str, int]:
    """How many messages are in each status (every status present, zero when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    query = select(OutboxMessage.status, func.count(OutboxMessage.id)).group_by(OutboxMessage.status)
    counts.update({status: count for status, count in db_session.execute(query)})
    return counts
