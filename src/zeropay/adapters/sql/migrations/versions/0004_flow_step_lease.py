"""auth_flows.busy_until: one answer to a flow is checked at a time

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_flows") as batch_op:
        batch_op.add_column(sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_flows") as batch_op:
        batch_op.drop_column("busy_until")
