"""Consents over HTTP, on SQLite and PostgreSQL: a payer who withholds their location from the
live risk engine pays from another continent without being locked out, no place is stored with
the decision or learned in their record, and the decision's reasons say so; giving it back turns
it on again. Withholding needs a recent strong sign-in, bad bodies get a stable code, the privacy
page and the export show the choices, and erasure removes them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from support import personal
from support.mfa import Device, Mfa
from zeropay.adapters.sql import tables as t
from zeropay.services import merchants

SEOUL = "211.36.1.2"  # KR in the shipped GeoIP database
LONDON = "81.2.69.160"  # GB
RECENT_AUTH_S = 300  # the default policy's recent_auth_s


def _payer(risky: Mfa, email: str) -> Device:
    phone = risky.device(ip=SEOUL)
    risky.sign_up(phone, email)
    r = risky.bind(phone, email)
    assert r.status_code == 201, r.text
    r = phone.call("POST", "/v1/wallet/topups", {"amount": 10_000, "currency": "USD"})
    assert r.status_code == 201, r.text
    return phone


def _pay(risky: Mfa, phone: Device, key: str, amount: int = 900) -> str:
    r = risky.client.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {key}"},
        json={"amount": amount, "currency": "USD", "description": "Order"},
    )
    assert r.status_code == 201, r.text
    payment_id = str(r.json()["id"])
    r = phone.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return payment_id


def _decision(risky: Mfa, payment_id: str) -> tuple[list[str], dict[str, Any]]:
    a = t.risk_assessments.c
    with risky.container.engine.connect() as c:
        row = c.execute(select(a.reasons, a.event).where(a.ref == payment_id)).one()
    return json.loads(row.reasons), json.loads(row.event)


def _user_record(risky: Mfa, user_id: str) -> dict[str, Any]:
    r = t.risk_records.c
    with risky.container.engine.connect() as c:
        body = c.execute(select(r.body).where(r.kind == "user", r.subject == user_id)).scalar_one()
    return dict(json.loads(body))


def _user_id(device: Device) -> str:
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _audit_events(mfa: Mfa) -> list[str]:
    ctx = mfa.container.ctx
    return ctx.run(lambda uow: [r.event for r, _ in uow.audit.records()])


def test_after_opting_out_of_location_no_place_is_stored_and_the_reasons_say_so(risky, clock):
    phone = _payer(risky, "ana@example.com")
    user_id = _user_id(phone)
    _, shop = merchants.create_merchant(risky.container.ctx, name="Book Shop", mcc="5942")
    first = _pay(risky, phone, shop.secret)
    assert _decision(risky, first)[1]["country"] == "KR"
    assert _user_record(risky, user_id)["countries"] == ["KR"]

    r = phone.call("GET", "/v1/me/consents")
    assert r.status_code == 200, r.text
    assert r.json()["consents"]["location"] == {
        "given": True,
        "changed_at": None,
        "signals": ["impossible_travel", "new_country"],
    }
    assert "velocity_ip" in r.json()["always_used"]
    r = phone.call("PUT", "/v1/me/consents", {"location": False})
    assert r.status_code == 200, r.text
    location = r.json()["consents"]["location"]
    assert location["given"] is False and location["changed_at"] is not None
    assert r.json()["consents"]["behaviour"]["given"] is True
    assert "consent.withheld" in _audit_events(risky)
    # What the engine had learned of the user's places is gone from their record.
    record = _user_record(risky, user_id)
    assert record["countries"] == [] and record["last"][1:] == [None, None]

    clock.advance(seconds=240)
    phone.ip = LONDON  # a day's flight from Seoul in four minutes: impossible travel, if used
    away = _pay(risky, phone, shop.secret)  # not locked out: the trusted phone pays
    reasons, event = _decision(risky, away)
    assert "signals_withheld:location" in reasons
    assert not {"impossible_travel", "new_country"} & set(reasons)
    assert event["withheld"] == ["location"] and event["ip"] == LONDON
    assert not {"country", "lat", "lon"} & set(event)
    record = _user_record(risky, user_id)
    assert record["countries"] == [] and record["last"][1:] == [None, None]
    seen = phone.call("GET", "/v1/me/risk").json()["decisions"]
    assert any("signals_withheld:location" in d["reasons"] for d in seen)  # the user sees why

    r = phone.call("PUT", "/v1/me/consents", {"location": True})
    assert r.status_code == 200 and r.json()["consents"]["location"]["given"] is True, r.text
    back = _pay(risky, phone, shop.secret)
    reasons, event = _decision(risky, back)
    assert event["country"] == "GB" and "withheld" not in event
    assert not any(reason.startswith("signals_withheld:") for reason in reasons)
    assert "consent.given" in _audit_events(risky)


def test_withholding_needs_a_recent_strong_sign_in_and_giving_back_does_not(mfa, clock):
    payer, _ = personal.two_payers(mfa)
    clock.advance(seconds=RECENT_AUTH_S // 2)
    assert payer.device.call("GET", "/v1/me").status_code == 200  # the session stays in use
    clock.advance(seconds=RECENT_AUTH_S - RECENT_AUTH_S // 2 + 1)
    r = payer.device.call("PUT", "/v1/me/consents", {"behaviour": False})
    assert r.status_code == 403 and r.json()["code"] == "recent_auth_required", r.text
    r = payer.device.call("PUT", "/v1/me/consents", {"behaviour": True})
    assert r.status_code == 200 and r.json()["consents"]["behaviour"]["changed_at"] is None
    mfa.step_up_with_passkey(payer.device)
    r = payer.device.call("PUT", "/v1/me/consents", {"behaviour": False})
    assert r.status_code == 200 and r.json()["consents"]["behaviour"]["given"] is False, r.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "empty"),
        ([], "not_an_object"),
        ("location", "not_an_object"),
        ({"location": "false"}, "not_a_boolean"),
        ({"location": 0}, "not_a_boolean"),
        ({"location": None}, "not_a_boolean"),
        ({"location": False, "places": False}, "unknown_group"),
    ],
)
def test_a_bad_consent_body_is_refused_with_a_stable_code_and_changes_nothing(mfa, body, reason):
    payer, _ = personal.two_payers(mfa)
    r = payer.device.call("PUT", "/v1/me/consents", body)
    assert (r.status_code, r.json()["code"]) == (422, "consents_invalid"), r.text
    assert r.json()["reason"] == reason
    assert r.headers["content-type"].startswith("application/problem+json")
    with mfa.container.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(t.consents)).scalar_one() == 0


def test_a_body_that_is_not_json_or_is_missing_is_refused_never_a_500(mfa):
    payer, _ = personal.two_payers(mfa)
    r = payer.device.call("PUT", "/v1/me/consents", headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json()["code"], r.text
    r = mfa.client.request(
        "PUT",
        "/v1/me/consents",
        content=b"{not json",
        headers={
            "Authorization": f"DPoP {payer.device.token}",
            "DPoP": payer.device.proof("PUT", "/v1/me/consents", token=payer.device.token),
            "Content-Type": "application/json",
        },
    )
    assert 400 <= r.status_code < 500 and r.json()["code"], r.text
    assert payer.device.call("GET", "/v1/me/consents").status_code == 200


def test_the_privacy_page_and_the_export_show_my_consents_and_erasure_removes_them(mfa, clock):
    payer, other = personal.two_payers(mfa)
    r = payer.device.call("PUT", "/v1/me/consents", {"location": False, "behaviour": False})
    assert r.status_code == 200, r.text
    changed_at = clock.now().isoformat().replace("+00:00", "Z")

    page = payer.device.call("GET", "/v1/me/privacy").json()
    assert page["consents"]["consents"]["location"]["given"] is False
    fields = {f["field"]: f for f in page["fields"]}
    assert fields["consents.given"]["held"] == {"rows": 2, "more": False, "values": [False, False]}

    archive = payer.device.call("GET", "/v1/me/export").json()
    assert archive["consents"]["consents"]["behaviour"] == {
        "given": False,
        "changed_at": changed_at,
        "signals": ["new_payee", "unusual_amount", "unusual_hour"],
    }
    rows = archive["data"]["consents"]["rows"]
    assert sorted((r["signal_group"], r["given"]) for r in rows) == [
        ("behaviour", False),
        ("location", False),
    ]
    assert {r["user_id"] for r in rows} == {payer.user_id}
    theirs = other.device.call("GET", "/v1/me/export").json()
    assert theirs["data"]["consents"]["rows"] == []
    assert theirs["consents"]["consents"]["location"]["given"] is True

    clock.advance(seconds=1)
    mfa.step_up_with_passkey(payer.device)
    r = payer.device.call("DELETE", "/v1/me")
    assert r.status_code == 200, r.text
    assert "consents" not in {k["table"] for k in r.json()["kept"]}
    with mfa.container.engine.connect() as c:
        left = c.execute(select(t.consents).where(t.consents.c.user_id == payer.user_id)).all()
    assert left == []


def test_without_the_opt_out_the_same_trip_is_impossible_travel_and_asks_for_the_passkey(
    risky, clock
):
    phone = _payer(risky, "bo@example.com")
    _, shop = merchants.create_merchant(risky.container.ctx, name="Book Shop", mcc="5942")
    _pay(risky, phone, shop.secret)
    clock.advance(seconds=240)
    phone.ip = LONDON
    r = risky.client.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {shop.secret}"},
        json={"amount": 900, "currency": "USD", "description": "Order"},
    )
    payment_id = r.json()["id"]
    r = phone.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text
    reasons, event = _decision(risky, payment_id)
    assert "impossible_travel" in reasons and event["country"] == "GB"
    assert not any(reason.startswith("signals_withheld:") for reason in reasons)
