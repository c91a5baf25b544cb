"""The data inventory covers the schema: a column that holds personal data and is missing from
``adapters.sql.inventory`` fails here."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table

from zeropay.adapters.sql import inventory
from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS


def test_every_column_of_the_schema_is_inventoried_or_declared_not_personal() -> None:
    assert inventory.uncovered(t.metadata) == []


def test_a_new_column_on_a_table_about_people_is_reported_missing() -> None:
    copy = MetaData()
    for table in t.metadata.sorted_tables:
        table.to_metadata(copy)
    copy.tables["users"].append_column(Column("phone", String(20)))
    assert set(inventory.uncovered(copy)) - set(inventory.uncovered(t.metadata)) == {"users.phone"}


def test_a_new_table_naming_a_user_is_reported_missing() -> None:
    copy = MetaData()
    for table in t.metadata.sorted_tables:
        table.to_metadata(copy)
    Table("nicknames", copy, Column("user_id", String(32)), Column("nickname", String(40)))
    assert set(inventory.uncovered(copy)) - set(inventory.uncovered(t.metadata)) == {
        "nicknames.nickname",
        "nicknames.user_id",
    }


def test_a_table_naming_a_user_cannot_be_waved_through(monkeypatch: pytest.MonkeyPatch) -> None:
    waved = {**inventory.NOT_PERSONAL_TABLES, "sessions": "said to hold nothing personal"}
    monkeypatch.setattr(inventory, "NOT_PERSONAL_TABLES", waved)
    assert "sessions: names a person, cannot be declared not personal" in inventory.uncovered(
        t.metadata
    )


def test_encrypted_is_read_from_the_registry_of_encrypted_columns() -> None:
    encrypted = {(e.table.name, e.column) for e in ENCRYPTED_COLUMNS}
    personal = {(p.table.name, p.column) for p in inventory.INVENTORY}
    assert {p.where for p in inventory.INVENTORY if p.encrypted} == {
        f"{table}.{column}" for table, column in encrypted & personal
    }
    # Every ciphertext sealed under a person's key is inventoried; only platform secrets are not.
    assert {f"{a}.{b}" for a, b in encrypted - personal} == {"webhook_secrets.secret_ciphertext"}


def test_each_field_is_inventoried_once_with_purpose_basis_and_retention() -> None:
    wheres = [p.where for p in inventory.INVENTORY]
    assert len(wheres) == len(set(wheres))
    for p in inventory.INVENTORY:
        assert p.name and p.purpose and p.retention, p.where
    assert {p.basis for p in inventory.INVENTORY} == set(inventory.Basis)


def test_every_inventoried_table_says_how_its_rows_belong_to_a_user() -> None:
    assert {p.table.name for p in inventory.INVENTORY} == set(inventory.OWNED_BY)


def test_secrets_are_never_shown() -> None:
    hidden = {p.where for p in inventory.INVENTORY if p.shown is inventory.Shown.HIDDEN}
    assert {
        "users.password_hash",
        "authenticators.secret_ciphertext",
        "instruments.number_ciphertext",
        "security_answers.answer_hash",
        "recovery_codes.code_hash",
        "sessions.token_hash",
        "instrument_device_keys.key_ciphertext",
    } <= hidden
