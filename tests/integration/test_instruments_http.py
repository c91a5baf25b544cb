"""Payment instruments and tokens over HTTP, on SQLite and PostgreSQL: adding cards and carrier
numbers, listing and removing them, merchant tokens, device cryptogram keys, charges through the
sandbox funding source and the ledger, detokenization counted and audited, a sealed vault."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from support.instruments import (
    DECLINED_CARD,
    NO_FUNDS_CARD,
    PHONE,
    b64url,
    merchant,
    on_file,
    wallet,
)
from support.mfa import signed_up
from zeropay.adapters.funding import Detokenizer, SandboxGateway
from zeropay.adapters.vault.vault import Revealer
from zeropay.domain import bounds
from zeropay.services import audit, ledger_check, merchants


def _rows(mfa: Any, sql: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(sql), params).all())


def _audited(mfa: Any, event: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, subject, data) of each audit entry named ``event``, decrypted."""
    ctx = mfa.container.ctx
    out = []
    for entry in ctx.run(lambda uow: [r for r, _ in uow.audit.records()]):
        if entry.event == event:
            row_id = audit.data_row_id(actor=entry.actor, subject=entry.subject, at=entry.at)
            plain = ctx.keyring.decrypt(entry.data, table="audit_log", column="data", row_id=row_id)
            out.append((entry.actor, entry.subject, json.loads(plain)))
    return out


def _revealer(mfa: Any) -> Revealer:
    """What opens a number: the funding adapter's, which the test borrows from the vault."""
    vault = mfa.container.vault
    assert vault is not None
    return vault.revealer()


def _ledger_clean(mfa: Any) -> None:
    _, _, violations = ledger_check.verify(mfa.container.ctx)
    assert violations == []


# ---- adding, listing, removing ------------------------------------------------------------------


def test_a_card_is_answered_with_a_token_and_a_display_form_never_the_number(mfa, backend):
    w = wallet(mfa, "ana@example.com")
    made = w.add_card("4242 4242 4242 4242", 12, 2030)
    assert made["token"].startswith("tok_") and len(made["token"]) >= 4 + 22  # >= 128 bits
    assert made["kind"] == "card" and made["brand"] == "visa"
    assert made["display"] == "Visa •••• 4242"
    assert (made["exp_month"], made["exp_year"]) == (12, 2030)
    assert "4242424242424242" not in json.dumps(made) and "number" not in made
    [row] = _rows(mfa, "SELECT token_hash, number_ciphertext, number_index FROM instruments")
    assert made["token"].encode() not in bytes(row.token_hash)
    assert b"4242424242424242" not in bytes(row.number_ciphertext)


@pytest.mark.parametrize(
    ("phone", "region"), [(PHONE, None), ("010-1234-5678", "KR"), ("01012345678", "KR")]
)
def test_a_carrier_number_is_kept_as_e164_and_shown_masked(mfa, backend, phone, region):
    w = wallet(mfa, "ana@example.com")
    made = w.add_phone(phone, region)
    assert made["kind"] == "carrier" and made["display"] == "+82 ••••••5678"
    assert made["brand"] is None and made["exp_month"] is None
    [row] = _rows(mfa, "SELECT id, user_id, number_ciphertext FROM instruments")
    stored = _revealer(mfa).reveal(
        bytes(row.number_ciphertext),
        table="instruments",
        column="number",
        row_id=row.id,
        subject=row.user_id,
    )
    assert stored == b"+821012345678"


