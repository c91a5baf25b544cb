"""key vault: metadata, wrapped data keys, process peers, share drops, transfers

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vault_meta",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vault_id", sa.String(40), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("root_check", sa.LargeBinary(), nullable=False),
        sa.Column("share_commitments", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("seal_epoch", sa.Integer(), nullable=False),
        sa.Column("development", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("rotated_at", TS),
        sa.CheckConstraint("id = 1", name=op.f("ck_vault_meta_single")),
        sa.CheckConstraint(
            "threshold >= 1 AND threshold <= shares", name=op.f("ck_vault_meta_threshold")
        ),
        sa.CheckConstraint(
            "generation >= 1 AND seal_epoch >= 0", name=op.f("ck_vault_meta_counters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_meta")),
        sa.UniqueConstraint("vault_id", name=op.f("uq_vault_meta_vault_id")),
    )
    op.create_table(
        "vault_keys",
        sa.Column("id", sa.LargeBinary(16), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("destroy_after", TS),
        sa.Column("destroyed_at", TS),
        sa.CheckConstraint(
            "state IN ('active', 'retired', 'destroyed')", name=op.f("ck_vault_keys_state")
        ),
        sa.CheckConstraint(
            "(state = 'destroyed') = (wrapped IS NULL AND destroyed_at IS NOT NULL)",
            name=op.f("ck_vault_keys_destroyed_has_no_key"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_keys")),
        sa.UniqueConstraint("purpose", "subject", "version", name="uq_vault_keys_purpose_version"),
    )
    op.create_index("ix_vault_keys_destroy_after", "vault_keys", ["destroy_after"])
    op.create_table(
        "vault_peers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("proof", sa.LargeBinary(32)),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_peers")),
    )
    op.create_table(
        "vault_share_drops",
        sa.Column("peer_id", sa.String(40), nullable=False),
        sa.Column("share_index", sa.Integer(), nullable=False),
        sa.Column("sealed_share", sa.LargeBinary(), nullable=False),
        sa.Column("submitted_by", sa.String(80), nullable=False),
        sa.Column("submitted_at", TS, nullable=False),
        sa.Column("seal_epoch", sa.Integer(), nullable=False),
        sa.Column("mac", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("peer_id", "share_index", name=op.f("pk_vault_share_drops")),
    )
    op.create_table(
        "vault_transfers",
        sa.Column("peer_id", sa.String(40), nullable=False),
        sa.Column("sealed_root", sa.LargeBinary(), nullable=False),
        sa.Column("from_peer", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("seal_epoch", sa.Integer(), nullable=False),
        sa.Column("mac", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("peer_id", name=op.f("pk_vault_transfers")),
    )
    op.create_table(
        "vault_custodians",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_custodians")),
        sa.UniqueConstraint("name", name=op.f("uq_vault_custodians_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_vault_custodians_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("vault_custodians")
    for table in ("vault_transfers", "vault_share_drops", "vault_peers", "vault_keys"):
        op.drop_table(table)
    op.drop_table("vault_meta")
