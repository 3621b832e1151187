"""Outbox messages are read by recipient (merchants' clients fetch what was sent to them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:30:00
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_message_recipient", "outbox_message", ["channel", "recipient", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_message_recipient", table_name="outbox_message")