def test_the_list_shows_instruments_without_tokens_and_the_detail_their_merchants_and_keys(
    mfa, backend
):
    f = on_file(mfa)
    phone = f.wallet.add_phone()
    r = f.wallet.phone.call("GET", "/v1/me/instruments")
    assert r.status_code == 200, r.text
    listed = r.json()["data"]
    # Oldest first; under the fixed clock both were added in the same millisecond.
    assert sorted(i["id"] for i in listed) == sorted([f.instrument["id"], phone["id"]])
    assert all("token" not in i for i in listed)
    for ref in (f.token, f.instrument["id"]):  # by token, or by the id the list shows
        r = f.wallet.phone.call("GET", f"/v1/me/instruments/{ref}")
        assert r.status_code == 200, r.text
        detail = r.json()
        assert [g["merchant_id"] for g in detail["merchant_tokens"]] == [f.merchant.id]
        assert detail["merchant_tokens"][0]["merchant_name"] == "Corner Cafe"
        assert "token" not in detail["merchant_tokens"][0]
        [key] = detail["device_keys"]
        assert key["last_counter"] == 0 and key["locked"] is False and "key" not in key


def test_the_same_number_twice_is_refused_for_one_payer_but_not_across_payers(mfa, backend):
    ana = wallet(mfa, "ana@example.com")
    ana.add_card("4242 4242 4242 4242")
    r = ana.add(kind="card", number="4242-4242-4242-4242", exp_month=1, exp_year=2031)
    assert r.status_code == 409 and r.json()["code"] == "instrument_exists", r.text
    ana.add_phone(PHONE)
    r = ana.add(kind="carrier", phone="010 1234 5678", region="KR")
    assert r.status_code == 409 and r.json()["code"] == "instrument_exists", r.text
    ben = wallet(mfa, "ben@example.com")
    ben.add_card("4242424242424242")  # the index is per payer: the same card, another payer
    assert len(_rows(mfa, "SELECT id FROM instruments")) == 3


def _luhn_complete(body: str) -> str:
    from zeropay.domain.instruments import luhn_valid

    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def test_a_payer_holds_a_bounded_number_of_instruments(mfa, backend):
    w = wallet(mfa, "ana@example.com")
    cards = [_luhn_complete(f"4111111111{n:05d}") for n in range(bounds.INSTRUMENTS_PER_USER_MAX)]
    for number in cards:
        w.add_card(number)
    r = w.add(kind="card", number=_luhn_complete("411111111199999"), exp_month=1, exp_year=2031)
    assert r.status_code == 422 and r.json()["code"] == "instrument_limit_exceeded", r.text
    first = w.phone.call("GET", "/v1/me/instruments").json()["data"][0]
    r = w.phone.call("DELETE", f"/v1/me/instruments/{first['id']}")
    assert r.status_code == 204, r.text
    w.add_card(_luhn_complete("411111111199999"))


NOT_A_CARD = [
    ({"kind": "card", "number": "4242 4242 4242 4241", "exp_month": 1, "exp_year": 2031},
     422, "instrument_invalid", "luhn"),
    ({"kind": "card", "number": "4242 4242 4242", "exp_month": 1, "exp_year": 2031},
     422, "instrument_invalid", "length"),
    ({"kind": "card", "number": "4242/4242/4242/4242", "exp_month": 1, "exp_year": 2031},
     422, "instrument_invalid", "format"),
    ({"kind": "card", "number": "4" * 500, "exp_month": 1, "exp_year": 2031},
     422, "instrument_invalid", "format"),
    ({"kind": "card", "number": "4242424242424242", "exp_month": 10, "exp_year": 2026},
     422, "instrument_invalid", "expired"),
    ({"kind": "card", "number": "4242424242424242", "exp_month": 13, "exp_year": 2030},
     422, "instrument_invalid", "range"),
    ({"kind": "card", "number": "4242424242424242", "exp_month": 12, "exp_year": 30},
     422, "instrument_invalid", "range"),
    ({"kind": "card", "number": 4242424242424242, "exp_month": 12, "exp_year": 2030},
     422, "invalid_input", None),
    ({"kind": "card", "number": "4242424242424242", "exp_month": "12", "exp_year": 2030},
     422, "invalid_input", None),
    ({"kind": "card", "number": "4242424242424242", "exp_month": 12},
     422, "missing_field", None),
    ({"kind": "card", "number": "4242424242424242", "exp_month": 12, "exp_year": 2030,
      "cvc": "123"}, 422, "unknown_field", None),
    ({"kind": "carrier", "phone": "+82 2-1234-5678"}, 422, "instrument_invalid", "not_mobile"),
    ({"kind": "carrier", "phone": "010-1234-5678"}, 422, "instrument_invalid", "unparsable"),
    ({"kind": "carrier", "phone": "010-1234-5678", "region": "XX"},
     422, "instrument_invalid", "region"),
    ({"kind": "carrier", "phone": "+82 10-12"}, 422, "instrument_invalid", "invalid"),
    ({"kind": "carrier", "phone": "+8210" + "1" * 40}, 422, "instrument_invalid", "format"),
    ({"kind": "carrier", "phone": PHONE, "number": "4242424242424242"},
     422, "unknown_field", None),
    ({"kind": "bank", "iban": "DE89370400440532013000"}, 422, "invalid_input", None),
    ({"number": "4242424242424242"}, 422, "invalid_input", None),
]


