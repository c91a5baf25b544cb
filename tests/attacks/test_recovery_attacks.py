"""Attacks on account recovery under the shipped default policy, through HTTP with the fixed clock.

Racing completions of one recovery and racing clicks of one "this wasn't me" link (PostgreSQL),
replayed, transplanted and resent links, brute force against recovery codes and security answers,
one factor passed and a flow completed by another key, a recovery session used for strong actions,
one-factor recovery paths in a policy file, ways around the cooling-off period, a frozen account
(no enumeration, no flow finishing, no payment), operators deciding what they must not, and
account enumeration at the start of a recovery.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import tomllib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib import resources
from typing import Any

import pytest
from sqlalchemy import text

from support.mfa import PASSWORD, Device, Mfa, bound
from support.sca import bill, confirm, shop
from zeropay.adapters.clock import FixedClock
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.policy import parse_policy
from zeropay.services import mail, operators

EMAIL = "ana@example.com"
OTHER = "bo@example.com"
UNKNOWN = "nobody@example.com"
ANSWERS = {"childhood_street": "main street", "first_school": "Lincoln Elementary"}
NEW_PASSWORD = "a new and rather long passphrase"
LINK = re.compile(r"https?://[^/\s]+/recovery/not-me\?t=(\S+)")
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
# The rules here do not depend on the database; the races and the once-only checks (links,
# lockouts, completion) also run on PostgreSQL. This keeps the file's runtime near a minute.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
RACERS = 8
FLOW_ATTEMPTS = 5  # PSD2 RTS Art. 4(3)(b): the default policy's attempts per flow and factor


# ---- helpers (small copies of tests/integration/test_recovery.py's) ------------------------------


def _problem(r: Any) -> tuple[int, str | None, str | None]:
    body = r.json()
    return r.status_code, body.get("code"), body.get("reason")


def _sql(mfa: Mfa, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _count(mfa: Mfa, query: str, **params: Any) -> int:
    return int(_sql(mfa, query, **params)[0][0])


def _user_id(mfa: Mfa) -> str:
    """The first payer's id (tests that make a second account say which one they mean)."""
    return str(_sql(mfa, "SELECT id FROM users ORDER BY created_at")[0][0])


def _status(mfa: Mfa, user_id: str) -> str:
    return str(_sql(mfa, "SELECT status FROM users WHERE id = :u", u=user_id)[0][0])


def _events(mfa: Mfa, event: str) -> list[str]:
    rows = _sql(mfa, "SELECT subject FROM audit_log WHERE event = :e ORDER BY seq", e=event)
    return [r[0] for r in rows]


def _links(mfa: Mfa, email: str = EMAIL) -> list[str]:
    mail.deliver_due(mfa.container.ctx)
    return [m.group(1) for _, body in mfa.inbox.bodies_to(email) for m in LINK.finditer(body)]


def _start(mfa: Mfa, device: Device, email: str = EMAIL, **extra: Any) -> dict[str, Any]:
    r = mfa.start(device, "recovery", email=email, device=device.info(), **extra)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _send_code(device: Device, flow_id: str) -> Any:
    return device.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")


def _code(mfa: Mfa, device: Device, flow_id: str, email: str = EMAIL) -> Any:
    r = _send_code(device, flow_id)
    assert r.status_code == 202, r.text
    return mfa.step(device, flow_id, "email_otp", code=mfa.code_for(email))


def _complete(device: Device, flow_id: str, **body: Any) -> Any:
    return device.call("POST", f"/v1/auth/flows/{flow_id}/recovery/complete", body, token="")


def _with_codes(mfa: Mfa, email: str = EMAIL) -> tuple[Device, list[str]]:
    """A payer with a bound phone (signed in with a passkey) and recovery codes."""
    phone = bound(mfa, email)
    r = phone.call("POST", "/v1/me/recovery-codes")
    assert r.status_code == 201, r.text
    return phone, list(r.json()["codes"])


def _ready(mfa: Mfa, device: Device, code: str, email: str = EMAIL) -> str:
    """Recovery code + emailed code from ``device``: the recovery is ready; its flow id."""
    flow = _start(mfa, device, email)
    r = mfa.step(device, flow["id"], "recovery_code", code=code)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["email_otp"], r.text
    r = _code(mfa, device, flow["id"], email)
    assert r.status_code == 200 and r.json()["recovery"]["status"] == "ready", r.text
    return str(flow["id"])


