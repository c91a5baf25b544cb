"""A new device pays only small amounts for its first 24 hours (the policy's ceiling)."""

from __future__ import annotations

from zeropay.services import merchants


def _pay(mfa, phone, merchant_key: str, amount: int):
    r = mfa.client.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {merchant_key}"},
        json={"amount": amount, "currency": "USD", "description": "Game credits"},
    )
    assert r.status_code == 201, r.text
    return phone.call("POST", f"/v1/checkout/{r.json()['id']}/confirm")


def _bound_payer(mfa, email: str):
    phone = mfa.device()
    mfa.sign_up(phone, email)
    assert mfa.bind(phone, email).status_code == 201
    r = phone.call("POST", "/v1/wallet/topups", {"amount": 10_000, "currency": "USD"})
    assert r.status_code == 201, r.text
    return phone


def test_a_new_device_cannot_pay_above_the_ceiling_but_can_pay_below_it(mfa):
    _, key = merchants.create_merchant(mfa.container.ctx, name="Game Shop")
    phone = _bound_payer(mfa, "new.device@example.com")
    refused = _pay(mfa, phone, key.secret, 1_001)  # USD 10.01; the default ceiling is USD 10.00
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert (problem["code"], problem["reason"], problem["limit_minor"]) == (
        "payment_limit_exceeded",
        "new_device",
        1_000,
    )
    assert _pay(mfa, phone, key.secret, 1_000).status_code == 200


def test_after_24_hours_the_device_pays_the_ordinary_limits(mfa, clock):
    _, key = merchants.create_merchant(mfa.container.ctx, name="Game Shop")
    phone = _bound_payer(mfa, "patient@example.com")
    clock.advance(seconds=24 * 3600 + 1)
    phone.token = None  # the session ended long ago; the passkey signs in again
    r = mfa.passkey_login(phone, "patient@example.com")
    assert r.status_code == 201, r.text
    phone.token = r.json()["token"]
    assert _pay(mfa, phone, key.secret, 4_000).status_code == 200


def test_a_session_on_an_older_device_is_not_reduced_by_a_new_one(mfa, clock):
    _, key = merchants.create_merchant(mfa.container.ctx, name="Game Shop")
    phone = _bound_payer(mfa, "two.phones@example.com")
    clock.advance(seconds=24 * 3600 + 1)
    phone.token = None
    phone.token = mfa.passkey_login(phone, "two.phones@example.com").json()["token"]
    tablet = mfa.device("Galaxy Tab", "android")
    assert mfa.bind(tablet, "two.phones@example.com", approver=phone).status_code == 201
    assert _pay(mfa, tablet, key.secret, 4_000).json()["reason"] == "new_device"
    assert _pay(mfa, phone, key.secret, 4_000).status_code == 200