@pytest.mark.parametrize(("body", "status", "code", "reason"), NOT_A_CARD)
def test_bad_instrument_input_is_refused_with_a_stable_code_and_nothing_stored(
    mfa, backend, body, status, code, reason
):
    w = wallet(mfa, "ana@example.com")
    r = w.add(**body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    if reason is not None:
        assert r.json()["reason"] == reason
    digits = body.get("number")
    if isinstance(digits, str) and len(digits) > 8:
        assert digits not in r.text and digits[-8:] not in r.text
    assert _rows(mfa, "SELECT id FROM instruments") == []


def test_removing_an_instrument_wipes_its_number_and_ends_its_tokens_and_keys(mfa, backend):
    f = on_file(mfa)
    paid = f.charge(f.body(500))
    assert paid.status_code == 201, paid.text
    r = f.wallet.phone.call("DELETE", f"/v1/me/instruments/{f.token}")
    assert r.status_code == 204, r.text
    [row] = _rows(
        mfa,
        "SELECT status, number_ciphertext, display_ciphertext, number_index FROM instruments",
    )
    assert row.status == "removed"
    assert (row.number_ciphertext, row.display_ciphertext, row.number_index) == (None, None, None)
    assert _rows(mfa, "SELECT status FROM instrument_grants") == [("revoked",)]
    assert _rows(mfa, "SELECT status, key_ciphertext FROM instrument_device_keys") == [
        ("removed", None)
    ]
    r = f.charge(f.body(500))
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/devices")):
        r = f.wallet.phone.call(method, f"/v1/me/instruments/{f.token}{path}")
        assert r.status_code == 404, (method, path, r.text)
    # The charge and its ledger transfer stay, naming the instrument; the number may come back.
    r = mfa.client.get(f"/v1/charges/{paid.json()['id']}", headers=f.merchant.headers)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    again = f.wallet.add_card()
    assert again["token"] != f.token
    _ledger_clean(mfa)


def test_a_merchant_token_is_revoked_by_the_payer(mfa, backend):
    f = on_file(mfa)
    [grant] = f.wallet.phone.call("GET", f"/v1/me/instruments/{f.token}").json()["merchant_tokens"]
    r = f.wallet.phone.call("DELETE", f"/v1/me/instruments/{f.token}/grants/{grant['id']}")
    assert r.status_code == 204, r.text
    r = f.charge(f.body(500))
    assert r.status_code == 404, r.text
    r = f.wallet.phone.call("DELETE", f"/v1/me/instruments/{f.token}/grants/{grant['id']}")
    assert r.status_code == 404, r.text
    # Revoked, the merchant may be given a new token.
    f.wallet.grant(f.token, f.merchant.id)


# ---- merchant tokens and device keys need a strong, recent sign-in ------------------------------


def test_a_merchant_token_is_given_once_per_merchant_and_only_after_a_recent_strong_sign_in(
    mfa, backend, clock
):
    w = wallet(mfa, "ana@example.com")
    card = w.add_card()
    shop = merchant(mfa)
    w.grant(card["token"], shop.id)
    r = w.phone.call("POST", f"/v1/me/instruments/{card['token']}/grants", {"merchant_id": shop.id})
    assert r.status_code == 409 and r.json()["code"] == "grant_exists", r.text
    r = w.phone.call(
        "POST", f"/v1/me/instruments/{card['token']}/grants", {"merchant_id": "mer_nobody"}
    )
    assert r.status_code == 404, r.text
    other = merchant(mfa, "Book Nook")
    # Keep the session alive (5 minutes idle) while its sign-in grows old.
    for _ in range(2):
        clock.advance(seconds=200)
        assert w.phone.call("GET", "/v1/me/instruments").status_code == 200
    for path, body in (("grants", {"merchant_id": other.id}), ("devices", None)):
        r = w.phone.call("POST", f"/v1/me/instruments/{card['token']}/{path}", body)
        assert r.status_code == 403 and r.json()["code"] == "recent_auth_required", r.text
    mfa.step_up_with_passkey(w.phone)
    w.grant(card["token"], other.id)
    w.provision(card["token"])


def test_a_device_key_is_provisioned_only_on_a_bound_device_and_replaces_its_earlier_key(
    mfa, backend
):
    unbound = signed_up(mfa, "new@example.com")
    card = {"kind": "card", "number": "4242424242424242", "exp_month": 1, "exp_year": 2031}
    r = unbound.call("POST", "/v1/me/instruments", card)
    assert r.status_code == 201, r.text
    r = unbound.call("POST", f"/v1/me/instruments/{r.json()['token']}/devices")
    assert r.status_code == 403 and r.json()["reason"] == "bound_device_required", r.text

    f = on_file(mfa)
    old = f.wallet.keys[f.token]
    body = f.body(500)
    new = f.wallet.provision(f.token)
    assert new != old
    r = f.charge(body)  # made with the replaced key
    assert r.status_code == 403 and r.json()["code"] == "cryptogram_invalid", r.text
    r = f.charge(f.body(500))
    assert r.status_code == 201, r.text
    keys = _rows(mfa, "SELECT status FROM instrument_device_keys ORDER BY created_at, id")
    assert sorted(k.status for k in keys) == ["active", "removed"]


# ---- charges ------------------------------------------------------------------------------------


def test_a_charge_posts_from_the_instruments_funding_account_to_the_merchant(mfa, backend):
    f = on_file(mfa)
    r = f.charge(f.body(1250))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["status"] == "succeeded" and made["amount"] == 1250 and made["currency"] == "USD"
    assert made["counter"] == 1 and made["decline_code"] is None
    assert f.merchant_token not in r.text and f.token not in r.text
    [transfer] = _rows(
        mfa,
        "SELECT t.id, t.code, t.reference, d.kind AS debit_kind, d.owner_id AS debit_owner,"
        " c.kind AS credit_kind, c.owner_id AS credit_owner, t.amount_minor"
        " FROM ledger_transfers t JOIN ledger_accounts d ON d.id = t.debit_account_id"
        " JOIN ledger_accounts c ON c.id = t.credit_account_id",
    )
    grant_id = _rows(mfa, "SELECT id FROM instrument_grants")[0].id
    assert transfer.id == made["id"] and transfer.code == "charge"
    assert (transfer.debit_kind, transfer.debit_owner) == ("funding", f.instrument["id"])
    assert (transfer.credit_kind, transfer.credit_owner) == ("merchant", f.merchant.id)
    assert transfer.reference == grant_id and transfer.amount_minor == 1250
    r = mfa.client.get(f"/v1/charges/{made['id']}", headers=f.merchant.headers)
    assert r.status_code == 200 and r.json() == made
    r = mfa.client.get(f"/v1/charges/{made['id']}", headers=merchant(mfa, "Other").headers)
    assert r.status_code == 404, r.text
    _ledger_clean(mfa)


@pytest.mark.parametrize(
    ("number", "decline"), [(DECLINED_CARD, "card_declined"), (NO_FUNDS_CARD, "insufficient_funds")]
)
def test_a_sandbox_decline_is_recorded_and_moves_no_money(mfa, backend, number, decline):
    f = on_file(mfa, number=number)
    body = f.body(700)
    r = f.charge(body)
    assert r.status_code == 402, r.text
    problem = r.json()
    assert problem["code"] == "funding_declined" and problem["reason"] == decline
    assert r.headers["content-type"].startswith("application/problem+json")
    charge = problem["charge"]
    assert charge["status"] == "declined" and charge["decline_code"] == decline
    r = mfa.client.get(f"/v1/charges/{charge['id']}", headers=f.merchant.headers)
    assert r.status_code == 200 and r.json() == charge
    assert _rows(mfa, "SELECT id FROM ledger_transfers") == []
    r = f.charge(body)  # the cryptogram was spent by the declined charge
    assert r.status_code == 403 and r.json()["code"] == "cryptogram_invalid", r.text
    _ledger_clean(mfa)


def test_a_card_that_expired_since_it_was_added_is_declined(mfa, backend, clock):
    f = on_file(mfa, number="4000 0566 5566 5556")
    expiring = f.wallet.add_card("5555 5555 5555 4444", 11, 2026)  # good through November
    mtok = f.wallet.grant(expiring["token"], f.merchant.id)
    f.wallet.provision(expiring["token"])
    body = f.wallet.use(expiring["token"], mtok, f.merchant.id, 500)
    clock.advance(days=29)  # 1 December 2026
    r = f.charge(body)
    assert r.status_code == 402 and r.json()["reason"] == "expired_card", r.text
    assert _audited(mfa, "instrument.detokenized") == []  # decided without reading the number
    assert f.charge(f.body(500)).status_code == 201  # the other card is still good


def test_carrier_billing_stops_at_krw_1000000_a_month(mfa, backend, clock):
    f = on_file(mfa, phone=PHONE)
    ceiling = 65_000  # the largest KRW payment
    for n in range(15):  # 975,000
        r = f.charge(f.body(ceiling, "KRW"))
        assert r.status_code == 201, (n, r.text)
    r = f.charge(f.body(ceiling, "KRW"))
    assert r.status_code == 402 and r.json()["reason"] == "carrier_monthly_limit", r.text
    r = f.charge(f.body(25_000, "KRW"))  # exactly up to the cap
    assert r.status_code == 201, r.text
    r = f.charge(f.body(1, "KRW"))
    assert r.status_code == 402 and r.json()["reason"] == "carrier_monthly_limit", r.text
    # The month is Seoul's: 15:00 UTC on 30 November is already 1 December there.
    clock.at = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    r = f.charge(f.body(ceiling, "KRW"))
    assert r.status_code == 201, r.text
    [total] = _rows(mfa, "SELECT amount_minor FROM carrier_billing_totals WHERE period = '2026-11'")
    assert total.amount_minor == 1_000_000
    _ledger_clean(mfa)


def test_carrier_billing_is_in_krw_only_and_a_test_number_declines(mfa, backend):
    f = on_file(mfa, phone=PHONE)
    r = f.charge(f.body(500, "USD"))
    assert r.status_code == 402 and r.json()["reason"] == "currency_not_supported", r.text
    d = on_file(mfa, "dee@example.com", phone="+82 10-0000-0002", shop=f.merchant)
    r = d.charge(d.body(1000, "KRW"))
    assert r.status_code == 402 and r.json()["reason"] == "carrier_declined", r.text


def test_a_charge_sent_again_with_its_idempotency_key_is_answered_once(mfa, backend):
    f = on_file(mfa)
    body = f.body(900)
    first = f.charge(body, key="order-1")
    again = f.charge(body, key="order-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    assert len(_rows(mfa, "SELECT id FROM charges")) == 1
    other = f.charge(f.body(900), key="order-1")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    declined = on_file(mfa, "dee@example.com", number=DECLINED_CARD, shop=f.merchant)
    body = declined.body(300)
    first = declined.charge(body, key="order-2")
    again = declined.charge(body, key="order-2")
    assert first.status_code == again.status_code == 402 and again.json() == first.json()
    assert len(_rows(mfa, "SELECT id FROM charges")) == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 12.5}, "invalid_amount"),
        ({"amount": 0}, "invalid_amount"),
        ({"amount": -5}, "invalid_amount"),
        ({"amount": 6000}, "payment_limit_exceeded"),
        ({"currency": "XYZ"}, "unknown_currency"),
        ({"currency": "CHF"}, "payment_limit_exceeded"),
        ({"counter": 0}, "invalid_input"),
        ({"counter": 2**63}, "invalid_input"),
        ({"counter": "1"}, "invalid_input"),
        ({"cryptogram": "not base64url!"}, "invalid_input"),
        ({"cryptogram": "AAAA"}, "invalid_input"),
        ({"token": "tok_" + "A" * 43}, "not_found"),
        ({"token": "mtok_" + "A" * 100}, "invalid_input"),
        ({"token": None}, "invalid_input"),
        ({"extra": 1}, "unknown_field"),
    ],
)
def test_bad_charge_input_is_refused_with_a_stable_code(mfa, backend, change, code):
    f = on_file(mfa)
    body = {**f.body(500), **change}
    r = f.charge(body)
    assert r.json()["code"] == code, r.text
    assert 400 <= r.status_code < 500
    assert _rows(mfa, "SELECT id FROM charges") == []
    r = f.charge(f.body(500, counter=1))  # nothing was spent by the refusal
    assert r.status_code == 201, r.text


