"""Attacks on multi-factor authentication under the shipped default policy.

Replays (TOTP, email codes, WebAuthn assertions, DPoP proofs), a stolen session token without its
device key, flow steps out of order or from another device, brute force against TOTP and email
codes, racing twins of one TOTP code, push bombing, cloned passkeys, passkeys without user
verification, account enumeration and rate limits per account and per address. Every request goes through HTTP
with the fixed clock; DPoP proofs carry the clock's time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import text

from support.dpop_client import DeviceKey
from support.mfa import BASE, CODE, PASSWORD, Device, bound
from support.webauthn_soft import SoftAuthenticator
from zeropay.adapters.sql.auth_records import FlowRepository
from zeropay.adapters.sql.repositories import AccountRepository
from zeropay.services import mail, totp
from zeropay.services.authn import STEP_LEASE_S

VICTIM = "victim@example.com"
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
RACERS = 20
GUESSES = 1000
FLOW_ATTEMPTS = 5  # PSD2 RTS Art. 4(3)(b): the default policy's attempts per flow
RATE_WINDOW_S = 61  # just over the fixed 60-second window of the flow-start rate limits


# ---- helpers ------------------------------------------------------------------------------------


def _sql(mfa: Any, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _events(mfa: Any, event: str) -> int:
    return int(_sql(mfa, "SELECT count(*) FROM audit_log WHERE event = :e", e=event)[0][0])


def _user_id(device: Device) -> str:
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _problem(r: Any) -> tuple[int, str, str | None]:
    body = r.json()
    return r.status_code, body.get("code"), body.get("reason")


def _bound_user(mfa: Any, email: str = VICTIM) -> Device:
    return bound(mfa, email)


def _totp_user(mfa: Any, clock: Any, email: str = VICTIM) -> tuple[Device, pyotp.TOTP]:
    """A bound phone plus an authenticator app; the clock is moved past the step the app was
    confirmed with, so the current code is a fresh one."""
    phone = _bound_user(mfa, email)
    app = mfa.enroll_totp(phone)
    clock.advance(seconds=30)
    return phone, app


def _start_login(mfa: Any, device: Device, email: str = VICTIM) -> dict[str, Any]:
    r = mfa.start(device, "login", email=email)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _password_done(mfa: Any, device: Device, email: str = VICTIM) -> str:
    """A login flow from ``device`` with the (known) password step passed."""
    flow = _start_login(mfa, device, email)
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["done"][0]["factor"] == "password"
    return str(flow["id"])


def _flow(device: Device, flow_id: str) -> dict[str, Any]:
    r = device.call("GET", f"/v1/auth/flows/{flow_id}", token="")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _current_code(app: pyotp.TOTP, mfa: Any) -> str:
    return str(app.at(mfa.now()))


def _step_of(mfa: Any) -> int:
    return int(mfa.now().timestamp()) // totp.PERIOD_S


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64(data: dict[str, Any]) -> str:
    return _b64url(json.dumps(data).encode())


def _claims(method: str, path: str, mfa: Any, token: str | None) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": BASE + path,
        "iat": int(mfa.now().timestamp()),
    }
    if token is not None:
        claims["ath"] = _b64url(hashlib.sha256(token.encode()).digest())  # RFC 9449 §4.2
    return claims


def _me_with_proof(mfa: Any, token: str, proof: str, path: str = "/v1/me") -> Any:
    return mfa.client.get(path, headers={"Authorization": f"DPoP {token}", "DPoP": proof})


# ---- replays: TOTP ------------------------------------------------------------------------------


def test_the_same_totp_code_used_twice_is_refused_the_second_time(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    code = _current_code(app, mfa)
    first = mfa.step(phone, _password_done(mfa, phone), "totp", code=code)
    assert first.status_code == 201, first.text
    again = mfa.step(phone, _password_done(mfa, phone), "totp", code=code)
    assert _problem(again)[:2] == (401, "authentication_failed"), again.text
    # Still the same 30-second step: a code is accepted once, not once per flow.
    assert app.at(mfa.now()) == code


def test_an_older_totp_code_after_a_newer_one_is_refused(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    step = _step_of(mfa)
    newer, older = app.generate_otp(step + 1), app.generate_otp(step)  # both within ±1 step
    r = mfa.step(phone, _password_done(mfa, phone), "totp", code=newer)
    assert r.status_code == 201, r.text
    r = mfa.step(phone, _password_done(mfa, phone), "totp", code=older)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    # The refusal is about order, not about the code: the next step's code is still good.
    clock.advance(seconds=60)  # now step + 2, one after ``newer``
    r = mfa.step(phone, _password_done(mfa, phone), "totp", code=_current_code(app, mfa))
    assert r.status_code == 201, r.text


# ---- replays: email codes -----------------------------------------------------------------------


def _email_code_flow(mfa: Any, device: Device) -> tuple[str, str]:
    flow_id = _password_done(mfa, device)
    r = device.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    return flow_id, mfa.code_for(VICTIM)


def test_the_same_email_code_used_twice_is_refused_the_second_time(mfa):
    phone = _bound_user(mfa)
    flow_id, code = _email_code_flow(mfa, phone)
    r = mfa.step(phone, flow_id, "email_otp", code=code)
    assert r.status_code == 201, r.text
    again = mfa.step(phone, flow_id, "email_otp", code=code)
    assert _problem(again) == (409, "flow_ended", "complete"), again.text
    # Replayed into another login flow (which has its own code in play): refused.
    other_id, other_code = _email_code_flow(mfa, phone)
    assert other_code != code
    r = mfa.step(phone, other_id, "email_otp", code=code)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert r.json()["attempts_left"] == FLOW_ATTEMPTS - 1
    # That flow's own code still works: the refusal was about the replayed code only.
    r = mfa.step(phone, other_id, "email_otp", code=other_code)
    assert r.status_code == 201, r.text


def test_an_email_code_superseded_by_a_resend_is_refused(mfa):
    phone = _bound_user(mfa)
    flow_id, first = _email_code_flow(mfa, phone)
    r = phone.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    second = mfa.code_for(VICTIM)
    assert second != first
    r = mfa.step(phone, flow_id, "email_otp", code=first)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    r = mfa.step(phone, flow_id, "email_otp", code=second)
    assert r.status_code == 201, r.text


def test_one_email_code_posted_by_twenty_threads_to_its_flow_is_accepted_once(mfa):
    phone = _bound_user(mfa)
    flow_id, code = _email_code_flow(mfa, phone)
    answers = _race(lambda _: mfa.step(phone, flow_id, "email_otp", code=code), RACERS)
    statuses = Counter(a.status_code for a in answers)
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {201, 401, 409}, statuses


# ---- replays: WebAuthn ----------------------------------------------------------------------------


def _passkey_options(device: Device, flow_id: str) -> dict[str, Any]:
    r = device.call("POST", f"/v1/auth/flows/{flow_id}/passkey-options", token="")
    assert r.status_code == 200, r.text
    return dict(r.json()["publicKey"])


def _passkey_row(mfa: Any, user_id: str) -> Any:
    rows = _sql(
        mfa,
        "SELECT sign_count, clone_signals FROM authenticators "
        "WHERE user_id = :u AND kind = 'passkey' AND status = 'active'",
        u=user_id,
    )
    assert len(rows) == 1
    return rows[0]


def test_a_replayed_webauthn_assertion_is_refused_in_its_flow_and_in_a_new_one(mfa):
    phone = _bound_user(mfa)
    user_id = _user_id(phone)
    flow_id = _start_login(mfa, phone)["id"]
    credential = phone.authenticator.get(_passkey_options(phone, flow_id))
    r = mfa.step(phone, flow_id, "passkey", credential=credential)
    assert r.status_code == 201, r.text
    count = _passkey_row(mfa, user_id).sign_count
    again = mfa.step(phone, flow_id, "passkey", credential=credential)
    assert _problem(again) == (409, "flow_ended", "complete"), again.text
    # A new flow with no challenge asked: the old assertion answers nothing.
    fresh = _start_login(mfa, phone)["id"]
    r = mfa.step(phone, fresh, "passkey", credential=credential)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    # A new flow whose options were fetched: the old assertion signed another challenge.
    newer = _start_login(mfa, phone)["id"]
    _passkey_options(phone, newer)
    r = mfa.step(phone, newer, "passkey", credential=credential)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert _passkey_row(mfa, user_id).sign_count == count
    assert _flow(phone, newer)["done"] == []
    # The real device, answering the flow's new challenge, still signs in.
    credential = phone.authenticator.get(_passkey_options(phone, newer))
    r = mfa.step(phone, newer, "passkey", credential=credential)
    assert r.status_code == 201, r.text


# ---- replays and forgeries: DPoP ----------------------------------------------------------------


def test_a_replayed_dpop_proof_is_refused(mfa):
    phone = _bound_user(mfa)
    proof = phone.proof("GET", "/v1/me", token=phone.token)
    assert _me_with_proof(mfa, phone.token, proof).status_code == 200
    again = _me_with_proof(mfa, phone.token, proof)
    assert _problem(again) == (401, "proof_invalid", "replayed"), again.text
    # Also where no session is needed: a flow start's proof used twice.
    start = phone.proof("POST", "/v1/auth/flows")
    body = {"point": "login", "email": VICTIM}
    first = mfa.client.post("/v1/auth/flows", json=body, headers={"DPoP": start})
    assert first.status_code == 201, first.text
    second = mfa.client.post("/v1/auth/flows", json=body, headers={"DPoP": start})
    assert _problem(second) == (401, "proof_invalid", "replayed"), second.text


def test_a_dpop_proof_made_for_another_url_or_method_is_refused(mfa):
    phone = _bound_user(mfa)
    token = phone.token
    for_wallet = phone.proof("GET", "/v1/wallet", token=token)
    r = _me_with_proof(mfa, token, for_wallet)
    assert _problem(r) == (401, "proof_invalid", "htu"), r.text
    elsewhere = phone.key.proof(
        "GET", "http://evil.example/v1/me", access_token=token, iat=int(mfa.now().timestamp())
    )
    r = _me_with_proof(mfa, token, elsewhere)
    assert _problem(r) == (401, "proof_invalid", "htu"), r.text
    for_delete = phone.proof("DELETE", "/v1/me", token=token)
    r = _me_with_proof(mfa, token, for_delete)
    assert _problem(r) == (401, "proof_invalid", "htm"), r.text
    assert phone.call("GET", "/v1/me").status_code == 200


def test_a_dpop_proof_for_another_host_is_refused_even_with_a_forged_host_header(mfa):
    # A token and proof that leaked to another server (a phishing or misconfigured endpoint)
    # must not work here: RFC 9449 §4.3 ties the proof to this server's URL, and the Host
    # header is the attacker's to choose.
    phone = _bound_user(mfa)
    leaked = phone.key.proof(
        "GET", "http://evil.example/v1/me", access_token=phone.token, iat=int(mfa.now().timestamp())
    )
    r = mfa.client.get(
        "/v1/me",
        headers={"Authorization": f"DPoP {phone.token}", "DPoP": leaked, "Host": "evil.example"},
    )
    assert _problem(r) == (401, "proof_invalid", "htu"), r.text


def test_a_dpop_proof_61_seconds_old_or_61_seconds_ahead_is_refused_and_60_is_not(mfa, clock):
    phone = _bound_user(mfa)
    token = phone.token
    old = phone.proof("GET", "/v1/me", token=token)
    edge = phone.proof("GET", "/v1/me", token=token)
    clock.advance(seconds=60)
    assert _me_with_proof(mfa, token, edge).status_code == 200  # exactly 60 s: in the window
    clock.advance(seconds=1)
    r = _me_with_proof(mfa, token, old)
    assert _problem(r) == (401, "proof_invalid", "iat"), r.text
    now = int(mfa.now().timestamp())
    ahead = phone.key.proof("GET", BASE + "/v1/me", access_token=token, iat=now + 61)
    r = _me_with_proof(mfa, token, ahead)
    assert _problem(r) == (401, "proof_invalid", "iat"), r.text
    ahead_edge = phone.key.proof("GET", BASE + "/v1/me", access_token=token, iat=now + 60)
    assert _me_with_proof(mfa, token, ahead_edge).status_code == 200


def test_a_proof_signed_by_one_key_carrying_another_keys_jwk_fails_its_signature(mfa):
    phone = _bound_user(mfa)
    thief = DeviceKey()
    honest = thief.proof(
        "GET", BASE + "/v1/me", access_token=phone.token, iat=int(mfa.now().timestamp())
    )
    header_b64, payload_b64, signature_b64 = honest.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    header["jwk"] = phone.key.public_jwk  # claim to be the phone
    forged = ".".join([_b64(header), payload_b64, signature_b64])
    r = _me_with_proof(mfa, phone.token, forged)
    assert _problem(r) == (401, "proof_invalid", "signature"), r.text
    assert phone.call("GET", "/v1/me").status_code == 200


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_an_unsigned_or_symmetric_dpop_proof_is_refused(mfa, alg):
    phone = _bound_user(mfa)
    claims = _claims("GET", "/v1/me", mfa, phone.token)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": phone.key.public_jwk}
    if alg == "none":
        proof = f"{_b64(header)}.{_b64(claims)}."
    else:
        # The classic confusion: the public key, known to anyone, used as an HMAC secret.
        # (signed by hand: PyJWT itself refuses a JWK as an HMAC key).
        secret = json.dumps(phone.key.public_jwk, sort_keys=True).encode()
        signing_input = f"{_b64(header)}.{_b64(claims)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        proof = f"{signing_input}.{_b64url(mac)}"
    r = _me_with_proof(mfa, phone.token, proof)
    assert _problem(r) == (401, "proof_invalid", "alg"), r.text


# ---- a stolen session token ---------------------------------------------------------------------


def test_a_stolen_session_token_is_useless_without_the_device_key(mfa):
    phone = _bound_user(mfa)
    token = phone.token
    thief = mfa.device("Thief laptop", "linux")
    r = thief.call("GET", "/v1/me", token=token)  # a valid proof, by the wrong key
    assert _problem(r) == (401, "proof_invalid", "jkt"), r.text
    r = thief.call("GET", "/v1/me", token=token, signed=False)
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    r = mfa.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert _problem(r) == (401, "proof_invalid", "scheme"), r.text
    r = mfa.client.get(
        "/v1/me",
        headers={"Authorization": f"Bearer {token}", "DPoP": thief.proof("GET", "/v1/me")},
    )
    assert _problem(r) == (401, "proof_invalid", "scheme"), r.text
    r = mfa.client.get("/v1/me", headers={"Cookie": f"__Host-zp_session={token}"})
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    r = thief.call("POST", "/v1/wallet/topups", {"amount": 100, "currency": "USD"}, token=token)
    assert _problem(r) == (401, "proof_invalid", "jkt"), r.text
    # The device that holds the key carries on.
    r = phone.call("GET", "/v1/me")
    assert r.status_code == 200, r.text


# ---- flow steps out of order, from another device, after the end ---------------------------------


def test_a_factor_sent_before_the_password_is_refused_and_nothing_advances(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    flow = _start_login(mfa, phone)
    assert "totp" not in flow["next"] and "password" in flow["next"]
    for factor, payload in (
        ("totp", {"code": _current_code(app, mfa)}),
        ("email_otp", {"code": "12345678"}),
    ):
        r = mfa.step(phone, flow["id"], factor, **payload)
        assert _problem(r)[:2] == (409, "flow_step_refused"), r.text
        assert r.json()["next"] == flow["next"]
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token="")
    assert _problem(r)[:2] == (409, "flow_step_refused"), r.text
    after = _flow(phone, flow["id"])
    assert after["done"] == [] and after["attempts_left"] == FLOW_ATTEMPTS
    assert after["next"] == flow["next"] and "code" not in after
    # The TOTP code was not spent by the refused step: the proper order still takes it.
    r = mfa.step(phone, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    r = mfa.step(phone, flow["id"], "totp", code=_current_code(app, mfa))
    assert r.status_code == 201, r.text


def test_a_flow_driven_by_another_device_key_is_refused_and_nothing_advances(mfa):
    phone = _bound_user(mfa)
    flow_id = _start_login(mfa, phone)["id"]
    thief = mfa.device("Thief laptop", "linux")
    r = mfa.step(thief, flow_id, "password", password=PASSWORD)
    assert _problem(r) == (401, "proof_invalid", "flow_key"), r.text
    for method, path, body in (
        ("GET", f"/v1/auth/flows/{flow_id}", None),
        ("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}),
        ("POST", f"/v1/auth/flows/{flow_id}/passkey-options", None),
        ("POST", f"/v1/auth/flows/{flow_id}/approval", None),
    ):
        r = thief.call(method, path, body, token="")
        assert _problem(r) == (401, "proof_invalid", "flow_key"), (path, r.text)
    r = thief.call(
        "POST",
        f"/v1/auth/flows/{flow_id}/steps",
        {"factor": "password", "password": PASSWORD},
        token="",
        signed=False,
    )
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    after = _flow(phone, flow_id)
    assert after["done"] == [] and after["attempts_left"] == FLOW_ATTEMPTS
    assert "code" not in after
    r = mfa.step(phone, flow_id, "password", password=PASSWORD)
    assert r.status_code == 200, r.text


def test_a_flow_cannot_be_started_unbound_by_leaving_out_the_dpop_proof(mfa):
    _bound_user(mfa)
    for path, body in (
        ("/v1/auth/flows", {"point": "login", "email": VICTIM}),
        ("/v1/sessions", {"email": VICTIM, "password": PASSWORD}),
    ):
        r = mfa.client.post(path, json=body)
        assert _problem(r) == (401, "proof_invalid", "missing"), (path, r.text)


def test_every_step_after_a_flow_completed_or_failed_is_refused_as_ended(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    done_id = _password_done(mfa, phone)
    r = mfa.step(phone, done_id, "totp", code=_current_code(app, mfa))
    assert r.status_code == 201, r.text
    for factor, payload in (
        ("password", {"password": PASSWORD}),
        ("totp", {"code": "000000"}),
        ("email_otp", {"code": "00000000"}),
        ("passkey", {"credential": {}}),
    ):
        r = mfa.step(phone, done_id, factor, **payload)
        assert _problem(r) == (409, "flow_ended", "complete"), (factor, r.text)
    r = phone.call("POST", f"/v1/auth/flows/{done_id}/codes", {"factor": "email_otp"}, token="")
    assert _problem(r) == (409, "flow_ended", "complete"), r.text

    failed_id = _password_done(mfa, phone)
    wrong = f"{(int(_current_code(app, mfa)) + 1) % 10**6:06d}"
    for left in range(FLOW_ATTEMPTS - 1, -1, -1):
        r = mfa.step(phone, failed_id, "email_otp", code="00000000")
        assert r.status_code == 401 and r.json()["attempts_left"] == left, r.text
    assert _flow(phone, failed_id)["status"] == "failed"
    for factor, payload in (("totp", {"code": wrong}), ("password", {"password": PASSWORD})):
        r = mfa.step(phone, failed_id, factor, **payload)
        assert _problem(r) == (409, "flow_ended", "failed"), (factor, r.text)
    r = phone.call("POST", f"/v1/auth/flows/{failed_id}/passkey-options", token="")
    assert _problem(r) == (409, "flow_ended", "failed"), r.text


# ---- brute force --------------------------------------------------------------------------------


class _Brute:
    """Drives 1,000 guesses through as many login flows as it takes (each flow fails after five
    attempts), from an attacker's unbound laptop that knows the password. Every 100 guesses (20
    flows: the per-account limit of flow starts per minute) the clock moves on 240 s, so each
    temporary lock runs out in turn and the factor is guessed at again until the permanent lock."""

    def __init__(self, mfa: Any, clock: Any, factor: str) -> None:
        self.mfa, self.clock, self.factor = mfa, clock, factor
        self.attacker = mfa.device("Attacker laptop", "linux")
        self.flow_id: str | None = None
        self.left = 0

    def submit(self, code: Callable[[], str]) -> Any:
        """One guess; ``code`` is asked for once the flow (and its emailed code) is ready."""
        if self.left == 0:
            self.flow_id = _password_done(self.mfa, self.attacker)
            if self.factor == "email_otp":
                r = self.attacker.call(
                    "POST",
                    f"/v1/auth/flows/{self.flow_id}/codes",
                    {"factor": "email_otp"},
                    token="",
                )
                assert r.status_code == 202, r.text
            self.left = FLOW_ATTEMPTS
        assert self.flow_id is not None
        r = self.mfa.step(self.attacker, self.flow_id, self.factor, code=code())
        assert _problem(r)[:2] == (401, "authentication_failed"), r.text
        self.left = int(r.json()["attempts_left"])
        return r

    def factor_state(self, user_id: str) -> Any:
        rows = _sql(
            self.mfa,
            "SELECT failures, locks, locked_until, locked_permanently "
            "FROM factor_states WHERE user_id = :u AND factor = :f",
            u=user_id,
            f=self.factor,
        )
        return rows[0] if rows else None


def _lock_seconds(state: Any, now: Any) -> int:
    until = state.locked_until
    if isinstance(until, str):  # SQLite hands raw text back
        until = datetime.fromisoformat(until)
    if until.tzinfo is None:
        until = until.replace(tzinfo=now.tzinfo)
    return int((until - now).total_seconds())


def _notification_kinds(mfa: Any, user_id: str) -> list[tuple[Any, str]]:
    rows = _sql(
        mfa,
        "SELECT created_at, kind FROM notifications WHERE user_id = :u "
        "AND kind IN ('factor.locked', 'factor.final_warning', 'factor.locked_permanently') "
        "ORDER BY created_at",
        u=user_id,
    )
    return [(r.created_at, r.kind) for r in rows]


def _assert_lockout_story(mfa: Any, user_id: str, locks: list[tuple[int, int]]) -> None:
    # Five checked guesses per lock, each lock twice as long as the one before, then permanent.
    assert locks == [(1, 60), (2, 120), (3, 240), (4, 480)], locks
    kinds = _notification_kinds(mfa, user_id)
    assert Counter(k for _, k in kinds) == {
        "factor.locked": 4,
        "factor.final_warning": 1,
        "factor.locked_permanently": 1,
    }, kinds
    warned = next(at for at, k in kinds if k == "factor.final_warning")
    permanent = next(at for at, k in kinds if k == "factor.locked_permanently")
    assert warned < permanent  # PSD2 RTS Art. 4(4): alerted before the block is permanent


def _brute_force(
    brute: _Brute,
    user_id: str,
    guess: Callable[[int], str],
    checks: Callable[[], int],
    right_code: Callable[[], str],
) -> tuple[list[tuple[int, int]], str]:
    """1,000 guesses; the sixth is the right code, sent just after the first lock. Returns the
    (lock number, lock length in seconds) of each temporary lock, and that right code."""
    locks: list[tuple[int, int]] = []
    sent_right: list[str] = []

    def right() -> str:
        sent_right.append(right_code())
        return sent_right[-1]

    brute.clock.advance(seconds=RATE_WINDOW_S)  # the set-up's flow starts: another window
    for i in range(GUESSES):
        if i and i % 100 == 0:
            brute.clock.advance(seconds=240)
        before = checks()
        brute.submit(right if i == FLOW_ATTEMPTS else (lambda i=i: guess(i)))
        if checks() != before and checks() % FLOW_ATTEMPTS == 0:
            state = brute.factor_state(user_id)
            if not state.locked_permanently:
                locks.append((state.locks, _lock_seconds(state, brute.mfa.now())))
        if i == FLOW_ATTEMPTS:
            assert checks() == FLOW_ATTEMPTS  # locked: the right code was not even looked at
        if i >= 500 + FLOW_ATTEMPTS:
            assert checks() == 5 * FLOW_ATTEMPTS, i  # permanently locked: nothing is checked
    return locks, sent_right[0]


@POSTGRES_ONLY
def test_1000_totp_guesses_lock_the_factor_after_5_and_no_guess_after_a_lock_is_checked(
    mfa, clock, monkeypatch, backend
):
    phone, app = _totp_user(mfa, clock)
    user_id = _user_id(phone)
    checked: list[str] = []
    real_verify = totp.verify_totp

    def counting(seed: bytes, code: str, **kw: Any) -> Any:
        checked.append(code)
        return real_verify(seed, code, **kw)

    monkeypatch.setattr(totp, "verify_totp", counting)
    failed_before = _events(mfa, "factor.failed")

    def guess(i: int) -> str:
        step = _step_of(mfa)
        valid = {app.generate_otp(s) for s in range(step - 1, step + 2)}
        n = i
        while f"{n:06d}" in valid:
            n += GUESSES
        return f"{n:06d}"

    brute = _Brute(mfa, clock, "totp")
    locks, right = _brute_force(
        brute, user_id, guess, lambda: len(checked), lambda: _current_code(app, mfa)
    )
    assert len(checked) == 5 * FLOW_ATTEMPTS  # 25 of 1,000 guesses ever reached the seed
    assert right not in checked
    assert _events(mfa, "factor.failed") - failed_before == 5 * FLOW_ATTEMPTS
    state = brute.factor_state(user_id)
    assert state.locked_permanently
    _assert_lockout_story(mfa, user_id, locks)
    # Long after, the right code is still refused, and still not checked.
    clock.advance(days=1)
    r = mfa.step(
        brute.attacker, _password_done(mfa, brute.attacker), "totp", code=_current_code(app, mfa)
    )
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert len(checked) == 5 * FLOW_ATTEMPTS


@POSTGRES_ONLY
def test_1000_email_code_guesses_lock_the_factor_after_5_and_no_guess_after_a_lock_is_checked(
    mfa, clock, monkeypatch, backend
):
    # This test is about the lockout: every one of its 200 flows gets its code, so the hourly
    # limit on codes to one address (tested on its own) is lifted in this test's own container.
    ctx = mfa.container.ctx
    object.__setattr__(ctx, "auth_policy", replace(ctx.policy, code_sends_per_hour_max=1000))
    phone = _bound_user(mfa)
    user_id = _user_id(phone)
    consumed: list[bytes] = []
    real_consume = FlowRepository.consume_code

    def counting(self: Any, flow_id: str, **kw: Any) -> bool:
        consumed.append(kw["code_hash"])
        return bool(real_consume(self, flow_id, **kw))

    monkeypatch.setattr(FlowRepository, "consume_code", counting)
    failed_before = _events(mfa, "factor.failed")
    brute = _Brute(mfa, clock, "email_otp")

    def newest_code() -> str:
        while mail.deliver_due(mfa.container.ctx):
            pass
        return str(mfa.code_for(VICTIM))

    locks, _ = _brute_force(
        brute, user_id, lambda i: f"{i:08d}", lambda: len(consumed), newest_code
    )
    assert len(consumed) == 5 * FLOW_ATTEMPTS
    assert _events(mfa, "factor.failed") - failed_before == 5 * FLOW_ATTEMPTS
    assert brute.factor_state(user_id).locked_permanently
    _assert_lockout_story(mfa, user_id, locks)
    clock.advance(days=1)
    flow_id = _password_done(mfa, brute.attacker)
    r = brute.attacker.call(
        "POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token=""
    )
    assert r.status_code == 202, r.text
    r = mfa.step(brute.attacker, flow_id, "email_otp", code=newest_code())
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert len(consumed) == 5 * FLOW_ATTEMPTS


def test_forty_parallel_totp_guesses_reach_the_seed_at_most_five_times(mfa, clock, monkeypatch):
    phone, app = _totp_user(mfa, clock)
    attacker = mfa.device("Attacker laptop", "linux")
    flows = [_password_done(mfa, attacker) for _ in range(8)]  # 8 flows x 5 attempts
    checked: list[str] = []
    lock = threading.Lock()
    real_verify = totp.verify_totp

    def counting(seed: bytes, code: str, **kw: Any) -> Any:
        with lock:
            checked.append(code)
        return real_verify(seed, code, **kw)

    monkeypatch.setattr(totp, "verify_totp", counting)
    step = _step_of(mfa)
    valid = {app.generate_otp(s) for s in range(step - 1, step + 2)}
    guesses = [g for g in (f"{n:06d}" for n in range(100)) if g not in valid][:40]
    answers = _race(
        lambda i: mfa.step(attacker, flows[i % len(flows)], "totp", code=guesses[i]), 40
    )
    statuses = Counter(a.status_code for a in answers)
    # Each is refused: checked and wrong, locked, or turned away while its flow was busy.
    assert set(statuses) <= {401, 409} and statuses[401] >= len(flows), statuses
    assert [a.json()["reason"] for a in answers if a.status_code == 409] == [
        "step_in_progress"
    ] * statuses[409]
    assert 1 <= len(checked) <= FLOW_ATTEMPTS, len(checked)
    seen = len(checked)
    clock.advance(seconds=RATE_WINDOW_S - 30)  # still locked (60 s), in a new rate window
    r = mfa.step(attacker, _password_done(mfa, attacker), "totp", code=_current_code(app, mfa))
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert len(checked) == seen  # locked: even the right code never reaches the seed


def test_two_first_failures_of_a_factor_at_once_are_both_counted(mfa, clock, monkeypatch):
    # The lockout counts an attempt before checking it, in a transaction that locks the
    # factor's row. The first failure has no row to lock yet unless it creates one: here the
    # first reader is held up (as a busy server might) while a second attempt tries to read,
    # count and commit; it must wait for the first and count on top of it.
    phone, app = _totp_user(mfa, clock)
    user_id = _user_id(phone)
    attacker = mfa.device("Attacker laptop", "linux")
    flows = [_password_done(mfa, attacker) for _ in range(2)]
    real_state = AccountRepository.lock_factor_state
    readers: list[int] = []
    guard = threading.Lock()

    def slow_first_reader(self: Any, user: str, factor: str, now: Any) -> Any:
        state = real_state(self, user, factor, now)
        if factor == "totp":
            with guard:
                readers.append(1)
                first = len(readers) == 1
            if first:
                time.sleep(0.5)
        return state

    monkeypatch.setattr(AccountRepository, "lock_factor_state", slow_first_reader)
    step = _step_of(mfa)
    valid = {app.generate_otp(s) for s in range(step - 1, step + 2)}
    guesses = [g for g in ("000001", "000002", "000003") if g not in valid][:2]
    answers = _race(lambda i: mfa.step(attacker, flows[i], "totp", code=guesses[i]), 2)
    assert [a.status_code for a in answers] == [401, 401], [a.text for a in answers]
    failures = _sql(
        mfa, "SELECT failures FROM factor_states WHERE user_id = :u AND factor = 'totp'", u=user_id
    )
    assert [r.failures for r in failures] == [2]  # two wrong guesses, two failures


# ---- races --------------------------------------------------------------------------------------


def _race(call: Any, n: int) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def _assert_one_accepted(mfa: Any, answers: list[Any], logins_before: int) -> None:
    statuses = Counter(a.status_code for a in answers)
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {201, 401, 409}, [a.text for a in answers if a.status_code >= 500]
    assert _events(mfa, "login.succeeded") == logins_before + 1


def test_one_totp_code_sent_by_twenty_threads_to_one_flow_is_accepted_once(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    flow_id = _password_done(mfa, phone)
    code = _current_code(app, mfa)
    logins = _events(mfa, "login.succeeded")
    answers = _race(lambda _: mfa.step(phone, flow_id, "totp", code=code), RACERS)
    _assert_one_accepted(mfa, answers, logins)


def test_an_answer_sent_while_another_is_being_checked_is_turned_away_at_no_cost(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    flow_id = _password_done(mfa, phone)
    left = _flow(phone, flow_id)["attempts_left"]
    now = mfa.now()
    # Another process has taken the flow's turn and is checking an answer (or died doing so).
    taken = mfa.container.ctx.read(
        lambda uow: uow.flows.claim_step(flow_id, now, now + timedelta(seconds=STEP_LEASE_S))
    )
    assert taken
    r = mfa.step(phone, flow_id, "totp", code=_current_code(app, mfa))
    assert _problem(r) == (409, "conflict", "step_in_progress"), r.text
    assert _flow(phone, flow_id)["attempts_left"] == left  # it cost no attempt
    clock.advance(seconds=STEP_LEASE_S)  # the turn of a process that died lapses
    r = mfa.step(phone, flow_id, "totp", code=_current_code(app, mfa))
    assert r.status_code == 201, r.text


def test_a_check_that_outlived_its_turn_does_not_free_the_turn_taken_since(mfa, clock):
    phone, _ = _totp_user(mfa, clock)
    flow_id = _password_done(mfa, phone)
    flows = mfa.container.ctx.read
    first = mfa.now()
    lease = timedelta(seconds=STEP_LEASE_S)
    assert flows(lambda uow: uow.flows.claim_step(flow_id, first, first + lease))
    clock.advance(seconds=STEP_LEASE_S + 1)
    second = mfa.now()
    assert flows(lambda uow: uow.flows.claim_step(flow_id, second, second + lease))
    flows(lambda uow: uow.flows.release_step(flow_id, first + lease))  # the slow first one ends
    assert not flows(lambda uow: uow.flows.claim_step(flow_id, second, second + lease))
    flows(lambda uow: uow.flows.release_step(flow_id, second + lease))
    assert flows(lambda uow: uow.flows.claim_step(flow_id, second, second + lease))


def test_one_totp_code_sent_by_twenty_threads_to_twenty_flows_is_accepted_once(mfa, clock):
    phone, app = _totp_user(mfa, clock)
    clock.advance(seconds=RATE_WINDOW_S)  # twenty flow starts: a fresh rate window
    flows = [_password_done(mfa, phone) for _ in range(RACERS)]
    code = _current_code(app, mfa)
    logins = _events(mfa, "login.succeeded")
    answers = _race(lambda i: mfa.step(phone, flows[i], "totp", code=code), RACERS)
    _assert_one_accepted(mfa, answers, logins)


# ---- push bombing -------------------------------------------------------------------------------


def test_a_fourth_approval_request_within_an_hour_is_rate_limited(mfa):
    _bound_user(mfa)
    laptop = mfa.device("Attacker laptop", "linux")
    flow_id = _password_done(mfa, laptop)
    assert "bound_device_approval" in _flow(laptop, flow_id)["next"]
    for _ in range(3):  # approval_requests_max in the default policy
        r = laptop.call("POST", f"/v1/auth/flows/{flow_id}/approval", token="")
        assert r.status_code == 200, r.text
    r = laptop.call("POST", f"/v1/auth/flows/{flow_id}/approval", token="")
    assert _problem(r)[:2] == (429, "rate_limited"), r.text
    # A new flow does not reset the count: the limit is the user's, not the flow's.
    other = _password_done(mfa, laptop)
    r = laptop.call("POST", f"/v1/auth/flows/{other}/approval", token="")
    assert _problem(r)[:2] == (429, "rate_limited"), r.text
    assert _events(mfa, "approval.requested") == 3


def test_a_wrong_approval_number_denies_the_flow(mfa, clock):
    phone = _bound_user(mfa)
    clock.advance(seconds=1)  # only a device bound before the flow started may approve it
    laptop = mfa.device("Attacker laptop", "linux")
    flow_id = _password_done(mfa, laptop)
    r = laptop.call("POST", f"/v1/auth/flows/{flow_id}/approval", token="")
    assert r.status_code == 200, r.text
    number = r.json()["approval"]["number"]
    pending = phone.call("GET", "/v1/me/approvals").json()["data"]
    assert [p["flow_id"] for p in pending] == [flow_id]
    assert "number" not in json.dumps(pending)  # the approver must type it, not read it
    wrong = f"{(int(number) + 1) % 100:02d}"
    r = phone.call("POST", f"/v1/me/approvals/{flow_id}", {"decision": "approve", "number": wrong})
    assert r.status_code == 204, r.text
    r = mfa.step(laptop, flow_id, "bound_device_approval")
    assert _problem(r) == (409, "flow_ended", "failed"), r.text
    r = phone.call("POST", f"/v1/me/approvals/{flow_id}", {"decision": "approve", "number": number})
    assert _problem(r) == (409, "conflict", "not_requested"), r.text
    assert _events(mfa, "approval.denied") == 1 and _events(mfa, "approval.granted") == 0


# ---- passkeys: clones and user verification -------------------------------------------------------


def test_a_passkey_assertion_whose_counter_does_not_increase_is_refused_and_recorded(mfa):
    phone = _bound_user(mfa)
    user_id = _user_id(phone)
    copy = Device(mfa.client, mfa.now, key=phone.key, authenticator=phone.authenticator.clone())
    r = mfa.passkey_login(phone, VICTIM)
    assert r.status_code == 201, r.text
    stored = _passkey_row(mfa, user_id).sign_count
    assert stored >= 1
    r = mfa.passkey_login(copy, VICTIM)  # the copy counts from where it was cloned: the same
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    row = _passkey_row(mfa, user_id)
    assert (row.sign_count, row.clone_signals) == (stored, 1)
    r = mfa.passkey_login(copy, VICTIM, counter=1)  # lower than stored
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert _passkey_row(mfa, user_id).clone_signals == 2
    assert _events(mfa, "passkey.clone_signal") == 2
    r = mfa.passkey_login(phone, VICTIM, counter=stored + 5)  # the original moves forward
    assert r.status_code == 201, r.text


def test_a_passkey_without_user_verification_is_refused_at_login(mfa):
    phone = _bound_user(mfa)
    r = mfa.passkey_login(phone, VICTIM, user_verified=False)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    r = mfa.passkey_login(phone, VICTIM)
    assert r.status_code == 201, r.text


def test_a_passkey_made_without_user_verification_is_refused_at_registration(mfa, clock):
    phone = mfa.device()
    mfa.sign_up(phone, VICTIM)
    r = mfa.start(phone, "device_registration", email=VICTIM, device=phone.info())
    assert r.status_code == 201, r.text
    flow_id = r.json()["id"]
    r = phone.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    r = mfa.step(phone, flow_id, "email_otp", code=mfa.code_for(VICTIM))
    assert r.status_code == 200, r.text
    made = phone.authenticator.create(_passkey_options(phone, flow_id), user_verified=False)
    r = mfa.step(phone, flow_id, "passkey", credential=made)
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert [d["factor"] for d in _flow(phone, flow_id)["done"]] == ["email_otp"]
    assert _sql(mfa, "SELECT count(*) FROM devices")[0][0] == 0
    # And adding a passkey to a signed-in account: the same refusal.
    bound = _bound_user(mfa, "second@example.com")
    r = bound.call("POST", "/v1/me/factors/passkey", {})
    assert r.status_code == 201, r.text
    enrollment = r.json()
    other = SoftAuthenticator()  # a second authenticator: the phone's one is excluded
    made = other.create(enrollment["publicKey"], user_verified=False)
    r = bound.call(
        "POST", f"/v1/me/factors/passkey/{enrollment['id']}/confirm", {"credential": made}
    )
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    kept = bound.call("GET", "/v1/me/factors").json()["authenticators"]
    assert [(a["kind"], a["status"]) for a in kept] == [("passkey", "active")], kept


# ---- enumeration and rate limits ----------------------------------------------------------------


def _shape(flow: dict[str, Any]) -> dict[str, Any]:
    return {
        "keys": sorted(flow),
        "next": flow["next"],
        "paths": flow["paths"],
        "done": flow["done"],
        "attempts_left": flow["attempts_left"],
        "point": flow["point"],
        "status": flow["status"],
        "ttl": flow["expires_at"] > flow["issued_at"],
    }


def test_a_login_flow_for_an_unknown_email_looks_like_one_for_a_new_account(mfa):
    owner = mfa.device()
    mfa.sign_up(owner, VICTIM)  # password and a verified address, nothing else
    visitor = mfa.device("Visitor", "linux")
    known = mfa.start(visitor, "login", email=VICTIM)
    ghost = mfa.start(visitor, "login", email="nobody@example.com")
    assert known.status_code == ghost.status_code == 201
    assert _shape(known.json()) == _shape(ghost.json())
    assert known.json()["expires_at"] == ghost.json()["expires_at"]
    wrong = mfa.step(visitor, known.json()["id"], "password", password="wrong guess")
    any_ = mfa.step(visitor, ghost.json()["id"], "password", password=PASSWORD)
    assert wrong.status_code == any_.status_code == 401

    def public(r: Any) -> dict[str, Any]:
        return {k: v for k, v in r.json().items() if k != "flow_id"}

    assert public(wrong) == public(any_)
    assert wrong.json()["code"] == "authentication_failed"
    assert (
        _flow(visitor, known.json()["id"])["attempts_left"]
        == _flow(visitor, ghost.json()["id"])["attempts_left"]
    )

    def headers(r: Any) -> dict[str, str]:
        return {k: v for k, v in r.headers.items() if k.lower() not in {"x-request-id"}}

    assert headers(wrong) == headers(any_)


@pytest.mark.parametrize("point", ["login", "device_registration"])
def test_a_flow_for_an_unknown_email_looks_like_one_for_an_account_with_extra_factors(
    mfa, clock, point
):
    _totp_user(mfa, clock)  # a bound phone (passkey) and an authenticator app
    clock.advance(seconds=RATE_WINDOW_S)
    stranger = mfa.device("Stranger", "linux")
    extra = {"device": stranger.info()} if point == "device_registration" else {}
    known = mfa.start(stranger, point, email=VICTIM, **extra)
    ghost = mfa.start(mfa.device("Stranger 2", "linux"), point, email="nobody@example.com", **extra)
    assert known.status_code == ghost.status_code == 201, (known.text, ghost.text)
    # Before any factor is passed, the answer must not tell that the address has an account
    # (let alone which factors it enrolled).
    assert _shape(known.json()) == _shape(ghost.json())


def test_a_login_by_address_names_no_passkey_before_a_factor_has_proven_the_person(mfa):
    _bound_user(mfa)  # a passkey on a bound phone
    stranger = mfa.device("Stranger", "linux")
    flow = mfa.start(stranger, "login", email=VICTIM).json()
    r = stranger.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert r.status_code == 200, r.text
    assert not r.json()["publicKey"].get("allowCredentials"), r.text


def test_a_flow_for_an_unknown_address_signs_no_one_in_even_with_a_real_passkey(mfa):
    # A flow for an unknown address has no user; a passkey login without an address names its
    # user from the credential. The two must not mix: an attacker's own valid passkey answered
    # in a decoy flow must not sign anyone in.
    phone = _bound_user(mfa)
    logins = _events(mfa, "login.succeeded")
    r = mfa.passkey_login(phone, "nobody@example.com")
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    assert _events(mfa, "login.succeeded") == logins
    assert mfa.passkey_login(phone, VICTIM).status_code == 201  # the same passkey, its address


def _codes_to(mfa: Any, email: str) -> list[str]:
    mail.deliver_due(mfa.container.ctx)
    return [b for _, b in mfa.inbox.bodies_to(email) if CODE.search(b)]


def test_an_address_gets_at_most_ten_codes_an_hour_however_many_flows_ask(mfa, clock):
    owner = mfa.device()
    mfa.sign_up(owner, VICTIM)
    clock.advance(seconds=3600)  # the sign-up's own code is in the last hour's count
    stranger = mfa.device("Stranger", "linux")
    mail.deliver_due(mfa.container.ctx)
    sent_before = len(_codes_to(mfa, VICTIM))
    answers: dict[str, list[int]] = {}
    for email in (VICTIM, "nobody@example.com"):
        answers[email] = []
        for i in range(12):
            if i and i % 3 == 0:
                clock.advance(seconds=RATE_WINDOW_S)  # flow starts: a fresh per-minute window
            flow = mfa.start(
                stranger, "device_registration", email=email, device=stranger.info()
            ).json()
            r = stranger.call(
                "POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token=""
            )
            answers[email].append(r.status_code)
    assert answers[VICTIM] == [202] * 10 + [429] * 2
    assert answers["nobody@example.com"] == answers[VICTIM]  # an unknown address alike
    assert len(_codes_to(mfa, VICTIM)) - sent_before == 10
    clock.advance(seconds=3600)
    flow = mfa.start(stranger, "device_registration", email=VICTIM, device=stranger.info()).json()
    r = stranger.call(
        "POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token=""
    )
    assert r.status_code == 202, r.text


def test_the_21st_login_flow_in_a_minute_is_refused_alike_for_known_and_unknown_emails(mfa):
    owner = mfa.device()
    mfa.sign_up(owner, VICTIM)
    visitor = mfa.device("Visitor", "linux")
    answers = {}
    for email in (VICTIM, "nobody@example.com"):
        for i in range(20):  # login_attempts_per_account_max
            r = mfa.start(visitor, "login", email=email)
            assert r.status_code == 201, (email, i, r.text)
        answers[email] = mfa.start(visitor, "login", email=email)
    known, ghost = answers[VICTIM], answers["nobody@example.com"]
    assert _problem(known)[:2] == (429, "rate_limited"), known.text
    assert known.status_code == ghost.status_code and known.content == ghost.content
    # Another address from the same device is not held back by this one's limit.
    assert mfa.start(visitor, "login", email="third@example.com").status_code == 201


def test_the_61st_flow_start_in_a_minute_from_one_address_is_refused(mfa, clock):
    visitor = mfa.device("Visitor", "linux")
    for i in range(60):  # login_attempts_per_ip_max
        r = mfa.start(visitor, "login", email=f"spray{i}@example.com")
        assert r.status_code == 201, (i, r.text)
    r = mfa.start(visitor, "login", email="spray60@example.com")
    assert _problem(r)[:2] == (429, "rate_limited"), r.text
    clock.advance(seconds=RATE_WINDOW_S)
    assert mfa.start(visitor, "login", email="spray61@example.com").status_code == 201
