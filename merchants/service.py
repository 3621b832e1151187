"""Merchant accounts, one-time binding codes, and binding chat identities to merchants."""

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from core.identifiers import check_taxpayer_id
from core.redact import mask
from core.store import Store
from merchants.models import BindingCode, ChatBinding, Merchant, MerchantTaxId

CODE_DIGITS = 8
log = logging.getLogger(__name__)


class MerchantError(ValueError):
    """A merchant cannot be created or changed as asked; the message says why."""


class TaxIdTaken(MerchantError):
    """The taxpayer id already belongs to another merchant."""


def normalise_tax_id(raw: str) -> str:
    """The canonical form of a taxpayer id; MerchantError when it cannot be one."""
    check = check_taxpayer_id(raw)
    if not check.ok:
        raise MerchantError(check.problem or f"invalid taxpayer id: {raw!r}")
    return check.value


def create(*, db_session: Session, name: str, tax_ids: list[str], contact: str | None = None) -> Merchant:
    """Create a merchant owning `tax_ids` (each may belong to one merchant only)."""
    if not name.strip():
        raise MerchantError("name must not be empty")
    if not tax_ids:
        raise MerchantError("at least one taxpayer id is required")
    merchant = Merchant(name=name.strip(), contact=contact)
    db_session.add(merchant)
    db_session.flush()
    add_tax_ids(db_session=db_session, merchant_id=merchant.id, tax_ids=tax_ids)
    return merchant


def add_tax_ids(*, db_session: Session, merchant_id: int, tax_ids: list[str]) -> list[str]:
    """Attach taxpayer ids to a merchant; MerchantError when one belongs to another merchant."""
    added = []
    for raw in tax_ids:
        tax_id = normalise_tax_id(raw)
        owner = db_session.get(MerchantTaxId, tax_id)
        if owner is not None and owner.merchant_id != merchant_id:
            raise TaxIdTaken(f"taxpayer id {tax_id} already belongs to merchant {owner.merchant_id}")
        if owner is None:
            db_session.add(MerchantTaxId(tax_id=tax_id, merchant_id=merchant_id))
            added.append(tax_id)
    db_session.flush()
    return added


def get(*, db_session: Session, merchant_id: int) -> Merchant | None:
    """One merchant by id."""
    return db_session.get(Merchant, merchant_id)


def get_all(*, db_session: Session) -> list[Merchant]:
    """Every merchant, oldest first."""
    return list(db_session.scalars(select(Merchant).order_by(Merchant.id)))


def get_tax_ids(*, db_session: Session, merchant_id: int) -> list[str]:
    """The taxpayer ids a merchant owns."""
    query = select(MerchantTaxId.tax_id).where(MerchantTaxId.merchant_id == merchant_id).order_by(MerchantTaxId.tax_id)
    return list(db_session.scalars(query))


def search(*, db_session: Session, text: str = "", limit: int = 50) -> list[Merchant]:
    """Merchants whose name contains `text` or one of whose taxpayer ids contains it (all when empty), by name."""
    query = select(Merchant).order_by(Merchant.name, Merchant.id).limit(limit)
    needle = text.strip()
    if needle:
        owners = select(MerchantTaxId.merchant_id).where(MerchantTaxId.tax_id.contains(needle.upper(), autoescape=True))
        query = query.where(or_(Merchant.name.contains(needle, autoescape=True), Merchant.id.in_(owners)))
    return list(db_session.scalars(query))


def get_by_tax_id(*, db_session: Session, tax_id: str) -> Merchant | None:
    """The merchant owning a taxpayer id."""
    owner = db_session.get(MerchantTaxId, tax_id)
    return db_session.get(Merchant, owner.merchant_id) if owner else None


def get_bindings(*, db_session: Session, merchant_id: int) -> list[ChatBinding]:
    """The chat identities bound to a merchant."""
    query = select(ChatBinding).where(ChatBinding.merchant_id == merchant_id).order_by(ChatBinding.id)
    return list(db_session.scalars(query))


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def issue_code(
    *, db_session: Session, merchant_id: int, ttl_seconds: float, now: datetime | None = None
) -> tuple[str, BindingCode]:
    """A new single-use binding code for a merchant; the plaintext is returned once and never stored."""
    if db_session.get(Merchant, merchant_id) is None:
        raise MerchantError(f"no merchant {merchant_id}")
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if db_session.scalar(select(BindingCode.id).where(BindingCode.code_hash == _hash(code))) is None:
            break
    now = utc(now)
    # created_at from the same clock as the binding lock (issued after a lock = binds despite it), to the microsecond.
    row = BindingCode(
        merchant_id=merchant_id, code_hash=_hash(code), expires_at=now + timedelta(seconds=ttl_seconds), created_at=now
    )
    db_session.add(row)
    db_session.flush()
    return code, row


BindOutcome = Literal["bound", "rejected", "rate_limited"]
LockReason = Literal["identity", "tax_id"]


@dataclass(frozen=True)
class BindResult:
    """What a binding attempt came to; `merchant` is set when bound, `limited_by` when rate limited, `locked_tax_id`
    when this very attempt locked a taxpayer id (the caller writes the audit event)."""

    outcome: BindOutcome
    merchant: Merchant | None = None
    retry_after_seconds: int = 0
    limited_by: LockReason | None = None
    locked_tax_id: str | None = None


@dataclass(frozen=True)
class BindingLimits:
    """Tries per chat identity per window; a taxpayer id takes `per_tax_id_factor` times as many wrong tries (from
    any identities) before the codes issued until then are frozen for the window."""

    max_failures: int = 5
    window_seconds: int = 3600
    per_tax_id_factor: int = 4

    @property
    def per_tax_id(self) -> int:
        """Wrong tries a taxpayer id takes per window before its older codes are frozen."""
        return self.max_failures * self.per_tax_id_factor


