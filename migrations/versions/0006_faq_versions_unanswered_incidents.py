"""FAQ versions (with a baseline version of every existing entry), handled unanswered questions, incidents with
their tickets and chat identities.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 23:29:30.287888
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

EDITABLE = ("category", "question", "alternates", "keywords", "answer", "enabled")


def upgrade() -> None:
    versions = op.create_table(
        "faq_version",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("faq_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("faq_id", "version", name="uq_faq_version"),
    )
    with op.batch_alter_table("faq_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faq_version_faq_id"), ["faq_id"], unique=False)
    _baseline_versions(versions)

    op.create_table(
        "unanswered_resolution",
        sa.Column("text_key", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=True),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("text_key"),
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.Integer(), nullable=True),
        sa.Column("affected_count", sa.Integer(), nullable=False),
        sa.Column("notice", sa.Text(), nullable=True),
        sa.Column("notice_published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_author_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["closed_by"], ["staff_user.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["notice_author_id"], ["staff_user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index("ix_incident_status", ["status", "opened_at"], unique=False)
        batch_op.create_index(
            "uq_incident_open_topic",
            ["topic"],
            unique=True,
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "incident_identity",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("incident_id", "channel", "user_id"),
    )
    op.create_table(
        "incident_ticket",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("incident_id", "ticket_id"),
    )


def _baseline_versions(versions: sa.Table) -> None:
    """Every FAQ entry written before versions existed gets its current content as its first recorded version."""
    entries = sa.table(
        "faq_entry",
        sa.column("id", sa.String()),
        sa.column("version", sa.Integer()),
        sa.column("category", sa.String()),
        sa.column("question", sa.Text()),
        sa.column("alternates", sa.JSON()),
        sa.column("keywords", sa.JSON()),
        sa.column("answer", sa.Text()),
        sa.column("enabled", sa.Boolean()),
    )
    rows = op.get_bind().execute(sa.select(entries)).mappings().all()
    baseline = [
        {
            "faq_id": row["id"],
            "version": row["version"],
            "action": "created",
            "snapshot": {"id": row["id"], **{name: row[name] for name in EDITABLE}},
            "author": "migration",
            "note": "启用版本记录前的内容",
        }
        for row in rows
    ]
    if baseline:
        op.bulk_insert(versions, baseline)


def downgrade() -> None:
    op.drop_table("incident_ticket")
    op.drop_table("incident_identity")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_incident_open_topic",
            sqlite_where=sa.text("status = 'open'"),
            postgresql_where=sa.text("status = 'open'"),
        )
        batch_op.drop_index("ix_incident_status")

    op.drop_table("incident")
    op.drop_table("unanswered_resolution")
    with op.batch_alter_table("faq_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_faq_version_faq_id"))

    op.drop_table("faq_version")
