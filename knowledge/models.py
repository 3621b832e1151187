"""FAQ entries as stored in the database."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base


class FaqEntry(Base):
    """One FAQ topic: the question, its other phrasings and the answer."""

    __tablename__ = "faq_entry"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    question: Mapped[str] = mapped_column(Text)
    alternates: Mapped[list[str]] = mapped_column(JSON, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, default="", server_default="")  # rule the answer rests on
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class KnowledgeRevision(Base):
    """A single counter raised by every FAQ write, so each worker knows when to rebuild its matcher."""

    __tablename__ = "knowledge_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)


class FaqVersion(Base):
    """One saved state of an FAQ entry: every write through the service adds one, with who made it."""

    __tablename__ = "faq_version"
    __table_args__ = (UniqueConstraint("faq_id", "version", name="uq_faq_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    faq_id: Mapped[str] = mapped_column(String(64), index=True)  # no foreign key: history outlives a deleted entry
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # created, updated, rollback, deleted
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)  # every editable field as saved
    author: Mapped[str] = mapped_column(String(64))  # "staff:<id>", "api", "cli", "seed", "import"
    note: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UnansweredResolution(Base):
    """An unanswered question an admin dealt with (dismissed, added as an alternate, made a new FAQ): its earlier
    occurrences leave the unanswered list."""

    __tablename__ = "unanswered_resolution"

    text_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # knowledge.unanswered.text_key
    action: Mapped[str] = mapped_column(String(16))  # dismissed, alternate, faq
    topic: Mapped[str | None] = mapped_column(String(64), nullable=True)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