def test_a_charge_needs_the_payments_write_scope(mfa, backend):
    f = on_file(mfa)
    ctx = mfa.container.ctx
    reader = merchants.create_api_key(
        ctx, merchant_id=f.merchant.id, scopes=frozenset({"payments:read"}), label="ro", actor="t"
    )
    r = mfa.client.post(
        "/v1/charges", headers={"Authorization": f"Bearer {reader.secret}"}, json=f.body(500)
    )
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = mfa.client.post("/v1/charges", json=f.body(500))
    assert r.status_code == 401, r.text


# ---- detokenization: the funding adapter only, counted, audited ---------------------------------


def test_the_detokenizer_is_held_by_the_funding_gateway_and_not_by_use_cases(mfa):
    ctx = mfa.container.ctx
    held = [getattr(ctx, f.name) for f in dataclasses.fields(ctx)]
    assert not any(isinstance(v, (Detokenizer, SandboxGateway)) for v in held)
    assert isinstance(mfa.container.funding, SandboxGateway)


def test_each_detokenization_is_audited_with_its_purpose_and_never_the_number(mfa, backend):
    f = on_file(mfa)
    paid = f.charge(f.body(500)).json()
    [(actor, subject, data)] = _audited(mfa, "instrument.detokenized")
    assert (actor, subject) == ("funding:sandbox", f.instrument["id"])
    assert data == {"purpose": "charge", "reference": paid["id"]}
    [(actor, subject, data)] = _audited(mfa, "charge.succeeded")
    assert (actor, subject) == (f.merchant.id, paid["id"])
    assert data["instrument"] == f.instrument["id"] and "4242" not in json.dumps(data)


