"""Merchant accounts, one-time binding codes, and binding chat identities to merchants."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.clock import utc
from core.identifiers import check_taxpayer_id
from core.store import Store
from merchants.models import BindingCode, ChatBinding, Merchant, MerchantTaxId

CODE_DIGITS = 8


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
    row = BindingCode(
        merchant_id=merchant_id, code_hash=_hash(code), expires_at=utc(now) + timedelta(seconds=ttl_seconds)
    )
    db_session.add(row)
    db_session.flush()
    return code, row


BindOutcome = Literal["bound", "rejected", "rate_limited"]


@dataclass(frozen=True)
class BindResult:
    """What a binding attempt came to; `merchant` is set when bound."""

    outcome: BindOutcome
    merchant: Merchant | None = None
    retry_after_seconds: int = 0


@dataclass(frozen=True)
class BindingLimits:
    """How many wrong tries an identity gets per window; a taxpayer id gets `per_tax_id_factor` times as many."""

    max_failures: int = 5
    window_seconds: int = 3600
    per_tax_id_factor: int = 4


def _failure_keys(channel: str, user_id: str, tax_id: str) -> tuple[str, str]:
    return f"bind:fail:who:{channel}:{user_id}", f"bind:fail:tax:{tax_id}"


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
    """Bind a chat identity to the merchant owning `tax_id` when `code` is one of its live, unused codes."""
    now = utc(now)
    keys = _failure_keys(channel, user_id, tax_id)
    caps = (limits.max_failures, limits.max_failures * limits.per_tax_id_factor)
    if any(int(store.get(key) or 0) >= cap for key, cap in zip(keys, caps, strict=True)):
        return BindResult("rate_limited", retry_after_seconds=limits.window_seconds)
    merchant = get_by_tax_id(db_session=db_session, tax_id=tax_id)
    row = _live_code(db_session, merchant.id, code, now) if merchant is not None else None
    if row is None:
        for key in keys:
            store.incr(key, ttl=limits.window_seconds)
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
    for key in keys:
        store.delete(key)
    return BindResult("bound", merchant=merchant)


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
