"""Account recovery over HTTP, on SQLite and PostgreSQL, under the shipped policy: each path end
to end (security question + passkey on a bound device; recovery code + emailed code from a new
device; emailed code + approval from another bound device), one factor alone refused, a risky
recovery held for an operator, the cooling-off period of a new device, and "this wasn't me"
(from the emailed link and from the app) freezing the account and ending every session."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import text

from support.mfa import PASSWORD, Device, Mfa, bound
from support.sca import bill, confirm, shop
from zeropay import cli
from zeropay.adapters.clock import FixedClock
from zeropay.services import jobs, mail, operators

EMAIL = "ana@example.com"
ANSWERS = {"childhood_street": "main street", "first_school": "Lincoln Elementary"}
NEW_PASSWORD = "a new and rather long passphrase"
LINK = re.compile(r"https?://[^/\s]+/recovery/not-me\?t=(\S+)")


# ---- helpers ------------------------------------------------------------------------------------


def _problem(r: Any) -> tuple[int, str | None, str | None]:
    body = r.json()
    return r.status_code, body.get("code"), body.get("reason")


def _sql(mfa: Mfa, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _user_id(mfa: Mfa) -> str:
    """The one payer's id (tests that make a second account say which one they mean)."""
    [(user_id,)] = _sql(mfa, "SELECT id FROM users")
    return str(user_id)


def _status(mfa: Mfa, user_id: str | None = None) -> str:
    rows = _sql(mfa, "SELECT status FROM users WHERE id = :u", u=user_id or _user_id(mfa))
    return str(rows[0][0])


def _events(mfa: Mfa, event: str) -> list[str]:
    rows = _sql(mfa, "SELECT subject FROM audit_log WHERE event = :e ORDER BY seq", e=event)
    return [r[0] for r in rows]


def _mails(mfa: Mfa) -> list[tuple[str, str]]:
    mail.deliver_due(mfa.container.ctx)
    return mfa.inbox.bodies_to(EMAIL)


def _links(mfa: Mfa) -> list[str]:
    return [m.group(1) for _, body in _mails(mfa) for m in LINK.finditer(body)]