def _with_gateway(api_for, mfa, **limits):
    """The app over the same database, with a funding gateway whose detokenizer has ``limits``."""
    container = dataclasses.replace(
        mfa.container,
        funding=SandboxGateway(Detokenizer(_revealer(mfa), actor="funding:sandbox", **limits)),
    )
    return api_for(container)


def test_detokenization_is_rate_limited_per_instrument_and_overall(mfa, backend, clock, api_for):
    f = on_file(mfa)
    g = on_file(mfa, "gil@example.com", number="5555555555554444", shop=f.merchant)
    limited = _with_gateway(api_for, mfa, per_instrument_max=2, overall_max=3)

    def charge(o, body):
        return limited.client.post("/v1/charges", headers=o.merchant.headers, json=body)

    assert charge(f, f.body(100)).status_code == 201
    assert charge(f, f.body(100)).status_code == 201
    held = f.body(100)
    r = charge(f, held)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
    assert r.json()["retry_after_s"] > 0
    assert charge(g, g.body(100)).status_code == 201  # the third of the platform's three
    r = charge(g, g.body(100))
    assert r.status_code == 429, r.text
    clock.advance(seconds=bounds.DETOKENIZE_WINDOW_S)
    r = charge(f, held)  # refused before, so nothing of it was spent: its counter still works
    assert r.status_code == 201, r.text
    assert len(_rows(mfa, "SELECT id FROM charges")) == 4
    assert len(_audited(mfa, "instrument.detokenized")) == 4


