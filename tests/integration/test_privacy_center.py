"""The privacy center over HTTP, on SQLite and PostgreSQL: the inventory filled with my own data
(``GET /v1/me/privacy``), the JSON archive of everything held about me (``GET /v1/me/export``)
and erasure at my request (``DELETE /v1/me``). Two payers with every kind of personal data
(``support.personal``), one of whom has paid: neither sees the other's data, and no secret is
ever shown."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from support import personal
from support.mfa import Mfa
from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.inventory import INVENTORY, OWNED_BY
from zeropay.services import audit, ledger_check

HIDDEN = "held, not shown"
RECENT_AUTH_S = 300  # the default policy's recent_auth_s
RETENTION_DAYS = 1827  # the default AML retention


def _pay(mfa: Mfa, payer: personal.Payer) -> str:
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


def _holding(mfa: Mfa, user_id: str) -> set[str]:
    """The inventoried fields with a value for this user, read straight from the database."""
    out = set()
    with mfa.container.engine.connect() as c:
        for p in INVENTORY:
            column = p.table.c[p.column]
            stmt = select(column).where(OWNED_BY[p.table.name](user_id), column.is_not(None))
            if c.execute(stmt.limit(1)).first() is not None:
                out.add(p.where)
    return out


def _secrets(payer: personal.Payer) -> list[str]:
    return [payer.phone, "4242424242424242", "4242 4242 4242 4242", "$argon2"]


def test_my_privacy_page_lists_the_inventory_with_my_values_and_hides_secrets(mfa):
    kept, gone = personal.two_payers(mfa)
    r = kept.device.call("GET", "/v1/me/privacy")
    assert r.status_code == 200, r.text
    page = r.json()
    fields = {f["field"]: f for f in page["fields"]}
    assert set(fields) == {p.where for p in INVENTORY}
    email = fields["users.email_ciphertext"]
    assert email["encrypted"] and email["held"] == {
        "rows": 1,
        "more": False,
        "values": [kept.email],
    }
    assert email["legal_basis"].startswith("Art. 6(1)(b)")
    assert sorted(fields["security_answers.question_ciphertext"]["held"]["values"]) == list(
        kept.questions
    )
    assert fields["instruments.display_ciphertext"]["held"]["values"] == ["Visa •••• 4242"]
    for secret in (
        "authenticators.secret_ciphertext",
        "users.password_hash",
        "instruments.number_ciphertext",
        "instrument_device_keys.key_ciphertext",
        "security_answers.answer_hash",
    ):
        held = fields[secret]["held"]
        assert held["rows"] >= 1 and held["shown"] == HIDDEN and "values" not in held, secret
    assert {f["retention_setting"] for f in page["fields"]} >= {"ZEROPAY_AML_RETENTION_DAYS"}
    for absent in [*_secrets(kept), gone.email, gone.user_id, gone.phone]:
        assert absent not in r.text, absent


def test_the_export_holds_every_inventoried_field_that_holds_data_for_me(mfa):
    _export_holds_everything(mfa)


def test_with_the_risk_engine_on_the_export_holds_what_it_remembers_about_me(risky):
    holding = _export_holds_everything(risky)
    assert {"risk_records.body", "risk_assessments.event", "risk_assessments.reasons"} <= holding


def _export_holds_everything(mfa: Mfa) -> set[str]:
    kept, gone = personal.two_payers(mfa)
    payment_id = _pay(mfa, gone)
    r = gone.device.call("GET", "/v1/me/export")
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    archive = r.json()
    assert archive["format"] == "zeropay.export/1" and archive["user_id"] == gone.user_id
    data = archive["data"]
    exported = {
        f"{table}.{column}"
        for table, held in data.items()
        for row in held["rows"]
        for column, value in row.items()
        if value is not None
    }
    holding = _holding(mfa, gone.user_id)
    assert exported == holding
    # The user had data in every encrypted personal column, and in the plaintext ones the
    # privacy center must not forget.
    assert {
        "users.email_ciphertext",
        "authenticators.secret_ciphertext",
        "security_answers.question_ciphertext",
        "outbound_email.body_ciphertext",
        "audit_log.data",
        "instruments.number_ciphertext",
        "instruments.display_ciphertext",
        "instrument_device_keys.key_ciphertext",
        "sessions.user_agent",
        "devices.name",
        "devices.public_jwk",
        "notifications.body",
        "ledger_transfers.amount_minor",
        "payments.payer_id",
    } <= holding
    # Decrypted where I may see it, named where not.
    assert [u["email_ciphertext"] for u in data["users"]["rows"]] == [gone.email]
    assert {a["kind"] for a in data["authenticators"]["rows"]} == {
        "totp",
        "passkey",
        "sms_otp",
        "ocra",
    }
    assert {a["secret_ciphertext"] for a in data["authenticators"]["rows"]} <= {HIDDEN, None}
    assert [p["id"] for p in data["payments"]["rows"]] == [payment_id]
    assert len(data["ledger_transfers"]["rows"]) >= 2  # the top-up and the payment
    mine = [e for e in data["audit_log"]["rows"] if e["actor"] == gone.user_id]
    assert mine and all(isinstance(e["data"], dict) for e in mine)
    for absent in [*_secrets(gone), kept.email, kept.user_id, kept.phone]:
        assert absent not in r.text, absent
    # The other payer's export is theirs alone.
    r = kept.device.call("GET", "/v1/me/export")
    assert r.status_code == 200 and gone.user_id not in r.text and gone.email not in r.text
    return holding


def _age_last_login(device: Any, clock: Any, seconds: int) -> None:
    """Let the strong sign-in grow old while the session stays in use (idle timeout 5 min)."""
    clock.advance(seconds=seconds // 2)
    assert device.call("GET", "/v1/me").status_code == 200
    clock.advance(seconds=seconds - seconds // 2)


def test_erasing_my_account_needs_a_recent_strong_sign_in_and_says_what_is_kept(mfa, clock):
    kept, gone = personal.two_payers(mfa)
    payment_id = _pay(mfa, gone)
    _age_last_login(gone.device, clock, RECENT_AUTH_S + 1)
    r = gone.device.call("DELETE", "/v1/me")
    assert r.status_code == 403 and r.json()["code"] == "recent_auth_required", r.text
    assert gone.device.call("GET", "/v1/me").status_code == 200  # nothing happened

    mfa.step_up_with_passkey(gone.device)
    r = gone.device.call("DELETE", "/v1/me")
    assert r.status_code == 200, r.text
    answer = r.json()
    erased_at = clock.now()
    assert answer["user_id"] == gone.user_id
    assert answer["email_retained_until"] == (
        (erased_at + timedelta(days=RETENTION_DAYS)).isoformat().replace("+00:00", "Z")
    )
    kept_tables = {k["table"]: k for k in answer["kept"]}
    assert {"aml_retention", "ledger_transfers", "payments", "audit_log"} <= set(kept_tables)
    assert kept_tables["payments"]["legal_basis"].startswith("Art. 6(1)(c)")
    # Shredded, wiped or replaced by meaningless values: never reported as kept.
    assert "email address" not in kept_tables["users"]["fields"]
    assert "password (hashed)" not in kept_tables["users"]["fields"]
    assert "email lookup index" not in kept_tables["users"]["fields"]
    assert (
        "instruments" not in kept_tables
        or "card or phone number" not in (kept_tables["instruments"]["fields"])
    )
    assert "security_answers" not in kept_tables

    assert gone.device.call("GET", "/v1/me").status_code == 401  # the session stopped working
    assert gone.device.call("GET", "/v1/me/export").status_code == 401
    ctx = mfa.container.ctx
    other = ctx.read(lambda uow: uow.accounts.user(kept.user_id))
    assert other is not None and other.status == "active"  # the other payer's idle session
    # ended by now; the account is untouched
    assert ledger_check.verify(ctx)[2] == []
    assert audit.verify(ctx).breaks == []
    with mfa.container.engine.connect() as c:
        payer = c.execute(select(t.payments.c.payer_id).where(t.payments.c.id == payment_id))
        assert payer.scalar_one() == gone.user_id  # pseudonymous, kept for AML
    events = ctx.run(lambda uow: [(r.event, r.actor) for r, _ in uow.audit.records()])
    assert ("user.erased", "system") in events  # never the erased user, whose key is gone
