"""Invoices stored in our database (the SQL backend) and merchants' invoice watches."""

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base

NO_CODE = ""  # 数电票 have no 发票代码; stored as "" so (code, number) stays unique on every database


class Invoice(Base):
    """One invoice as the merchant platform fed it to us."""

    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("code", "number", name="uq_invoice_code_number"),
        Index("ix_invoice_seller", "seller_tax_id"),
        Index("ix_invoice_buyer", "buyer_tax_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(12), default=NO_CODE)
    number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16))
    seller_tax_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    buyer_tax_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    buyer_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    total: Mapped[str | None] = mapped_column(String(32), nullable=True)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    red_confirmation: Mapped[str | None] = mapped_column(String(4), nullable=True)
    delivered_via: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


ACTIVE = "active"
DONE = "done"
CANCELLED = "cancelled"
EXPIRED = "expired"


class InvoiceWatch(Base):
    """A merchant's request to be told when an invoice appears or its status changes."""

    __tablename__ = "invoice_watch"
    __table_args__ = (
        Index("ix_invoice_watch_due", "state", "next_check_at"),
        Index("ix_invoice_watch_owner", "channel", "user_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(12), default=NO_CODE)
    number: Mapped[str] = mapped_column(String(20))
    last_status: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None: not found yet
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
