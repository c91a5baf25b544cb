"""Every column that holds a ``KeyRing`` ciphertext, and how to open it again from its row.

``vault rewrap`` walks this registry to re-encrypt each field under the current key version,
and tests decrypt every stored field with it, which proves each entry rebuilds exactly the
associated data (table, column, row) and subject its writer passed to ``KeyRing.encrypt``. A
column that takes a ciphertext is added here in the change that adds it.

A row whose subject's key was crypto-shredded (an erased user) no longer decrypts: its
ciphertext raises ``KeyDestroyed``, and a rewrap leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table
from sqlalchemy.engine import Row

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware
from zeropay.services import audit, erasure, questions


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table  # sqlalchemy Table from tables.py
    column: str  # the ciphertext column in the table
    aad_column: str  # the column name passed to keyring.encrypt(column=...)
    key: tuple[str, ...]  # primary-key columns (keyset pagination, UPDATE ... WHERE)
    row_id: Callable[[Row], str]  # rebuilds the row_id passed to encrypt(), from the row
    subject: Callable[[Row], str | None]  # the subject passed to encrypt() (None: no subject)
    retained: bool = False
    rewrap: bool = True  # False where re-encrypting would break something (the
    # audit log: its hash chain covers the ciphertext)


def _audit_row_id(row: Row) -> str:
    at: datetime = _aware(row.at)  # SQLite hands back naive UTC datetimes
    return audit.data_row_id(actor=row.actor, subject=row.subject, at=at)


ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    # ---- personal data: sealed under the user's own key, which erasure destroys ----
    EncryptedColumn(
        table=t.users,
        column="email_ciphertext",
        aad_column="email",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.id,
    ),
    # TOTP and OCRA seeds, SMS phone numbers, device PINs' argon2id hashes (null for passkeys,
    # and once removed).
    EncryptedColumn(
        table=t.authenticators,
        column="secret_ciphertext",
        aad_column="secret",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.user_id,
    ),
    EncryptedColumn(
        table=t.security_answers,
        column="question_ciphertext",
        aad_column=questions.CHOICE_COLUMN,
        key=("user_id", "slot"),
        row_id=lambda r: questions.choice_row_id(r.user_id, r.slot),
        subject=lambda r: r.user_id,
    ),
    # The outbox keeps no address (it is read from ``users`` when the message goes): only the
    # body, which may carry a one-time code.
    EncryptedColumn(
        table=t.outbound_email,
        column="body_ciphertext",
        aad_column="body",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.user_id,
    ),
    # The audit entry's data, under the acting user's key or, for operators, merchants and the
    # system, the audit key. Its row id is rebuilt from the entry's actor, subject and time.
    # Never rewrapped: each entry's hash covers its ciphertext, so a re-encrypted entry would
    # break the chain (``audit verify``); old key versions stay readable for it instead.
    EncryptedColumn(
        table=t.audit_log,
        column="data",
        aad_column="data",
        key=("seq",),
        row_id=_audit_row_id,
        subject=lambda r: audit.data_subject(r.actor),
        rewrap=False,
    ),
    # ---- kept for anti-money-laundering law after erasure, under the retention key ----
    EncryptedColumn(
        table=t.aml_retention,
        column="email_ciphertext",
        aad_column=erasure.RETENTION_COLUMN,
        key=("user_id",),
        row_id=lambda r: r.user_id,
        subject=lambda r: r.user_id,
        retained=True,
    ),
    # ---- platform and merchant secrets: no subject, under the vault's purpose keys ----
    EncryptedColumn(
        table=t.webhook_secrets,
        column="secret_ciphertext",
        aad_column="secret",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: None,
    ),
    # ---- tokenized payment instruments (migration 0011): personal data of the owner ----
    # The card or phone number and its display form (null once the instrument is removed).
    EncryptedColumn(
        table=t.instruments,
        column="number_ciphertext",
        aad_column="number",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.user_id,
    ),
    EncryptedColumn(
        table=t.instruments,
        column="display_ciphertext",
        aad_column="display",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.user_id,
    ),
    # A device's cryptogram key for one instrument, under the instrument owner's key.
    EncryptedColumn(
        table=t.instrument_device_keys,
        column="key_ciphertext",
        aad_column="key",
        key=("id",),
        row_id=lambda r: r.id,
        subject=lambda r: r.user_id,
    ),
)
