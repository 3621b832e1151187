"""Admin API for merchants: create them, issue binding codes, see and remove chat bindings, lift binding locks."""

import logging

from fastapi import APIRouter, Depends, HTTPException, status
from sqlalchemy.orm import Session

from core.clock import utc
from core.redact import mask
from core.settings import get_settings
from core.store import get_store
from core.web import DbSession, RowId, require_admin
from merchants import service
from merchants.models import Merchant
from merchants.schemas import BindingCodeOut, BindingOut, MerchantIn, MerchantOut, UnlockOut

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/admin/merchants", tags=["admin"], dependencies=[Depends(require_admin)])
# Ids are 32-bit (INTEGER on PostgreSQL); a larger one in the URL is a 422, not an overflow inside the driver.


def _out(db_session: Session, merchant: Merchant) -> MerchantOut:
    bindings = service.get_bindings(db_session=db_session, merchant_id=merchant.id)
    return MerchantOut(
        id=merchant.id,
        name=merchant.name,
        contact=merchant.contact,
        tax_ids=service.get_tax_ids(db_session=db_session, merchant_id=merchant.id),
        bindings=[BindingOut(channel=b.channel, user_id=b.user_id, created_at=b.created_at) for b in bindings],
    )


def _get_or_404(db_session: Session, merchant_id: int) -> Merchant:
    merchant = service.get(db_session=db_session, merchant_id=merchant_id)
    if merchant is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no merchant {merchant_id}")
    return merchant


@router.post("", response_model=MerchantOut, status_code=status.HTTP_201_CREATED)
def create_merchant(body: MerchantIn, db_session: DbSession) -> MerchantOut:
    """Create a merchant owning the given taxpayer ids."""
    try:
        merchant = service.create(db_session=db_session, name=body.name, tax_ids=body.tax_ids, contact=body.contact)
    except service.TaxIdTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except service.MerchantError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    return _out(db_session, merchant)


@router.get("", response_model=list[MerchantOut])
def list_merchants(db_session: DbSession) -> list[MerchantOut]:
    """Every merchant."""
    return [_out(db_session, m) for m in service.get_all(db_session=db_session)]


@router.get("/{merchant_id}", response_model=MerchantOut)
def get_merchant(merchant_id: RowId, db_session: DbSession) -> MerchantOut:
    """One merchant."""
    return _out(db_session, _get_or_404(db_session, merchant_id))


@router.post("/{merchant_id}/binding-codes", response_model=BindingCodeOut, status_code=status.HTTP_201_CREATED)
def issue_binding_code(merchant_id: RowId, db_session: DbSession) -> BindingCodeOut:
    """A new single-use binding code for the merchant (valid for BINDING_CODE_TTL_SECONDS)."""
    _get_or_404(db_session, merchant_id)
    code, row = service.issue_code(
        db_session=db_session, merchant_id=merchant_id, ttl_seconds=get_settings().binding_code_ttl_seconds
    )
    return BindingCodeOut(merchant_id=merchant_id, code=code, expires_at=utc(row.expires_at))


@router.delete("/{merchant_id}/bindings/{channel}/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_binding(merchant_id: RowId, channel: str, user_id: str, db_session: DbSession) -> None:
    """Unbind a chat identity from the merchant."""
    binding = service.get_binding(db_session=db_session, channel=channel, user_id=user_id)
    if binding is None or binding.merchant_id != merchant_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such binding")
    service.unbind(db_session=db_session, channel=channel, user_id=user_id)


@router.post("/{merchant_id}/unlock", response_model=UnlockOut)
def unlock_binding(merchant_id: RowId, db_session: DbSession) -> UnlockOut:
    """Lift the binding lock of the merchant's taxpayer ids and forget their wrong tries (codes issued before the lock
    bind again)."""
    _get_or_404(db_session, merchant_id)
    unlocked = service.unlock(db_session=db_session, store=get_store(), merchant_id=merchant_id)
    log.warning("binding_unlocked merchant_id=%s tax_ids=%s", merchant_id, ",".join(mask(t) for t in unlocked))
    return UnlockOut(merchant_id=merchant_id, unlocked_tax_ids=unlocked)
