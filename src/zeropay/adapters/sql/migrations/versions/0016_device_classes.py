"""device classes: what a device keeps its keys in, and device PINs

Revision ID: 0016
Revises: 0015

``devices.device_class`` records what a device said at registration (``platform``,
``key_store``, ``software``; ``domain.device_classes``). Every device bound before this revision
was registered with a passkey, so it is ``platform``: the server default carries it over.
Authenticators gain the kind ``pin``: a device PIN's argon2id hash, encrypted in
``secret_ciphertext`` like the other secrets, bound to its device by ``device_id``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CLASSES = "'platform', 'key_store', 'software'"
OLD_KINDS = "'totp', 'passkey', 'sms_otp', 'ocra'"
NEW_KINDS = OLD_KINDS + ", 'pin'"


def _check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        batch_op.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(
            sa.Column("device_class", sa.String(16), nullable=False, server_default="platform")
        )
        batch_op.create_check_constraint(
            op.f("ck_devices_device_class"), f"device_class IN ({CLASSES})"
        )
    _check("authenticators", "kind", f"kind IN ({NEW_KINDS})")


def downgrade() -> None:
    # A PIN is worth nothing without its kind: remove them before the kind goes.
    op.execute("DELETE FROM authenticators WHERE kind = 'pin'")
    _check("authenticators", "kind", f"kind IN ({OLD_KINDS})")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_constraint(op.f("ck_devices_device_class"), type_="check")
        batch_op.drop_column("device_class")
