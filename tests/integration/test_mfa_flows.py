"""Authentication flows through the HTTP API under the shipped default policy.

Sign-up with an emailed code, the login paths (password + email code / TOTP, passkey from a bound
device, usernameless passkey, ``POST /v1/sessions``), device registration with number-matching
approval, DPoP-bound sessions, ``__Host-`` cookie sessions with CSRF, and a policy file of our own.
Every request goes through HTTP with the fixed clock; DPoP proofs carry the clock's time; email
codes arrive over real SMTP.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from support.dpop_client import DeviceKey
from support.mfa import BASE, PASSWORD, Device, Mfa, bound, signed_up
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import build
from zeropay.config import Settings
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.policy import AccessPoint
from zeropay.services import mail

EMAIL = "ana@example.com"
ATTEMPTS_MAX = 5  # PSD2 RTS Art. 4(3)(b): the default policy's attempts per flow
REDUCED_S = 24 * 3600  # the default policy's new_device_reduced_s


# ---- helpers ------------------------------------------------------------------------------------


def _problem(r: Any) -> tuple[int, str | None, str | None]:
    body = r.json()
    return r.status_code, body.get("code"), body.get("reason")


def _wrong(code: str) -> str:
    """Another code of the same length: certainly not the right one."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def _sql(mfa: Mfa, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _events(mfa: Mfa, event: str) -> list[str]:
    """The subjects of the audit events named ``event``, oldest first."""
    rows = _sql(mfa, "SELECT subject FROM audit_log WHERE event = :e ORDER BY seq", e=event)
    return [r[0] for r in rows]


def _mails_to(mfa: Mfa, email: str) -> list[tuple[str, str]]:
    mail.deliver_due(mfa.container.ctx)  # the outbox goes out over SMTP
    return mfa.inbox.bodies_to(email)


def _texted_code(mfa: Mfa) -> str:
    """The digits of the newest text in the development sink's file."""
    lines = mfa.container.settings.dev_sms_file.read_text(encoding="utf-8").splitlines()
    found = re.search(r"(\d{4}) ?(\d{4})", json.loads(lines[-1])["body"])
    assert found, lines[-1]
    return found.group(1) + found.group(2)


