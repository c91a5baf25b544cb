"""Older phones over HTTP, on SQLite and PostgreSQL, under the shipped authentication policy:
each device class (platform, key_store, software) at each access point a device takes part in
-- device registration, login, step-up, payment confirmation -- through a real flow. What the
class allows completes; what it does not is refused with a stable code (README: Older phones;
the full table is checked against the policy in tests/unit/test_fallback_table.py).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from support import ocra as ocra_app
from support import sca
from support.mfa import PASSWORD, Device, Mfa, bound
from support.older_phones import (
    OTHER_PIN,
    PIN,
    phone,
    pin_login,
    register_with_pin,
    sign_transaction,
    start_registration,
)
from zeropay.domain.dynamic_linking import canonical

EMAIL = "old.phone@example.com"
WITHOUT_PLATFORM_AUTHENTICATOR = ["key_store", "software"]
AMOUNT = 4000  # EUR 40: above the low-value ceiling (PSD2 RTS Art. 16), so SCA


def _problem(r: Any) -> tuple[int, str | None]:
    return r.status_code, r.json().get("code")


def _no_path(r: Any) -> bool:
    """Refused: the device has no path of the policy's to pass this step with."""
    return (r.status_code, r.json().get("code"), r.json().get("reason")) == (
        403,
        "forbidden",
        "no_path",
    )


def _registered(mfa: Mfa, device_class: str, email: str = EMAIL) -> Device:
    """A payer who signed up on this phone and registered it, as ``device_class``, with a PIN."""
    device = phone(mfa, device_class)
    mfa.sign_up(device, email)
    r = register_with_pin(mfa, device, email)
    assert r.status_code == 201, r.text
    return device


def _paths(r: Any) -> list[list[str]]:
    assert r.status_code in (200, 201), r.text
    body = r.json()
    return list(body.get("flow", body)["paths"])


# ---- device registration -----------------------------------------------------------------------


@pytest.mark.parametrize("device_class", WITHOUT_PLATFORM_AUTHENTICATOR)
def test_a_phone_without_a_platform_authenticator_registers_with_the_password_and_a_pin(
    mfa, device_class
):
    device = phone(mfa, device_class)
    mfa.sign_up(device, EMAIL)
    r = mfa.start(device, "device_registration", email=EMAIL, device=device.info())
    assert _paths(r) == [["email_otp", "password", "pin", "bound_device_approval"]]
    flow = start_registration(mfa, device, EMAIL)
    # The address proved: no bound device yet, so the approval is waived (as with a passkey).
    assert flow["paths"] == [["email_otp", "password", "pin"]], flow
    # A passkey is never asked of it, nor accepted: the class has no platform authenticator.
    r = mfa.step(device, flow["id"], "passkey", credential={})
    assert _problem(r) == (409, "flow_step_refused"), r.text
    r = device.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert _problem(r) == (409, "flow_step_refused"), r.text
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["pin"], r.text
    # A guessable or short PIN is refused before anything is kept; the flow goes on.
    for weak in ("12345678", "11111111", "121212121", "4071829", "40718a93"):
        r = mfa.step(device, flow["id"], "pin", pin=weak)
        assert _problem(r) == (422, "weak_pin"), (weak, r.text)
    r = mfa.step(device, flow["id"], "pin", pin=PIN)
    assert r.status_code == 201, r.text
    assert r.json()["device"]["device_class"] == device_class
    device.token = r.json()["token"]
    r = device.call("GET", "/v1/me/devices")
    assert [d["device_class"] for d in r.json()["data"]] == [device_class], r.text
    # The PIN is a factor of this device: listed, its hash never shown.
    r = device.call("GET", "/v1/me/factors")
    assert r.status_code == 200, r.text
    pins = [a for a in r.json()["authenticators"] if a["kind"] == "pin"]
    assert len(pins) == 1 and PIN not in r.text, r.text


def test_a_platform_phone_registers_with_a_passkey_and_is_not_offered_the_pin_path(mfa):
    device = phone(mfa, "platform")
    mfa.sign_up(device, EMAIL)
    r = mfa.start(device, "device_registration", email=EMAIL, device=device.info())
    assert _paths(r) == [["email_otp", "passkey", "bound_device_approval"]]
    flow = start_registration(mfa, device, EMAIL)
    assert flow["paths"] == [["email_otp", "passkey"]] and flow["next"] == ["passkey"], flow
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert _problem(r) == (409, "flow_step_refused"), r.text
    r = device.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    credential = device.authenticator.create(r.json()["publicKey"])
    r = mfa.step(device, flow["id"], "passkey", credential=credential)
    assert r.status_code == 201 and r.json()["device"]["device_class"] == "platform", r.text


