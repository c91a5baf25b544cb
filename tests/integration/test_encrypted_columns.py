"""The registry of encrypted columns (``adapters.sql.encrypted``) is right and complete.

Right: with every registered column holding data written through the API, each stored field
opens with the associated data the registry rebuilds from its row, and the subject the registry
names is the key it is under -- once one user is erased, exactly the fields it attributes to that
user stop opening (the retained address aside). Complete: every binary column of the schema is
either registered or named below with the reason it holds no ``KeyRing`` ciphertext, and every
column called ``*ciphertext*`` is registered, so a new encrypted column cannot be missed by
``vault rewrap``.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import LargeBinary

from support import personal
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS
from zeropay.adapters.sql.tables import metadata
from zeropay.domain.errors import KeyDestroyed
from zeropay.services import erasure, questions

# Binary columns that hold no KeyRing ciphertext, and why.
NOT_KEYRING_FIELDS = {
    ("users", "email_index"): "blind index: keyed HMAC of the address, for lookups",
    ("sessions", "token_hash"): "SHA-256 of a 256-bit session token",
    ("api_keys", "secret_hash"): "hash of an API key's secret",
    ("idempotency_keys", "fingerprint"): "hash of a request",
    ("audit_log", "hash"): "the hash chain",
    ("audit_head", "hash"): "the hash chain's head",
    ("authenticators", "credential_id"): "WebAuthn credential id: public",
    ("authenticators", "public_key"): "WebAuthn COSE public key",
    ("authenticators", "pending_secret"): (
        "a WebAuthn challenge, a keyed hash of an SMS code, or an OCRA app's test question "
        "(shown with the seed, useless without it)"
    ),
    ("auth_flows", "challenge"): "a WebAuthn challenge: public by design",
    ("auth_flows", "code_hash"): "keyed hash of an emailed or texted code",
    ("recovery_codes", "code_hash"): "keyed hash of an 80-bit recovery code",
    ("instruments", "token_hash"): "SHA-256 of a 256-bit payer token",
    ("instruments", "number_index"): "blind index: keyed HMAC of (owner, number), for duplicates",
    ("instrument_grants", "token_hash"): "SHA-256 of a 256-bit merchant token",
    # The vault's own records: sealed under the root key, public, or hashes -- never fields.
    ("vault_keys", "id"): "a data key's random id",
    ("vault_keys", "wrapped"): "a data key sealed under the root key",
    ("vault_meta", "root_check"): "a constant sealed under the root key",
    ("vault_peers", "public_key"): "a process's X25519 public key",
    ("vault_peers", "proof"): "HMAC under the peer secret",
    ("vault_share_drops", "sealed_share"): "a share sealed to one process's key",
    ("vault_share_drops", "mac"): "HMAC under the peer secret, no KeyRing ciphertext",
    ("vault_transfers", "sealed_root"): "the root key sealed to one process's key",
    ("vault_transfers", "mac"): "HMAC under the peer secret, no KeyRing ciphertext",
    ("vault_custodians", "token_hash"): "hash of a custodian's credential",
}


def _binary_columns() -> set[tuple[str, str]]:
    return {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }


def _registered() -> set[tuple[str, str]]:
    return {(c.table.name, c.column) for c in ENCRYPTED_COLUMNS}


def test_every_binary_column_is_registered_or_said_to_hold_no_keyring_ciphertext():
    binary, registered = _binary_columns(), _registered()
    unclassified = binary - registered - set(NOT_KEYRING_FIELDS)
    assert unclassified == set(), "register it in adapters/sql/encrypted.py or say why not"
    assert registered & set(NOT_KEYRING_FIELDS) == set()
    assert registered <= binary  # a registered column is a binary column of the schema
    stale = set(NOT_KEYRING_FIELDS) - binary
    assert stale == set(), "a column named here is gone from the schema"
    named = {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if "ciphertext" in column.name
    }
    assert named <= registered


def test_each_entry_names_its_tables_primary_key_and_one_column_once():
    seen = set()
    for column in ENCRYPTED_COLUMNS:
        primary = tuple(c.name for c in column.table.primary_key.columns)
        assert column.key == primary, column.table.name
        assert column.column in column.table.c
        assert (column.table.name, column.column) not in seen
        seen.add((column.table.name, column.column))
    rewrapped = {c.table.name for c in ENCRYPTED_COLUMNS if not c.rewrap}
    assert rewrapped == {"audit_log"}  # its hash chain covers the ciphertext


def test_every_stored_field_opens_with_the_row_id_and_subject_the_registry_rebuilds(mfa):
    kept, gone = personal.two_payers(mfa)
    _, secrets = personal.webhook_secrets(mfa)
    ctx = mfa.container.ctx
    erasure.erase_user(ctx, gone.user_id, by="cli:test")  # fills aml_retention

    opened: dict[str, list[bytes]] = defaultdict(list)
    subjects: dict[str, set[str | None]] = defaultdict(set)
    shredded = []
    for field in personal.stored_fields(mfa):
        name = f"{field.column.table.name}.{field.column.column}"
        subjects[name].add(field.subject)
        if field.subject == gone.user_id and not field.column.retained:
            with pytest.raises(KeyDestroyed):
                field.open(ctx.keyring)
            shredded.append(name)
        else:
            opened[name].append(field.open(ctx.keyring))  # the wrong row id fails here

    for column in ENCRYPTED_COLUMNS:
        name = f"{column.table.name}.{column.column}"
        assert opened[name], f"{name} holds nothing that opens: the test does not exercise it"
    # What each column holds is what was written through the API.
    assert {b"kept@example.com"} == set(opened["users.email_ciphertext"])
    assert {b"gone@example.com"} == set(opened["aml_retention.email_ciphertext"])
    assert {kept.phone.encode(), kept.totp_seed, kept.ocra.seed} == set(
        opened["authenticators.secret_ciphertext"]
    )
    padded = [q.encode().ljust(questions.QUESTION_ID_PADDED_BYTES, b"\0") for q in kept.questions]
    assert sorted(opened["security_answers.question_ciphertext"]) == sorted(padded)
    assert sorted(opened["webhook_secrets.secret_ciphertext"]) == sorted(
        s.encode() for s in secrets
    )
    # Subjects: users' own data under their keys, the audit log under the acting user's key or
    # none, merchants' secrets under none.
    assert subjects["users.email_ciphertext"] == {kept.user_id, gone.user_id}
    assert subjects["outbound_email.body_ciphertext"] == {kept.user_id, gone.user_id}
    assert subjects["audit_log.data"] >= {kept.user_id, gone.user_id, None}
    assert subjects["webhook_secrets.secret_ciphertext"] == {None}
    assert {"users.email_ciphertext", "outbound_email.body_ciphertext", "audit_log.data"} <= set(
        shredded
    )