def _identity_key(channel: str, user_id: str) -> str:
    return f"bind:try:who:{channel}:{user_id}"


def _tax_id_key(tax_id: str) -> str:
    return f"bind:try:tax:{tax_id}"


def _lock_key(tax_id: str) -> str:
    return f"bind:lock:tax:{tax_id}"


def locked_since(*, store: Store, tax_id: str) -> datetime | None:
    """When the taxpayer id was locked (codes issued until then do not bind), or None when it is not locked."""
    raw = store.get(_lock_key(tax_id))
    return None if raw is None else datetime.fromtimestamp(float(raw), UTC)


def bind(
    *,
    db_session: Session,
    store: Store,
    channel: str,
    user_id: str,
    tax_id: str,
    code: str,
    limits: BindingLimits = BindingLimits(),
    now: datetime | None = None,
) -> BindResult:
    """Bind a chat identity to the merchant owning `tax_id` when `code` is one of its live, unused codes.

    Every try is counted (atomically, before its code is looked at) per identity and per taxpayer id; a success is
    handed back to the counters, nobody else's count is reset. Past the identity's limit it is refused for the
    window. Past the taxpayer id's limit the id is locked: codes issued before the lock are refused for the window,
    a code issued after it (staff give the owner a new one) still binds."""
    now = utc(now)
    identity_key = _identity_key(channel, user_id)
    if store.incr(identity_key, ttl=limits.window_seconds) > limits.max_failures:
        return BindResult("rate_limited", retry_after_seconds=limits.window_seconds, limited_by="identity")
    merchant = get_by_tax_id(db_session=db_session, tax_id=tax_id)
    if merchant is None:
        return BindResult("rejected")
    locked_at, newly_locked = locked_since(store=store, tax_id=tax_id), None
    counted = locked_at is None
    if counted and store.incr(_tax_id_key(tax_id), ttl=limits.window_seconds) > limits.per_tax_id:
        if store.add(_lock_key(tax_id), repr(now.timestamp()), ttl=limits.window_seconds):
            newly_locked = tax_id
            log.warning("binding_locked tax_id=%s merchant_id=%s", mask(tax_id), merchant.id)
        locked_at = locked_since(store=store, tax_id=tax_id) or now
    row = _live_code(db_session, merchant.id, code, now)
    if locked_at is not None and (row is None or utc(row.created_at) <= locked_at):
        # Wrong and frozen codes get the same answer: the lock tells nobody whether an old code was right.
        return BindResult(
            "rate_limited", retry_after_seconds=limits.window_seconds, limited_by="tax_id", locked_tax_id=newly_locked
        )
    if row is None:
        return BindResult("rejected")
    claimed = db_session.execute(
        update(BindingCode)
        .where(BindingCode.id == row.id, BindingCode.used_at.is_(None))
        .values(used_at=now, used_by=f"{channel}:{user_id}"[:170])
    )
    if claimed.rowcount != 1:  # another identity used the code a moment ago
        return BindResult("rejected")
    db_session.execute(delete(ChatBinding).where(ChatBinding.channel == channel, ChatBinding.user_id == user_id))
    db_session.add(ChatBinding(channel=channel, user_id=user_id, merchant_id=merchant.id))
    db_session.flush()
    # A success is not a wrong try: hand it back (only this try's own unit; strangers' tries stay counted). With
    # the TTL: a counter that expired meanwhile comes back as -1 for one window at most, never as a permanent key.
    store.incr(identity_key, amount=-1, ttl=limits.window_seconds)
    if counted:
        store.incr(_tax_id_key(tax_id), amount=-1, ttl=limits.window_seconds)
    return BindResult("bound", merchant=merchant)


def unlock(*, db_session: Session, store: Store, merchant_id: int) -> list[str]:
    """Lift the binding lock and forget the wrong tries of a merchant's taxpayer ids; return the ids that were
    locked."""
    unlocked = []
    for tax_id in get_tax_ids(db_session=db_session, merchant_id=merchant_id):
        if locked_since(store=store, tax_id=tax_id) is not None:
            unlocked.append(tax_id)
        store.delete(_lock_key(tax_id))
        store.delete(_tax_id_key(tax_id))
    return unlocked


def _live_code(db_session: Session, merchant_id: int, code: str, now: datetime) -> BindingCode | None:
    """The merchant's unused, unexpired code equal to `code`, compared in constant time."""
    query = select(BindingCode).where(BindingCode.merchant_id == merchant_id, BindingCode.used_at.is_(None))
    wanted = _hash(code.strip())
    for row in db_session.scalars(query):
        if hmac.compare_digest(row.code_hash, wanted) and utc(row.expires_at) > now:
            return row
    return None


def unbind(*, db_session: Session, channel: str, user_id: str) -> bool:
    """Remove an identity's binding; False when it had none."""
    result = db_session.execute(
        delete(ChatBinding).where(ChatBinding.channel == channel, ChatBinding.user_id == user_id)
    )
    return result.rowcount > 0


def get_binding(*, db_session: Session, channel: str, user_id: str) -> ChatBinding | None:
    """The binding of a chat identity."""
    query = select(ChatBinding).where(ChatBinding.channel == channel, ChatBinding.user_id == user_id)
    return db_session.scalar(query)


def tax_ids_for(*, db_session: Session, channel: str, user_id: str) -> set[str]:
    """The taxpayer ids a chat identity may see invoices of (empty when unbound)."""
    query = (
        select(MerchantTaxId.tax_id)
        .join(ChatBinding, ChatBinding.merchant_id == MerchantTaxId.merchant_id)
        .where(ChatBinding.channel == channel, ChatBinding.user_id == user_id)
    )
    return set(db_session.scalars(query))
