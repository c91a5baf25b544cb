"""The payments core end to end through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from zeropay.services import ledger_check


def test_payer_pays_a_merchant_and_the_merchant_refunds_in_parts(api, container):
    payer = api.payer(usd=2000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=1250, reference="order-17")
    assert payment["status"] == "requires_confirmation"

    seen = api.client.get(f"/v1/checkout/{payment['id']}", headers=payer).json()
    assert (seen["amount"], seen["currency"], seen["merchant_name"]) == (1250, "USD", "Corner Cafe")

    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert api.balance(payer) == 750

    r = api.client.post(
        f"/v1/payments/{payment['id']}/refunds",
        headers=merchant,
        json={"amount": 250, "reason": "cold"},
    )
    assert r.status_code == 201, r.text
    assert api.balance(payer) == 1000
    r = api.client.post(
        f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={"amount": 1001}
    )
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_payment"
    r = api.client.post(f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={})
    assert r.status_code == 201 and r.json()["amount"] == 1000
    assert api.balance(payer) == 2000
    got = api.client.get(f"/v1/payments/{payment['id']}", headers=merchant).json()
    assert got["amount_refunded"] == 1250
    r = api.client.post(f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={})
    assert r.status_code == 422 and r.json()["code"] == "refund_exceeds_payment"

    history = api.client.get("/v1/wallet/transactions", headers=payer).json()["data"]
    assert [h["type"] for h in history] == ["refund", "refund", "payment", "topup"]
    _, _, violations = ledger_check.verify(container.ctx)
    assert violations == []


def test_paying_more_than_the_wallet_holds_is_refused_and_moves_nothing(api):
    payer = api.payer(usd=400)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=450)
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.status_code == 402 and r.json()["code"] == "insufficient_funds"
    assert api.balance(payer) == 400
    after = api.client.get(f"/v1/payments/{payment['id']}", headers=merchant).json()
    assert after["status"] == "requires_confirmation"


def test_a_canceled_payment_cannot_be_paid(api):
    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant)
    r = api.client.post(f"/v1/payments/{payment['id']}/cancel", headers=merchant)
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"
    assert api.balance(payer) == 1000


def test_manual_capture_holds_then_posts_part_and_releases_the_rest(api, container):
    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=800, capture_method="manual")
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.json()["status"] == "authorized"
    wallet = api.client.get("/v1/wallet", headers=payer).json()["balances"][0]
    assert (wallet["available"], wallet["held"]) == (200, 800)
    r = api.client.post(
        f"/v1/payments/{payment['id']}/capture", headers=merchant, json={"amount": 900}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_amount"
    r = api.client.post(
        f"/v1/payments/{payment['id']}/capture", headers=merchant, json={"amount": 600}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["amount_captured"]) == ("succeeded", 600)
    wallet = api.client.get("/v1/wallet", headers=payer).json()["balances"][0]
    assert (wallet["available"], wallet["held"]) == (400, 0)
    assert ledger_check.verify(container.ctx)[2] == []


def test_an_uncaptured_hold_expires_and_the_funds_come_back(api, container, clock):
    from zeropay.services import payments

    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=800, capture_method="manual")
    api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert payments.expire_holds(container.ctx) == 0
    clock.advance(days=7, seconds=1)
    assert payments.expire_holds(container.ctx) == 1
    assert payments.expire_holds(container.ctx) == 0
    got = api.client.get(f"/v1/payments/{payment['id']}", headers=merchant).json()
    assert got["status"] == "expired"
    r = api.client.post(f"/v1/payments/{payment['id']}/capture", headers=merchant, json={})
    assert r.status_code == 409
    assert ledger_check.verify(container.ctx)[2] == []
