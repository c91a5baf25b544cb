"""Erasing a user by crypto-shredding (``services.erasure``), on SQLite and PostgreSQL.

Two payers with every kind of personal data, one of them with money moved through the ledger;
the first is erased. Every field the registry attributes to that user -- as the database holds
it after, and as a backup copy taken before held it -- fails to open with ``KeyDestroyed``; the
other payer is untouched; the ledger and the audit chain verify; sessions, devices, payment
instruments (with their merchant tokens and device keys) and factors are gone; the email address
stays readable under the retention key until the retention period ends, and not after the
retention job. Erasing twice, or again after a run that stopped half way, is harmless; a vault
sealed after the commit leaves the key destroyed all the same.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from support import personal
from support.instruments import on_file
from support.mfa import PASSWORD, Mfa
from zeropay import cli
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS
from zeropay.domain.errors import InvalidInput, KeyDestroyed, NotFound, VaultSealed
from zeropay.services import audit, erasure, jobs, ledger_check

OPERATOR = "cli:ops-anna"
RETENTION_DAYS = 1827  # the default: 5 years even with two leap days


def _two_payers(mfa: Mfa) -> tuple[personal.Payer, personal.Payer]:
    """The payer to erase first, then the one to keep."""
    kept, gone = personal.two_payers(mfa)
    return gone, kept


def _pay(mfa: Mfa, payer: personal.Payer) -> str:
    """A top-up and a payment to a merchant: the payer's money in the ledger."""
    r = payer.device.call("POST", "/v1/wallet/topups", {"amount": 900, "currency": "USD"})
    assert r.status_code == 201, r.text
    merchant, _ = personal.webhook_secrets(mfa, name="Corner Cafe")
    body = {"amount": 450, "currency": "USD", "description": "Flat white"}
    r = mfa.client.post("/v1/payments", headers=merchant, json=body)
    assert r.status_code == 201, r.text
    payment_id = str(r.json()["id"])
    r = payer.device.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return payment_id


def _of(fields: list[personal.Field], user_id: str) -> list[personal.Field]:
    return [f for f in fields if f.subject == user_id and not f.column.retained]


def _ledger(mfa: Mfa) -> list[Any]:
    return mfa.container.ctx.run(lambda uow: list(uow.ledger.all_transfers()))


