"""An OCRA app (RFC 6287) for confirming payments from a phone without a secure key store, on
SQLite and PostgreSQL under the shipped default policy.

Enrolled over HTTP like a TOTP app (a recent strong login, the seed shown once and encrypted at
rest, a first code over a test question), listed with its suite and never its seed, removed.
Its codes are checked at a payment confirmation flow only: within one step of drift, each step
once, and at a login they sign no one in whatever the policy file says.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from support import ocra as ocra_app
from support.mfa import PASSWORD, Device, Mfa, signed_up
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import build
from zeropay.domain.dynamic_linking import Transaction, binding_of
from zeropay.domain.errors import AuthenticationFailed, FactorLocked
from zeropay.domain.factors import Factor
from zeropay.domain.flows import Flow, FlowState
from zeropay.domain.money import Money, currency
from zeropay.domain.policy import AccessPoint
from zeropay.services import factor_checks, mail, ocra_codes
from zeropay.services.factor_checks import Requester
from zeropay.services.ports import StoredFlow

EMAIL = "ana@example.com"
RECENT_AUTH_S = 300  # the default policy's recent_auth_s
STEP_S = 60  # the default suite's T1M


def _problem(r: Any) -> tuple[int, str | None, str | None]:
    body = r.json()
    return r.status_code, body.get("code"), body.get("reason")


def _sql(mfa: Mfa, query: str, **params: Any) -> list[Any]:
    with mfa.container.engine.connect() as c:
        return list(c.execute(text(query), params))


def _events(mfa: Mfa, event: str) -> list[str]:
    rows = _sql(mfa, "SELECT subject FROM audit_log WHERE event = :e ORDER BY seq", e=event)
    return [r[0] for r in rows]


def _listed(device: Device) -> list[dict[str, Any]]:
    r = device.call("GET", "/v1/me/factors")
    assert r.status_code == 200, r.text
    return [a for a in r.json()["authenticators"] if a["kind"] == "ocra"]


def _user_id(device: Device) -> str:
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _start(device: Device, **body: Any) -> dict[str, Any]:
    r = device.call("POST", "/v1/me/factors/ocra", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


# ---- enrolling ----------------------------------------------------------------------------------


def test_an_ocra_app_gets_a_fresh_seed_once_and_is_active_after_a_code_over_the_test_question(
    mfa,
):
    phone = signed_up(mfa, EMAIL)
    made = _start(phone)
    assert made["suite"] == ocra_codes.SUITE == "OCRA-1:HOTP-SHA256-8:QH64-T1M"
    app = ocra_app.from_enrollment(made)
    assert len(app.seed) == 32
    assert len(app.test_question) == 64 and int(app.test_question, 16) >= 0
    assert _start(phone)["seed_hex"] != made["seed_hex"]  # a fresh seed every time
    assert _listed(phone) == []  # pending until the app proves it computes codes
    r = phone.call(
        "POST",
        f"/v1/me/factors/ocra/{app.id}/confirm",
        {"code": app.code(app.test_question, mfa.now())},
    )
    assert r.status_code == 204, r.text
    [listed] = _listed(phone)
    assert (listed["id"], listed["label"], listed["suite"], listed["status"]) == (
        app.id,
        "Confirmation code app",
        ocra_codes.SUITE,
        "active",
    )
    # The seed is shown once: no later answer carries it, in either form.
    for path in ("/v1/me/factors", "/v1/me"):
        shown = phone.call("GET", path).text
        assert made["seed_hex"] not in shown and made["seed_base32"] not in shown
    assert _events(mfa, "factor.added") == [app.id]
    r = phone.call("GET", "/v1/me/notifications")
    assert "factor.added" in [n["kind"] for n in r.json()["data"]]
    mail.deliver_due(mfa.container.ctx)
    assert "ZeroPay: a sign-in method was added" in [s for s, _ in mfa.inbox.bodies_to(EMAIL)]
    # Confirmed once: the same code again finds nothing pending.
    r = phone.call(
        "POST",
        f"/v1/me/factors/ocra/{app.id}/confirm",
        {"code": app.code(app.test_question, mfa.now())},
    )
    assert _problem(r)[:2] == (404, "not_found"), r.text


def test_a_wrong_confirmation_code_leaves_the_ocra_app_pending(mfa):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.from_enrollment(_start(phone))
    right = app.code(app.test_question, mfa.now())
    other_question = app.code("0" * 64, mfa.now())  # the right seed, another question
    for wrong in (str((int(right) + 1) % 10**8).zfill(8), other_question, "1234", "abcdefgh"):
        r = phone.call("POST", f"/v1/me/factors/ocra/{app.id}/confirm", {"code": wrong})
        assert _problem(r)[:2] == (401, "authentication_failed"), (wrong, r.text)
    assert _listed(phone) == []
    assert _events(mfa, "factor.added") == []
    [row] = _sql(mfa, "SELECT status FROM authenticators WHERE id = :i", i=app.id)
    assert row.status == "pending"
    r = phone.call("POST", f"/v1/me/factors/ocra/{app.id}/confirm", {"code": right})
    assert r.status_code == 204, r.text


def test_a_confirmation_code_from_the_step_before_is_accepted_and_from_two_steps_before_not(
    mfa, clock
):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.from_enrollment(_start(phone))
    two_before = app.code(app.test_question, mfa.now() - timedelta(seconds=2 * STEP_S))
    one_before = app.code(app.test_question, mfa.now() - timedelta(seconds=STEP_S))
    r = phone.call("POST", f"/v1/me/factors/ocra/{app.id}/confirm", {"code": two_before})
    assert _problem(r)[:2] == (401, "authentication_failed"), r.text
    r = phone.call("POST", f"/v1/me/factors/ocra/{app.id}/confirm", {"code": one_before})
    assert r.status_code == 204, r.text


def test_enrolling_an_ocra_app_needs_a_recent_strong_login(mfa, clock):
    phone = signed_up(mfa, EMAIL)
    clock.advance(seconds=RECENT_AUTH_S // 2)
    assert phone.call("GET", "/v1/me").status_code == 200  # the session stays in use
    clock.advance(seconds=RECENT_AUTH_S // 2 + 1)
    r = phone.call("POST", "/v1/me/factors/ocra", {})
    assert _problem(r)[:2] == (403, "recent_auth_required"), r.text
    assert _sql(mfa, "SELECT id FROM authenticators") == []


def test_a_stronger_payment_suite_may_be_asked_for(mfa):
    phone = signed_up(mfa, EMAIL)
    suite = "OCRA-1:HOTP-SHA512-8:QH40-T30S"
    app = ocra_app.enroll(phone, mfa.now(), suite=suite, label="Old phone")
    assert len(app.test_question) == 40
    [listed] = _listed(phone)
    assert (listed["suite"], listed["label"]) == (suite, "Old phone")


@pytest.mark.parametrize(
    ("suite", "reason"),
    [
        ("OCRA-1:HOTP-SHA1-6:QN08", "hash_not_allowed"),  # RFC 6287's own example: too weak
        ("OCRA-1:HOTP-SHA256-6:QH64-T1M", "digits_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QH20-T1M", "question_too_weak"),
        ("OCRA-1:HOTP-SHA256-8:QN64-T1M", "question_too_weak"),
        ("OCRA-1:HOTP-SHA256-8:C-QH64-T1M", "data_input_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QH64-PSHA1-T1M", "data_input_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QH64-S064-T1M", "data_input_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QH64", "time_step_not_allowed"),  # no replay record
        ("OCRA-1:HOTP-SHA256-8:QH64-T1H", "time_step_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QH64-T10S", "time_step_not_allowed"),
        ("OCRA-2:HOTP-SHA256-8:QH64-T1M", "algorithm_unsupported"),
        ("not a suite", "suite_malformed"),
    ],
)
def test_a_suite_that_cannot_carry_the_payment_or_be_checked_alone_is_refused(mfa, suite, reason):
    phone = signed_up(mfa, EMAIL)
    r = phone.call("POST", "/v1/me/factors/ocra", {"suite": suite})
    assert _problem(r) == (422, "invalid_input", reason), r.text
    assert r.json().get("field") == "suite"
    assert _sql(mfa, "SELECT id FROM authenticators") == []


def test_an_ocra_app_is_removed_like_any_factor_and_stops_being_offered(mfa):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    r = phone.call("DELETE", f"/v1/me/factors/{app.id}")
    assert r.status_code == 204, r.text
    assert _listed(phone) == []
    assert _events(mfa, "factor.removed") == [app.id]
    [row] = _sql(
        mfa, "SELECT status, secret_ciphertext FROM authenticators WHERE id = :i", i=app.id
    )
    assert (row.status, row.secret_ciphertext) == ("removed", None)


# ---- checking a code at a payment confirmation flow ---------------------------------------------


def _transaction(amount_minor: int = 1250, payee: str = "mer_corner_cafe") -> Transaction:
    return Transaction(
        payment_id="pay_01OCRA",
        amount=Money(amount_minor, currency("EUR")),
        payee=payee,
        nonce=bytes(range(16)),
    )


def _fields(txn: Transaction) -> dict[str, Any]:
    return {
        "payment_id": txn.payment_id,
        "amount_minor": txn.amount.amount_minor,
        "currency": txn.amount.currency.code,
        "payee": txn.payee,
        "nonce": txn.nonce,
    }


def _flow(mfa: Mfa, user_id: str, txn: Transaction, point: AccessPoint) -> StoredFlow:
    now = mfa.now()
    return StoredFlow(
        flow=Flow(
            id=mfa.container.ctx.new_id("flow"),
            point=point,
            user_id=user_id,
            state=FlowState.ACTIVE,
            paths=((Factor.PASSWORD, Factor.OCRA),),
            done=(),
            attempts_left=5,
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
            binding=binding_of(txn),
        )
    )


def _check(mfa: Mfa, stored: StoredFlow, code: str) -> None:
    factor_checks.check(mfa.container.ctx, stored, Factor.OCRA, {"code": code}, Requester())


def _last_step(mfa: Mfa, app_id: str) -> int | None:
    [row] = _sql(mfa, "SELECT last_step FROM authenticators WHERE id = :i", i=app_id)
    return row.last_step


def test_a_code_from_the_step_before_is_accepted_once_and_its_step_never_again(mfa, clock):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    assert _last_step(mfa, app.id) is None  # the test code answered no transaction
    user_id = _user_id(phone)
    txn = _transaction()
    clock.advance(seconds=STEP_S)
    earlier = mfa.now() - timedelta(seconds=STEP_S)
    code = app.code_for(earlier, **_fields(txn))
    _check(mfa, _flow(mfa, user_id, txn, AccessPoint.PAYMENT_CONFIRMATION), code)
    assert _last_step(mfa, app.id) == int(earlier.timestamp()) // STEP_S
    # The same code again, even for a fresh flow over the same transaction: a replay.
    with pytest.raises(AuthenticationFailed):
        _check(mfa, _flow(mfa, user_id, txn, AccessPoint.PAYMENT_CONFIRMATION), code)
    # Another transaction at that same step: that step is spent.
    other = replace(txn, nonce=bytes(16))
    with pytest.raises(AuthenticationFailed):
        _check(
            mfa,
            _flow(mfa, user_id, other, AccessPoint.PAYMENT_CONFIRMATION),
            app.code_for(earlier, **_fields(other)),
        )
    # The current step is still good.
    _check(
        mfa,
        _flow(mfa, user_id, other, AccessPoint.PAYMENT_CONFIRMATION),
        app.code_for(mfa.now(), **_fields(other)),
    )


def test_a_code_for_another_amount_or_payee_or_two_steps_old_is_refused(mfa, clock):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    user_id = _user_id(phone)
    txn = _transaction()
    stored = _flow(mfa, user_id, txn, AccessPoint.PAYMENT_CONFIRMATION)
    now = mfa.now()
    for wrong in (
        app.code_for(now, **_fields(replace(txn, amount=Money(1251, currency("EUR"))))),
        app.code_for(now, **_fields(replace(txn, amount=Money(1250, currency("USD"))))),
        app.code_for(now, **_fields(replace(txn, payee="mer_someone_else"))),
        app.code_for(now - timedelta(seconds=2 * STEP_S), **_fields(txn)),
    ):  # four: the fifth failure would lock the factor
        with pytest.raises(AuthenticationFailed) as failed:
            _check(mfa, stored, wrong)
        assert failed.value.message == factor_checks.FAILED
    assert _last_step(mfa, app.id) is None
    _check(mfa, stored, app.code_for(now, **_fields(txn)))


def test_a_malformed_code_fails_like_a_wrong_one(mfa):
    phone = signed_up(mfa, EMAIL)
    ocra_app.enroll(phone, mfa.now())
    stored = _flow(mfa, _user_id(phone), _transaction(), AccessPoint.PAYMENT_CONFIRMATION)
    for malformed in ("1234567", "123456789", "abcdefgh", "１２３４５６７８"):
        with pytest.raises(AuthenticationFailed) as failed:
            _check(mfa, stored, malformed)
        assert failed.value.message == factor_checks.FAILED


def test_the_same_code_sent_by_ten_threads_is_accepted_once(mfa):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    user_id = _user_id(phone)
    txn = _transaction()
    code = app.code_for(mfa.now(), **_fields(txn))
    flows = [_flow(mfa, user_id, txn, AccessPoint.PAYMENT_CONFIRMATION) for _ in range(10)]

    def answer(stored: StoredFlow) -> bool:
        try:
            _check(mfa, stored, code)
        except (AuthenticationFailed, FactorLocked):  # the losers' failures lock the factor
            return False
        return True

    with ThreadPoolExecutor(max_workers=10) as pool:
        accepted = list(pool.map(answer, flows))
    assert accepted.count(True) == 1, accepted


def test_an_ocra_code_at_any_point_but_payment_confirmation_is_refused(mfa):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    user_id = _user_id(phone)
    txn = _transaction()
    code = app.code_for(mfa.now(), **_fields(txn))  # a good code for this very binding
    for point in (AccessPoint.LOGIN, AccessPoint.STEP_UP, AccessPoint.RECOVERY):
        with pytest.raises(AuthenticationFailed):
            _check(mfa, _flow(mfa, user_id, txn, point), code)
    assert _last_step(mfa, app.id) is None  # nothing was spent


def test_an_ocra_code_is_no_step_of_a_login_under_the_shipped_policy(mfa):
    phone = signed_up(mfa, EMAIL)
    app = ocra_app.enroll(phone, mfa.now())
    laptop = mfa.device("Laptop", "linux")
    r = mfa.start(laptop, "login", email=EMAIL)
    flow_id = r.json()["id"]
    r = mfa.step(laptop, flow_id, "password", password=PASSWORD)
    assert r.status_code == 200, r.text
    assert "ocra" not in r.json()["flow"]["next"]
    r = mfa.step(laptop, flow_id, "ocra", code=app.code(app.test_question, mfa.now()))
    assert r.status_code == 409 and "token" not in r.json(), r.text


def test_an_ocra_code_signs_no_one_in_even_where_a_policy_file_puts_it_in_a_login_path(
    mfa_settings, clock, smtp_inbox, tmp_path: Path
):
    shipped = Path(__file__).parents[2] / "src" / "zeropay" / "policies" / "default.toml"
    policy = tmp_path / "ocra-login.toml"
    written = shipped.read_text().replace(
        '  ["password", "totp"],\n', '  ["password", "ocra"],\n', 1
    )
    assert written != shipped.read_text()
    policy.write_text(written)
    built = build(
        replace(mfa_settings, auth_policy_file=policy),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    try:
        with TestClient(create_app(built), base_url="http://localhost") as c:
            mfa = Mfa(c, built, smtp_inbox)
            phone = signed_up(mfa, EMAIL)
            app = ocra_app.enroll(phone, mfa.now())
            laptop = mfa.device("Laptop", "linux")
            flow_id = mfa.start(laptop, "login", email=EMAIL).json()["id"]
            r = mfa.step(laptop, flow_id, "password", password=PASSWORD)
            assert "ocra" in r.json()["flow"]["next"], r.text
            # The best code the app can make here: the one it made at enrollment, this step.
            r = mfa.step(laptop, flow_id, "ocra", code=app.code(app.test_question, mfa.now()))
            assert _problem(r)[:2] == (401, "authentication_failed"), r.text
            assert "token" not in json.dumps(r.json())
    finally:
        built.engine.dispose()