def _start(mfa: Mfa, device: Device, **extra: Any) -> dict[str, Any]:
    r = mfa.start(device, "recovery", email=EMAIL, device=device.info(), **extra)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _code(mfa: Mfa, device: Device, flow_id: str) -> Any:
    r = device.call("POST", f"/v1/auth/flows/{flow_id}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    return mfa.step(device, flow_id, "email_otp", code=mfa.code_for(EMAIL))


def _complete(device: Device, flow_id: str, **body: Any) -> Any:
    return device.call("POST", f"/v1/auth/flows/{flow_id}/recovery/complete", body, token="")


def _with_codes(mfa: Mfa) -> tuple[Device, list[str]]:
    """A payer with a bound phone (signed in with a passkey) and recovery codes."""
    phone = bound(mfa, EMAIL)
    r = phone.call("POST", "/v1/me/recovery-codes")
    assert r.status_code == 201, r.text
    return phone, list(r.json()["codes"])


def _recover_with_code(mfa: Mfa, laptop: Device, code: str, **complete: Any) -> dict[str, Any]:
    """Recovery code + emailed code from ``laptop``, then completed there."""
    flow = _start(mfa, laptop)
    r = mfa.step(laptop, flow["id"], "recovery_code", code=code)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["email_otp"], r.text
    r = _code(mfa, laptop, flow["id"])
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["status"] == "complete"
    assert r.json()["recovery"]["status"] == "ready" and "token" not in r.json()
    r = _complete(laptop, flow["id"], **complete)
    assert r.status_code == 201, r.text
    laptop.token = r.json()["token"]
    return dict(r.json())


def _password_login(mfa: Mfa, device: Device, password: str) -> Any:
    r = mfa.start(device, "login", email=EMAIL)
    assert r.status_code == 201, r.text
    return mfa.step(device, r.json()["id"], "password", password=password)


# ---- the three paths ------------------------------------------------------------------------------


def test_security_question_then_passkey_on_the_bound_phone_resets_the_password(mfa: Mfa) -> None:
    phone = bound(mfa, EMAIL)
    assert phone.call("PUT", "/v1/me/security-questions", {"answers": ANSWERS}).status_code == 204
    flow = _start(mfa, phone)
    assert ["security_question", "passkey"] in flow["paths"]
    r = mfa.step(phone, flow["id"], "security_question", answers=ANSWERS)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["passkey"], r.text
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    credential = phone.authenticator.get(r.json()["publicKey"])
    r = mfa.step(phone, flow["id"], "passkey", credential=credential)
    assert r.status_code == 200, r.text
    assert r.json()["recovery"]["status"] == "ready"
    assert r.json()["recovery"]["new_device"] is False
    r = _complete(phone, flow["id"], new_password=NEW_PASSWORD)
    assert r.status_code == 201, r.text
    body = r.json()
    # knowledge + possession/inherence: as strong as the factors, and no cooling-off here
    assert body["session"]["aal"] == 2
    assert [m["factor"] for m in body["session"]["methods"]] == ["security_question", "passkey"]
    assert body["recovery"]["cooling_until"] is None
    assert _password_login(mfa, mfa.device(), NEW_PASSWORD).status_code == 200
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 401
    assert _events(mfa, "recovery.completed") == [body["recovery"]["id"]]


def test_recovery_code_then_emailed_code_from_a_new_device_binds_it_cooling_off(
    mfa: Mfa,
) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Old laptop", "linux")
    body = _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    # two possession factors: not strong authentication, so the session is AAL1
    assert body["session"]["aal"] == 1
    assert body["device"]["name"] == "Old laptop"
    assert body["recovery"]["new_device"] is True
    assert body["recovery"]["cooling_until"].startswith("2026-11-03T09:30")
    devices = _sql(mfa, "SELECT name, status, device_class FROM devices ORDER BY created_at")
    # no passkey is made in a recovery: the laptop said "platform" but holds a key store at most
    assert [tuple(d) for d in devices] == [
        ("Pixel 9", "active", "platform"),
        ("Old laptop", "active", "key_store"),
    ]
    # the phone is told in the app, and the mailbox by email with the link
    kinds = [n["kind"] for n in phone.call("GET", "/v1/me/notifications").json()["data"]]
    assert "recovery.completed" in kinds
    assert len(_links(mfa)) == 1
    # the used recovery code is spent
    again = _start(mfa, mfa.device())
    r = mfa.step(mfa.device(), again["id"], "recovery_code", code=codes[0])
    assert r.status_code in (401, 422), r.text


def test_emailed_code_then_approval_from_the_bound_phone_recovers_on_a_new_device(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone = bound(mfa, EMAIL)
    clock.advance(minutes=1)
    tablet = mfa.device("Tablet", "ipados")
    flow = _start(mfa, tablet)
    r = _code(mfa, tablet, flow["id"])
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["next"] == ["bound_device_approval"]
    mfa.approve(tablet, phone, flow["id"])
    r = mfa.step(tablet, flow["id"], "bound_device_approval")
    assert r.status_code == 200 and r.json()["recovery"]["status"] == "ready", r.text
    r = _complete(tablet, flow["id"])
    assert r.status_code == 201, r.text
    assert [m["factor"] for m in r.json()["session"]["methods"]] == [
        "email_otp",
        "bound_device_approval",
    ]
    # no new password asked: the old one still signs in
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 200


# ---- one factor is never enough -----------------------------------------------------------------


def test_one_factor_alone_recovers_nothing(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow = _start(mfa, laptop)
    r = mfa.step(laptop, flow["id"], "recovery_code", code=codes[0])
    assert r.status_code == 200, r.text
    assert r.json()["flow"]["status"] == "active" and "recovery" not in r.json()
    # the flow is not done: there is no recovery to complete, and no token anywhere
    assert _problem(_complete(laptop, flow["id"], new_password=NEW_PASSWORD))[:2] == (
        404,
        "not_found",
    )
    # nor can the client skip to another factor the path does not expect now
    r = mfa.step(laptop, flow["id"], "bound_device_approval")
    assert _problem(r)[:2] == (409, "flow_step_refused"), r.text
    assert _sql(mfa, "SELECT count(*) FROM recoveries")[0][0] == 0
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 200  # unchanged


def test_a_recovery_is_completed_only_by_the_device_key_that_ran_it(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow = _start(mfa, laptop)
    mfa.step(laptop, flow["id"], "recovery_code", code=codes[0])
    assert _code(mfa, laptop, flow["id"]).status_code == 200
    thief = mfa.device("Elsewhere", "linux")
    assert _problem(_complete(thief, flow["id"]))[:2] == (401, "proof_invalid")
    r = thief.call("GET", f"/v1/auth/flows/{flow['id']}/recovery", token="")
    assert _problem(r)[:2] == (401, "proof_invalid")
    # completed once; a second completion is refused
    assert _complete(laptop, flow["id"]).status_code == 201
    assert _problem(_complete(laptop, flow["id"]))[:2] == (409, "invalid_state")


def test_a_ready_recovery_lapses_after_ten_minutes(mfa: Mfa, clock: FixedClock) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow = _start(mfa, laptop)
    mfa.step(laptop, flow["id"], "recovery_code", code=codes[0])
    assert _code(mfa, laptop, flow["id"]).status_code == 200
    clock.advance(minutes=10)
    r = _complete(laptop, flow["id"], new_password=NEW_PASSWORD)
    assert _problem(r) == (409, "invalid_state", "recovery_expired")
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 200


def test_a_weak_new_password_is_refused_and_changes_nothing(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    flow = _start(mfa, laptop)
    mfa.step(laptop, flow["id"], "recovery_code", code=codes[0])
    _code(mfa, laptop, flow["id"])
    r = _complete(laptop, flow["id"], new_password="password")
    assert r.status_code == 422, r.text
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "ready"
    assert _complete(laptop, flow["id"], new_password=NEW_PASSWORD).status_code == 201


# ---- the cooling-off period ---------------------------------------------------------------------


def test_a_new_device_cools_off_while_the_devices_from_before_keep_every_right(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    cafe = shop(mfa, "Corner Cafe")
    assert (
        laptop.call("POST", "/v1/wallet/topups", {"amount": 5000, "currency": "EUR"}).status_code
        == 201
    )
    # it can look...
    assert laptop.call("GET", "/v1/me").status_code == 200
    assert laptop.call("GET", "/v1/me/recoveries").status_code == 200
    # ...and make small payments, but nothing above the ceiling
    assert confirm(laptop, bill(mfa, cafe, 900, "EUR")).status_code == 200
    r = confirm(laptop, bill(mfa, cafe, 1500, "EUR"))
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    assert r.json()["action"] == "pay" and r.json()["limit_minor"] == 1000
    phone_id = _sql(mfa, "SELECT id FROM devices WHERE name = 'Pixel 9'")[0][0]
    phone_session = _sql(mfa, "SELECT id FROM sessions WHERE device_id = :d", d=phone_id)[0][0]
    refused = {
        "remove the phone": laptop.call("DELETE", f"/v1/me/devices/{phone_id}"),
        "end the phone's session": laptop.call("DELETE", f"/v1/sessions/{phone_session}"),
        "new recovery codes": laptop.call("POST", "/v1/me/recovery-codes"),
        "trust a payee": laptop.call(
            "POST", "/v1/me/trusted-beneficiaries", {"merchant_id": cafe.id}
        ),
        "export": laptop.call("GET", "/v1/me/export"),
        "erase": laptop.call("DELETE", "/v1/me"),
        "change the password": laptop.call(
            "POST", "/v1/me/password", {"new_password": "yet another long passphrase"}
        ),
    }
    for what, r in refused.items():
        # an AAL1 session meets the recent-strong-sign-in rule first on some of these; either
        # way, nothing happens
        assert r.status_code == 403, (what, r.text)
        assert r.json()["code"] in ("cooling_off", "recent_auth_required"), (what, r.text)
    assert _sql(mfa, "SELECT count(*) FROM devices WHERE status = 'active'")[0][0] == 2
    # the phone, bound before the recovery, removes the laptop
    laptop_id = _sql(mfa, "SELECT id FROM devices WHERE name = 'Laptop'")[0][0]
    mfa.step_up_with_passkey(phone)
    assert phone.call("DELETE", f"/v1/me/devices/{laptop_id}").status_code == 204


def test_the_cooling_off_period_holds_back_even_a_strong_session_then_ends(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    # a strong sign-in on the laptop (new password + emailed code): still cooling off
    r = _password_login(mfa, laptop, NEW_PASSWORD)
    flow_id = r.json()["flow"]["id"]
    r = _code(mfa, laptop, flow_id)
    assert r.status_code == 201, r.text
    laptop.token = r.json()["token"]
    assert r.json()["session"]["aal"] == 2
    r = laptop.call("POST", "/v1/me/recovery-codes")
    assert _problem(r)[:2] == (403, "cooling_off"), r.text
    assert r.json()["action"] == "remove_factor"
    # nor may it approve another device's flow
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
    assert _problem(r)[:2] == (403, "cooling_off"), r.text
    # a day later the laptop is an ordinary device
    clock.advance(hours=24)
    r = _password_login(mfa, laptop, NEW_PASSWORD)
    r = _code(mfa, laptop, r.json()["flow"]["id"])
    assert r.status_code == 201, r.text
    laptop.token = r.json()["token"]
    assert laptop.call("POST", "/v1/me/recovery-codes").status_code == 201


# ---- "this wasn't me" -----------------------------------------------------------------------------


def test_the_emailed_link_freezes_the_account_and_ends_every_session(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    [token] = _links(mfa)
    # opening the link changes nothing (mail scanners open links)
    page = mfa.client.get(f"/recovery/not-me?t={token}")
    assert page.status_code == 200 and "freeze my account" in page.text
    assert _status(mfa) == "active"
    page = mfa.client.post(f"/recovery/not-me?t={token}")
    assert page.status_code == 200 and "Your account is frozen" in page.text
    assert _status(mfa) == "frozen"
    assert phone.call("GET", "/v1/me").status_code == 401
    assert laptop.call("GET", "/v1/me").status_code == 401
    assert _sql(mfa, "SELECT status FROM devices WHERE name = 'Laptop'")[0][0] == "removed"
    assert _sql(mfa, "SELECT state FROM recoveries")[0][0] == "reported"
    assert _events(mfa, "account.frozen") == [_user_id(mfa)]
    # no one signs in to a frozen account, with the new password or the old
    assert _password_login(mfa, mfa.device(), NEW_PASSWORD).status_code == 401
    # the link works once
    again = mfa.client.post(f"/recovery/not-me?t={token}")
    assert again.status_code == 400 and "already used" in again.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_operator_unfreezes_from_the_cli_with_a_reason(
    mfa: Mfa, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    phone, codes = _with_codes(mfa)
    rid = _recover_with_code(mfa, mfa.device("Laptop", "linux"), codes[0])["recovery"]["id"]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    assert _status(mfa) == "frozen"
    settings = mfa.container.settings
    monkeypatch.setenv("ZEROPAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPAY_VAULT_DEV_FILE", str(settings.vault_dev_file))
    monkeypatch.setenv("USER", "ops-anna")
    assert cli.main(["user", "unfreeze", EMAIL, "--reason", "passport checked"]) == 0
    assert json.loads(capsys.readouterr().out) == {"user_id": _user_id(mfa), "unfrozen": True}
    assert _status(mfa) == "active"
    assert _events(mfa, "account.unfrozen") == [_user_id(mfa)]
    # a second time there is nothing to unfreeze; an unknown address is an error
    assert cli.main(["user", "unfreeze", EMAIL, "--reason", "again"]) == 1
    assert cli.main(["user", "unfreeze", "nobody@example.com", "--reason", "x"]) == 1
    # the owner can sign in again (with the password they had: the recovery did not change it)
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 200


def test_an_edited_or_foreign_link_freezes_nothing(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0])
    [token] = _links(mfa)
    version, rid, expiry, nonce, tag = token.split(".")
    edited = {
        "later expiry": ".".join((version, rid, str(int(expiry) + 3600), nonce, tag)),
        "other nonce": ".".join((version, rid, expiry, "A" + nonce[1:], tag)),
        "other tag": ".".join(
            (version, rid, expiry, nonce, ("A" if tag[0] != "A" else "B") + tag[1:])
        ),
        "unknown recovery": ".".join((version, "rcv_" + "0" * 26, expiry, nonce, tag)),
        "garbage": "not-a-link",
    }
    for what, bad in edited.items():
        r = mfa.client.post("/v1/recovery/not-me", json={"token": bad})
        assert _problem(r)[:2] == (422, "recovery_link_invalid"), (what, r.text)
    assert _status(mfa) == "active"
    assert _events(mfa, "account.frozen") == []


def test_an_expired_link_asks_for_a_fresh_one_sent_to_the_account_address(
    mfa: Mfa, clock: FixedClock
) -> None:
    _, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0])
    [token] = _links(mfa)
    clock.advance(minutes=10)
    r = mfa.client.post("/v1/recovery/not-me", json={"token": token})
    assert _problem(r) == (422, "recovery_link_invalid", "expired"), r.text
    assert _status(mfa) == "active"
    page = mfa.client.post(f"/recovery/not-me?t={token}", content=b"resend=1")
    assert page.status_code == 200 and "fresh link" in page.text
    links = _links(mfa)
    assert len(links) == 2 and links[1] != token
    assert mfa.client.post("/v1/recovery/not-me", json={"token": links[1]}).status_code == 200
    assert _status(mfa) == "frozen"


def test_this_wasnt_me_from_the_phone_freezes_the_account(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    body = _recover_with_code(mfa, laptop, codes[0])
    rid = body["recovery"]["id"]
    listed = phone.call("GET", "/v1/me/recoveries").json()["items"]
    assert [r["id"] for r in listed] == [rid] and listed[0]["status"] == "completed"
    r = phone.call("POST", f"/v1/me/recoveries/{rid}/not-me")
    assert r.status_code == 200 and r.json()["account"] == "frozen", r.text
    assert _status(mfa) == "frozen"
    assert phone.call("GET", "/v1/me").status_code == 401
    assert laptop.call("GET", "/v1/me").status_code == 401


def test_another_accounts_recovery_cannot_be_reported(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    ana = _user_id(mfa)
    laptop = mfa.device("Laptop", "linux")
    rid = _recover_with_code(mfa, laptop, codes[0])["recovery"]["id"]
    other = bound(mfa, "bo@example.com")
    r = other.call("POST", f"/v1/me/recoveries/{rid}/not-me")
    assert _problem(r)[:2] == (404, "not_found")
    assert _status(mfa, ana) == "active"


# ---- a risky recovery is held for an operator -----------------------------------------------------


def _held(mfa: Mfa, clock: FixedClock) -> tuple[Device, Device, str]:
    """A payer who signs in from London; a day later their password is guessed at three times
    from Changchun, then a recovery from that device (seen failing, never trusted): untrusted
    device (45) + failed attempts (15) + new country (10) = 70, the shipped review threshold."""
    phone = bound(mfa, EMAIL)
    codes = phone.call("POST", "/v1/me/recovery-codes").json()["codes"]
    phone.ip = "81.2.69.160"  # London
    assert mfa.passkey_login(phone, EMAIL).status_code == 201
    clock.advance(days=1)
    far = mfa.device("Unknown", "android", ip="175.16.199.1")  # Changchun
    for _ in range(3):
        assert _password_login(mfa, far, "not the password at all").status_code == 401
    flow = _start(mfa, far)
    assert mfa.step(far, flow["id"], "recovery_code", code=codes[0]).status_code == 200
    r = _code(mfa, far, flow["id"])
    assert r.status_code == 200, r.text
    assert r.json()["recovery"]["status"] == "held", r.text
    return phone, far, str(flow["id"])


def _operator(mfa: Mfa) -> Device:
    ops = bound(mfa, "ops@example.com")
    operators.grant(mfa.container.ctx, email="ops@example.com", role="risk", actor="cli")
    return ops


def test_a_risky_recovery_is_held_until_an_operator_approves_it(
    risky: Mfa, clock: FixedClock
) -> None:
    mfa = risky
    phone, far, flow_id = _held(mfa, clock)
    reasons = _sql(mfa, "SELECT risk_reasons FROM recoveries")[0][0].split()
    assert reasons[0] == "review", reasons
    assert {"untrusted_device", "failed_attempts", "new_country"} <= set(reasons), reasons
    # held: nothing can be completed yet, and the owner was told
    assert _problem(_complete(far, flow_id, new_password=NEW_PASSWORD))[2] == "recovery_held"
    assert "recovery.held" in [r[0] for r in _sql(mfa, "SELECT kind FROM notifications")]
    assert len(_links(mfa)) == 1  # with "this wasn't me"
    # the operator looks days later: the flow itself is long purged, the recovery is not
    clock.advance(days=3)
    jobs._purge_replay_records(mfa.container.ctx)
    assert _sql(mfa, "SELECT count(*) FROM auth_flows WHERE id = :f", f=flow_id)[0][0] == 0
    ops = _operator(mfa)
    held = ops.call("GET", "/v1/operator/recoveries")
    assert held.status_code == 200, held.text
    [item] = held.json()["items"]
    assert item["risk_reasons"] == reasons
    r = ops.call("POST", f"/v1/operator/recoveries/{item['id']}/approve", {"reason": "called"})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    # a held recovery is decided once
    r = ops.call("POST", f"/v1/operator/recoveries/{item['id']}/deny", {"reason": "changed mind"})
    assert _problem(r)[:2] == (409, "invalid_state"), r.text
    r = _complete(far, flow_id, new_password=NEW_PASSWORD)
    assert r.status_code == 201, r.text
    assert _events(mfa, "recovery.completed") == [item["id"]]
    # the session carries the factors as of when they passed: no recent strong sign-in
    assert [m["at"][:10] for m in r.json()["session"]["methods"]] == ["2026-11-03"] * 2


def test_a_denied_recovery_changes_nothing(risky: Mfa, clock: FixedClock) -> None:
    mfa = risky
    _, far, flow_id = _held(mfa, clock)
    ana = _user_id(mfa)
    before = _sql(mfa, "SELECT password_hash FROM users WHERE id = :u", u=ana)
    ops = _operator(mfa)
    [item] = ops.call("GET", "/v1/operator/recoveries").json()["items"]
    r = ops.call("POST", f"/v1/operator/recoveries/{item['id']}/deny", {"reason": "no"})
    assert r.status_code == 200 and r.json()["status"] == "denied", r.text
    assert _problem(_complete(far, flow_id, new_password=NEW_PASSWORD))[2] == "recovery_denied"
    assert _sql(mfa, "SELECT password_hash FROM users WHERE id = :u", u=ana) == before
    assert _sql(mfa, "SELECT count(*) FROM devices WHERE name = 'Unknown'")[0][0] == 0


def test_a_payer_who_is_not_an_operator_sees_no_held_recovery(
    risky: Mfa, clock: FixedClock
) -> None:
    mfa = risky
    _held(mfa, clock)
    payer = bound(mfa, "bo@example.com")
    assert _problem(payer.call("GET", "/v1/operator/recoveries"))[:2] == (403, "not_an_operator")


def test_an_ordinary_recovery_from_a_new_device_goes_through_with_the_engine_on(
    risky: Mfa,
) -> None:
    mfa = risky
    phone = bound(mfa, EMAIL)
    codes = phone.call("POST", "/v1/me/recovery-codes").json()["codes"]
    laptop = mfa.device("Laptop", "linux", ip="81.2.69.160")
    flow = _start(mfa, laptop)
    mfa.step(laptop, flow["id"], "recovery_code", code=codes[0])
    r = _code(mfa, laptop, flow["id"])
    # the engine asks for more on a new device (a challenge), which the recovery's two factors
    # answer: ready, not held
    assert r.json()["recovery"]["status"] == "ready", r.text
    decision = _sql(mfa, "SELECT action FROM risk_assessments WHERE event_type = 'recovery'")[0][0]
    assert decision == "challenge"
    assert _complete(laptop, flow["id"]).status_code == 201


def test_an_older_phone_recovering_keeps_its_weaker_class(mfa: Mfa) -> None:
    _, codes = _with_codes(mfa)
    old = mfa.device("Galaxy S5", "android")
    old.device_class = "software"
    _recover_with_code(mfa, old, codes[0])
    rows = _sql(mfa, "SELECT device_class FROM devices WHERE name = 'Galaxy S5'")
    assert [r[0] for r in rows] == ["software"]


# ---- what the security review found -------------------------------------------------------------


def _strong_login(mfa: Mfa, device: Device, password: str) -> None:
    """Password + emailed code on ``device``: an AAL2 session there."""
    r = _password_login(mfa, device, password)
    assert r.status_code == 200, r.text
    r = _code(mfa, device, r.json()["flow"]["id"])
    assert r.status_code == 201, r.text
    device.token = r.json()["token"]


def test_a_recovery_on_a_bound_key_without_its_passkey_cools_that_device_off(
    mfa: Mfa, clock: FixedClock
) -> None:
    """A bound device's key alone may be a copy (older phones keep it in software): a recovery
    code + email code run on it cool it off like a new device."""
    phone, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    tablet = mfa.device("Tablet", "ipados")
    assert mfa.bind(tablet, EMAIL, approver=phone).status_code == 201
    clock.advance(days=2)
    copy = Device(mfa.client, mfa.now, name="Tablet", platform="ipados", key=tablet.key)
    body = _recover_with_code(mfa, copy, codes[0], new_password=NEW_PASSWORD)
    assert body["recovery"]["new_device"] is False
    assert body["recovery"]["cooling_until"] is not None
    _strong_login(mfa, copy, NEW_PASSWORD)
    phone_id = _sql(mfa, "SELECT id FROM devices WHERE name = 'Pixel 9'")[0][0]
    r = copy.call("DELETE", f"/v1/me/devices/{phone_id}")
    assert _problem(r)[:2] == (403, "cooling_off"), r.text
    assert _sql(mfa, "SELECT status FROM devices WHERE id = :d", d=phone_id)[0][0] == "active"


def test_this_wasnt_me_undoes_the_factors_and_the_password_the_recovery_brought(
    mfa: Mfa, clock: FixedClock
) -> None:
    phone, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    rid = _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)["recovery"]["id"]
    _strong_login(mfa, laptop, NEW_PASSWORD)
    # no factor can be added from the cooling device...
    r = laptop.call("POST", "/v1/me/factors/totp", {})
    assert _problem(r)[:2] == (403, "cooling_off") and r.json()["action"] == "add_factor", r.text
    # ...and one added meanwhile (from anywhere) is removed with the report
    mfa.step_up_with_passkey(phone)
    mfa.enroll_totp(phone)
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    kinds = _sql(mfa, "SELECT kind, status FROM authenticators WHERE kind = 'totp'")
    assert [tuple(k) for k in kinds] == [("totp", "removed")]
    assert recovery_unfreeze(mfa)
    # the password the recovery set no longer works; the owner recovers with their own factors
    assert _password_login(mfa, mfa.device(), NEW_PASSWORD).status_code == 401
    assert _password_login(mfa, mfa.device(), PASSWORD).status_code == 401


def recovery_unfreeze(mfa: Mfa) -> bool:
    from zeropay.services import recovery

    return recovery.unfreeze(
        mfa.container.ctx, user_id=_user_id(mfa), actor="ops", reason="identity checked"
    )


def test_small_payments_while_cooling_off_stop_at_the_total(mfa: Mfa, clock: FixedClock) -> None:
    _, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0])
    r = laptop.call("POST", "/v1/wallet/topups", {"amount": 20000, "currency": "EUR"})
    assert r.status_code == 201, r.text
    cafe = shop(mfa, "Corner Cafe")
    paid = [confirm(laptop, bill(mfa, cafe, 1000, "EUR")).status_code for _ in range(3)]
    assert paid == [200, 200, 200]
    r = confirm(laptop, bill(mfa, cafe, 1000, "EUR"))
    assert _problem(r) == (403, "cooling_off", "cooling_off"), r.text
    assert r.json()["limit_minor"] == 3000


def test_a_cooling_device_neither_withholds_signals_nor_reads_the_privacy_center(
    mfa: Mfa, clock: FixedClock
) -> None:
    _, codes = _with_codes(mfa)
    clock.advance(minutes=1)
    laptop = mfa.device("Laptop", "linux")
    _recover_with_code(mfa, laptop, codes[0], new_password=NEW_PASSWORD)
    _strong_login(mfa, laptop, NEW_PASSWORD)
    r = laptop.call("PUT", "/v1/me/consents", {"location": False})
    assert _problem(r)[:2] == (403, "cooling_off") and r.json()["action"] == "withhold_signals"
    assert _sql(mfa, "SELECT count(*) FROM consents")[0][0] == 0
    r = laptop.call("GET", "/v1/me/privacy")
    assert _problem(r)[:2] == (403, "cooling_off") and r.json()["action"] == "export"


def test_a_device_never_approves_its_own_recovery(mfa: Mfa, clock: FixedClock) -> None:
    phone = bound(mfa, EMAIL)
    clock.advance(minutes=1)
    tablet = mfa.device("Tablet", "ipados")
    assert mfa.bind(tablet, EMAIL, approver=phone).status_code == 201
    clock.advance(minutes=1)
    flow = _start(mfa, phone)
    assert _code(mfa, phone, flow["id"]).json()["flow"]["next"] == ["bound_device_approval"]
    r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/approval", token="")
    number = r.json()["approval"]["number"]
    r = phone.call(
        "POST", f"/v1/me/approvals/{flow['id']}", {"decision": "approve", "number": number}
    )
    assert _problem(r) == (403, "forbidden", "own_flow"), r.text
    assert _problem(mfa.step(phone, flow["id"], "bound_device_approval"))[0] == 401


def test_a_removed_devices_key_cannot_start_a_recovery(mfa: Mfa) -> None:
    phone, codes = _with_codes(mfa)
    laptop = mfa.device("Laptop", "linux")
    rid = _recover_with_code(mfa, laptop, codes[0])["recovery"]["id"]
    assert phone.call("POST", f"/v1/me/recoveries/{rid}/not-me").status_code == 200
    assert recovery_unfreeze(mfa)
    r = mfa.start(laptop, "recovery", email=EMAIL, device=laptop.info())
    assert _problem(r) == (409, "conflict", "device_bound"), r.text


def test_a_link_with_a_non_ascii_digit_is_refused_not_a_500(mfa: Mfa) -> None:
    bad = "v1.rcv_x.\u00b2.AAAA.AAAA"
    r = mfa.client.post("/v1/recovery/not-me", json={"token": bad})
    assert _problem(r)[:2] == (422, "recovery_link_invalid"), r.text
    page = mfa.client.post("/recovery/not-me?t=v1.rcv_x.%C2%B2.AAAA.AAAA")
    assert page.status_code == 400
