"""encrypted security-question choices and AML retention records for erasure

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Reserved; filled by the change that owns it."""


def downgrade() -> None:
    """Reserved; filled by the change that owns it."""