def _sql(mfa: Mfa, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _audited(mfa: Mfa, user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, actor, data) of the audit entries about ``user_id`` that an operator acted."""
    ctx = mfa.container.ctx
    out = []
    for r, _ in ctx.run(lambda uow: list(uow.audit.records())):
        if r.subject == user_id and r.actor == OPERATOR:
            row_id = audit.data_row_id(actor=r.actor, subject=r.subject, at=r.at)
            plain = ctx.keyring.decrypt(r.data, table="audit_log", column="data", row_id=row_id)
            out.append((r.event, r.actor, json.loads(plain)))
    return out


def _verified(mfa: Mfa) -> None:
    ctx = mfa.container.ctx
    assert ledger_check.verify(ctx)[2] == []
    assert audit.verify(ctx).breaks == []


def test_erasure_shreds_every_personal_field_and_keeps_ledger_audit_and_other_users(mfa):
    gone, kept = _two_payers(mfa)
    payment_id = _pay(mfa, gone)
    ctx = mfa.container.ctx
    backup = personal.stored_fields(mfa)  # a copy taken before the erasure
    before = _of(backup, gone.user_id)
    for field in before:
        field.open(ctx.keyring)  # all readable before
    covered = {f"{f.column.table.name}.{f.column.column}" for f in before}
    personal_columns = {
        f"{c.table.name}.{c.column}"
        for c in ENCRYPTED_COLUMNS
        if not c.retained and c.table.name != "webhook_secrets"
    }
    assert covered == personal_columns  # the user had data in every personal column
    ledger_before = _ledger(mfa)

    done = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)

    assert done.erased_now and done.key_versions_destroyed >= 1
    assert done.retained_until == done.erased_at + timedelta(days=RETENTION_DAYS)
    for field in before:  # the backup copy: shredded too
        with pytest.raises(KeyDestroyed):
            field.open(ctx.keyring)
    after = personal.stored_fields(mfa)
    for field in _of(after, gone.user_id):  # what is left in the database
        with pytest.raises(KeyDestroyed):
            field.open(ctx.keyring)
    others = [f for f in after if f.subject != gone.user_id or f.column.retained]
    assert {f.subject for f in others} >= {kept.user_id, None}
    for field in others:
        field.open(ctx.keyring)  # raises if the erasure reached them
    assert erasure.retained_email(ctx, gone.user_id) == gone.email
    # The ledger is untouched: the same rows, the payment still the payer's, pseudonymously.
    assert _ledger(mfa) == ledger_before
    assert _sql(mfa, "SELECT payer_id FROM payments WHERE id = :p", p=payment_id) == [
        (gone.user_id,)
    ]
    _verified(mfa)
    r = kept.device.call("GET", "/v1/me/factors")
    assert r.status_code == 200 and len(r.json()["authenticators"]) == 4, r.text
    assert r.json()["security_questions"] == sorted(kept.questions)


def test_an_erased_user_has_no_session_device_factor_or_way_back_in(mfa):
    gone, kept = _two_payers(mfa)
    erasure.erase_user(mfa.container.ctx, gone.user_id, by=OPERATOR)
    r = gone.device.call("GET", "/v1/me")
    assert r.status_code == 401, r.text
    u = gone.user_id
    live = "SELECT count(*) FROM sessions WHERE user_id = :u AND revoked_at IS NULL"
    assert _sql(mfa, live, u=u) == [(0,)]
    assert _sql(mfa, "SELECT DISTINCT status FROM devices WHERE user_id = :u", u=u) == [
        ("removed",)
    ]
    authenticators = _sql(
        mfa, "SELECT status, secret_ciphertext FROM authenticators WHERE user_id = :u", u=u
    )
    assert {(s, c) for s, c in authenticators} == {("removed", None)}
    for table in ("recovery_codes", "security_answers"):
        assert _sql(mfa, f"SELECT count(*) FROM {table} WHERE user_id = :u", u=u) == [(0,)]
    assert _sql(mfa, "SELECT status FROM users WHERE id = :u", u=u) == [("erased",)]
    # The address no longer names the account: the right password is answered as for no
    # account at all (it was 200 and a flow before), and the address can open a new one.
    laptop = mfa.device("Laptop", "linux")
    answers = [
        laptop.call("POST", "/v1/sessions", {"email": email, "password": PASSWORD}, token="")
        for email in (gone.email, "nobody@example.com")
    ]
    assert [(r.status_code, r.json()["code"]) for r in answers] == [
        (401, "authentication_failed")
    ] * 2
    r = mfa.device().call("POST", "/v1/users", {"email": gone.email, "password": PASSWORD})
    assert r.status_code == 201 and r.json()["id"] != gone.user_id, r.text
    r = kept.device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text


def test_an_erased_users_instruments_are_removed_and_their_merchant_tokens_die(mfa):
    f = on_file(mfa)  # a card with a merchant token and a phone's cryptogram key
    f.wallet.add_phone()
    paid = f.charge(f.body(500))
    assert paid.status_code == 201, paid.text
    r = f.wallet.phone.call("GET", "/v1/me")
    user_id = r.json()["id"]
    kept, _ = personal.two_payers(mfa)

    erasure.erase_user(mfa.container.ctx, user_id, by=OPERATOR)

    instruments = _sql(
        mfa,
        "SELECT status, number_index, number_ciphertext, display_ciphertext FROM instruments"
        " WHERE user_id = :u",
        u=user_id,
    )
    assert len(instruments) == 2
    assert {tuple(row) for row in instruments} == {("removed", None, None, None)}
    grants = "SELECT g.status FROM instrument_grants g JOIN instruments i"
    grants += " ON i.id = g.instrument_id WHERE i.user_id = :u"
    assert _sql(mfa, grants, u=user_id) == [("revoked",)]
    keys = "SELECT status, key_ciphertext FROM instrument_device_keys WHERE user_id = :u"
    assert {tuple(row) for row in _sql(mfa, keys, u=user_id)} == {("removed", None)}
    # The merchant's token for the card answers exactly like a token that never existed.
    theirs = f.charge(f.body(500))
    unknown = f.charge({**f.body(500), "token": "mtok_" + "A" * 43})
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    # The other payer's card is untouched.
    r = kept.device.call("GET", "/v1/me/instruments")
    assert r.status_code == 200 and len(r.json()["data"]) == 1, r.text
    _verified(mfa)


def test_each_step_is_audited_with_the_operator_as_actor(mfa):
    gone, _ = _two_payers(mfa)
    erasure.erase_user(mfa.container.ctx, gone.user_id, by=OPERATOR)
    events = {event: data for event, _, data in _audited(mfa, gone.user_id)}
    assert list(events) == [
        "user.sessions_ended",
        "user.devices_unbound",
        "user.instruments_removed",
        "user.factors_revoked",
        "user.erased",
        "user.retention_scheduled",
        "user.personal_key_destroyed",
    ]
    assert events["user.sessions_ended"]["sessions"] >= 1
    assert events["user.devices_unbound"] == {"devices": 1}
    assert events["user.instruments_removed"] == {"instruments": 1}
    assert events["user.factors_revoked"]["authenticators"] == 4  # passkey, TOTP, OCRA, SMS
    assert events["user.factors_revoked"]["security_answers"] == 2
    assert events["user.erased"]["requested_by_user"] is False
    assert events["user.personal_key_destroyed"]["versions"] >= 1
    _verified(mfa)


def test_the_retained_address_is_readable_until_the_period_ends_and_not_after_the_job(mfa, clock):
    gone, kept = _two_payers(mfa)
    ctx = mfa.container.ctx
    done = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    jobs.register(ctx)
    clock.at = done.retained_until - timedelta(seconds=1)
    assert jobs.run_due(ctx, owner="test")["end_retention"] == 0
    assert erasure.retained_email(ctx, gone.user_id) == gone.email
    clock.advance(seconds=3601)  # past the end, and the hourly job is due again
    assert jobs.run_due(ctx, owner="test")["end_retention"] == 1
    with pytest.raises(KeyDestroyed):
        erasure.retained_email(ctx, gone.user_id)
    [row] = _sql(mfa, "SELECT retained_until FROM aml_retention WHERE user_id = :u", u=gone.user_id)
    assert row[0] is not None  # the record of the retention stays; what it sealed is gone
    retention = [
        f for f in personal.stored_fields(mfa) if f.column.retained and f.subject == kept.user_id
    ]
    assert retention == []  # only erased users have retained data
    assert erasure.end_retention(ctx) == 0  # nothing more to destroy
    _verified(mfa)


def test_erasing_twice_is_harmless(mfa):
    gone, kept = _two_payers(mfa)
    ctx = mfa.container.ctx
    first = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    second = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    assert not second.erased_now and second.key_versions_destroyed == 0
    assert (second.erased_at, second.retained_until) == (first.erased_at, first.retained_until)
    assert erasure.retained_email(ctx, gone.user_id) == gone.email
    events = [event for event, _, _ in _audited(mfa, gone.user_id)]
    assert events.count("user.erased") == 1
    assert events.count("user.personal_key_destroyed") == 2  # the second says: 0 versions
    _verified(mfa)
    assert kept.device.call("GET", "/v1/me").status_code == 200


def test_a_run_stopped_before_its_commit_leaves_nothing_and_runs_again(mfa, monkeypatch):
    gone, _ = _two_payers(mfa)
    ctx = mfa.container.ctx
    original = audit.record

    def failing(*args: Any, **kwargs: Any) -> None:
        if args[2] == "user.erased":
            raise RuntimeError("the process died here")
        original(*args, **kwargs)

    monkeypatch.setattr(audit, "record", failing)
    with pytest.raises(RuntimeError):
        erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    monkeypatch.setattr(audit, "record", original)
    assert gone.device.call("GET", "/v1/me").status_code == 200  # the session lives on
    assert _sql(mfa, "SELECT count(*) FROM aml_retention") == [(0,)]
    assert _audited(mfa, gone.user_id) == []
    assert erasure.erase_user(ctx, gone.user_id, by=OPERATOR).erased_now
    assert gone.device.call("GET", "/v1/me").status_code == 401


def test_a_run_stopped_after_its_commit_is_finished_by_running_it_again(mfa, monkeypatch):
    gone, _ = _two_payers(mfa)
    ctx = mfa.container.ctx
    email = [f for f in personal.stored_fields(mfa) if f.column.table.name == "users"]
    [gone_email] = [f for f in email if f.subject == gone.user_id]

    def died(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError("the process died before destroying the key")

    monkeypatch.setattr(ctx.keyring, "destroy_subject", died)
    with pytest.raises(RuntimeError):
        erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    monkeypatch.undo()
    assert _sql(mfa, "SELECT status FROM users WHERE id = :u", u=gone.user_id) == [("erased",)]
    assert gone_email.open(ctx.keyring) == gone.email.encode()  # not shredded yet
    done = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    assert not done.erased_now and done.key_versions_destroyed >= 1
    with pytest.raises(KeyDestroyed):
        gone_email.open(ctx.keyring)
    assert erasure.retained_email(ctx, gone.user_id) == gone.email
    _verified(mfa)


def test_a_vault_sealed_after_the_commit_leaves_the_key_destroyed_and_a_rerun_audits_it(
    mfa, monkeypatch
):
    gone, _ = _two_payers(mfa)
    ctx = mfa.container.ctx
    vault = mfa.container.vault
    assert vault is not None
    [gone_email] = [
        f
        for f in personal.stored_fields(mfa)
        if f.column.table.name == "users" and f.subject == gone.user_id
    ]
    schedule = vault.schedule_retention_end

    def then_sealed(*args: Any, **kwargs: Any) -> None:
        schedule(*args, **kwargs)
        vault.seal()  # custodians seal it just after the erasure's commit

    monkeypatch.setattr(vault, "schedule_retention_end", then_sealed)
    with pytest.raises(VaultSealed):  # the audit entries need the root key
        erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    monkeypatch.undo()
    vault.auto_unseal(mfa.container.settings.vault_dev_file)
    with pytest.raises(KeyDestroyed):  # destroying it needed no root key
        gone_email.open(vault)
    assert "user.personal_key_destroyed" not in [e for e, _, _ in _audited(mfa, gone.user_id)]
    done = erasure.erase_user(ctx, gone.user_id, by=OPERATOR)
    assert not done.erased_now and done.key_versions_destroyed == 0
    events = [e for e, _, _ in _audited(mfa, gone.user_id)]
    assert events[-2:] == ["user.retention_scheduled", "user.personal_key_destroyed"]
    _verified(mfa)


def test_an_erasure_the_user_asked_for_is_audited_as_the_systems(mfa):
    gone, _ = _two_payers(mfa)
    ctx = mfa.container.ctx
    erasure.erase_user(ctx, gone.user_id, by=gone.user_id)
    records = ctx.run(lambda uow: [r for r, _ in uow.audit.records()])
    erased = [r for r in records if r.event == "user.erased"]
    assert [(r.actor, r.subject) for r in erased] == [("system", gone.user_id)]
    _verified(mfa)


@pytest.mark.parametrize("user_id", ["usr_nobody", "mer_123", 42, "usr_" + "x" * 60])
def test_erasing_no_such_user_is_not_found(mfa, user_id):
    with pytest.raises(NotFound):
        erasure.erase_user(mfa.container.ctx, user_id, by=OPERATOR)


def test_an_erasure_names_who_did_it(mfa):
    gone, _ = _two_payers(mfa)
    with pytest.raises(InvalidInput):
        erasure.erase_user(mfa.container.ctx, gone.user_id, by="")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_operators_cli_erases_a_user(mfa, monkeypatch, capsys):
    gone, _ = _two_payers(mfa)
    settings = mfa.container.settings
    monkeypatch.setenv("ZEROPAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPAY_VAULT_DEV_FILE", str(settings.vault_dev_file))
    monkeypatch.setenv("ZEROPAY_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("ZEROPAY_ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("USER", "ops-anna")
    assert cli.main(["user", "erase", gone.user_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["user_id"] == gone.user_id and shown["erased_now"] is True
    assert shown["personal_key_versions_destroyed"] >= 1
    assert [e for e, _, _ in _audited(mfa, gone.user_id)][-1] == "user.personal_key_destroyed"
    assert cli.main(["user", "erase", "usr_nobody"]) == 1
    assert "not_found" in capsys.readouterr().err