def _start(mfa: Mfa, who: Device, point: str = "login", **body: Any) -> dict[str, Any]:
    r = mfa.start(who, point, **body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _flow(device: Device, flow_id: str) -> dict[str, Any]:
    r = device.call("GET", f"/v1/auth/flows/{flow_id}", token="")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _send_code(device: Device, flow_id: str, factor: str = "email_otp") -> None:
    r = device.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": factor}, token="")
    assert r.status_code == 202, r.text


def _signed_up(mfa: Mfa, email: str = EMAIL) -> Device:
    return signed_up(mfa, email)


def _bound(mfa: Mfa, email: str = EMAIL) -> Device:
    return bound(mfa, email)


def _user_id(device: Device) -> str:
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _login_paths(mfa: Mfa, device: Device, email: str = EMAIL) -> list[list[str]]:
    """The paths a login offers this user once the password has proven who it is."""
    return list(_password_done(mfa, device, email)["paths"])


def _policy_paths(mfa: Mfa, point: str) -> list[list[str]]:
    return [[f.value for f in p] for p in mfa.container.ctx.policy.point(AccessPoint(point)).paths]


def _password_done(mfa: Mfa, device: Device, email: str = EMAIL) -> dict[str, Any]:
    """A login flow from ``device`` with the password step passed; the flow after it."""
    flow = _start(mfa, device, email=email)
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    return dict(r.json()["flow"])


def _register_until_approval(mfa: Mfa, device: Device, email: str = EMAIL) -> str:
    """A device registration with the email code and the new passkey done; the flow id."""
    flow = _start(mfa, device, "device_registration", email=email, device=device.info())
    _send_code(device, flow["id"])
    r = mfa.step(device, flow["id"], "email_otp", code=mfa.code_for(email))
    assert r.status_code == 200, r.text
    r = device.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert r.status_code == 200, r.text
    credential = device.authenticator.create(r.json()["publicKey"])
    r = mfa.step(device, flow["id"], "passkey", credential=credential)
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["next"] == ["bound_device_approval"], r.text
    return str(flow["id"])


def _request_approval(device: Device, flow_id: str) -> str:
    """Ask the bound devices; the number this device shows for the approver to type."""
    r = device.call("POST", f"/v1/auth/flows/{flow_id}/approval", token="")
    assert r.status_code == 200, r.text
    return str(r.json()["approval"]["number"])


def _decide(approver: Device, flow_id: str, number: str, decision: str = "approve") -> Any:
    return approver.call(
        "POST", f"/v1/me/approvals/{flow_id}", {"decision": decision, "number": number}
    )


def _second_device_bound(mfa: Mfa, clock: Any, phone: Device, tablet: Device) -> Any:
    """Bind ``tablet`` with ``phone``'s approval; the final answer."""
    clock.advance(seconds=1)  # only a device bound before the flow started may approve it
    flow_id = _register_until_approval(mfa, tablet)
    r = _decide(phone, flow_id, _request_approval(tablet, flow_id))
    assert r.status_code == 204, r.text
    r = mfa.step(tablet, flow_id, "bound_device_approval")
    assert r.status_code == 201, r.text
    tablet.token = r.json()["token"]
    return r


def _cookies(r: Any) -> dict[str, Morsel[str]]:
    out: dict[str, Morsel[str]] = {}
    for line in r.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(line)
        out.update(jar)
    return out


# ---- sign-up ------------------------------------------------------------------------------------


def test_registration_opens_a_signup_flow_that_asks_for_the_code_mailed_over_smtp(mfa):
    phone = mfa.device()
    r = phone.call("POST", "/v1/users", {"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 201, r.text
    flow = r.json()["flow"]
    assert flow["point"] == "signup" and flow["status"] == "active"
    assert flow["paths"] == [["password", "email_otp"]]
    assert [d["factor"] for d in flow["done"]] == ["password"]
    assert flow["next"] == ["email_otp"]
    assert flow["attempts_left"] == ATTEMPTS_MAX
    assert flow["code"]["factor"] == "email_otp"
    sent = mfa.now() + timedelta(minutes=10)  # NIST 800-63B §5.1.3.2: within 10 minutes
    assert flow["code"]["expires_at"] == sent.isoformat()
    mailed = _mails_to(mfa, EMAIL)
    assert [subject for subject, _ in mailed] == ["ZeroPay: your code"]
    assert len(mfa.code_for(EMAIL)) == 8


def test_the_mailed_code_verifies_the_address_and_opens_a_dpop_bound_session(mfa):
    phone = mfa.device()
    r = phone.call("POST", "/v1/users", {"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id, flow_id = r.json()["id"], r.json()["flow"]["id"]
    user = mfa.container.ctx.read(lambda uow: uow.accounts.user(user_id))
    assert user.email_verified_at is None  # no factor until the address is proved
    r = mfa.step(phone, flow_id, "email_otp", code=mfa.code_for(EMAIL))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["flow"]["status"] == "complete"
    assert body["token_type"] == "DPoP" and body["token"]
    assert body["session"]["device_bound"] is True
    assert [m["factor"] for m in body["session"]["methods"]] == ["password", "email_otp"]
    assert body["session"]["aal"] == 2
    phone.token = body["token"]
    r = phone.call("GET", "/v1/me/factors")
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True
    assert _events(mfa, "login.succeeded") == [body["session"]["id"]]


def test_a_wrong_signup_code_counts_the_attempts_down_and_the_right_one_still_works(mfa):
    phone = mfa.device()
    r = phone.call("POST", "/v1/users", {"email": EMAIL, "password": PASSWORD})
    flow_id = r.json()["flow"]["id"]
    code = mfa.code_for(EMAIL)
    for left in (4, 3):
        r = mfa.step(phone, flow_id, "email_otp", code=_wrong(code))
        assert _problem(r)[:2] == (401, "authentication_failed"), r.text
        assert (r.json()["attempts_left"], r.json()["flow_id"]) == (left, flow_id)
        assert _flow(phone, flow_id)["attempts_left"] == left
    r = mfa.step(phone, flow_id, "email_otp", code=code)
    assert r.status_code == 201, r.text


def test_a_signup_flow_fails_after_five_wrong_codes_and_then_refuses_the_right_one(mfa):
    phone = mfa.device()
    r = phone.call("POST", "/v1/users", {"email": EMAIL, "password": PASSWORD})
    flow_id = r.json()["flow"]["id"]
    code = mfa.code_for(EMAIL)
    for _ in range(ATTEMPTS_MAX):
        assert mfa.step(phone, flow_id, "email_otp", code=_wrong(code)).status_code == 401
    flow = _flow(phone, flow_id)
    assert (flow["status"], flow["attempts_left"], flow["next"]) == ("failed", 0, [])
    r = mfa.step(phone, flow_id, "email_otp", code=code)
    assert _problem(r) == (409, "flow_ended", "failed"), r.text


# ---- login --------------------------------------------------------------------------------------


def test_a_password_then_a_mailed_code_logs_in_on_another_device(mfa):
    _signed_up(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow = _start(mfa, laptop, email=EMAIL)
    # Before a factor proves who is there, every address is offered the policy's paths.
    assert flow["paths"] == _policy_paths(mfa, "login")
    assert flow["next"] == ["device_key", "passkey", "password"]
    r = mfa.step(laptop, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["paths"] == [["password", "email_otp"]]
    assert r.json()["flow"]["next"] == ["email_otp"] and "token" not in r.json()
    _send_code(laptop, flow["id"])
    r = mfa.step(laptop, flow["id"], "email_otp", code=mfa.code_for(EMAIL))
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    assert [m["factor"] for m in session["methods"]] == ["password", "email_otp"]
    assert session["device_bound"] is True and session["device_id"] is None
    laptop.token = r.json()["token"]
    assert laptop.call("GET", "/v1/me").json()["email"] == EMAIL


def test_a_password_then_a_totp_code_logs_in_once_an_app_is_enrolled(mfa, clock):
    phone = _signed_up(mfa)
    app = mfa.enroll_totp(phone)
    clock.advance(seconds=30)  # the confirmation used the current step; a fresh code now
    laptop = mfa.device("Laptop", "linux")
    flow = _password_done(mfa, laptop)
    assert flow["next"] == ["email_otp", "totp"]
    r = mfa.step(laptop, flow["id"], "totp", code=app.at(mfa.now()))
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    assert [m["factor"] for m in session["methods"]] == ["password", "totp"]
    assert session["aal"] == 2


def test_a_login_offers_exactly_the_policy_paths_whose_factors_the_user_holds(mfa, clock):
    phone = _signed_up(mfa)
    laptop = mfa.device("Laptop", "linux")
    assert _login_paths(mfa, laptop) == [["password", "email_otp"]]
    # A phone for texts alone is not offered: SMS never stands as the only second factor.
    r = phone.call("POST", "/v1/me/factors/sms", {"phone": "+821012345678"})
    assert r.status_code == 201, r.text
    sms_id = r.json()["id"]
    r = phone.call("POST", f"/v1/me/factors/sms/{sms_id}/confirm", {"code": _texted_code(mfa)})
    assert r.status_code == 204, r.text
    assert _login_paths(mfa, laptop) == [["password", "email_otp"]]
    mfa.enroll_totp(phone)
    assert _login_paths(mfa, laptop) == [
        ["password", "totp"],
        ["password", "email_otp"],
        ["password", "sms_otp"],
    ]
    assert mfa.bind(phone, EMAIL).status_code == 201
    assert _login_paths(mfa, laptop) == [
        ["password", "totp"],
        ["password", "email_otp"],
        ["password", "bound_device_approval"],
        ["password", "sms_otp"],
    ]
    assert _password_done(mfa, laptop)["next"] == [
        "bound_device_approval",
        "email_otp",
        "sms_otp",
        "totp",
    ]
    # From the bound phone: no approval from itself.
    assert _login_paths(mfa, phone) == [
        ["password", "totp"],
        ["password", "email_otp"],
        ["password", "sms_otp"],
    ]


def test_a_passkey_logs_in_from_its_bound_device(mfa):
    phone = _bound(mfa)
    phone.token = None
    r = mfa.passkey_login(phone, EMAIL)
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    assert [m["factor"] for m in session["methods"]] == ["passkey"]
    assert session["aal"] == 2 and session["device_id"] == r.json()["device"]["id"]


def test_a_passkey_is_refused_from_a_device_key_that_is_not_bound(mfa):
    phone = _bound(mfa)
    # The same passkey (a synced copy) on a laptop whose key was never bound.
    laptop = Device(mfa.client, mfa.now, "Laptop", "linux", authenticator=phone.authenticator)
    logins = _events(mfa, "login.succeeded")
    r = mfa.passkey_login(laptop, EMAIL)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    # Without an address, the same.
    r = mfa.passkey_login(laptop)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert _events(mfa, "login.succeeded") == logins
    # The same authenticator from the bound phone: the key was the only difference.
    assert mfa.passkey_login(phone).status_code == 201


def test_a_usernameless_passkey_login_from_the_bound_device_names_the_user(mfa):
    phone = _bound(mfa)
    user_id = _user_id(phone)
    flow = _start(mfa, phone)  # no email: the passkey says who it is
    assert flow["paths"] == [["passkey"]] and flow["next"] == ["passkey"]
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert r.status_code == 200, r.text
    assert not r.json()["publicKey"].get("allowCredentials")  # nothing tells who it is for
    credential = phone.authenticator.get(r.json()["publicKey"])
    r = mfa.step(phone, flow["id"], "passkey", credential=credential)
    assert r.status_code == 201, r.text
    assert r.json()["session"]["aal"] == 2
    phone.token = r.json()["token"]
    r = phone.call("GET", "/v1/me")
    assert (r.json()["id"], r.json()["email"]) == (user_id, EMAIL)


def test_a_password_login_at_post_sessions_answers_200_with_a_flow_and_no_token(mfa):
    _signed_up(mfa)
    laptop = mfa.device("Laptop", "linux")
    r = laptop.call("POST", "/v1/sessions", {"email": EMAIL, "password": PASSWORD}, token="")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "token" not in body and "session" not in body
    assert [d["factor"] for d in body["flow"]["done"]] == ["password"]
    assert body["flow"]["next"] == ["email_otp"]
    _send_code(laptop, body["flow"]["id"])
    r = mfa.step(laptop, body["flow"]["id"], "email_otp", code=mfa.code_for(EMAIL))
    assert r.status_code == 201 and r.json()["token_type"] == "DPoP", r.text


def test_a_wrong_password_at_post_sessions_is_refused(mfa):
    _signed_up(mfa)
    laptop = mfa.device("Laptop", "linux")
    r = laptop.call("POST", "/v1/sessions", {"email": EMAIL, "password": "not it at all"}, token="")
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text


# ---- device registration ------------------------------------------------------------------------


def test_the_first_device_is_bound_with_the_mailed_code_and_a_passkey_and_no_approval(mfa):
    phone = _signed_up(mfa)
    flow = _start(mfa, phone, "device_registration", email=EMAIL, device=phone.info())
    assert flow["paths"] == [["email_otp", "passkey", "bound_device_approval"]]
    assert flow["next"] == ["email_otp"]
    _send_code(phone, flow["id"])
    r = mfa.step(phone, flow["id"], "email_otp", code=mfa.code_for(EMAIL))
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["passkey"], r.text
    assert r.json()["flow"]["paths"] == [["email_otp", "passkey"]]  # no device to approve
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    options = r.json()["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    r = mfa.step(phone, flow["id"], "passkey", credential=phone.authenticator.create(options))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device"]["jkt"] == phone.key.jkt
    assert (body["device"]["name"], body["device"]["platform"]) == ("Pixel 9", "android")
    assert body["session"]["device_id"] == body["device"]["id"]
    assert [m["factor"] for m in body["session"]["methods"]] == ["email_otp", "passkey"]
    assert _events(mfa, "device.bound") == [body["device"]["id"]]
    assert _events(mfa, "approval.requested") == []


def test_a_wrong_approval_number_denies_and_fails_the_second_devices_flow(mfa, clock):
    phone = _bound(mfa)
    clock.advance(seconds=1)
    tablet = mfa.device("Galaxy Tab", "android")
    flow_id = _register_until_approval(mfa, tablet)
    r = mfa.step(tablet, flow_id, "bound_device_approval")  # nobody has approved yet
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    number = _request_approval(tablet, flow_id)
    r = _decide(phone, flow_id, _wrong(number))
    assert r.status_code == 204, r.text
    flow = _flow(tablet, flow_id)
    assert (flow["status"], flow["approval"]) == ("failed", {"state": "denied"})
    r = mfa.step(tablet, flow_id, "bound_device_approval")
    assert _problem(r) == (409, "flow_ended", "failed"), r.text
    assert len(phone.call("GET", "/v1/me/devices").json()["data"]) == 1
    assert len(_events(mfa, "approval.denied")) == 1


def test_the_right_approval_number_from_the_first_device_binds_the_second(mfa, clock):
    phone = _bound(mfa)
    tablet = mfa.device("Galaxy Tab", "android")
    body = _second_device_bound(mfa, clock, phone, tablet).json()
    assert [d["factor"] for d in body["flow"]["done"]] == [
        "email_otp",
        "passkey",
        "bound_device_approval",
    ]
    assert body["device"]["jkt"] == tablet.key.jkt
    devices = phone.call("GET", "/v1/me/devices").json()["data"]
    assert [d["name"] for d in devices] == ["Pixel 9", "Galaxy Tab"]
    assert _events(mfa, "approval.granted") == [body["flow"]["id"]]


def test_a_new_device_is_reduced_for_24_hours_and_the_other_device_and_the_mailbox_are_told(
    mfa, clock
):
    phone = _bound(mfa)
    tablet = mfa.device("Galaxy Tab", "android")
    _second_device_bound(mfa, clock, phone, tablet)
    bound_at = mfa.now()
    devices = {d["name"]: d for d in phone.call("GET", "/v1/me/devices").json()["data"]}
    assert (
        devices["Galaxy Tab"]["reduced_until"]
        == (bound_at + timedelta(seconds=REDUCED_S)).isoformat()
    )
    assert devices["Galaxy Tab"]["current"] is False and devices["Pixel 9"]["current"] is True
    notices = phone.call("GET", "/v1/me/notifications").json()["data"]
    added = [n["body"] for n in notices if n["kind"] == "device.added"]
    assert any("Galaxy Tab" in b for b in added), notices
    mailed = [b for s, b in _mails_to(mfa, EMAIL) if s == "ZeroPay: a new device was added"]
    assert any("Galaxy Tab" in b for b in mailed), mailed


def test_only_a_device_bound_before_a_flow_started_sees_it_and_may_approve_it(mfa, clock):
    phone = _bound(mfa)
    clock.advance(seconds=1)
    tablet = mfa.device("Galaxy Tab", "android")
    waiting = _register_until_approval(mfa, tablet)
    number = _request_approval(tablet, waiting)
    # A laptop bound after that flow started, with the phone's approval of its own flow.
    laptop = mfa.device("Laptop", "linux")
    _second_device_bound(mfa, clock, phone, laptop)
    listed = phone.call("GET", "/v1/me/approvals")
    assert listed.status_code == 200, listed.text
    assert [a["flow_id"] for a in listed.json()["data"]] == [waiting]
    assert listed.json()["data"][0]["device"] == {"name": "Galaxy Tab", "platform": "android"}
    r = laptop.call("GET", "/v1/me/approvals")
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    r = _decide(laptop, waiting, number)  # even with the right number
    assert _problem(r) == (403, "forbidden", "not_bound_device"), r.text
    assert _flow(tablet, waiting)["approval"]["state"] == "requested"


def test_a_session_on_no_bound_device_cannot_list_approvals(mfa):
    phone = _signed_up(mfa)  # the sign-up session: two factors, but no bound device
    r = phone.call("GET", "/v1/me/approvals")
    assert _problem(r) == (403, "forbidden", "not_bound_device"), r.text


# ---- sessions bound to the device key (RFC 9449) -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/me"), ("GET", "/v1/me/factors"), ("POST", "/v1/me/step-up")],
)
def test_an_authenticated_request_without_a_dpop_proof_is_refused(mfa, method, path):
    phone = _signed_up(mfa)
    r = phone.call(method, path, signed=False)
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    assert phone.call(method, path).status_code in (200, 201)


def test_a_device_bound_token_presented_as_a_bearer_token_is_refused(mfa):
    phone = _signed_up(mfa)
    token = str(phone.token)
    for proof in (phone.proof("GET", "/v1/me", token=token), None):
        headers = {"Authorization": f"Bearer {token}"} | ({"DPoP": proof} if proof else {})
        r = mfa.client.get("/v1/me", headers=headers)
        assert _problem(r) == (401, "proof_invalid", "scheme"), r.text


def test_a_proof_made_by_another_key_is_refused(mfa):
    phone = _signed_up(mfa)
    token = str(phone.token)
    other = DeviceKey()
    proof = other.proof("GET", BASE + "/v1/me", access_token=token, iat=int(mfa.now().timestamp()))
    r = mfa.client.get("/v1/me", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert _problem(r) == (401, "proof_invalid", "jkt"), r.text


# ---- cookie sessions for pages ------------------------------------------------------------------


def _cookie_session(mfa: Mfa, phone: Device) -> tuple[Any, str, str]:
    """Sign up asking for the session in cookies; the answer, the session and CSRF cookies."""
    r = phone.call("POST", "/v1/users", {"email": EMAIL, "password": PASSWORD})
    assert r.status_code == 201, r.text
    flow_id = r.json()["flow"]["id"]
    r = mfa.step(phone, flow_id, "email_otp", code=mfa.code_for(EMAIL), use_cookie=True)
    assert r.status_code == 201, r.text
    cookies = _cookies(r)
    return r, cookies["__Host-zp_session"].value, cookies["__Host-zp_csrf"].value


def test_a_step_with_use_cookie_sets_host_cookies_and_returns_no_token(mfa):
    r, _, csrf = _cookie_session(mfa, mfa.device())
    body = r.json()
    assert "token" not in body and body["csrf_token"] == csrf
    assert body["session"]["device_bound"] is True
    cookies = _cookies(r)
    session, csrf_cookie = cookies["__Host-zp_session"], cookies["__Host-zp_csrf"]
    for cookie in (session, csrf_cookie):
        assert cookie["secure"] is True and cookie["path"] == "/"
        assert cookie["samesite"].lower() == "strict"
        assert not cookie["domain"]  # RFC 6265bis __Host-: no Domain attribute
    assert session["httponly"] is True
    assert not csrf_cookie["httponly"]  # the page reads it to echo it in X-CSRF-Token


def test_a_state_changing_cookie_request_needs_the_csrf_header_and_the_dpop_proof(mfa):
    phone = mfa.device()
    _, session, csrf = _cookie_session(mfa, phone)
    jar = {"Cookie": f"__Host-zp_session={session}; __Host-zp_csrf={csrf}"}
    r = phone.call("GET", "/v1/me", token="", headers=jar)  # a safe method needs no CSRF token
    assert r.status_code == 200 and r.json()["email"] == EMAIL, r.text
    r = phone.call("POST", "/v1/me/step-up", token="", headers=jar)
    assert _problem(r) == (403, "forbidden", "csrf"), r.text
    r = phone.call("POST", "/v1/me/step-up", token="", headers=jar | {"X-CSRF-Token": "x" * 32})
    assert _problem(r) == (403, "forbidden", "csrf"), r.text
    with_csrf = jar | {"X-CSRF-Token": csrf}
    r = phone.call("POST", "/v1/me/step-up", token="", headers=with_csrf, signed=False)
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    r = phone.call("POST", "/v1/me/step-up", token="", headers=with_csrf)
    assert r.status_code == 201 and r.json()["point"] == "step_up", r.text


def test_logging_out_of_a_cookie_session_ends_it_and_expires_both_cookies(mfa):
    phone = mfa.device()
    _, session, csrf = _cookie_session(mfa, phone)
    jar = {"Cookie": f"__Host-zp_session={session}; __Host-zp_csrf={csrf}"}
    r = phone.call("DELETE", "/v1/sessions/current", token="", headers=jar | {"X-CSRF-Token": csrf})
    assert r.status_code == 204, r.text
    cookies = _cookies(r)
    for name in ("__Host-zp_session", "__Host-zp_csrf"):
        assert cookies[name].value == "" and cookies[name]["max-age"] == "0", name
        assert cookies[name]["secure"] is True and cookies[name]["path"] == "/"
    r = phone.call("GET", "/v1/me", token="", headers=jar)  # a copy of the old cookie
    assert r.status_code == 401, r.text


# ---- the policy file ----------------------------------------------------------------------------


def _policy(login_paths: str) -> str:
    return f"""
version = "test-1"
[points.signup]
paths = [["password", "email_otp"]]
[points.login]
paths = {login_paths}
[points.step_up]
paths = [["passkey"], ["password", "email_otp"]]
[points.device_registration]
paths = [["email_otp", "passkey", "bound_device_approval"]]
waived_when_unavailable = ["bound_device_approval"]
[points.recovery]
paths = [["recovery_code", "email_otp"]]
[points.payment_confirmation]
paths = [["passkey"]]
"""


@contextlib.contextmanager
def _app_with_policy(mfa: Mfa, clock: Any, policy: Path) -> Iterator[Mfa]:
    """The same database and keys, served under another policy file."""
    other = build(
        replace(mfa.container.settings, auth_policy_file=policy),
        clock=clock,
        keyring=mfa.container.ctx.keyring,
        hasher=mfa.container.ctx.hasher,
        engine=mfa.container.engine,
    )
    with TestClient(create_app(other), base_url=BASE) as client:
        yield Mfa(client, other, mfa.inbox)


def test_a_policy_file_changes_the_paths_a_login_offers(mfa, clock, tmp_path):
    _signed_up(mfa)
    laptop = mfa.device("Laptop", "linux")
    assert _start(mfa, laptop, email=EMAIL)["next"] == ["device_key", "passkey", "password"]
    policy = tmp_path / "email-first.toml"
    policy.write_text(_policy('[["email_otp", "password"]]'), encoding="utf-8")
    with _app_with_policy(mfa, clock, policy) as custom:
        tablet = custom.device("Galaxy Tab", "android")
        flow = _start(custom, tablet, email=EMAIL)
        assert flow["paths"] == [["email_otp", "password"]] and flow["next"] == ["email_otp"]
        r = custom.step(tablet, flow["id"], "password", password=PASSWORD)
        assert _problem(r)[:2] == (409, "flow_step_refused"), r.text
        _send_code(tablet, flow["id"])
        r = custom.step(tablet, flow["id"], "email_otp", code=custom.code_for(EMAIL))
        assert r.status_code == 200 and r.json()["flow"]["next"] == ["password"], r.text
        r = custom.step(tablet, flow["id"], "password", password=PASSWORD)
        assert r.status_code == 201, r.text


def test_a_policy_file_without_a_path_the_user_can_take_refuses_the_login(mfa, clock, tmp_path):
    _signed_up(mfa)  # no authenticator app
    policy = tmp_path / "totp-only.toml"
    policy.write_text(_policy('[["password", "totp"]]'), encoding="utf-8")
    with _app_with_policy(mfa, clock, policy) as custom:
        laptop = custom.device("Laptop", "linux")
        # The start tells nothing about the account; the password, once right, tells the user.
        flow = _start(custom, laptop, email=EMAIL)
        assert flow["paths"] == [["password", "totp"]]
        r = custom.step(laptop, flow["id"], "password", password=PASSWORD)
        assert _problem(r) == (403, "forbidden", "no_path"), r.text
        r = custom.step(laptop, flow["id"], "password", password="not the password")
        assert _problem(r)[:2] == (401, "authentication_failed"), r.text


BROKEN_POLICIES = {
    "toml_syntax": 'version = "test-1"\n[points.login\npaths = [["password"]]\n',
    "single_factor_login": _policy('[["password"]]'),
    "unknown_factor": _policy('[["password", "fingerprint"]]'),
    "unknown_key": _policy('[["password", "email_otp"]]') + "\nsms_everywhere = true\n",
    "missing_point": _policy('[["password", "email_otp"]]').split("[points.payment")[0],
    "attempts_above_five": _policy('[["password", "email_otp"]]').replace(
        "[points.step_up]", "[points.step_up]\nattempts_max = 10"
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_POLICIES))
def test_a_broken_policy_file_fails_the_build_with_a_configuration_error(tmp_path, broken):
    policy = tmp_path / "policy.toml"
    policy.write_text(BROKEN_POLICIES[broken], encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        vault_dev_file=tmp_path / "vault-dev.json",
        auth_policy_file=policy,
    )
    with pytest.raises(ConfigurationError):
        build(
            settings,
            hasher=Argon2PasswordHasher.cheap_for_tests(),
        )
