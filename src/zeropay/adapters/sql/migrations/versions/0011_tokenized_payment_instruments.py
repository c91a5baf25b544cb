"""tokenized payment instruments, merchant grants, device cryptogram keys, charges

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("number_index", sa.LargeBinary(32)),
        sa.Column("number_ciphertext", sa.LargeBinary()),
        sa.Column("display_ciphertext", sa.LargeBinary()),
        sa.Column("brand", sa.String(16)),
        sa.Column("exp_month", sa.Integer()),
        sa.Column("exp_year", sa.Integer()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("removed_at", TS),
        sa.CheckConstraint("kind IN ('card', 'carrier')", name=op.f("ck_instruments_kind")),
        sa.CheckConstraint(
            "status IN ('active', 'removed')", name=op.f("ck_instruments_status")
        ),
        sa.CheckConstraint(
            "(status = 'removed') = (removed_at IS NOT NULL)",
            name=op.f("ck_instruments_removed_when_removed"),
        ),
        sa.CheckConstraint(
            "(status = 'active') = (number_ciphertext IS NOT NULL AND number_index IS NOT NULL "
            "AND display_ciphertext IS NOT NULL)",
            name=op.f("ck_instruments_wiped_when_removed"),
        ),
        sa.CheckConstraint(
            "(kind = 'card') = (exp_month IS NOT NULL AND exp_year IS NOT NULL)",
            name=op.f("ck_instruments_card_expiry"),
        ),
        sa.CheckConstraint(
            "exp_month IS NULL OR (exp_month >= 1 AND exp_month <= 12)",
            name=op.f("ck_instruments_month"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_instruments_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instruments")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_instruments_token_hash")),
        sa.UniqueConstraint("user_id", "number_index", name=op.f("uq_instruments_user_number")),
    )
    with op.batch_alter_table("instruments") as batch_op:
        batch_op.create_index("ix_instruments_user_status", ["user_id", "status"], unique=False)
    op.create_table(
        "instrument_grants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("instrument_id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.CheckConstraint(
            "status IN ('active', 'revoked')", name=op.f("ck_instrument_grants_status")
        ),
        sa.CheckConstraint(
            "(status = 'revoked') = (revoked_at IS NOT NULL)",
            name=op.f("ck_instrument_grants_revoked_when_revoked"),
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_instrument_grants_instrument_id_instruments"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_instrument_grants_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_grants")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_instrument_grants_token_hash")),
    )
    with op.batch_alter_table("instrument_grants") as batch_op:
        batch_op.create_index(
            "ix_instrument_grants_instrument_status", ["instrument_id", "status"], unique=False
        )
    op.create_table(
        "instrument_device_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("instrument_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("key_ciphertext", sa.LargeBinary()),
        sa.Column("last_counter", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locks", sa.Integer(), nullable=False),
        sa.Column("locked_until", TS),
        sa.Column("locked_permanently", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.Column("removed_at", TS),
        sa.CheckConstraint(
            "status IN ('active', 'removed')", name=op.f("ck_instrument_device_keys_status")
        ),
        sa.CheckConstraint(
            "(status = 'removed') = (removed_at IS NOT NULL)",
            name=op.f("ck_instrument_device_keys_removed_when_removed"),
        ),
        sa.CheckConstraint(
            "(status = 'active') = (key_ciphertext IS NOT NULL)",
            name=op.f("ck_instrument_device_keys_wiped_when_removed"),
        ),
        sa.CheckConstraint(
            "last_counter >= 0 AND failures >= 0 AND locks >= 0",
            name=op.f("ck_instrument_device_keys_counts"),
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_instrument_device_keys_instrument_id_instruments"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_instrument_device_keys_device_id_devices"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_instrument_device_keys_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument_device_keys")),
    )
    with op.batch_alter_table("instrument_device_keys") as batch_op:
        batch_op.create_index(
            "ix_instrument_device_keys_instrument_status",
            ["instrument_id", "status"],
            unique=False,
        )
    op.create_table(
        "charges",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("grant_id", sa.String(40), nullable=False),
        sa.Column("instrument_id", sa.String(40), nullable=False),
        sa.Column("device_key_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decline_code", sa.String(32)),
        sa.Column("transfer_id", sa.String(80)),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("amount_minor > 0 AND counter > 0", name=op.f("ck_charges_positive")),
        sa.CheckConstraint(
            "status IN ('succeeded', 'declined')", name=op.f("ck_charges_status")
        ),
        sa.CheckConstraint(
            "(status = 'succeeded') = (transfer_id IS NOT NULL)",
            name=op.f("ck_charges_paid_when_paid"),
        ),
        sa.CheckConstraint(
            "(status = 'declined') = (decline_code IS NOT NULL)",
            name=op.f("ck_charges_declined_why"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_charges_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["instrument_grants.id"],
            name=op.f("fk_charges_grant_id_instrument_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instruments.id"],
            name=op.f("fk_charges_instrument_id_instruments"),
        ),
        sa.ForeignKeyConstraint(
            ["device_key_id"],
            ["instrument_device_keys.id"],
            name=op.f("fk_charges_device_key_id_instrument_device_keys"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charges")),
        sa.UniqueConstraint("transfer_id", name=op.f("uq_charges_transfer_id")),
        sa.UniqueConstraint(
            "device_key_id", "counter", name=op.f("uq_charges_device_key_counter")
        ),
    )
    with op.batch_alter_table("charges") as batch_op:
        batch_op.create_index(
            "ix_charges_merchant_created", ["merchant_id", "created_at", "id"], unique=False
        )
    op.create_table(
        "carrier_billing_totals",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_carrier_billing_totals_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_carrier_billing_totals_user_id_users")
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "currency", "period", name=op.f("pk_carrier_billing_totals")
        ),
    )


def downgrade() -> None:
    op.drop_table("carrier_billing_totals")
    with op.batch_alter_table("charges") as batch_op:
        batch_op.drop_index("ix_charges_merchant_created")
    op.drop_table("charges")
    with op.batch_alter_table("instrument_device_keys") as batch_op:
        batch_op.drop_index("ix_instrument_device_keys_instrument_status")
    op.drop_table("instrument_device_keys")
    with op.batch_alter_table("instrument_grants") as batch_op:
        batch_op.drop_index("ix_instrument_grants_instrument_status")
    op.drop_table("instrument_grants")
    with op.batch_alter_table("instruments") as batch_op:
        batch_op.drop_index("ix_instruments_user_status")
    op.drop_table("instruments")
