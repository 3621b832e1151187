"""An integration: a calling system with an API key (stored hashed) and a secret for signed identities."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base


class Integration(Base):
    """A system allowed to call POST /api/chat; its users live under the namespace `<slug>:`."""

    __tablename__ = "integration"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the API key
    key_prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    signing_secret: Mapped[str] = mapped_column(String(64))  # HMAC key for signed identities (needed in clear)
    allow_binding: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
