"""payment_events: the transactional outbox of merchant events

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('payment.succeeded', 'payment.authorized', 'payment.in_review', "
            "'payment.failed', 'payment.canceled', 'payment.refunded')",
            name=op.f("ck_payment_events_type"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_payment_events_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_events_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_payment_events")),
        sa.UniqueConstraint("id", name=op.f("uq_payment_events_id")),
    )
    with op.batch_alter_table("payment_events") as batch_op:
        batch_op.create_index(
            "ix_payment_events_merchant_seq", ["merchant_id", "seq"], unique=False
        )
        batch_op.create_index("ix_payment_events_payment_seq", ["payment_id", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payment_events") as batch_op:
        batch_op.drop_index("ix_payment_events_payment_seq")
        batch_op.drop_index("ix_payment_events_merchant_seq")
    op.drop_table("payment_events")
