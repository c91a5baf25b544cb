"""onboarding steps: skip-and-return state per user and step

Revision ID: 0013
Revises: 0012

One row per user and onboarding step once the user skips or completes it (no row: pending), with
the times and how many scheduled reminders are spent (``domain.onboarding``). Nothing to carry
over: users who signed up before this revision start with every step pending, and a step they
already hold (a bound device, a passkey, a confirmed TOTP app) is marked completed the next time
their onboarding is read.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "onboarding_steps",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("skipped_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "step IN ('bind_device', 'passkey', 'second_factor')",
            name=op.f("ck_onboarding_steps_step"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'skipped', 'completed')",
            name=op.f("ck_onboarding_steps_status"),
        ),
        sa.CheckConstraint(
            "(status = 'completed') = (completed_at IS NOT NULL)",
            name=op.f("ck_onboarding_steps_completed_when"),
        ),
        sa.CheckConstraint(
            "status <> 'skipped' OR skipped_at IS NOT NULL",
            name=op.f("ck_onboarding_steps_skipped_when"),
        ),
        sa.CheckConstraint(
            "reminders_sent >= 0 AND reminders_sent <= 5",
            name=op.f("ck_onboarding_steps_reminders"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_onboarding_steps_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "step", name=op.f("pk_onboarding_steps")),
    )
    op.create_index(
        "ix_onboarding_steps_status_skipped", "onboarding_steps", ["status", "skipped_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_onboarding_steps_status_skipped", table_name="onboarding_steps")
    op.drop_table("onboarding_steps")
