"""Tickets, their transcript, notes, tags and audit events; staff accounts; canned replies; the assignment cursor."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base

# Ticket states.
NEW = "new"
ASSIGNED = "assigned"
WAITING = "waiting_on_merchant"
RESOLVED = "resolved"
CLOSED = "closed"
STATES = (NEW, ASSIGNED, WAITING, RESOLVED, CLOSED)
ACTIVE = (NEW, ASSIGNED, WAITING)  # a person owes the merchant something
UNCLOSED = (*ACTIVE, RESOLVED)  # at most one per chat identity
STATE_LABELS = {
    NEW: "待分配",
    ASSIGNED: "处理中",
    WAITING: "等待商户回复",
    RESOLVED: "已解决",
    CLOSED: "已关闭",
}

# Priorities, most urgent first.
URGENT = "urgent"
HIGH = "high"
NORMAL = "normal"
LOW = "low"
PRIORITIES = (URGENT, HIGH, NORMAL, LOW)
PRIORITY_LABELS = {URGENT: "紧急", HIGH: "高", NORMAL: "普通", LOW: "低"}

# Categories that are not FAQ categories.
COMPLAINT = "complaint"
INVOICE = "invoice"
GENERAL = "general"

# Why a ticket was closed.
CLOSED_BY_AGENT = "closed"
CLOSED_AFTER_RESOLVE = "resolved"
HANDED_BACK = "handed_back"
IDLE = "idle"
REPLACED = "replaced"

# Transcript authors.
MERCHANT = "merchant"
BOT = "bot"
AGENT = "agent"
SYSTEM = "system"
AUTHOR_KINDS = (MERCHANT, BOT, AGENT, SYSTEM)

# Staff roles.
ROLE_AGENT = "agent"
ROLE_ADMIN = "admin"
ROLES = (ROLE_AGENT, ROLE_ADMIN)

ROUND_ROBIN = "round_robin"


class StaffUser(Base):
    """A console login: an agent or an admin, with presence and a ticket capacity."""

    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=ROLE_AGENT)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    capacity: Mapped[int] = mapped_column(Integer, default=5)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Ticket(Base):
    """One merchant's request for a person, from handoff to close."""

    __tablename__ = "ticket"
    __table_args__ = (
        # Exactly one ticket that is not closed per chat identity.
        Index(
            "uq_ticket_unclosed_identity",
            "channel",
            "user_id",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
        Index("ix_ticket_identity", "channel", "user_id", "id"),
        Index("ix_ticket_queue", "state", "assignee_id", "created_at"),
        Index("ix_ticket_sla_due", "state", "sla_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchant.id", ondelete="SET NULL"), nullable=True)
    state: Mapped[str] = mapped_column(String(24), default=NEW)
    priority: Mapped[str] = mapped_column(String(16), default=NORMAL)
    category: Mapped[str] = mapped_column(String(64), default=GENERAL)
    subject: Mapped[str] = mapped_column(String(200), default="")
    # What the bot learned: topic, guide path, troubleshooting summary, invoice references.
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    close_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_merchant_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_agent_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # SLA clocks: they start at sla_started_at (creation or reopen) and stop while waiting on the merchant.
    sla_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)  # business seconds spent waiting on the merchant
    sla_first_response_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_resolution_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # running clock's due
    sla_first_response_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_first_response_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_resolution_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    sla_resolution_breached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    csat_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    csat_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    csat_comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    csat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def number(self) -> str:
        """The short number merchants and staff quote, e.g. T000042."""
        return ticket_number(self.id)

    @property
    def sla_breached(self) -> bool:
        """Whether a breach of either SLA clock was recorded (the console badge)."""
        return self.sla_first_response_breached_at is not None or self.sla_resolution_breached_at is not None


def ticket_number(ticket_id: int) -> str:
    """The number shown for a ticket id."""
    # A number reaches a merchant only after its row is committed (requests commit before they answer: core/web.py).
    # SQLite (no AUTOINCREMENT) may give the id of a row whose commit was lost to the next ticket: never told, so
    # never told twice; tickets are not deleted, so a committed id is never handed out again.
    return f"T{ticket_id:06d}"


class TicketMessage(Base):
    """One line of a ticket's transcript: merchant, bot, agent or system."""

    __tablename__ = "ticket_message"
    __table_args__ = (Index("ix_ticket_message_ticket", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    author_kind: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    outbox_message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # agent replies and notices
    source_turn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # copied from conversation_turn
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TicketNote(Base):
    """An internal note on a ticket; merchants never see it."""

    __tablename__ = "ticket_note"
    __table_args__ = (Index("ix_ticket_note_ticket", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TicketTag(Base):
    """A tag on a ticket."""

    __tablename__ = "ticket_tag"
    __table_args__ = (Index("ix_ticket_tag_tag", "tag"),)

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True)


class TicketEvent(Base):
    """Who did what to a ticket (or a staff account) when, with the values before and after: the audit log."""

    __tablename__ = "ticket_event"
    __table_args__ = (
        Index("ix_ticket_event_ticket", "ticket_id", "id"),
        Index("ix_ticket_event_actor", "actor_id", "created_at"),
        Index("ix_ticket_event_action", "action", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"), nullable=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CannedReply(Base):
    """A prepared answer agents insert, with variables such as {merchant_name} {ticket_number} {agent_name}."""

    __tablename__ = "canned_reply"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(100), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("staff_user.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AssignmentCursor(Base):
    """Where the round-robin stopped, shared by every worker (one row per rotation)."""

    __tablename__ = "assignment_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_staff_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
