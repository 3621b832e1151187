"""Incidents: many merchants hitting the same error topic at once, the tickets and chat identities involved."""

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base

OPEN = "open"
CLOSED = "closed"
STATUS_LABELS = {OPEN: "处理中", CLOSED: "已关闭"}


class Incident(Base):
    """A burst of merchants on one watched topic; while open, its published notice goes to those merchants."""

    __tablename__ = "incident"
    __table_args__ = (
        # At most one open incident per topic.
        Index(
            "uq_incident_open_topic",
            "topic",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_incident_status", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # first hit counted
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    affected_count: Mapped[int] = mapped_column(Integer, default=0)  # distinct chat identities
    notice: Mapped[str | None] = mapped_column(Text, nullable=True)
    notice_published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    notice_author_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    @property
    def is_open(self) -> bool:
        """Whether the incident is still being handled."""
        return self.status == OPEN


class IncidentTicket(Base):
    """A ticket linked to an incident."""

    __tablename__ = "incident_ticket"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True)
    linked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IncidentIdentity(Base):
    """A chat identity that hit the incident's topic, and when the notice was pushed to it."""

    __tablename__ = "incident_identity"

    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
