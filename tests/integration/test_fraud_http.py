"""Fraud reports and the fraud rate over HTTP, on SQLite and PostgreSQL: merchants flag their own
refunded payments as fraudulent (scope ``refunds:write``), risk operators report chargebacks,
support and risk operators read the rate and where transaction risk analysis is on. Every bad
report is a 4xx with a stable code and writes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support.mfa import Device, Mfa, SmtpInbox, bound
from zeropay.adapters.clock import FixedClock
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import build
from zeropay.config import Settings
from zeropay.services import fraud, operators

PRICE = 4000


def _paid(api: Any, merchant: dict[str, str], email: str = "ana@example.com") -> str:
    payer = api.payer(email, usd=PRICE)
    payment_id = str(api.payment(merchant, PRICE)["id"])
    r = api.client.post(f"/v1/checkout/{payment_id}/confirm", headers=payer)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return payment_id


def _reports(api: Any, merchant: dict[str, str], payment_id: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/v1/payments/{payment_id}/fraud-reports", headers=merchant)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def _audited(container: Any, event: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, subject, data) of each audit entry named ``event``, decrypted."""
    ctx = container.ctx
    out = []
    for entry in ctx.run(lambda uow: [r for r, _ in uow.audit.records()]):
        if entry.event == event:
            row_id = f"{entry.actor}|{entry.subject}|{entry.at.astimezone(UTC).isoformat()}"
            plain = ctx.keyring.decrypt(entry.data, table="audit_log", column="data", row_id=row_id)
            out.append((entry.actor, entry.subject, json.loads(plain)))
    return out


def _problem(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("code")


# ---- merchants ----------------------------------------------------------------------------------


def test_a_merchant_flags_its_refunded_payment_as_fraud_and_it_counts_once(api, container):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    r = api.client.post(f"/v1/payments/{payment_id}/refunds", headers=merchant, json={})
    assert r.status_code == 201, r.text
    path = f"/v1/payments/{payment_id}/fraud-reports"
    keyed = {**merchant, "Idempotency-Key": "fraud-1"}

    r = api.client.post(path, headers=keyed, json={"reason": "stolen card"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["kind"], made["amount"], made["currency"]) == ("refund_fraud", PRICE, "USD")
    assert (made["counted"], made["reporter"], made["reason"]) == (PRICE, "merchant", "stolen card")
    assert "reported_by" not in made
    again = api.client.post(path, headers=keyed, json={"reason": "stolen card"})
    assert again.status_code == 201 and again.json() == made
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _problem(api.client.post(path, headers=merchant, json={})) == (
        409,
        "fraud_report_exists",
    )
    assert [x["id"] for x in _reports(api, merchant, payment_id)] == [made["id"]]
    [(actor, subject, data)] = _audited(container, "fraud.reported")
    assert (subject, data["kind"], data["counted"], data["reporter"]) == (
        payment_id,
        "refund_fraud",
        PRICE,
        "merchant",
    )


def test_a_merchant_cannot_report_on_another_merchants_payment(api, container):
    owner, other = api.merchant("Corner Cafe"), api.merchant("Kiosk")
    payment_id = _paid(api, owner)
    r = api.client.post(f"/v1/payments/{payment_id}/fraud-reports", headers=other, json={})
    assert _problem(r) == (404, "not_found")
    r = api.client.get(f"/v1/payments/{payment_id}/fraud-reports", headers=other)
    assert _problem(r) == (404, "not_found")
    assert _reports(api, owner, payment_id) == []
    assert _audited(container, "fraud.reported") == []


def test_a_key_without_the_refunds_write_scope_cannot_report(api):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    r = api.client.post(
        "/v1/api-keys", headers=merchant, json={"scopes": ["payments:read"], "label": "reader"}
    )
    assert r.status_code == 201, r.text
    reader = {"Authorization": f"Bearer {r.json()['secret']}"}
    r = api.client.post(f"/v1/payments/{payment_id}/fraud-reports", headers=reader, json={})
    assert _problem(r) == (403, "forbidden") and r.json()["scope"] == "refunds:write"
    assert _reports(api, reader, payment_id) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"amount": PRICE + 1}, 422, "fraud_report_exceeds_payment"),
        ({"amount": 100, "currency": "EUR"}, 409, "currency_mismatch"),
        ({"currency": "KRW"}, 409, "currency_mismatch"),
        ({"currency": "XYZ"}, 422, "unknown_currency"),
        ({"amount": 12.5}, 422, "invalid_amount"),
        ({"amount": 0}, 422, "invalid_amount"),
        ({"amount": "100"}, 422, "invalid_amount"),
        ({"kind": "chargeback"}, 422, "unknown_field"),  # merchants flag their own refunds
        ({"reason": "\u202eevil"}, 422, "invalid_input"),
    ],
)
def test_a_bad_report_is_a_4xx_with_a_stable_code_and_writes_nothing(
    api, container, body, status, code
):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    r = api.client.post(f"/v1/payments/{payment_id}/fraud-reports", headers=merchant, json=body)
    assert _problem(r) == (status, code), r.text
    if code == "fraud_report_exceeds_payment":
        assert r.json()["limit_minor"] == PRICE
    assert _reports(api, merchant, payment_id) == []
    assert _audited(container, "fraud.reported") == []