def _recovered(mfa: Mfa, device: Device, code: str, **complete: Any) -> dict[str, Any]:
    flow_id = _ready(mfa, device, code)
    r = _complete(device, flow_id, **complete)
    assert r.status_code == 201, r.text
    device.token = r.json()["token"]
    return dict(r.json())


def _password_login(mfa: Mfa, device: Device, password: str, email: str = EMAIL) -> Any:
    r = mfa.start(device, "login", email=email)
    assert r.status_code == 201, r.text
    return mfa.step(device, r.json()["id"], "password", password=password)


def _strong_login(mfa: Mfa, device: Device, password: str) -> dict[str, Any]:
    """Password + emailed code: an AAL2 session on ``device`` (bound to it or not)."""
    r = _password_login(mfa, device, password)
    assert r.status_code == 200, r.text
    r = _code(mfa, device, r.json()["flow"]["id"])
    assert r.status_code == 201, r.text
    device.token = r.json()["token"]
    return dict(r.json())


def _race(call: Any, n: int) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def _shipped_policy() -> dict[str, Any]:
    raw = resources.files("zeropay.policies").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(raw)


# ---- 1, 2: races ---------------------------------------------------------------------------------


@POSTGRES_ONLY
def test_two_racing_completions_of_one_recovery_bind_one_device_and_one_session(
    mfa: Mfa,
) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow_id = _ready(mfa, laptop, codes[0])
    sessions = _count(mfa, "SELECT count(*) FROM sessions")
    answers = _race(lambda _: _complete(laptop, flow_id), 2)
    statuses = Counter(a.status_code for a in answers)
    assert statuses[201] == 1, [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code != 201]
    assert _problem(refused) == (409, "invalid_state", "recovery_completed"), refused.text
    assert _count(mfa, "SELECT count(*) FROM devices WHERE name = 'Laptop'") == 1
    assert _count(mfa, "SELECT count(*) FROM sessions") == sessions + 1
    assert len(_events(mfa, "recovery.completed")) == 1
    assert len(_events(mfa, "device.bound")) == 2  # the phone's, then the laptop's once


@POSTGRES_ONLY
def test_one_link_clicked_by_racing_threads_freezes_the_account_once(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])
    [token] = _links(mfa)
    answers = _race(lambda _: mfa.client.post("/v1/recovery/not-me", json={"token": token}), RACERS)
    statuses = Counter(a.status_code for a in answers)
    assert statuses == Counter({200: 1, 422: RACERS - 1}), [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 422):
        assert _problem(refused) == (422, "recovery_link_invalid", "used"), refused.text
    assert len(_events(mfa, "account.frozen")) == 1
    assert _status(mfa, _user_id(mfa)) == "frozen"


# ---- 3: replayed, transplanted and resent links -------------------------------------------------


def test_a_used_link_is_refused_and_changes_nothing_more(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])
    [token] = _links(mfa)
    assert mfa.client.post("/v1/recovery/not-me", json={"token": token}).status_code == 200
    r = mfa.client.post("/v1/recovery/not-me", json={"token": token})
    assert _problem(r) == (422, "recovery_link_invalid", "used"), r.text
    assert len(_events(mfa, "account.frozen")) == 1


@SQLITE_ONLY
def test_a_link_for_one_account_cannot_freeze_another_by_swapping_the_recovery_id(
    mfa: Mfa,
) -> None:
    _, codes_a = _with_codes(mfa, EMAIL)
    _, codes_b = _with_codes(mfa, OTHER)
    ana, bo = (str(r[0]) for r in _sql(mfa, "SELECT id FROM users ORDER BY created_at"))
    _recovered(mfa, mfa.device("Laptop", "linux"), codes_a[0])
    bo_laptop = mfa.device("Bo's laptop", "linux")
    bo_flow = _ready(mfa, bo_laptop, codes_b[0], OTHER)
    assert _complete(bo_laptop, bo_flow).status_code == 201
    [ana_token] = _links(mfa, EMAIL)
    bo_rid = _sql(mfa, "SELECT id FROM recoveries WHERE user_id = :u", u=bo)[0][0]
    version, _, expiry, nonce, tag = ana_token.split(".")
    swapped = ".".join((version, bo_rid, expiry, nonce, tag))
    r = mfa.client.post("/v1/recovery/not-me", json={"token": swapped})
    assert _problem(r) == (422, "recovery_link_invalid", "forged"), r.text
    # nor does it ask for a fresh link to be mailed to anyone
    r = mfa.client.post("/v1/recovery/not-me/resend", json={"token": swapped})
    assert _problem(r) == (422, "recovery_link_invalid", "forged"), r.text
    assert (_status(mfa, ana), _status(mfa, bo)) == ("active", "active")
    assert _events(mfa, "account.frozen") == []
    assert _events(mfa, "recovery.link_resent") == []


