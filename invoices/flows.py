"""Invoice status for a chat identity (only its own merchant's invoices) and the re-checks of invoice watches."""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from core.clock import utc
from core.database import session_scope
from core.outbox.service import enqueue
from core.settings import get_settings
from invoices import explain, watches
from invoices.backend import BackendUnavailable, InvoiceBackend, Lookup
from invoices.models import ACTIVE, EXPIRED
from merchants import service as merchants

log = logging.getLogger(__name__)

WATCH_LEASE_SECONDS = 120.0

AnswerKind = Literal["found", "not_found", "unbound", "unavailable"]


@dataclass(frozen=True)
class StatusAnswer:
    """What a status lookup came to for one identity; `lookup` holds the record only when it is the merchant's."""

    kind: AnswerKind
    lookup: Lookup | None = None


def lookup_for(
    *, db_session: Session, backend: InvoiceBackend, channel: str, user_id: str, code: str | None, number: str
) -> StatusAnswer:
    """Look an invoice up for a chat identity; another merchant's invoice is reported exactly like a missing one."""
    tax_ids = merchants.tax_ids_for(db_session=db_session, channel=channel, user_id=user_id)
    if not tax_ids:
        return StatusAnswer("unbound")
    try:
        lookup = backend.lookup(code=code, number=number)
    except BackendUnavailable as exc:
        log.warning("invoice backend %s unavailable: %s", backend.name, exc)
        return StatusAnswer("unavailable")
    if lookup.record is None or not lookup.record.belongs_to(tax_ids):
        return StatusAnswer("not_found", Lookup(None, lookup.fetched_at, lookup.source, lookup.cached))
    return StatusAnswer("found", lookup)


def watch_label(code: str | None, number: str) -> str:
    """How a watched invoice is named to the merchant."""
    return f"发票代码 {code} 号码 {number}" if code else f"数电票 {number}"


def check_due_watches(*, backend: InvoiceBackend, limit: int = 50, now: datetime | None = None) -> int:
    """Re-check the due watches; return how many were checked."""
    with session_scope() as db_session:
        ids = watches.claim_due(db_session=db_session, limit=limit, lease_seconds=WATCH_LEASE_SECONDS, now=now)
    for watch_id in ids:
        try:
            with session_scope() as db_session:
                check_watch(db_session=db_session, backend=backend, watch_id=watch_id, now=now)
        except Exception:
            log.exception("invoice watch %s: check failed; it is retried when its lease ends", watch_id)
    return len(ids)


def check_watch(*, db_session: Session, backend: InvoiceBackend, watch_id: int, now: datetime | None = None) -> str:
    """Re-check one watch: tell the merchant (through the outbox) when the invoice appeared or changed status."""
    now = utc(now)
    settings = get_settings()
    watch = watches.get(db_session=db_session, watch_id=watch_id)
    if watch is None or watch.state != ACTIVE:
        return "gone"
    code = watch.code or None
    answer = lookup_for(
        db_session=db_session,
        backend=backend,
        channel=watch.channel,
        user_id=watch.user_id,
        code=code,
        number=watch.number,
    )
    delay = watches.next_interval(
        checks=watch.checks,
        first_seconds=settings.watch_first_check_seconds,
        max_seconds=settings.watch_max_interval_seconds,
    )
    if answer.kind != "found":
        watches.reschedule(db_session=db_session, watch=watch, status=watch.last_status, delay=delay, now=now)
        if watch.state == EXPIRED:
            _notify_expired(db_session, watch)
        return answer.kind
    record = answer.lookup.record
    status = record.status.value
    if status == watch.last_status:
        watches.reschedule(db_session=db_session, watch=watch, status=status, delay=delay, now=now)
        return "unchanged"
    text = f"您关注的{watch_label(code, watch.number)}有新进展：\n{explain.explain(record).text}"
    enqueue(
        db_session=db_session,
        channel=watch.channel,
        recipient=watch.user_id,
        text=text,
        dedupe_key=f"watch:{watch.id}:{status}",
    )
    if record.status in explain.FINAL:
        watches.finish(db_session=db_session, watch=watch, status=status)
        return "finished"
    watches.reschedule(db_session=db_session, watch=watch, status=status, delay=delay, now=now)
    return "changed"


def _notify_expired(db_session: Session, watch) -> None:
    hours = get_settings().watch_max_hours
    enqueue(
        db_session=db_session,
        channel=watch.channel,
        recipient=watch.user_id,
        text=(
            f"您关注的{watch_label(watch.code or None, watch.number)}在 {hours:g} 小时内仍未查到新状态，已停止提醒。"
            "建议核对号码，或回复“转人工”请客服协助查询。"
        ),
        dedupe_key=f"watch:{watch.id}:expired",
    )
