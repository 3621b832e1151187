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


# Chinese labels and 诺税通-style numeric codes that platforms report, mapped to our statuses.
STATUS_ALIASES: dict[str, InvoiceStatus] = {
    "开具中": InvoiceStatus.ISSUING,
    "开票中": InvoiceStatus.ISSUING,
    "20": InvoiceStatus.ISSUING,
    "已开具": InvoiceStatus.ISSUED,
    "开票完成": InvoiceStatus.ISSUED,
    "开票成功": InvoiceStatus.ISSUED,
    "2": InvoiceStatus.ISSUED,
    "开具失败": InvoiceStatus.FAILED,
    "开票失败": InvoiceStatus.FAILED,
    "22": InvoiceStatus.FAILED,
    "签章中": InvoiceStatus.SIGNING,
    "开票成功签章中": InvoiceStatus.SIGNING,
    "21": InvoiceStatus.SIGNING,
    "签章失败": InvoiceStatus.SIGN_FAILED,
    "开票成功签章失败": InvoiceStatus.SIGN_FAILED,
    "24": InvoiceStatus.SIGN_FAILED,
    "已作废": InvoiceStatus.VOIDED,
    "作废": InvoiceStatus.VOIDED,
    "3": InvoiceStatus.VOIDED,
    "作废中": InvoiceStatus.ISSUED,  # valid until the void completes, and the void may still be refused
    "31": InvoiceStatus.ISSUED,
    "红冲中": InvoiceStatus.RED_PENDING,
    "待确认": InvoiceStatus.RED_PENDING,
    "红字确认中": InvoiceStatus.RED_PENDING,
    "部分红冲": InvoiceStatus.RED_PARTIAL,
    "已部分红冲": InvoiceStatus.RED_PARTIAL,
    "已红冲": InvoiceStatus.RED_FULL,
    "已全额红冲": InvoiceStatus.RED_FULL,
    "全额红冲": InvoiceStatus.RED_FULL,
    "已交付": InvoiceStatus.DELIVERED,
}


def parse_status(value: object) -> InvoiceStatus:
    """Our status for a value a platform reports; ValueError when it is unknown."""
    if isinstance(value, InvoiceStatus):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"invoice status of type {type(value).__name__}")
    text = str(value).strip()
    try:
        return InvoiceStatus(text.lower())
    except ValueError:
        pass
    if text in STATUS_ALIASES:
        return STATUS_ALIASES[text]
    raise ValueError(f"unknown invoice status {text[:40]!r}")


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
