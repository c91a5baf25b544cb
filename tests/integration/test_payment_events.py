"""Merchant events written in the payment's own transaction (a transactional outbox): every
change that commits has exactly one event with a stable id, and a change that does not commit
has none."""

from __future__ import annotations

import json

from zeropay.services import payments


def _events(container, payment_id: str) -> list[tuple[str, dict]]:
    found = container.ctx.read(lambda uow: uow.payment_events.of_payment(payment_id))
    return [(e.type, json.loads(e.body)) for e in found]


def _confirm(api, payer, payment_id: str, **headers: str):
    return api.client.post(f"/v1/checkout/{payment_id}/confirm", headers={**payer, **headers})


def test_a_paid_then_refunded_payment_has_one_event_per_change(api, container):
    payer, merchant = api.payer(usd=2000), api.merchant()
    payment = api.payment(merchant, amount=1250, reference="order-17")
    assert _events(container, payment["id"]) == []  # created: nothing to tell yet
    assert _confirm(api, payer, payment["id"]).status_code == 200
    for amount in (250, 1000):
        r = api.client.post(
            f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={"amount": amount}
        )
        assert r.status_code == 201, r.text
    events = _events(container, payment["id"])
    assert [t for t, _ in events] == ["payment.succeeded", "payment.refunded", "payment.refunded"]
    ids = [body["id"] for _, body in events]
    assert len(set(ids)) == 3 and all(i.startswith("evt_") for i in ids)
    first = events[0][1]
    assert first["type"] == "payment.succeeded"
    assert first["data"]["payment"] == {
        "id": payment["id"],
        "amount": 1250,
        "currency": "USD",
        "status": "succeeded",
        "amount_captured": 1250,
        "amount_refunded": 0,
        "reference": "order-17",
    }
    assert events[2][1]["data"]["payment"]["amount_refunded"] == 1250


def test_a_refused_confirmation_writes_no_event(api, container):
    payer, merchant = api.payer(usd=100), api.merchant()
    payment = api.payment(merchant, amount=450)
    r = _confirm(api, payer, payment["id"])
    assert r.status_code == 402 and r.json()["code"] == "insufficient_funds"
    r = api.client.post(
        f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={"amount": 1}
    )
    assert r.status_code == 409, r.text  # nothing to refund: refused, and no event
    assert _events(container, payment["id"]) == []


def test_a_replayed_confirmation_does_not_write_a_second_event(api, container):
    payer, merchant = api.payer(usd=2000), api.merchant()
    payment = api.payment(merchant, amount=450)
    for _ in range(3):
        r = _confirm(api, payer, payment["id"], **{"Idempotency-Key": "tap-1"})
        assert r.status_code == 200, r.text
    assert _confirm(api, payer, payment["id"]).status_code == 409  # paid already
    assert [t for t, _ in _events(container, payment["id"])] == ["payment.succeeded"]


def test_manual_capture_cancel_and_expiry_each_tell_the_merchant(api, container, clock):
    payer, merchant = api.payer(usd=3000), api.merchant()
    captured = api.payment(merchant, amount=800, capture_method="manual")
    canceled = api.payment(merchant, amount=300, capture_method="manual")
    lapsed = api.payment(merchant, amount=200, capture_method="manual")
    for p in (captured, canceled, lapsed):
        assert _confirm(api, payer, p["id"]).json()["status"] == "authorized"
    r = api.client.post(
        f"/v1/payments/{captured['id']}/capture", headers=merchant, json={"amount": 600}
    )
    assert r.status_code == 200, r.text
    r = api.client.post(f"/v1/payments/{canceled['id']}/cancel", headers=merchant)
    assert r.status_code == 200, r.text
    clock.advance(days=7, seconds=1)
    assert payments.expire_holds(container.ctx) == 1
    assert [t for t, _ in _events(container, captured["id"])] == [
        "payment.authorized",
        "payment.succeeded",
    ]
    assert [t for t, _ in _events(container, canceled["id"])] == [
        "payment.authorized",
        "payment.canceled",
    ]
    assert [t for t, _ in _events(container, lapsed["id"])] == [
        "payment.authorized",
        "payment.failed",
    ]
