"""tokenized payment instruments, merchant grants, device cryptogram keys, charges

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Reserved; filled by the change that owns it."""


def downgrade() -> None:
    """Reserved; filled by the change that owns it."""
