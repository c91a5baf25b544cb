"""The live risk engine over HTTP: each attack of the risk issue, stopped end to end, and the
honest tap left alone. The shipped rules, GeoIP from the shipped database, real SMTP, passkeys
from a software authenticator; every device reaches the app through a trusted proxy that names
its address in X-Forwarded-For."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sqlalchemy import select

from support.mfa import PASSWORD, Device, Mfa
from support.webauthn_soft import SoftAuthenticator
from zeropay.adapters.sql import tables as t
from zeropay.services import merchants

SEOUL = "211.36.1.2"  # KR in the shipped GeoIP database
LONDON = "81.2.69.160"  # GB
NEAR_SEOUL = "175.223.10.1"  # KR too: a thief in the same city
STUFFER = "203.0.113.77"  # TEST-NET-3: no country


def _payer(risky: Mfa, email: str, *, krw: int = 0, usd: int = 10_000) -> Device:
    phone = risky.device(ip=SEOUL)
    risky.sign_up(phone, email)
    r = risky.bind(phone, email)
    assert r.status_code == 201, r.text
    for amount, currency in ((usd, "USD"), (krw, "KRW")):
        if amount:
            r = phone.call("POST", "/v1/wallet/topups", {"amount": amount, "currency": currency})
            assert r.status_code == 201, r.text
    return phone


def _merchant(risky: Mfa, name: str, mcc: str | None = None) -> str:
    _, key = merchants.create_merchant(risky.container.ctx, name=name, mcc=mcc)
    return key.secret


def _bill(risky: Mfa, key: str, amount: int, currency: str = "USD") -> str:
    r = risky.client.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {key}"},
        json={"amount": amount, "currency": currency, "description": "Order"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _confirm(device: Device, payment_id: str) -> Any:
    return device.call("POST", f"/v1/checkout/{payment_id}/confirm")


def _outcome(r: Any) -> str:
    """A refusal's code, else the payment's status."""
    body = r.json()
    return str(body.get("code") or body["status"])


def _flow(r: Any) -> dict[str, Any]:
    """The confirmation flow a payment that needs SCA asks the payer to answer."""
    assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text
    return dict(r.json()["next_action"]["flow"])


def _usd(device: Device) -> dict[str, Any]:
    r = device.call("GET", "/v1/wallet")
    assert r.status_code == 200, r.text
    return dict(next(b for b in r.json()["balances"] if b["currency"] == "USD"))


class Decision(NamedTuple):
    ref: str | None
    event_type: str
    action: str
    reasons: list[str]
    factors: list[str]
    state: str
    config_version: str


def _decisions(risky: Mfa) -> list[Decision]:
    a = t.risk_assessments.c
    with risky.container.engine.connect() as c:
        rows = c.execute(select(t.risk_assessments).order_by(a.created_at, a.id)).all()
    return [
        Decision(
            r.ref,
            r.event_type,
            r.action,
            json.loads(r.reasons),
            json.loads(r.factors),
            r.state,
            r.config_version,
        )
        for r in rows
    ]


def _answer_with_passkey(risky: Mfa, device: Device, flow: dict[str, Any]) -> Any:
    r = device.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert r.status_code == 200, r.text
    credential = device.authenticator.get(r.json()["publicKey"])
    return risky.step(device, flow["id"], "passkey", credential=credential)


# ---- the honest tap ------------------------------------------------------------------------------


def test_an_ordinary_payment_from_the_bound_phone_goes_through_and_is_recorded(risky):
    phone = _payer(risky, "ana@example.com")
    cafe = _merchant(risky, "Corner Cafe", "5814")
    r = _confirm(phone, _bill(risky, cafe, 450))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    payments = [d for d in _decisions(risky) if d.event_type == "payment"]
    assert [(d.action, d.state) for d in payments] == [("allow", "passed")]
    assert payments[0].config_version.startswith("risk-")


# ---- account takeover: the password, from another device -----------------------------------------


def test_a_stolen_password_from_across_the_world_minutes_later_is_refused_outright(risky):
    _payer(risky, "al@example.com")
    thief = risky.device("Thief laptop", "linux", ip=LONDON)
    r = thief.call("POST", "/v1/sessions", {"email": "al@example.com", "password": PASSWORD})
    assert r.status_code == 403 and r.json()["code"] == "risk_blocked", r.text
    assert "reasons" not in r.json()  # the rules are not taught to whoever asks
    [login] = [d for d in _decisions(risky) if d.event_type == "login"]
    assert login.action == "block"
    assert {"new_device", "impossible_travel", "new_country"} <= set(login.reasons)


def test_a_stolen_password_on_a_new_device_must_be_approved_from_the_bound_phone(risky, clock):
    phone = _payer(risky, "bo@example.com")
    clock.advance(seconds=60)  # the phone was bound before the thief's flow began
    thief = risky.device("Thief laptop", "linux", ip=NEAR_SEOUL)
    r = thief.call("POST", "/v1/sessions", {"email": "bo@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    flow = r.json()["flow"]
    assert flow["next"] == ["bound_device_approval"]  # not the mailbox, not a texted code
    r = risky.step(thief, flow["id"], "email_otp", code="00000000")
    assert r.status_code == 409 and r.json()["code"] == "flow_step_refused", r.text
    # The owner's phone is asked, sees it is not them, and denies: the flow is over.
    r = thief.call("POST", f"/v1/auth/flows/{flow['id']}/approval", token="")
    assert r.status_code == 200, r.text
    r = phone.call("POST", f"/v1/me/approvals/{flow['id']}", {"decision": "deny", "number": "00"})
    assert r.status_code == 204, r.text
    r = risky.step(thief, flow["id"], "bound_device_approval")
    assert r.status_code == 409 and "token" not in r.json(), r.text
    login = [d for d in _decisions(risky) if d.ref == flow["id"]]
    assert [(d.action, d.state) for d in login] == [("challenge", "failed")]
    assert login[0].reasons == ["new_device"] and login[0].factors == ["bound_device_approval"]


# ---- credential stuffing: one address, many accounts ---------------------------------------------


def test_after_a_burst_of_failed_passwords_from_one_address_even_the_right_one_is_refused(risky):
    _payer(risky, "cy@example.com")
    stuffer = risky.device("Bot", "linux", ip=STUFFER)
    for n in range(10):
        r = stuffer.call(
            "POST", "/v1/sessions", {"email": f"victim{n}@example.com", "password": "hunter22"}
        )
        assert r.status_code == 401, r.text
    r = stuffer.call("POST", "/v1/sessions", {"email": "cy@example.com", "password": PASSWORD})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "risk_blocked"
    logins = [d for d in _decisions(risky) if d.event_type == "login"]
    assert sum("first_factor_failed" in d.reasons for d in logins) == 10
    refused = [d for d in logins if "first_factor_failed" not in d.reasons and d.action == "block"]
    assert len(refused) == 1 and "velocity_ip" in refused[0].reasons
    # The owner, from the phone and the place they always use, is not caught by it.
    owner = risky.device("Pixel 9", "android", ip=SEOUL)
    r = owner.call("POST", "/v1/sessions", {"email": "cy@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text


# ---- session theft: the device's key used from the other side of the world ----------------------


def test_a_session_used_from_another_continent_minutes_later_must_show_the_fingerprint(risky):
    phone = _payer(risky, "di@example.com")
    shop = _merchant(risky, "Book Shop", "5942")
    assert _confirm(phone, _bill(risky, shop, 900)).status_code == 200
    stolen = Device(
        risky.client,
        risky.now,
        key=phone.key,
        token=phone.token,
        ip=LONDON,
        authenticator=SoftAuthenticator(),  # the key was copied; the fingerprint was not
    )
    payment = _bill(risky, shop, 900)
    r = _confirm(stolen, payment)
    flow = _flow(r)
    assert flow["paths"] == [["passkey"]]
    assert r.json()["authentication"]["reasons"] == ["risk_challenge"]
    [decided] = [d for d in _decisions(risky) if d.ref == payment]
    assert "impossible_travel" in decided.reasons
    # Confirming again without answering returns the same flow; the money is held, not moved.
    assert _flow(_confirm(stolen, payment))["id"] == flow["id"]
    usd = _usd(stolen)
    assert (usd["available"], usd["held"], usd["posted"]) == (10_000 - 1_800, 900, 10_000 - 900)


def test_the_owner_answers_a_challenge_with_the_passkey_and_the_same_payment_goes_through_once(
    risky,
):
    phone = _payer(risky, "ed@example.com")
    shop = _merchant(risky, "Book Shop", "5942")
    assert _confirm(phone, _bill(risky, shop, 900)).status_code == 200
    phone.ip = LONDON  # a flight later than it looks: the engine asks
    payment = _bill(risky, shop, 900)
    flow = _flow(_confirm(phone, payment))
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    credential = phone.authenticator.get(r.json()["publicKey"])
    r = risky.step(phone, flow["id"], "passkey", credential=credential)
    assert r.status_code == 200 and r.json()["flow"]["status"] == "complete", r.text
    assert r.json()["payment"]["status"] == "succeeded"  # the flow's last step paid
    assert [d.state for d in _decisions(risky) if d.ref == payment] == ["passed"]
    # Once: the payment is paid, and the same answer sent again is refused.
    again = _confirm(phone, payment)
    assert again.status_code == 409 and again.json()["code"] == "invalid_state", again.text
    r = risky.step(phone, flow["id"], "passkey", credential=credential)
    assert r.status_code == 409 and r.json()["code"] == "flow_ended", r.text
    assert _usd(phone)["posted"] == 10_000 - 1_800


# ---- card testing and cash-out ------------------------------------------------------------------


def test_a_burst_of_small_payments_to_many_payees_is_stopped(risky):
    phone = _payer(risky, "fi@example.com")
    outcomes = []
    for n in range(9):
        shop = _merchant(risky, f"Shop {n}", "5999")
        outcomes.append(_outcome(_confirm(phone, _bill(risky, shop, 100 + n))))
    assert outcomes[:4] == ["succeeded"] * 4
    stopped = [o for o in outcomes if o != "succeeded"]
    assert stopped and set(stopped) <= {"requires_action", "risk_blocked"}
    reasons = {r for d in _decisions(risky) if d.action != "allow" for r in d.reasons}
    assert reasons & {"velocity_user", "velocity_device"}


def test_gift_cards_bought_in_a_row_are_challenged_and_then_held_for_an_operator(risky, clock):
    phone = _payer(risky, "gu@example.com", krw=500_000)
    clock.advance(seconds=25 * 3600)  # past the new phone's small-payments day
    phone.token = None
    r = risky.passkey_login(phone, "gu@example.com")
    assert r.status_code == 201, r.text
    phone.token = r.json()["token"]
    cafe = _merchant(risky, "Cafe", "5814")
    assert _confirm(phone, _bill(risky, cafe, 4_500, "KRW")).status_code == 200
    seen = []
    for n in range(7):
        cards = _merchant(risky, f"Gift cards {n}", "5947")
        payment = _bill(risky, cards, 60_000, "KRW")
        seen.append(_outcome(_confirm(phone, payment)))
        # A challenge asks for the owner's finger on the passkey: the thief, who holds the
        # session and the device key, walks away from it and tries the next card.
    assert seen[:2] == ["succeeded", "succeeded"]
    assert "requires_action" in seen
    assert seen[-1] in {"in_review", "risk_blocked"}
    held = [d for d in _decisions(risky) if d.action == "review"]
    assert held and all("cashout_mcc" in d.reasons for d in held)
    # Held, not spent and not lost: the money of each payment in review is reserved.
    r = phone.call("GET", "/v1/wallet")
    krw = [b for b in r.json()["balances"] if b["currency"] == "KRW"][0]
    taken = sum(seen.count(s) for s in ("succeeded", "in_review", "requires_action"))
    paid_or_held = 4_500 + 60_000 * taken
    assert krw["available"] == 500_000 - paid_or_held


# ---- new-device takeover: the mailbox and the password are not enough ---------------------------


def test_a_device_registered_by_someone_with_the_mailbox_needs_the_bound_phone(risky):
    _payer(risky, "ha@example.com")
    thief = risky.device("Thief phone", "android", ip=LONDON)
    r = risky.start(thief, "device_registration", email="ha@example.com", device=thief.info())
    assert r.status_code == 201, r.text
    flow = r.json()
    r = thief.call("POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    r = risky.step(thief, flow["id"], "email_otp", code=risky.code_for("ha@example.com"))
    assert r.status_code == 200, r.text
    r = thief.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    credential = thief.authenticator.create(r.json()["publicKey"])
    r = risky.step(thief, flow["id"], "passkey", credential=credential)
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["next"] == ["bound_device_approval"]
    assert "token" not in r.json()
    [decided] = [d for d in _decisions(risky) if d.ref == flow["id"]]
    assert (decided.action, decided.state) == ("challenge", "pending")
    assert decided.factors == ["email_otp", "passkey", "bound_device_approval"]
    assert {"impossible_travel", "new_country"} <= set(decided.reasons)


# ---- trust, visible to the user ------------------------------------------------------------------


def test_the_user_sees_how_far_the_phone_and_this_session_are_trusted_and_every_decision(
    risky, clock
):
    phone = _payer(risky, "ji@example.com")
    cafe = _merchant(risky, "Cafe", "5814")
    assert _confirm(phone, _bill(risky, cafe, 450)).status_code == 200
    r = phone.call("GET", "/v1/me/risk")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["engine"].startswith("risk-")
    [device] = seen["devices"]
    assert device["name"] == "Pixel 9" and 60 <= device["trust"] <= 100  # bound with a passkey
    fresh = seen["session"]["trust"]
    assert 0 < fresh <= 100
    events = [d["event"] for d in seen["decisions"]]
    assert "payment" in events and "device_registration" in events
    assert all(d["config_version"] == seen["engine"] for d in seen["decisions"])
    # Two minutes later the same session is trusted a little less (it decays with time).
    clock.advance(seconds=120)
    assert phone.call("GET", "/v1/me/risk").json()["session"]["trust"] < fresh
    # Another user's decisions are not in it.
    other = _payer(risky, "ko@example.com")
    mine = {d["id"] for d in seen["decisions"]}
    theirs = {d["id"] for d in other.call("GET", "/v1/me/risk").json()["decisions"]}
    assert mine and theirs and not mine & theirs


# ---- passkey clone signal, and answers that belong to another payment ----------------------------


def test_a_cloned_passkey_reaches_the_engine_as_a_clone_signal(risky):
    phone = _payer(risky, "li@example.com")
    copy = Device(
        risky.client,
        risky.now,
        key=phone.key,
        ip=SEOUL,
        authenticator=phone.authenticator.clone(),
    )
    assert risky.passkey_login(phone, "li@example.com").status_code == 201
    r = risky.passkey_login(copy, "li@example.com")  # the copy's counter did not move on
    assert r.status_code == 401, r.text
    [cloned] = [d for d in _decisions(risky) if "clone_signal" in d.reasons]
    assert (cloned.event_type, cloned.action) == ("login", "block")
    assert "first_factor_failed" in cloned.reasons


def test_a_challenge_answered_for_one_payment_pays_that_payment_only(risky):
    phone = _payer(risky, "mo@example.com")
    shop = _merchant(risky, "Book Shop", "5942")
    assert _confirm(phone, _bill(risky, shop, 900)).status_code == 200
    phone.ip = LONDON
    first, second = _bill(risky, shop, 900), _bill(risky, shop, 900)
    flow = _flow(_confirm(phone, first))
    assert flow["transaction"]["payment_id"] == first
    r = _answer_with_passkey(risky, phone, flow)
    assert r.status_code == 200 and r.json()["payment"]["id"] == first, r.text
    # The second payment gets a decision of its own (London is now where the owner is, as the
    # passkey proved).
    assert _confirm(phone, second).json()["status"] == "succeeded"
    assert [d.action for d in _decisions(risky) if d.ref == second] == ["allow"]
    assert [d.state for d in _decisions(risky) if d.ref == first] == ["passed"]
    again = _confirm(phone, first)  # already paid: the payment's own rules refuse it
    assert again.status_code == 409 and again.json()["code"] == "invalid_state", again.text


def test_a_challenge_failed_five_times_counts_as_failures_and_lets_nothing_through(risky):
    phone = _payer(risky, "ne@example.com")
    shop = _merchant(risky, "Book Shop", "5942")
    assert _confirm(phone, _bill(risky, shop, 900)).status_code == 200
    phone.ip = LONDON
    payment = _bill(risky, shop, 900)
    flow = _flow(_confirm(phone, payment))
    assert _usd(phone)["held"] == 900
    for _ in range(5):
        # The thief has the phone but not the owner's finger: no user verification.
        r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
        credential = phone.authenticator.get(r.json()["publicKey"], user_verified=False)
        r = risky.step(phone, flow["id"], "passkey", credential=credential)
        assert r.status_code == 401, r.text
    [decided] = [d for d in _decisions(risky) if d.ref == payment]
    assert decided.state == "failed"
    # The flow failed: the hold is released and the payment can be confirmed afresh, with a
    # new flow (the engine still asks: the failure taught it nothing about London).
    usd = _usd(phone)
    assert (usd["available"], usd["held"]) == (10_000 - 900, 0)
    fresh = _flow(_confirm(phone, payment))
    assert fresh["id"] != flow["id"]
    with risky.container.engine.connect() as c:
        body = c.execute(
            select(t.risk_records.c.body).where(t.risk_records.c.kind == "user")
        ).scalar_one()
    assert len(json.loads(body)["failures"]) == 1


def test_a_challenge_the_payer_cannot_answer_holds_the_payment_for_an_operator(risky):
    # Signed up in a browser, never bound a phone: no passkey, no authenticator app.
    browser = risky.device("Firefox", "linux", ip=SEOUL)
    risky.sign_up(browser, "oz@example.com")
    r = browser.call("POST", "/v1/wallet/topups", {"amount": 10_000, "currency": "USD"})
    assert r.status_code == 201, r.text
    shop = _merchant(risky, "Book Shop", "5942")
    assert _confirm(browser, _bill(risky, shop, 900)).json()["status"] == "succeeded"
    browser.ip = LONDON  # the engine would ask for the passkey, which this payer does not have
    payment = _bill(risky, shop, 900)
    r = _confirm(browser, payment)
    assert r.status_code == 200 and r.json()["status"] == "in_review", r.text
    [decided] = [d for d in _decisions(risky) if d.ref == payment]
    assert (decided.action, decided.state) == ("challenge", "settled")
    with risky.container.engine.connect() as c:
        body = c.execute(
            select(t.risk_records.c.body).where(t.risk_records.c.kind == "user")
        ).scalar_one()
    assert json.loads(body)["failures"] == []  # nobody was asked, so nobody failed
