"""payment confirmation flows, SCA exemption counters, trusted beneficiaries, recurring series

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
OLD_STATUSES = (
    "'requires_confirmation', 'in_review', 'authorized', 'succeeded', 'canceled', 'declined', "
    "'expired'"
)
NEW_STATUSES = (
    "'requires_confirmation', 'requires_action', 'in_review', 'authorized', 'succeeded', "
    "'canceled', 'declined', 'expired'"
)
OLD_EVENTS = (
    "'payment.succeeded', 'payment.authorized', 'payment.in_review', 'payment.failed', "
    "'payment.canceled', 'payment.refunded'"
)
NEW_EVENTS = OLD_EVENTS + ", 'payment.requires_action'"
OLD_KINDS = "'totp', 'passkey', 'sms_otp'"
NEW_KINDS = OLD_KINDS + ", 'ocra'"


def _check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        batch_op.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch_op:
        batch_op.add_column(sa.Column("series_ref", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("hold_seq", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_check_constraint(op.f("ck_payments_hold_seq"), "hold_seq >= 0")
    _check("payments", "status", f"status IN ({NEW_STATUSES})")
    _check("payment_events", "type", f"type IN ({NEW_EVENTS})")
    with op.batch_alter_table("authenticators") as batch_op:
        batch_op.add_column(sa.Column("ocra_suite", sa.String(64), nullable=True))
    _check("authenticators", "kind", f"kind IN ({NEW_KINDS})")
    op.create_table(
        "sca_counters",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("exempt_count", sa.Integer(), nullable=False),
        sa.Column("spent", sa.Text(), nullable=False),
        sa.Column("last_sca_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("exempt_count >= 0", name=op.f("ck_sca_counters_count")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sca_counters_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_sca_counters")),
    )
    op.create_table(
        "sca_decisions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("payment_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("exemption", sa.String(32), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("flow_id", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "outcome IN ('exempt', 'challenged', 'authenticated', 'failed')",
            name=op.f("ck_sca_decisions_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_sca_decisions_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sca_decisions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sca_decisions")),
    )
    with op.batch_alter_table("sca_decisions") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sca_decisions_payment_id"), ["payment_id"], unique=False
        )
        batch_op.create_index(
            "ix_sca_decisions_user_created", ["user_id", "created_at"], unique=False
        )
    op.create_table(
        "trusted_beneficiaries",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_trusted_beneficiaries_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_trusted_beneficiaries_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "merchant_id", name=op.f("pk_trusted_beneficiaries")),
    )
    op.create_table(
        "recurring_series",
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("series_ref", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("first_payment_id", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_recurring_series_positive")),
        sa.ForeignKeyConstraint(
            ["first_payment_id"],
            ["payments.id"],
            name=op.f("fk_recurring_series_first_payment_id_payments"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_recurring_series_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recurring_series_user_id_users")
        ),
        sa.PrimaryKeyConstraint(
            "merchant_id", "series_ref", "user_id", name=op.f("pk_recurring_series")
        ),
    )


def downgrade() -> None:
    op.drop_table("recurring_series")
    op.drop_table("trusted_beneficiaries")
    with op.batch_alter_table("sca_decisions") as batch_op:
        batch_op.drop_index("ix_sca_decisions_user_created")
        batch_op.drop_index(batch_op.f("ix_sca_decisions_payment_id"))
    op.drop_table("sca_decisions")
    op.drop_table("sca_counters")
    _check("authenticators", "kind", f"kind IN ({OLD_KINDS})")
    with op.batch_alter_table("authenticators") as batch_op:
        batch_op.drop_column("ocra_suite")
    _check("payment_events", "type", f"type IN ({OLD_EVENTS})")
    _check("payments", "status", f"status IN ({OLD_STATUSES})")
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_hold_seq"), type_="check")
        batch_op.drop_column("hold_seq")
        batch_op.drop_column("series_ref")
