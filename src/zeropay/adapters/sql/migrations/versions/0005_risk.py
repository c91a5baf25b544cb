"""Risk: the engine's records and decisions, operator roles, payments held for review,
merchant category codes

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
OLD_STATUSES = "'requires_confirmation', 'authorized', 'succeeded', 'canceled', 'expired'"
NEW_STATUSES = (
    "'requires_confirmation', 'in_review', 'authorized', 'succeeded', "
    "'canceled', 'declined', 'expired'"
)


def upgrade() -> None:
    op.create_table(
        "risk_records",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "kind IN ('user', 'device', 'ip', 'payee')", name=op.f("ck_risk_records_kind")
        ),
        sa.PrimaryKeyConstraint("kind", "subject", name=op.f("pk_risk_records")),
    )
    with op.batch_alter_table("risk_records") as batch_op:
        batch_op.create_index("ix_risk_records_updated", ["updated_at"], unique=False)
    op.create_table(
        "risk_assessments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_subject", sa.String(160), nullable=False),
        sa.Column("event_type", sa.String(24), nullable=False),
        sa.Column("ref", sa.String(40)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("factors", sa.Text(), nullable=False),
        sa.Column("config_version", sa.String(64), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("settled_at", TS),
        sa.CheckConstraint(
            "action IN ('allow', 'challenge', 'review', 'block')",
            name=op.f("ck_risk_assessments_action"),
        ),
        sa.CheckConstraint(
            "state IN ('settled', 'pending', 'passed', 'failed', 'used')",
            name=op.f("ck_risk_assessments_state"),
        ),
        sa.CheckConstraint("score >= 0 AND score <= 100", name=op.f("ck_risk_assessments_score")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_assessments")),
    )
    with op.batch_alter_table("risk_assessments") as batch_op:
        batch_op.create_index(
            "ix_risk_assessments_user_created", ["user_subject", "created_at"], unique=False
        )
        batch_op.create_index("ix_risk_assessments_ref", ["ref"], unique=False)
    op.create_table(
        "operator_roles",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("granted_by", sa.String(160), nullable=False),
        sa.CheckConstraint("role IN ('support', 'risk')", name=op.f("ck_operator_roles_role")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_operator_roles_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "role", name=op.f("pk_operator_roles")),
    )
    with op.batch_alter_table("merchants") as batch_op:
        batch_op.add_column(sa.Column("mcc", sa.String(4), nullable=True))
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_constraint(op.f("ck_payments_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_status"), f"status IN ({NEW_STATUSES})")
        batch_op.create_index(
            "ix_payments_status_created", ["status", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_index("ix_payments_status_created")
        batch_op.drop_constraint(op.f("ck_payments_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_payments_status"), f"status IN ({OLD_STATUSES})")
    with op.batch_alter_table("merchants") as batch_op:
        batch_op.drop_column("mcc")
    op.drop_table("operator_roles")
    with op.batch_alter_table("risk_assessments") as batch_op:
        batch_op.drop_index("ix_risk_assessments_ref")
        batch_op.drop_index("ix_risk_assessments_user_created")
    op.drop_table("risk_assessments")
    with op.batch_alter_table("risk_records") as batch_op:
        batch_op.drop_index("ix_risk_records_updated")
    op.drop_table("risk_records")
