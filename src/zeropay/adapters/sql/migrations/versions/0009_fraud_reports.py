"""fraud reports and quarterly fraud rates for transaction risk analysis

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fraud_reports",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("counted_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reporter", sa.String(16), nullable=False),
        sa.Column("reported_by", sa.String(80), nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("reported_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('refund_fraud', 'chargeback')", name=op.f("ck_fraud_reports_kind")
        ),
        sa.CheckConstraint(
            "reporter IN ('merchant', 'operator', 'cli')", name=op.f("ck_fraud_reports_reporter")
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND counted_minor >= 0 AND counted_minor <= amount_minor",
            name=op.f("ck_fraud_reports_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_fraud_reports_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_reports")),
        sa.UniqueConstraint("payment_id", "kind", name=op.f("uq_fraud_reports_payment_kind")),
    )
    with op.batch_alter_table("fraud_reports") as batch_op:
        batch_op.create_index("ix_fraud_reports_reported", ["reported_at"], unique=False)
    op.create_table(
        "fraud_periods",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('day', 'quarter')", name=op.f("ck_fraud_periods_kind")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_fraud_periods_span")),
        sa.PrimaryKeyConstraint("kind", "starts_at", name=op.f("pk_fraud_periods")),
    )
    op.create_table(
        "fraud_period_totals",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("fraud_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "captured_minor >= 0 AND fraud_minor >= 0",
            name=op.f("ck_fraud_period_totals_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["kind", "starts_at"],
            ["fraud_periods.kind", "fraud_periods.starts_at"],
            name=op.f("fk_fraud_period_totals_kind_fraud_periods"),
        ),
        sa.PrimaryKeyConstraint(
            "kind", "starts_at", "currency", name=op.f("pk_fraud_period_totals")
        ),
    )
    # Not in batch mode: on SQLite a batch could copy the ledger table, and with it lose the
    # triggers that keep transfers append-only. Creating an index needs no copy.
    op.create_index(
        "ix_ledger_transfers_code_created", "ledger_transfers", ["code", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_transfers_code_created", table_name="ledger_transfers")
    op.drop_table("fraud_period_totals")
    op.drop_table("fraud_periods")
    with op.batch_alter_table("fraud_reports") as batch_op:
        batch_op.drop_index("ix_fraud_reports_reported")
    op.drop_table("fraud_reports")