def test_a_rate_limited_charge_sent_again_with_its_idempotency_key_runs_for_real(
    mfa, backend, clock, api_for
):
    # README: "nothing was spent, send it again after retry_after_s". A 429 kept as the key's
    # answer would be replayed to that retry for as long as the key lives.
    f = on_file(mfa)
    limited = _with_gateway(api_for, mfa, per_instrument_max=1, overall_max=1)

    def charge(body, key="order-7"):
        headers = {**f.merchant.headers, "Idempotency-Key": key}
        return limited.client.post("/v1/charges", headers=headers, json=body)

    assert charge(f.body(100), key="order-6").status_code == 201  # the window's one read
    held = f.body(100)
    for _ in range(2):  # each one ran, and was refused again
        r = charge(held)
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert "Idempotent-Replayed" not in r.headers
    clock.advance(seconds=bounds.DETOKENIZE_WINDOW_S)
    first = charge(held)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers, first.text
    again = charge(held)  # from now on the key answers with the charge it made
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert len(_rows(mfa, "SELECT id FROM charges")) == 2


def test_a_charge_refused_by_a_lock_that_ends_runs_again_under_its_idempotency_key(
    mfa, backend, clock
):
    f = on_file(mfa)
    genuine = f.body(500, counter=1)
    forged = {**genuine, "cryptogram": b64url(bytes(32))}
    for n in range(5):  # five forgeries lock the key for 60 s
        r = f.charge(forged, key=f"forged-{n}")
        assert r.status_code == 403, r.text
    r = f.charge(genuine, key="order-8")
    assert r.status_code == 423 and r.json()["permanent"] is False, r.text
    clock.advance(seconds=61)
    r = f.charge(genuine, key="order-8")  # the lock ran out: the same key runs it for real
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers, r.text


