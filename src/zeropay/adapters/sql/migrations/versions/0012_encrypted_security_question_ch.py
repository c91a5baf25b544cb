"""encrypted security-question choices and AML retention records for erasure

Revision ID: 0012
Revises: 0011

``security_answers`` kept the chosen question's id in plaintext, in its primary key. It becomes
``(user_id, slot)`` with the question id sealed under the user's data key (``question_ciphertext``,
bound to the row). A migration holds no key -- the vault is unsealed by the running server, never
by Alembic -- so it cannot encrypt the ids already stored. It clears them instead: the table is
dropped and made again, empty. That is safe to do, and this is why it was chosen over refusing
to run: ZeroPay has no production data yet, and no flow the shipped policy can start asks for a
security question (recovery, which pairs one with a passkey, has not shipped), so nobody loses a
way in; users who had chosen questions choose them again in settings. Refusing would have stopped
every development database that ever set answers from upgrading, for no one's benefit.

``aml_retention`` is new: an erased user's email address under the user's separate retention
key, and when that retention ends (``services.erasure``).

The downgrade drops ``aml_retention`` and gives ``security_answers`` its old shape, empty for the
same reason: without the keys the sealed question ids cannot be read back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_table("security_answers")
    op.create_table(
        "security_answers",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("question_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("answer_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("slot >= 1", name=op.f("ck_security_answers_slot")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_security_answers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "slot", name=op.f("pk_security_answers")),
    )
    op.create_table(
        "aml_retention",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("email_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("erased_at", TS, nullable=False),
        sa.Column("retained_until", TS, nullable=False),
        sa.CheckConstraint("retained_until > erased_at", name=op.f("ck_aml_retention_period")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_aml_retention_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_aml_retention")),
    )


def downgrade() -> None:
    op.drop_table("aml_retention")
    op.drop_table("security_answers")
    op.create_table(
        "security_answers",
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("question_id", sa.String(32), nullable=False),
        sa.Column("answer_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_security_answers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "question_id", name=op.f("pk_security_answers")),
    )
