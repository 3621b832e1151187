"""Merchants, chat bindings, binding codes, stored invoices and invoice watches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 22:55:18.835845
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "invoice",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seller_tax_id", sa.String(length=20), nullable=True),
        sa.Column("buyer_tax_id", sa.String(length=20), nullable=True),
        sa.Column("buyer_name", sa.String(length=200), nullable=True),
        sa.Column("total", sa.String(length=32), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("red_confirmation", sa.String(length=4), nullable=True),
        sa.Column("delivered_via", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code", "number", name="uq_invoice_code_number"),
    )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_buyer", ["buyer_tax_id"], unique=False)
        batch_op.create_index("ix_invoice_seller", ["seller_tax_id"], unique=False)

    op.create_table(
        "invoice_watch",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("invoice_watch", schema=None) as batch_op:
        batch_op.create_index("ix_invoice_watch_due", ["state", "next_check_at"], unique=False)
        batch_op.create_index("ix_invoice_watch_owner", ["channel", "user_id", "state"], unique=False)

    op.create_table(
        "merchant",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "binding_code",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=170), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("binding_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_binding_code_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "chat_binding",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "user_id", name="uq_chat_binding_identity"),
    )
    with op.batch_alter_table("chat_binding", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_binding_merchant_id"), ["merchant_id"], unique=False)

    op.create_table(
        "merchant_tax_id",
        sa.Column("tax_id", sa.String(length=20), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchant.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tax_id"),
    )
    with op.batch_alter_table("merchant_tax_id", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merchant_tax_id_merchant_id"), ["merchant_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("merchant_tax_id", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merchant_tax_id_merchant_id"))

    op.drop_table("merchant_tax_id")
    with op.batch_alter_table("chat_binding", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_binding_merchant_id"))

    op.drop_table("chat_binding")
    with op.batch_alter_table("binding_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_binding_code_merchant_id"))

    op.drop_table("binding_code")
    op.drop_table("merchant")
    with op.batch_alter_table("invoice_watch", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_watch_owner")
        batch_op.drop_index("ix_invoice_watch_due")

    op.drop_table("invoice_watch")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index("ix_invoice_seller")
        batch_op.drop_index("ix_invoice_buyer")

    op.drop_table("invoice")