@SQLITE_ONLY
def test_a_resent_link_leaves_the_old_unexpired_one_working_once_and_the_account_freezes_once(
    mfa: Mfa,
) -> None:
    """Asking for a fresh link does not revoke the one in hand (both are genuine, each works
    once); the second to be used finds the recovery reported and changes nothing more: one
    freeze, one audit entry, one alert."""
    _, codes = _with_codes(mfa)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])
    [old] = _links(mfa)
    r = mfa.client.post("/v1/recovery/not-me/resend", json={"token": old})
    assert r.status_code == 202, r.text
    [_, fresh] = _links(mfa)
    assert fresh != old
    assert mfa.client.post("/v1/recovery/not-me", json={"token": old}).status_code == 200
    r = mfa.client.post("/v1/recovery/not-me", json={"token": old})
    assert _problem(r) == (422, "recovery_link_invalid", "used"), r.text
    r = mfa.client.post("/v1/recovery/not-me", json={"token": fresh})
    assert r.status_code == 200 and r.json()["account"] == "frozen", r.text
    r = mfa.client.post("/v1/recovery/not-me", json={"token": fresh})
    assert _problem(r) == (422, "recovery_link_invalid", "used"), r.text
    assert _status(mfa, _user_id(mfa)) == "frozen"
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "reported"
    assert len(_events(mfa, "account.frozen")) == 1
    assert [r[0] for r in _sql(mfa, "SELECT kind FROM notifications")].count("account.frozen") == 1


@SQLITE_ONLY
def test_links_resent_for_one_recovery_stop_after_three_an_hour(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])
    [token] = _links(mfa)
    answers = [
        mfa.client.post("/v1/recovery/not-me/resend", json={"token": token}).status_code
        for _ in range(5)
    ]
    assert answers == [202, 202, 202, 429, 429]
    assert len(_links(mfa)) == 4
    assert len(_events(mfa, "recovery.link_resent")) == 3


# ---- 4: brute force -------------------------------------------------------------------------------


def test_guessing_recovery_codes_fails_the_flow_locks_the_factor_and_refuses_the_right_code(
    mfa: Mfa, clock: FixedClock
) -> None:
    _, codes = _with_codes(mfa)
    ana = _user_id(mfa)
    attacker = mfa.device("Attacker", "linux")
    flow = _start(mfa, attacker)
    answers = [
        mfa.step(attacker, flow["id"], "recovery_code", code=f"aaaa-bbbb-cccc-{i:04d}")
        for i in range(FLOW_ATTEMPTS)
    ]
    assert [a.status_code for a in answers] == [401] * FLOW_ATTEMPTS, [a.text for a in answers]
    # PSD2 RTS Art. 4(3)(a): every failure reads the same
    assert len({a.json()["detail"] for a in answers}) == 1
    r = mfa.step(attacker, flow["id"], "recovery_code", code=codes[0])
    assert _problem(r) == (409, "flow_ended", "failed"), r.text
    assert _sql(mfa, "SELECT state FROM auth_flows WHERE id = :f", f=flow["id"])[0][0] == "failed"
    [(failures, locks, locked_until)] = _sql(
        mfa,
        "SELECT failures, locks, locked_until FROM factor_states "
        "WHERE user_id = :u AND factor = 'recovery_code'",
        u=ana,
    )
    assert (failures, locks) == (0, 1) and locked_until is not None
    # a new flow: the right code is refused while the factor is locked, answering exactly like a
    # wrong one (a stranger cannot tell a locked account from a wrong guess), and stays unspent
    again = _start(mfa, attacker)
    r = mfa.step(attacker, again["id"], "recovery_code", code=codes[0])
    assert _problem(r) == (401, "authentication_failed", None), r.text
    assert r.json()["detail"] == answers[0].json()["detail"]
    left = "SELECT count(*) FROM recovery_codes WHERE user_id = :u AND used_at IS NULL"
    assert _count(mfa, left, u=ana) == len(codes)
    assert _events(mfa, "factor.failed") == [ana] * FLOW_ATTEMPTS
    assert _events(mfa, "factor.locked") == [ana]
    assert _count(mfa, "SELECT count(*) FROM recoveries") == 0
    # the lock, and nothing else, refused it: once it lapses the same code passes
    clock.advance(minutes=1)
    later = _start(mfa, attacker)
    r = mfa.step(attacker, later["id"], "recovery_code", code=codes[0])
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["email_otp"], r.text