def test_a_second_phone_without_a_passkey_needs_the_approval_of_the_bound_one(mfa, clock):
    first = bound(mfa, EMAIL)  # a platform phone with a passkey
    clock.advance(seconds=1)  # only a device bound before a flow began approves it
    old = phone(mfa, "software", "Old phone")
    r = mfa.start(old, "device_registration", email=EMAIL, device=old.info())
    assert _paths(r) == [["email_otp", "password", "pin", "bound_device_approval"]]
    r = register_with_pin(mfa, old, EMAIL, approver=first)
    assert r.status_code == 201, r.text
    done = [m["factor"] for m in r.json()["flow"]["done"]]
    assert done == ["email_otp", "password", "pin", "bound_device_approval"]


# ---- login -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device_class", WITHOUT_PLATFORM_AUTHENTICATOR)
def test_a_phone_without_a_platform_authenticator_logs_in_with_its_key_and_pin(mfa, device_class):
    device = _registered(mfa, device_class)
    device.token = None
    r = mfa.start(device, "login", email=EMAIL)
    paths = _paths(r)
    assert ["passkey"] not in paths and ["device_key", "pin"] in paths, paths
    assert ["password", "email_otp"] in paths, paths  # the password rules stay
    r = mfa.step(device, r.json()["id"], "passkey", credential={})
    assert _problem(r) == (409, "flow_step_refused"), r.text
    # A usernameless passkey login has no path for this device at all.
    r = mfa.start(device, "login")
    assert _no_path(r), r.text
    r = pin_login(mfa, device, EMAIL)
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    assert [m["factor"] for m in session["methods"]] == ["device_key", "pin"], session
    assert session["aal"] == 2, session


def test_a_platform_phone_has_no_pin_to_log_in_with(mfa):
    device = bound(mfa, EMAIL)
    device.token = None
    r = mfa.start(device, "login", email=EMAIL)
    flow_id = r.json()["id"]
    r = mfa.step(device, flow_id, "device_key")
    assert _no_path(r), r.text


def test_a_pin_counts_only_on_its_own_phone_and_five_failures_lock_it(mfa, clock):
    first = _registered(mfa, "software")
    clock.advance(seconds=1)
    second = phone(mfa, "software", "Old tablet")
    # The first phone, signed in with its key and PIN (two factors), approves the second.
    assert register_with_pin(mfa, second, EMAIL, OTHER_PIN, approver=first).status_code == 201
    second.token = None
    # The first phone's PIN on the second phone is a wrong PIN.
    assert _problem(pin_login(mfa, second, EMAIL, PIN)) == (401, "authentication_failed")
    for _ in range(4):
        assert _problem(pin_login(mfa, second, EMAIL, "99999998")) == (
            401,
            "authentication_failed",
        )
    # Five consecutive failures: the PIN is locked, the right one answers like a wrong one...
    assert _problem(pin_login(mfa, second, EMAIL, OTHER_PIN)) == (401, "authentication_failed")
    # ...until the lock ends (PSD2 RTS Art. 4(3)(b); the period grows with each lock).
    clock.advance(seconds=61)
    assert pin_login(mfa, second, EMAIL, OTHER_PIN).status_code == 201


# ---- step-up -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device_class", WITHOUT_PLATFORM_AUTHENTICATOR)
def test_a_phone_without_a_platform_authenticator_steps_up_with_its_key_and_pin(mfa, device_class):
    device = _registered(mfa, device_class)
    r = device.call("POST", "/v1/me/step-up")
    assert r.status_code == 201, r.text
    flow = r.json()
    assert ["passkey"] not in flow["paths"] and ["device_key", "pin"] in flow["paths"], flow
    r = mfa.step(device, flow["id"], "passkey", credential={})
    assert _problem(r) == (409, "flow_step_refused"), r.text
    r = mfa.step(device, flow["id"], "device_key")
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["pin"], r.text
    r = mfa.step(device, flow["id"], "pin", pin=PIN)
    assert r.status_code == 200 and r.json()["flow"]["status"] == "complete", r.text


# ---- payment confirmation ----------------------------------------------------------------------