def test_a_sealed_vault_refuses_with_503_and_leaves_nothing_half_done(mfa, backend):
    f = on_file(mfa)
    vault = mfa.container.vault
    assert vault is not None
    tables = (
        "instruments",
        "instrument_grants",
        "instrument_device_keys",
        "charges",
        "ledger_transfers",
        "audit_log",
    )
    before = {table: len(_rows(mfa, f"SELECT * FROM {table}")) for table in tables}
    body = f.body(500)
    vault.seal()
    try:
        r = f.wallet.add(kind="card", number="5555555555554444", exp_month=1, exp_year=2031)
        assert r.status_code == 503 and r.json()["code"] == "vault_sealed", r.text
        r = f.wallet.phone.call("POST", f"/v1/me/instruments/{f.token}/devices")
        assert r.status_code == 503 and r.json()["code"] == "vault_sealed", r.text
        r = f.charge(body)
        assert r.status_code == 503 and r.json()["code"] == "vault_sealed", r.text
    finally:
        vault.auto_unseal(mfa.container.settings.vault_dev_file)
    after = {table: len(_rows(mfa, f"SELECT * FROM {table}")) for table in tables}
    assert after == before
    r = f.charge(body)  # the same cryptogram: the sealed attempt spent nothing
    assert r.status_code == 201, r.text


def test_a_container_without_a_funding_gateway_answers_503_not_500(mfa, api_for):
    bare = api_for(dataclasses.replace(mfa.container, funding=None))
    body = {"token": "mtok_x", "amount": 1, "currency": "USD", "counter": 1, "cryptogram": "A" * 43}
    r = bare.client.post("/v1/charges", headers=merchant(mfa).headers, json=body)
    assert r.status_code == 503, r.text
