"""Merchant admin API bodies."""

from pydantic import BaseModel, Field

from core.clock import UtcDateTime


class MerchantIn(BaseModel):
    """A merchant to create."""

    name: str = Field(min_length=1, max_length=200)
    tax_ids: list[str] = Field(min_length=1, max_length=20)
    contact: str | None = Field(default=None, max_length=200)


class BindingOut(BaseModel):
    """A chat identity bound to a merchant."""

    channel: str
    user_id: str
    created_at: UtcDateTime | None


class MerchantOut(BaseModel):
    """A merchant with its taxpayer ids and bound chat identities."""

    id: int
    name: str
    contact: str | None
    tax_ids: list[str]
    bindings: list[BindingOut]


class BindingCodeOut(BaseModel):
    """A new binding code: shown once, give it to the merchant over a trusted channel."""

    merchant_id: int
    code: str
    expires_at: UtcDateTime


class UnlockOut(BaseModel):
    """The taxpayer ids whose binding lock was lifted (empty when none was locked)."""

    merchant_id: int
    unlocked_tax_ids: list[str]
