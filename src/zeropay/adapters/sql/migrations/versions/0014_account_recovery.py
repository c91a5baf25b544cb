"""account recovery: recoveries held, ready, completed and reported

Revision ID: 0014
Revises: 0013

One row per recovery flow whose factors passed (``domain.recovery``): held for an operator or
ready, then completed on the device that ran it (with the cooling-off period) or reported by the
user ("this wasn't me"). Nothing to carry over: no recovery flow could complete before this.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recoveries",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("flow_id", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("factors", sa.String(200), nullable=False),
        sa.Column("jkt", sa.String(64), nullable=False),
        sa.Column("new_device", sa.Boolean(), nullable=False),
        sa.Column("password_replaced", sa.Boolean(), nullable=False),
        sa.Column("device_name", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("device_class", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("passed_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("risk_reasons", sa.String(500), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=True),
        sa.Column("cooling_until", TS, nullable=True),
        sa.Column("decided_by", sa.String(40), nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("decision_reason", sa.String(500), nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("reported_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('held', 'ready', 'approved', 'denied', 'completed', 'reported')",
            name=op.f("ck_recoveries_state"),
        ),
        sa.CheckConstraint(
            "state IN ('completed', 'reported') OR completed_at IS NULL",
            name=op.f("ck_recoveries_completed_only"),
        ),
        sa.CheckConstraint(
            "state <> 'completed' OR completed_at IS NOT NULL",
            name=op.f("ck_recoveries_completed_when"),
        ),
        sa.CheckConstraint(
            "cooling_until IS NULL OR completed_at IS NOT NULL",
            name=op.f("ck_recoveries_cooling_after"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recoveries_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recoveries")),
        sa.UniqueConstraint("flow_id", name=op.f("uq_recoveries_flow_id")),
    )
    op.create_index("ix_recoveries_user_created", "recoveries", ["user_id", "created_at"])
    op.create_index("ix_recoveries_state_created", "recoveries", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_recoveries_state_created", table_name="recoveries")
    op.drop_index("ix_recoveries_user_created", table_name="recoveries")
    op.drop_table("recoveries")
