"""authentication: devices, authenticators, flows, replay records

Outbound email bodies become ciphertext (a message may now carry a one-time code). Messages
queued under 0002 cannot be encrypted here, where no key is at hand; 0002 only ever shipped in
development builds, so they are dropped.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dpop_proofs",
        sa.Column("jkt", sa.String(length=43), nullable=False),
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jkt", "jti", name=op.f("pk_dpop_proofs")),
    )
    with op.batch_alter_table("dpop_proofs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dpop_proofs_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=op.f("pk_rate_counters")),
    )
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rate_counters_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "auth_flows",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("point", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("done", sa.Text(), nullable=False),
        sa.Column("attempts_left", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("binding", sa.Text(), nullable=False),
        sa.Column("challenge", sa.LargeBinary(length=64), nullable=True),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("code_factor", sa.String(length=32), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("code_sends", sa.Integer(), nullable=False),
        sa.Column("approval_code", sa.String(length=8), nullable=True),
        sa.Column("approved_by", sa.String(length=40), nullable=True),
        sa.Column("approval_state", sa.String(length=16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "approval_state IS NULL OR approval_state IN ('requested', 'approved', 'denied')",
            name=op.f("ck_auth_flows_approval_state"),
        ),
        sa.CheckConstraint(
            "state IN ('active', 'complete', 'failed')", name=op.f("ck_auth_flows_state")
        ),
        sa.CheckConstraint(
            "attempts_left >= 0 AND code_sends >= 0", name=op.f("ck_auth_flows_counts")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_flows_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_flows")),
    )
    with op.batch_alter_table("auth_flows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_flows_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("jkt", sa.String(length=43), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reduced_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'removed') = (removed_at IS NOT NULL)",
            name=op.f("ck_devices_removed_when_removed"),
        ),
        sa.CheckConstraint("status IN ('active', 'removed')", name=op.f("ck_devices_status")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_devices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("jkt", name=op.f("uq_devices_jkt")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_user_id"), ["user_id"], unique=False)

    op.create_table(
        "recovery_codes",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "code_hash", name=op.f("pk_recovery_codes")),
    )
    op.create_table(
        "security_answers",
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("question_id", sa.String(length=32), nullable=False),
        sa.Column("answer_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_security_answers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "question_id", name=op.f("pk_security_answers")),
    )
    op.create_table(
        "authenticators",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("credential_id", sa.LargeBinary(length=1023), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("clone_signals", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column("pending_secret", sa.LargeBinary(length=64), nullable=True),
        sa.Column("pending_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('totp', 'passkey', 'sms_otp')", name=op.f("ck_authenticators_kind")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'removed')", name=op.f("ck_authenticators_status")
        ),
        sa.CheckConstraint(
            "sign_count >= 0 AND clone_signals >= 0", name=op.f("ck_authenticators_counts")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_authenticators_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_authenticators_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authenticators")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_authenticators_credential_id")),
    )
    with op.batch_alter_table("authenticators", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_authenticators_user_id"), ["user_id"], unique=False)

    op.execute("DELETE FROM outbound_email")
    with op.batch_alter_table("outbound_email", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body_ciphertext", sa.LargeBinary(), nullable=False))
        batch_op.drop_column("body")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jkt", sa.String(length=43), nullable=True))
        batch_op.add_column(sa.Column("device_id", sa.String(length=40), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("password_changed_at")
        batch_op.drop_column("email_verified_at")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("device_id")
        batch_op.drop_column("jkt")

    op.execute("DELETE FROM outbound_email")
    with op.batch_alter_table("outbound_email", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.TEXT(), nullable=False))
        batch_op.drop_column("body_ciphertext")

    with op.batch_alter_table("authenticators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authenticators_user_id"))

    op.drop_table("authenticators")
    op.drop_table("security_answers")
    op.drop_table("recovery_codes")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_user_id"))

    op.drop_table("devices")
    with op.batch_alter_table("auth_flows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_flows_expires_at"))

    op.drop_table("auth_flows")
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_counters_expires_at"))

    op.drop_table("rate_counters")
    with op.batch_alter_table("dpop_proofs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dpop_proofs_expires_at"))

    op.drop_table("dpop_proofs")