@SQLITE_ONLY
def test_guessing_security_answers_locks_them_and_the_right_answers_are_then_refused(
    mfa: Mfa,
) -> None:
    phone = bound(mfa, EMAIL)
    assert phone.call("PUT", "/v1/me/security-questions", {"answers": ANSWERS}).status_code == 204
    ana = _user_id(mfa)
    wrong = {"childhood_street": "elm street", "first_school": "Lincoln Elementary"}
    flows = []
    answers = []
    for _ in range(FLOW_ATTEMPTS):
        flow = _start(mfa, phone)
        flows.append(flow["id"])
        answers.append(mfa.step(phone, flow["id"], "security_question", answers=wrong))
    assert [a.status_code for a in answers] == [401] * FLOW_ATTEMPTS, [a.text for a in answers]
    assert len({a.json()["detail"] for a in answers}) == 1
    flow = _start(mfa, phone)
    r = mfa.step(phone, flow["id"], "security_question", answers=ANSWERS)
    assert _problem(r) == (401, "authentication_failed", None), r.text
    assert r.json()["detail"] == answers[0].json()["detail"]
    assert _events(mfa, "factor.failed") == [ana] * FLOW_ATTEMPTS
    assert _events(mfa, "factor.locked") == [ana]
    assert _count(mfa, "SELECT count(*) FROM recoveries") == 0


