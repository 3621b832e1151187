"""FAQ entries name the rule their answer rests on (title and date).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("faq_entry") as batch:
        batch.add_column(sa.Column("source", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("faq_entry") as batch:
        batch.drop_column("source")