def test_a_payment_not_paid_or_unknown_cannot_be_reported(api):
    merchant = api.merchant()
    unpaid = api.payment(merchant, PRICE)["id"]
    r = api.client.post(f"/v1/payments/{unpaid}/fraud-reports", headers=merchant, json={})
    assert _problem(r) == (409, "invalid_state")
    assert r.json()["payment_status"] == "requires_confirmation"
    r = api.client.post("/v1/payments/pay_nothing/fraud-reports", headers=merchant, json={})
    assert _problem(r) == (404, "not_found")


# ---- operators ----------------------------------------------------------------------------------


@pytest.fixture
def ops(mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    """The shipped authentication policy (operators sign in with a passkey) and the default SCA
    exemption profile, over the same database as ``api``."""
    built = build(
        replace(mfa_settings, sca_profile="default"),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    with TestClient(create_app(built), base_url="http://localhost") as c:
        yield Mfa(c, built, smtp_inbox)
    built.engine.dispose()


def _signed_in(ops: Mfa, device: Device, email: str) -> Device:
    """Sign ``device`` in with its passkey alone (the operators' way in)."""
    device.token = None
    r = ops.passkey_login(device, email)
    assert r.status_code == 201, r.text
    device.token = r.json()["token"]
    return device


def _operator(ops: Mfa, email: str, role: str | None) -> Device:
    phone = bound(ops, email)
    if role is not None:
        operators.grant(ops.container.ctx, email=email, role=role, actor="cli")
    return _signed_in(ops, phone, email)


def _chargeback(device: Device, payment_id: str, **body: Any) -> Any:
    sent = {"kind": "chargeback", "reason": "bank notice 42", **body}
    return device.call("POST", f"/v1/operator/payments/{payment_id}/fraud-reports", sent)


def test_support_cannot_report_fraud_and_a_risk_operator_can(api, ops):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    support = _operator(ops, "support@example.com", "support")
    assert _problem(_chargeback(support, payment_id)) == (403, "operator_role_required")
    nobody = _operator(ops, "payer@example.com", None)
    assert _problem(_chargeback(nobody, payment_id)) == (403, "not_an_operator")
    assert _reports(api, merchant, payment_id) == []

    analyst = _operator(ops, "risk@example.com", "risk")
    r = _chargeback(analyst, payment_id, amount=1500)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["kind"], made["amount"], made["counted"]) == ("chargeback", 1500, 1500)
    assert made["reporter"] == "operator" and made["reported_by"].startswith("usr_")
    [(actor, subject, data)] = _audited(ops.container, "fraud.reported")
    assert (actor, subject) == (made["reported_by"], payment_id)
    assert (data["role"], data["reason"]) == ("risk", "bank notice 42")
    # The merchant sees the chargeback on its payment.
    assert [x["kind"] for x in _reports(api, merchant, payment_id)] == ["chargeback"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"kind": "fraud"}, 422, "invalid_input"),
        ({"reason": " "}, 422, "invalid_reason"),
        ({"amount": PRICE + 1}, 422, "fraud_report_exceeds_payment"),
    ],
)
def test_an_operators_bad_report_is_refused_with_a_stable_code(api, ops, body, status, code):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    analyst = _operator(ops, "risk@example.com", "risk")
    assert _problem(_chargeback(analyst, payment_id, **body)) == (status, code)
    r = analyst.call(
        "POST", f"/v1/operator/payments/{payment_id}/fraud-reports", {"kind": "chargeback"}
    )
    assert _problem(r) == (422, "missing_field")
    assert _reports(api, merchant, payment_id) == []


def test_operators_read_the_fraud_rate_and_where_tra_is_on(api, ops, clock):
    merchant = api.merchant()
    payment_id = _paid(api, merchant)
    analyst = _operator(ops, "risk@example.com", "risk")
    assert _chargeback(analyst, payment_id, amount=4).status_code == 201  # 0.1 %
    clock.advance(days=1)
    fraud.close_periods(ops.container.ctx)

    support = _operator(ops, "support@example.com", "support")
    r = support.call("GET", "/v1/operator/fraud")
    assert r.status_code == 200, r.text
    status = r.json()
    assert (status["profile"], status["currency"], status["fresh"]) == ("default", "EUR", True)
    assert (status["rate"], status["fraud"], status["captured"]) == (0.001, 4, PRICE)
    assert status["by_currency"] == {"USD": {"captured": PRICE, "fraud": 4}}
    assert status["window"]["last_day"] == (clock.now() - timedelta(days=1)).date().isoformat()
    assert status["quarters_above"] == 0 and len(status["quarters"]) == 8
    # 0.1 % is under the EUR 100 band's 0.13 %, above the others'.
    assert [(b["up_to"], b["on"]) for b in status["tra"]] == [
        (10000, True),
        (25000, False),
        (50000, False),
    ]
    nobody = _operator(ops, "payer@example.com", None)
    assert _problem(nobody.call("GET", "/v1/operator/fraud")) == (403, "not_an_operator")


def test_without_an_exemption_profile_the_status_says_so(mfa):
    analyst = _operator(mfa, "risk@example.com", "risk")
    r = analyst.call("GET", "/v1/operator/fraud")
    assert _problem(r) == (409, "conflict") and r.json()["reason"] == "no_exemption_profile"
