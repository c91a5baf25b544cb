"""consents: the risk engine's signal groups each user withholds

Revision ID: 0015
Revises: 0014

One row per user and signal group (``location``, ``behaviour``) once the user chooses, with
whether the signals may be used and when that last changed (``domain.consents``); every change
is in the audit log too. Nothing to carry over: no row means given, as before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("signal_group", sa.String(16), nullable=False),
        sa.Column("given", sa.Boolean(), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.CheckConstraint(
            "signal_group IN ('location', 'behaviour')",
            name=op.f("ck_consents_signal_group"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_consents_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "signal_group", name=op.f("pk_consents")),
    )


def downgrade() -> None:
    op.drop_table("consents")
