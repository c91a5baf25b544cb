"""A payer whose phone has no secure key store confirms a payment with the password and an OCRA
app (RFC 6287), over HTTP on SQLite and PostgreSQL, under the shipped authentication policy and
the default SCA exemptions.

The app derives the question from what it shows the payer (payment, amount, currency, payee) and
the flow's nonce, by the encoding README.md documents; a code made for another amount or payee
is refused and the payment stays unpaid, and the code that paid is not accepted again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support import ocra as ocra_app
from support.mfa import PASSWORD, Device, Mfa, signed_up
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import build
from zeropay.services import merchants

EMAIL = "old.phone@example.com"
AMOUNT = 4000  # EUR 40: over the low-value ceiling (EUR 30, PSD2 RTS Art. 16), so SCA


@pytest.fixture
def paying(mfa_settings, clock, smtp_inbox) -> Iterator[Mfa]:
    """The shipped authentication policy with the default SCA exemption profile."""
    built = build(
        replace(mfa_settings, sca_profile="default"),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    with TestClient(create_app(built), base_url="http://localhost") as c:
        yield Mfa(c, built, smtp_inbox)
    built.engine.dispose()


def _problem(r: Any) -> tuple[int, str | None]:
    return r.status_code, r.json().get("code")


def _available_eur(phone: Device) -> int:
    r = phone.call("GET", "/v1/wallet")
    assert r.status_code == 200, r.text
    return next((b["available"] for b in r.json()["balances"] if b["currency"] == "EUR"), 0)


def _payer_with_an_ocra_app(mfa: Mfa) -> tuple[Device, ocra_app.OcraApp]:
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now(), label="Old phone")
    r = phone.call(
        "POST", "/v1/wallet/topups", {"amount": 10000, "currency": "EUR", "source": "test_card"}
    )
    assert r.status_code == 201, r.text
    return phone, app


def _payment(mfa: Mfa, merchant_id: str, key: str, amount: int = AMOUNT) -> str:
    r = mfa.client.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {key}"},
        json={"amount": amount, "currency": "EUR", "description": "Headphones"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _confirmation_flow(phone: Device, payment_id: str) -> dict[str, Any]:
    """Confirm from the wallet: SCA is required, and the answer names the flow."""
    r = phone.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "requires_action", body
    flow = body["next_action"]["flow"]
    assert flow["point"] == "payment_confirmation"
    assert ["password", "ocra"] in flow["paths"], flow["paths"]
    return dict(flow)


def _nonce(flow: dict[str, Any]) -> bytes:
    raw = flow["transaction"]["nonce"]
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


def test_a_payer_confirms_a_payment_with_the_password_and_an_ocra_code(paying):
    mfa = paying
    phone, app = _payer_with_an_ocra_app(mfa)
    merchant_id, key = merchants.create_merchant(mfa.container.ctx, name="Corner Cafe")
    payment_id = _payment(mfa, merchant_id, key.secret)
    before = _available_eur(phone)
    flow = _confirmation_flow(phone, payment_id)
    assert _available_eur(phone) == before - AMOUNT  # held while the payer confirms
    r = mfa.step(phone, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    flow = r.json()["flow"]
    assert flow["next"] == ["ocra"], flow
    # What the app shows the payer, and the one thing it takes from the flow: the nonce.
    shown = {
        "payment_id": payment_id,
        "amount_minor": AMOUNT,
        "currency": "EUR",
        "payee": merchant_id,
        "nonce": _nonce(flow),
    }
    assert ocra_app.question(app.suite, **shown) == flow["transaction"]["question"]
    # A code for another amount, or for another payee, is a wrong code.
    for tampered in ({"amount_minor": AMOUNT - 1}, {"payee": "mer_01SOMEONEELSE"}):
        code = app.code_for(mfa.now(), **{**shown, **tampered})
        r = mfa.step(phone, flow["id"], "ocra", code=code)
        assert _problem(r) == (401, "authentication_failed"), r.text
    r = phone.call("GET", f"/v1/auth/flows/{flow['id']}", token="")
    assert r.json()["status"] == "active" and r.json()["attempts_left"] == 3, r.text
    # The code over what the payer saw pays.
    code = app.code_for(mfa.now(), **shown)
    r = mfa.step(phone, flow["id"], "ocra", code=code)
    assert r.status_code == 200 and r.json()["flow"]["status"] == "complete", r.text
    assert r.json()["payment"]["status"] == "succeeded", r.text
    r = phone.call("GET", f"/v1/checkout/{payment_id}")
    assert r.json()["status"] == "succeeded", r.text
    assert _available_eur(phone) == before - AMOUNT
    # The same code again: refused, and nothing is paid twice.
    r = mfa.step(phone, flow["id"], "ocra", code=code)
    assert _problem(r) == (409, "flow_ended"), r.text
    assert _available_eur(phone) == before - AMOUNT


def test_one_time_step_of_the_app_confirms_one_payment(paying, clock):
    mfa = paying
    phone, app = _payer_with_an_ocra_app(mfa)
    merchant_id, key = merchants.create_merchant(mfa.container.ctx, name="Corner Cafe")
    first, second = _payment(mfa, merchant_id, key.secret), _payment(mfa, merchant_id, key.secret)
    answered = {}
    for payment_id in (first, second):
        flow = _confirmation_flow(phone, payment_id)
        r = mfa.step(phone, flow["id"], "password", password=PASSWORD)
        flow = r.json()["flow"]
        shown = {
            "payment_id": payment_id,
            "amount_minor": AMOUNT,
            "currency": "EUR",
            "payee": merchant_id,
            "nonce": _nonce(flow),
        }
        r = mfa.step(phone, flow["id"], "ocra", code=app.code_for(mfa.now(), **shown))
        answered[payment_id] = (flow["id"], shown, _problem(r))
    assert answered[first][2] == (200, None)
    # The step that paid the first payment is spent: the second code, made in that same
    # minute, is refused like a wrong one; a code of the next minute goes through.
    assert answered[second][2] == (401, "authentication_failed")
    clock.advance(seconds=60)
    flow_id, shown, _ = answered[second]
    r = mfa.step(phone, flow_id, "ocra", code=app.code_for(mfa.now(), **shown))
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
