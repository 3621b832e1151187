"""Integrations (the systems allowed to call the chat API); API identities stored before them move to the reserved
"legacy:" namespace, so that no new integration's users can ever address them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 10:00:00
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHANNEL = "api"
LEGACY = "legacy:"
COLUMN_CHARS = 128
# Every table holding chat identities (channel + user id column).
IDENTITY_TABLES = (
    ("conversation_turn", "user_id"),
    ("chat_binding", "user_id"),
    ("invoice_watch", "user_id"),
    ("ticket", "user_id"),
    ("incident_identity", "user_id"),
    ("outbox_message", "recipient"),
)


def upgrade() -> None:
    op.create_table(
        "integration",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("signing_secret", sa.String(length=64), nullable=False),
        sa.Column("allow_binding", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
        sa.UniqueConstraint("slug"),
    )
    for table, column in IDENTITY_TABLES:
        _to_legacy(table, column)


def _to_legacy(table_name: str, column_name: str) -> None:
    """Prefix every API identity of the table with "legacy:"; one too long for the column becomes "legacy:" and its
    SHA-256 (run once: an identity that already began with "legacy:" gets a second prefix, undone on downgrade)."""
    table = sa.table(table_name, sa.column("channel", sa.String()), sa.column(column_name, sa.String()))
    column = table.c[column_name]
    fits = sa.func.length(column) <= COLUMN_CHARS - len(LEGACY)
    bind = op.get_bind()
    long_ids = list(
        bind.execute(sa.select(column).distinct().where(table.c.channel == CHANNEL, ~fits)).scalars()
    )  # read before the short ones grow
    bind.execute(
        table.update().where(table.c.channel == CHANNEL, fits).values({column_name: sa.literal(LEGACY) + column})
    )
    for old in long_ids:
        new = LEGACY + hashlib.sha256(old.encode("utf-8")).hexdigest()
        bind.execute(table.update().where(table.c.channel == CHANNEL, column == old).values({column_name: new}))


def downgrade() -> None:
    for table_name, column_name in IDENTITY_TABLES:
        table = sa.table(table_name, sa.column("channel", sa.String()), sa.column(column_name, sa.String()))
        column = table.c[column_name]
        op.get_bind().execute(
            table.update()
            .where(table.c.channel == CHANNEL, column.startswith(LEGACY, autoescape=True))
            .values({column_name: sa.func.substr(column, len(LEGACY) + 1)})
        )
    op.drop_table("integration")
