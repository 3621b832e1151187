"""Invoice records as the feed API and CSV import accept them."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.clock import beijing_if_naive
from core.identifiers import check_taxpayer_id
from core.text import clean
from invoices.backend import InvoiceRecord, InvoiceStatus, parse_status

FIELDS = (
    "number",
    "code",
    "status",
    "seller_tax_id",
    "buyer_tax_id",
    "buyer_name",
    "total",
    "issued_at",
    "failure_reason",
    "red_confirmation",
    "delivered_via",
)


class InvoiceIn(BaseModel):
    """One invoice fed by the merchant platform (POST /api/invoices, `invoices import`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    number: str = Field(description="20-digit 数电票 number, or the 8-digit 发票号码 of a 税控 invoice")
    code: str | None = Field(default=None, description="10- or 12-digit 发票代码; empty for 数电票")
    status: InvoiceStatus = Field(description="issued, 已开具, or a vendor code such as 2 / 22")
    seller_tax_id: str | None = None
    buyer_tax_id: str | None = None
    buyer_name: str | None = Field(default=None, max_length=200)
    total: str | None = Field(default=None, max_length=32)
    issued_at: datetime | None = Field(default=None, description="ISO 8601; a time without an offset is Beijing time")
    failure_reason: str | None = Field(default=None, max_length=2000)
    red_confirmation: str | None = Field(default=None, max_length=4)
    delivered_via: str | None = Field(default=None, max_length=32)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: object) -> InvoiceStatus:
        return parse_status(value)

    @field_validator("issued_at")
    @classmethod
    def _beijing(cls, value: datetime | None) -> datetime | None:
        return beijing_if_naive(value) if value else value

    @field_validator("number", "code", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        if isinstance(value, str):
            return clean(value).replace(" ", "").replace("-", "") or None
        return value

    @field_validator("seller_tax_id", "buyer_tax_id", mode="before")
    @classmethod
    def _tax_id(cls, value: object) -> object:
        if not isinstance(value, str) or not value.strip():
            return None
        check = check_taxpayer_id(value)
        if not check.ok:
            raise ValueError(check.problem or "invalid taxpayer id")
        return check.value

    @model_validator(mode="after")
    def _number_fits_code(self) -> "InvoiceIn":
        if not self.number.isdigit():
            raise ValueError("number must be digits")
        if self.code:
            if not self.code.isdigit() or len(self.code) not in (10, 12):
                raise ValueError("code must be 10 or 12 digits")
            if len(self.number) != 8:
                raise ValueError("a 税控 invoice number (with a code) has 8 digits")
        elif len(self.number) != 20:
            raise ValueError("a 数电票 number (without a code) has 20 digits")
        if not (self.seller_tax_id or self.buyer_tax_id):
            raise ValueError("seller_tax_id or buyer_tax_id is required: invoices are shown only to their merchants")
        return self

    def to_record(self) -> InvoiceRecord:
        """The backend-neutral record."""
        return InvoiceRecord(**{name: getattr(self, name) for name in FIELDS})
