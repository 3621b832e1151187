"""The invoice backend interface: where invoice status comes from, and how fresh it is."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol


class InvoiceStatus(StrEnum):
    """Lifecycle states an invoice can be in, as merchants meet them (notes/fapiao.md §3)."""

    ISSUING = "issuing"  # 开具中
    ISSUED = "issued"  # 已开具
    FAILED = "failed"  # 开具失败 (with a reason)
    SIGNING = "signing"  # 开票成功，签章中
    SIGN_FAILED = "sign_failed"  # 开票成功，签章失败
    VOIDED = "voided"  # 已作废
    RED_PENDING = "red_pending"  # 红字确认单 in progress (see red_confirmation)
    RED_PARTIAL = "red_partial"  # 部分红冲
    RED_FULL = "red_full"  # 已红冲（全额）
    DELIVERED = "delivered"  # 已交付


@dataclass(frozen=True)
class InvoiceRecord:
    """One invoice as a backend reports it; `code` is None for 数电票."""

    number: str
    status: InvoiceStatus
    code: str | None = None
    seller_tax_id: str | None = None
    buyer_tax_id: str | None = None
    buyer_name: str | None = None
    total: str | None = None  # 价税合计 as a decimal string
    issued_at: datetime | None = None
    failure_reason: str | None = None
    red_confirmation: str | None = None  # 红字确认单 status code 01-11 (notes/fapiao.md §3.6)
    delivered_via: str | None = None
    updated_at: datetime | None = None

    def belongs_to(self, tax_ids: set[str]) -> bool:
        """True when one of `tax_ids` is the seller's or the buyer's."""
        return bool({self.seller_tax_id, self.buyer_tax_id} & tax_ids - {None})


@dataclass(frozen=True)
class Lookup:
    """A backend's answer: the record (None when it does not know the invoice) and when the data was fetched."""

    record: InvoiceRecord | None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    source: str = "sql"
    cached: bool = False


class BackendUnavailable(Exception):
    """The backend could not answer (timeout, 5xx, circuit open); the merchant is told to retry later."""


class InvoiceBackend(Protocol):
    """Where invoice status comes from."""

    name: str

    def lookup(self, *, code: str | None, number: str) -> Lookup:
        """The invoice with this code (None for 数电票) and number; raises BackendUnavailable."""
        ...