@SQLITE_ONLY
def test_a_right_recovery_code_tried_while_the_factor_is_locked_is_audited(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    attacker = mfa.device("Attacker", "linux")
    flow = _start(mfa, attacker)
    for i in range(FLOW_ATTEMPTS):
        mfa.step(attacker, flow["id"], "recovery_code", code=f"aaaa-bbbb-cccc-{i:04d}")
    again = _start(mfa, attacker)
    r = mfa.step(attacker, again["id"], "recovery_code", code=codes[0])
    assert r.status_code == 401, r.text
    assert _events(mfa, "factor.refused_locked") == [_user_id(mfa)]


# ---- 5: one factor, another flow, another key ---------------------------------------------------


@SQLITE_ONLY
def test_a_flow_with_only_the_emailed_code_passed_cannot_be_completed(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    ready = _ready(mfa, laptop, codes[0])
    half = _start(mfa, laptop)
    r = _code(mfa, laptop, half["id"])
    assert r.status_code == 200 and r.json()["flow"]["status"] == "active", r.text
    assert "recovery" not in r.json() or r.json()["recovery"] is None
    r = _complete(laptop, half["id"], new_password=NEW_PASSWORD)
    assert _problem(r)[:2] == (404, "not_found"), r.text
    assert _count(mfa, "SELECT count(*) FROM devices WHERE name = 'Laptop'") == 0
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 200
    assert _events(mfa, "recovery.completed") == []
    # the one recovery is the other flow's, still ready for its own device
    assert _sql(mfa, "SELECT flow_id, state FROM recoveries") == [(ready, "ready")]


def test_another_key_of_the_same_user_cannot_complete_or_read_a_flows_recovery(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow_id = _ready(mfa, laptop, codes[0])
    for who in (phone, mfa.device("Attacker", "linux")):
        r = _complete(who, flow_id, new_password=NEW_PASSWORD)
        assert _problem(r) == (401, "proof_invalid", "flow_key"), r.text
        r = who.call("GET", f"/v1/auth/flows/{flow_id}/recovery", token="")
        assert _problem(r) == (401, "proof_invalid", "flow_key"), r.text
    r = laptop.call("POST", f"/v1/auth/flows/{flow_id}/recovery/complete", {}, signed=False)
    assert _problem(r) == (401, "proof_invalid", "missing"), r.text
    assert _count(mfa, "SELECT count(*) FROM devices") == 1
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "ready"
    # the owner of the key still completes it, once
    assert _complete(laptop, flow_id).status_code == 201
    r = _complete(laptop, flow_id)
    assert _problem(r) == (409, "invalid_state", "recovery_completed"), r.text
    r = _complete(phone, flow_id)
    assert _problem(r) == (401, "proof_invalid", "flow_key"), r.text
    assert len(_events(mfa, "recovery.completed")) == 1


# ---- 6: never weaker than a login -------------------------------------------------------------------


@SQLITE_ONLY
def test_a_recovery_session_from_two_possession_factors_does_nothing_strong(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    body = _recovered(mfa, laptop, codes[0])
    assert body["session"]["aal"] == 1
    # AAL1 meets the recent-strong-sign-in rule before the cooling-off period
    r = laptop.call("PUT", "/v1/me/security-questions", {"answers": ANSWERS})
    assert _problem(r) == (403, "recent_auth_required", None), r.text
    r = laptop.call("GET", "/v1/me/approvals")
    assert _problem(r) == (403, "forbidden", "not_bound_device"), r.text
    assert _count(mfa, "SELECT count(*) FROM security_answers") == 0


@pytest.mark.parametrize(
    "paths",
    [[["email_otp"]], [["recovery_code"]], [["email_otp", "email_otp"]], [["passkey"]]],
)
def test_a_policy_cannot_declare_a_recovery_path_of_one_factor(paths: list[list[str]]) -> None:
    document = _shipped_policy()
    document["points"]["recovery"]["paths"] = paths
    with pytest.raises(ConfigurationError):
        parse_policy(document)


def test_a_policy_cannot_waive_the_second_factor_of_a_recovery_path() -> None:
    document = copy.deepcopy(_shipped_policy())
    document["points"]["recovery"]["waived_when_unavailable"] = ["bound_device_approval"]
    with pytest.raises(ConfigurationError, match="has one factor"):
        parse_policy(document)


def test_a_policy_cannot_pair_a_security_question_with_an_emailed_code_for_recovery() -> None:
    document = _shipped_policy()
    document["points"]["recovery"]["paths"] = [["security_question", "email_otp"]]
    with pytest.raises(ConfigurationError):
        parse_policy(document)


# ---- 7: around the cooling-off period ---------------------------------------------------------


@SQLITE_ONLY
def test_a_fresh_strong_login_on_the_recovered_device_still_cools_off_and_approves_nothing(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    _recovered(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    # the recovery session (AAL1) neither lists nor decides approvals
    clock.advance(minutes=1)
    other = mfa.device("Another", "linux")
    r = mfa.start(other, "device_registration", email=EMAIL, device=other.info())
    reg = r.json()["id"]
    assert _code(mfa, other, reg).status_code == 200
    r = other.call("POST", f"/v1/auth/flows/{reg}/passkey-options", token="")
    credential = other.authenticator.create(r.json()["publicKey"])
    r = mfa.step(other, reg, "passkey", credential=credential)
    assert r.json()["flow"]["next"] == ["bound_device_approval"], r.text
    r = other.call("POST", f"/v1/auth/flows/{reg}/approval", token="")
    number = r.json()["approval"]["number"]
    r = laptop.call("POST", f"/v1/me/approvals/{reg}", {"decision": "approve", "number": number})
    assert _problem(r) == (403, "forbidden", "not_bound_device"), r.text
    # a new AAL2 session on the same device: a new session, the same restriction
    assert _strong_login(mfa, laptop, NEW_PASSWORD)["session"]["aal"] == 2
    r = laptop.call("POST", f"/v1/me/approvals/{reg}", {"decision": "approve", "number": number})
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    assert r.json()["action"] == "approve"
    r = laptop.call("POST", "/v1/me/recovery-codes")
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    # the flow is still waiting: nothing was approved, no third device is bound
    r = mfa.step(other, reg, "bound_device_approval")
    assert _problem(r) == (401, "authentication_failed", None), r.text
    assert _count(mfa, "SELECT count(*) FROM devices WHERE name = 'Another'") == 0
    assert _events(mfa, "approval.granted") == []


@SQLITE_ONLY
def test_a_session_on_no_bound_device_cools_off_too(mfa: Mfa, clock: FixedClock) -> None:
    _, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0], new_password=NEW_PASSWORD)
    kiosk = mfa.device("Kiosk", "linux")  # a key never bound
    body = _strong_login(mfa, kiosk, NEW_PASSWORD)
    assert body["session"]["aal"] == 2
    assert _sql(mfa, "SELECT device_id FROM sessions WHERE id = :s", s=body["session"]["id"]) == [
        (None,)
    ]
    r = kiosk.call("POST", "/v1/me/recovery-codes")
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    assert r.json()["action"] == "remove_factor"
    r = kiosk.call("PUT", "/v1/me/security-questions", {"answers": ANSWERS})
    assert _problem(r)[:2] == (403, "cooling_off"), r.text
    assert _count(mfa, "SELECT count(*) FROM security_answers") == 0


@SQLITE_ONLY
def test_the_cooling_off_period_ends_exactly_at_cooling_until(mfa: Mfa, clock: FixedClock) -> None:
    _, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    body = _recovered(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    until = datetime.fromisoformat(body["recovery"]["cooling_until"])
    clock.advance(seconds=(until - clock.now()).total_seconds() - 60)
    _strong_login(mfa, laptop, NEW_PASSWORD)
    clock.advance(seconds=(until - clock.now()).total_seconds() - 1)
    r = laptop.call("POST", "/v1/me/recovery-codes")
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    assert r.json()["until"] == until.isoformat()
    clock.advance(seconds=1)
    assert clock.now() == until
    r = laptop.call("POST", "/v1/me/recovery-codes")
    assert r.status_code == 201, r.text


@SQLITE_ONLY
def test_a_device_bound_before_the_recovery_is_never_held_back(mfa: Mfa, clock: FixedClock) -> None:
    phone, codes = _with_codes(mfa)
    clock.advance(days=1, minutes=1)  # past the phone's own limits as a new device
    laptop = mfa.device("Laptop", "linux")
    _recovered(mfa, laptop, codes[0])
    assert _sql(mfa, "SELECT cooling_until FROM recoveries")[0][0] is not None
    cafe = shop(mfa, "Corner Cafe")
    phone.token = mfa.passkey_login(phone, EMAIL).json()["token"]
    r = phone.call("POST", "/v1/wallet/topups", {"amount": 5000, "currency": "EUR"})
    assert r.status_code == 201, r.text
    assert confirm(phone, bill(mfa, cafe, 1500, "EUR")).status_code == 200
    assert phone.call("POST", "/v1/me/recovery-codes").status_code == 201
    laptop_id = _sql(mfa, "SELECT id FROM devices WHERE name = 'Laptop'")[0][0]
    assert phone.call("DELETE", f"/v1/me/devices/{laptop_id}").status_code == 204
    assert laptop.call("GET", "/v1/me").status_code == 401


# ---- 8: a frozen account ----------------------------------------------------------------------------


def _without_ids(body: Any) -> Any:
    """A flow's answer with what differs between any two flows (ids, times) left out."""
    if isinstance(body, dict):
        return {
            k: _without_ids(v)
            for k, v in body.items()
            if k not in ("id", "issued_at", "expires_at", "flow_id")
        }
    if isinstance(body, list):
        return [_without_ids(v) for v in body]
    return body


def _frozen(mfa: Mfa) -> tuple[Device, Device]:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    rid = _recovered(mfa, laptop, codes[0])["recovery"]["id"]
    r = phone.call("POST", f"/v1/me/recoveries/{rid}/not-me")
    assert r.status_code == 200, r.text
    return phone, laptop


@SQLITE_ONLY
def test_a_frozen_account_answers_a_login_exactly_like_an_unknown_address(mfa: Mfa) -> None:
    _frozen(mfa)
    answers = {}
    for email in (EMAIL, UNKNOWN):
        device = mfa.device()
        r = mfa.start(device, "login", email=email)
        assert r.status_code == 201, r.text
        started = _without_ids(r.json())
        r = mfa.step(device, r.json()["id"], "password", password=PASSWORD)
        answers[email] = (started, r.status_code, _without_ids(r.json()))
    assert answers[EMAIL] == answers[UNKNOWN]
    assert answers[EMAIL][1] == 401


@SQLITE_ONLY
def test_a_flow_half_way_when_the_account_freezes_cannot_finish(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    thief = mfa.device("Thief", "linux")
    r = _password_login(mfa, thief, PASSWORD)
    assert r.status_code == 200, r.text
    login_id = r.json()["flow"]["id"]
    assert _send_code(thief, login_id).status_code == 202
    code = mfa.code_for(EMAIL)
    rid = _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])["recovery"]["id"]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    sessions = _count(mfa, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL")
    r = mfa.step(thief, login_id, "email_otp", code=code)
    assert _problem(r) == (403, "forbidden", "account_not_active"), r.text
    assert "token" not in r.json()
    assert _count(mfa, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == sessions == 0


@SQLITE_ONLY
def test_a_recovery_ready_when_the_account_froze_cannot_be_completed(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow_id = _ready(mfa, laptop, codes[0])
    rid = _sql(mfa, "SELECT id FROM recoveries")[0][0]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    r = _complete(laptop, flow_id, new_password=NEW_PASSWORD)
    assert _problem(r) == (409, "conflict", "account_not_active"), r.text
    assert _count(mfa, "SELECT count(*) FROM devices WHERE name = 'Laptop'") == 0
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "reported"


@SQLITE_ONLY
def test_no_payment_is_confirmed_once_the_account_is_frozen(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    r = phone.call("POST", "/v1/wallet/topups", {"amount": 5000, "currency": "EUR"})
    assert r.status_code == 201, r.text
    cafe = shop(mfa, "Corner Cafe")
    payment = bill(mfa, cafe, 500, "EUR")
    laptop = mfa.device("Laptop", "linux")
    rid = _recovered(mfa, laptop, codes[0])["recovery"]["id"]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    for device in (phone, laptop):
        r = confirm(device, payment)
        assert _problem(r) == (401, "not_authenticated", "revoked"), r.text
    assert _sql(mfa, "SELECT status FROM payments WHERE id = :p", p=payment) == [
        ("requires_confirmation",)
    ]


@SQLITE_ONLY
def test_a_resent_link_for_a_frozen_account_goes_to_its_own_address_only(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone, codes = _with_codes(mfa)
    bound(mfa, OTHER)
    _recovered(mfa, mfa.device("Laptop", "linux"), codes[0])
    [token] = _links(mfa)
    rid = _sql(mfa, "SELECT id FROM recoveries")[0][0]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    clock.advance(minutes=11)
    mail.deliver_due(mfa.container.ctx)
    before = len(mfa.inbox.messages)
    r = mfa.client.post("/v1/recovery/not-me/resend", json={"token": token})
    assert r.status_code == 202, r.text
    mail.deliver_due(mfa.container.ctx)
    # the fresh link is queued for the account (never for whoever asked), and nothing reaches
    # any other address
    assert _events(mfa, "recovery.link_resent") == [rid]
    queued = "SELECT user_id FROM outbound_email WHERE subject LIKE '%link to freeze%'"
    owner = _sql(mfa, "SELECT user_id FROM recoveries")[0][0]
    assert [r[0] for r in _sql(mfa, queued)] == [owner]
    assert all(rcpt == [EMAIL] for rcpt, _ in mfa.inbox.messages[before:])
    assert _links(mfa, OTHER) == []


@SQLITE_ONLY
def test_the_owner_is_told_by_email_that_the_account_was_frozen(mfa: Mfa) -> None:
    _frozen(mfa)
    mail.deliver_due(mfa.container.ctx)
    subjects = [subject for subject, _ in mfa.inbox.bodies_to(EMAIL)]
    assert "ZeroPay: your account is frozen" in subjects


# ---- 9: operators and held recoveries ---------------------------------------------------------------


def _held(mfa: Mfa, clock: FixedClock) -> tuple[Device, Device, str]:
    """The held recovery of tests/integration/test_recovery.py: London, then guesses and a
    recovery from Changchun on a device never trusted (score 70, the review threshold)."""
    phone = bound(mfa, EMAIL)
    codes = phone.call("POST", "/v1/me/recovery-codes").json()["codes"]
    phone.ip = "81.2.69.160"
    assert mfa.passkey_login(phone, EMAIL).status_code == 201
    clock.advance(days=1)
    far = mfa.device("Unknown", "android", ip="175.16.199.1")
    for _ in range(3):
        assert _password_login(mfa, far, "not the password at all").status_code == 401
    flow = _start(mfa, far)
    assert mfa.step(far, flow["id"], "recovery_code", code=codes[0]).status_code == 200
    r = _code(mfa, far, flow["id"])
    assert r.status_code == 200 and r.json()["recovery"]["status"] == "held", r.text
    return phone, far, str(flow["id"])


def _operator(mfa: Mfa, email: str, role: str) -> Device:
    ops = bound(mfa, email)
    operators.grant(mfa.container.ctx, email=email, role=role, actor="cli")
    return ops


@SQLITE_ONLY
def test_operators_cannot_approve_their_own_recovery_nor_with_a_read_only_role(
    risky: Mfa, clock: FixedClock
) -> None:
    mfa = risky
    phone, far, flow_id = _held(mfa, clock)
    rid = _sql(mfa, "SELECT id FROM recoveries")[0][0]
    # the account owner is an operator with the deciding role: not for their own recovery
    operators.grant(mfa.container.ctx, email=EMAIL, role="risk", actor="cli")
    phone.token = mfa.passkey_login(phone, EMAIL).json()["token"]
    r = phone.call("POST", f"/v1/operator/recoveries/{rid}/approve", {"reason": "it is me"})
    assert _problem(r) == (403, "forbidden", "own_account"), r.text
    support = _operator(mfa, "support@example.com", "support")
    assert support.call("GET", "/v1/operator/recoveries").status_code == 200
    r = support.call("POST", f"/v1/operator/recoveries/{rid}/approve", {"reason": "looks ok"})
    assert _problem(r) == (403, "operator_role_required", "decide_reviews"), r.text
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "held"
    assert _events(mfa, "recovery.approved") == []
    assert _problem(_complete(far, flow_id))[2] == "recovery_held"


@SQLITE_ONLY
def test_a_held_recovery_is_decided_once_and_a_denied_one_completes_nothing(
    risky: Mfa, clock: FixedClock
) -> None:
    mfa = risky
    _, far, flow_id = _held(mfa, clock)
    rid = _sql(mfa, "SELECT id FROM recoveries")[0][0]
    ops = _operator(mfa, "ops@example.com", "risk")
    r = ops.call("POST", f"/v1/operator/recoveries/{rid}/deny", {"reason": "no"})
    assert r.status_code == 200 and r.json()["status"] == "denied", r.text
    for verb in ("approve", "deny"):
        r = ops.call("POST", f"/v1/operator/recoveries/{rid}/{verb}", {"reason": "again"})
        assert _problem(r) == (409, "invalid_state", "not_held"), r.text
    r = _complete(far, flow_id, new_password=NEW_PASSWORD)
    assert _problem(r)[1:] == ("invalid_state", "recovery_denied"), r.text
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "denied"
    assert _count(mfa, "SELECT count(*) FROM devices WHERE name = 'Unknown'") == 0
    assert _events(mfa, "recovery.denied") == [rid]
    assert _events(mfa, "recovery.completed") == []


# ---- 10: enumeration ------------------------------------------------------------------------------


@SQLITE_ONLY
def test_a_recovery_for_an_unknown_address_starts_and_mails_like_a_known_one(mfa: Mfa) -> None:
    _with_codes(mfa)
    started = {}
    for email in (EMAIL, UNKNOWN):
        device = mfa.device("Laptop", "linux")
        r = mfa.start(device, "recovery", email=email, device=device.info())
        assert r.status_code == 201, r.text
        flow = r.json()
        sent = _send_code(device, flow["id"])
        wrong = mfa.step(device, flow["id"], "recovery_code", code="aaaa-bbbb-cccc-dddd")
        started[email] = (
            sorted(flow),
            flow["paths"],
            _without_ids(flow),
            sent.status_code,
            _without_ids(sent.json()),
            wrong.status_code,
            _without_ids(wrong.json()),
        )
    assert started[EMAIL] == started[UNKNOWN]
    assert started[EMAIL][3] == 202 and started[EMAIL][5] == 401
    assert ["security_question", "passkey"] in started[EMAIL][1]
    mfa.code_for(EMAIL)  # the known address got its code...
    assert mfa.inbox.bodies_to(UNKNOWN) == []  # ...the unknown one nothing
    assert len(mfa.inbox.messages) == sum(1 for rcpt, _ in mfa.inbox.messages if EMAIL in rcpt)
