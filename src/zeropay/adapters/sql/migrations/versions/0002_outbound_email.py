"""outbound email (transactional outbox)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_email",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_outbound_email_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_email")),
    )
    op.create_index(
        "ix_outbound_email_due", "outbound_email", ["sent_at", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_outbound_email_due", table_name="outbound_email")
    op.drop_table("outbound_email")