def _seasoned_payer(mfa: Mfa, clock: Any, device_class: str) -> Device:
    """A payer on a phone of ``device_class`` past its day of reduced limits, signed in again,
    with EUR 100 in the wallet."""
    if device_class == "platform":
        device = bound(mfa, EMAIL)
        clock.advance(seconds=sca.SEASONED_S)
        sca.sign_in_with_passkey(mfa, device, EMAIL)
    else:
        device = _registered(mfa, device_class)
        clock.advance(seconds=sca.SEASONED_S)
        assert pin_login(mfa, device, EMAIL).status_code == 201
    r = device.call("POST", "/v1/wallet/topups", {"amount": 10000, "currency": "EUR"})
    assert r.status_code == 201, r.text
    return device


OFFERED = {
    # What each class is offered when it holds only what it was registered with.
    "platform": [["passkey"], ["device_key", "password"]],
    "key_store": [["device_key", "password"], ["device_key", "pin"]],
    "software": [["device_key", "pin"]],
}


@pytest.mark.parametrize("device_class", ["platform", "key_store", "software"])
def test_each_class_is_offered_its_own_ways_to_confirm_a_payment(psd2, clock, device_class):
    mfa = psd2
    device = _seasoned_payer(mfa, clock, device_class)
    shop = sca.shop(mfa, "Corner Cafe")
    flow = sca.flow_of(sca.confirm(device, sca.bill(mfa, shop, AMOUNT, "EUR")))
    assert flow["paths"] == OFFERED[device_class], flow["paths"]


@pytest.mark.parametrize("device_class", WITHOUT_PLATFORM_AUTHENTICATOR)
def test_the_device_key_signs_the_payment_and_the_pin_confirms_it(psd2, clock, device_class):
    mfa = psd2
    device = _seasoned_payer(mfa, clock, device_class)
    shop = sca.shop(mfa, "Corner Cafe")
    payment_id = sca.bill(mfa, shop, AMOUNT, "EUR")
    flow = sca.flow_of(sca.confirm(device, payment_id))
    r = sign_transaction(mfa, device, flow)
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["next"] == (
        ["pin"] if device_class == "software" else ["password", "pin"]
    ), r.text
    r = mfa.step(device, flow["id"], "pin", pin=PIN)
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
    assert sca.payment(mfa, shop, payment_id)["status"] == "succeeded"


def test_a_software_phone_cannot_confirm_with_its_key_and_the_password(psd2, clock):
    mfa = psd2
    device = _seasoned_payer(mfa, clock, "software")
    shop = sca.shop(mfa, "Corner Cafe")
    payment_id = sca.bill(mfa, shop, AMOUNT, "EUR")
    flow = sca.flow_of(sca.confirm(device, payment_id))
    assert sign_transaction(mfa, device, flow).status_code == 200
    # A key held in software could be copied: only its own phone's PIN completes it.
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert _problem(r) == (409, "flow_step_refused"), r.text
    assert sca.payment(mfa, shop, payment_id)["status"] != "succeeded"


def test_a_pin_confirmation_is_for_the_signed_transaction_only(psd2, clock):
    mfa = psd2
    device = _seasoned_payer(mfa, clock, "software")
    shop = sca.shop(mfa, "Corner Cafe")
    payment_id = sca.bill(mfa, shop, AMOUNT, "EUR")
    flow = sca.flow_of(sca.confirm(device, payment_id))
    shown = sca.view(device, flow["id"])["transaction"]
    # The device signs another amount than the payment's (what a lying page would show).
    other = sca.changed(shown, amount=AMOUNT - 1)
    r = sca.device_key(mfa, device, flow["id"], canonical(other), signed=_b64(canonical(other)))
    assert _problem(r) == (409, "transaction_changed"), r.text
    assert sca.payment(mfa, shop, payment_id)["status"] != "succeeded"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_software_phone_with_an_ocra_app_may_confirm_with_the_password_and_a_code(psd2, clock):
    mfa = psd2
    device = _seasoned_payer(mfa, clock, "software")  # signed in with key + PIN: a strong login
    app = ocra_app.enroll(device, mfa.now(), label="Old phone")
    shop = sca.shop(mfa, "Corner Cafe")
    payment_id = sca.bill(mfa, shop, AMOUNT, "EUR")
    flow = sca.flow_of(sca.confirm(device, payment_id))
    assert flow["paths"] == [["device_key", "pin"], ["password", "ocra"]], flow["paths"]
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["ocra"], r.text
    shown = r.json()["flow"]["transaction"]
    code = app.code_for(
        mfa.now(),
        payment_id=payment_id,
        amount_minor=AMOUNT,
        currency="EUR",
        payee=shop.id,
        nonce=base64.urlsafe_b64decode(shown["nonce"] + "=" * (-len(shown["nonce"]) % 4)),
    )
    r = mfa.step(device, flow["id"], "ocra", code=code)
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
