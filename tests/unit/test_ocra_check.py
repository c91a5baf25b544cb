"""The OCRA factor check derives the question a third-party app derives: from the confirmation
flow's own binding, by the encoding README.md documents (checked here by hand, with hashlib),
and accepts exactly the code ``domain.ocra.compute`` makes over it. No database: the check reads
its authenticators through a stand-in unit of work, and the keyring is the in-memory one."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from support import ocra as ocra_app
from zeropay.adapters.vault.vault import Vault
from zeropay.domain import ocra
from zeropay.domain.authenticators import Authenticator, AuthenticatorKind
from zeropay.domain.dynamic_linking import Transaction, binding_of
from zeropay.domain.errors import AuthenticationFailed
from zeropay.domain.factors import Factor
from zeropay.domain.flows import Flow, FlowState
from zeropay.domain.money import parse_money
from zeropay.domain.policy import AccessPoint
from zeropay.services import ocra_codes
from zeropay.services.factor_checks import FAILED, Requester, _check_ocra
from zeropay.services.ports import StoredFlow

USER = "usr_1"
# 09:30:15 is mid-step for one-minute steps.
NOW = datetime(2026, 11, 2, 9, 30, 15, tzinfo=UTC)
SEED = b"12345678901234567890123456789012"  # RFC 6287 Appendix C's SHA-256 key
TXN = Transaction(
    payment_id="pay_01JDZ8Q4M3",
    amount=parse_money(1250, "EUR"),
    payee="mer_01JDZ7CAFE",
    nonce=bytes(range(16)),
)
FIELDS = {
    "payment_id": "pay_01JDZ8Q4M3",
    "amount_minor": 1250,
    "currency": "EUR",
    "payee": "mer_01JDZ7CAFE",
    "nonce": bytes(range(16)),
}
# The worked example in README.md, so an app's author can check their own code against it.
EXAMPLE_CANONICAL_HEX = (
    "7a65726f7061792d74786e2d7631"  # zeropay-txn-v1
    "0000000e"
    "7061795f30314a445a3851344d33"  # pay_01JDZ8Q4M3
    "00000004"
    "31323530"  # 1250
    "00000003"
    "455552"  # EUR
    "0000000e"
    "6d65725f30314a445a3743414645"  # mer_01JDZ7CAFE
    "00000010"
    "000102030405060708090a0b0c0d0e0f"  # the nonce
)
EXAMPLE_QUESTION = "df6f6bca00c76a745c018f1429aabd427219e253951a389893842a4dbfb8bb94"
EXAMPLE_CODE = "69303822"  # at 2026-11-02T09:30:15Z, time step 29893530


@dataclass
class _Authenticators:
    apps: list[Authenticator]
    accepted: list[tuple[str, int]] = field(default_factory=list)

    def of_user(self, user_id: str, *, pending: bool = False) -> list[Authenticator]:
        return [a for a in self.apps if a.user_id == user_id and a.status == "active"]

    def accept_totp_step(self, authenticator_id: str, step: int, now: datetime) -> bool:
        if any(i == authenticator_id and s >= step for i, s in self.accepted):
            return False
        self.accepted.append((authenticator_id, step))
        return True


def _context(*apps: tuple[str, str, bytes], last_step: int | None = None) -> Any:
    keyring = Vault.ephemeral()
    held = [
        Authenticator(
            id=app_id,
            user_id=USER,
            kind=AuthenticatorKind.OCRA,
            label="app",
            status="active",
            created_at=NOW - timedelta(days=1),
            secret_ciphertext=keyring.encrypt(
                seed, table="authenticators", column="secret", row_id=app_id
            ),
            last_step=last_step,
            ocra_suite=suite,
        )
        for app_id, suite, seed in apps
    ]
    store = _Authenticators(held)
    uow = SimpleNamespace(authenticators=store)
    return SimpleNamespace(keyring=keyring, now=lambda: NOW, read=lambda work: work(uow))


def _stored(point: AccessPoint = AccessPoint.PAYMENT_CONFIRMATION) -> StoredFlow:
    return StoredFlow(
        flow=Flow(
            id="flow_1",
            point=point,
            user_id=USER,
            state=FlowState.ACTIVE,
            paths=((Factor.PASSWORD, Factor.OCRA),),
            done=(),
            attempts_left=5,
            issued_at=NOW,
            expires_at=NOW + timedelta(minutes=5),
            binding=binding_of(TXN),
        )
    )


def _check(ctx: Any, code: str, point: AccessPoint = AccessPoint.PAYMENT_CONFIRMATION) -> None:
    _check_ocra(ctx, _stored(point), USER, {"code": code}, Requester())


def test_the_documented_encoding_gives_the_worked_example_of_the_readme():
    assert ocra_app.canonical(**FIELDS).hex() == EXAMPLE_CANONICAL_HEX
    assert hashlib.sha256(bytes.fromhex(EXAMPLE_CANONICAL_HEX)).hexdigest() == EXAMPLE_QUESTION
    suite = ocra.parse_payment_suite(ocra_codes.SUITE)
    assert ocra_codes.flow_question(binding_of(TXN), suite) == EXAMPLE_QUESTION
    code = ocra.compute(suite, SEED, EXAMPLE_QUESTION, timestamp_s=int(NOW.timestamp()))
    assert code == EXAMPLE_CODE and int(NOW.timestamp()) // 60 == 29893530


@pytest.mark.parametrize(
    "suite",
    [
        ocra_codes.SUITE,
        "OCRA-1:HOTP-SHA512-8:QH40-T30S",
        "OCRA-1:HOTP-SHA256-8:QH41-T2M",  # an odd length: RFC 6287 §5.1 pads the last digit
    ],
)
def test_the_check_accepts_the_code_compute_makes_over_the_hand_derived_question(suite):
    parsed = ocra.parse_payment_suite(suite)
    question = ocra_app.question(suite, **FIELDS)
    assert len(question) == parsed.question_length
    code = ocra.compute(parsed, SEED, question, timestamp_s=int(NOW.timestamp()))
    ctx = _context(("auth_1", suite, SEED))
    _check(ctx, code)
    step = int(NOW.timestamp()) // parsed.time_step_s
    assert ctx.read(lambda uow: uow.authenticators.accepted) == [("auth_1", step)]


def test_the_check_tries_each_app_and_spends_the_step_of_the_one_that_matched():
    other_seed = bytes(32)
    ctx = _context(("auth_1", ocra_codes.SUITE, other_seed), ("auth_2", ocra_codes.SUITE, SEED))
    _check(ctx, EXAMPLE_CODE)
    assert ctx.read(lambda uow: uow.authenticators.accepted) == [("auth_2", 29893530)]


@pytest.mark.parametrize(
    "changed",
    [
        {"amount_minor": 1251},
        {"currency": "USD"},
        {"payee": "mer_01JDZ7EVIL"},
        {"payment_id": "pay_01JDZ8Q4M4"},
        {"nonce": bytes(16)},
    ],
)
def test_a_code_over_any_other_transaction_is_refused(changed):
    suite = ocra.parse_payment_suite(ocra_codes.SUITE)
    question = ocra_app.question(ocra_codes.SUITE, **{**FIELDS, **changed})
    code = ocra.compute(suite, SEED, question, timestamp_s=int(NOW.timestamp()))
    ctx = _context(("auth_1", ocra_codes.SUITE, SEED))
    with pytest.raises(AuthenticationFailed) as failed:
        _check(ctx, code)
    assert failed.value.message == FAILED
    assert ctx.read(lambda uow: uow.authenticators.accepted) == []


def test_a_step_at_or_before_the_last_one_used_is_refused_and_the_next_step_is_not():
    ctx = _context(("auth_1", ocra_codes.SUITE, SEED), last_step=29893530)
    with pytest.raises(AuthenticationFailed):
        _check(ctx, EXAMPLE_CODE)
    suite = ocra.parse_payment_suite(ocra_codes.SUITE)
    ahead = ocra.compute(suite, SEED, EXAMPLE_QUESTION, timestamp_s=int(NOW.timestamp()) + 60)
    _check(ctx, ahead)  # one step of drift, and a step not used yet


@pytest.mark.parametrize(
    "point", [p for p in AccessPoint if p is not AccessPoint.PAYMENT_CONFIRMATION]
)
def test_a_right_code_at_any_other_point_is_refused_before_anything_is_read(point):
    ctx = _context(("auth_1", ocra_codes.SUITE, SEED))
    ctx.read = lambda work: pytest.fail("nothing is read for a point OCRA cannot answer")
    with pytest.raises(AuthenticationFailed) as failed:
        _check(ctx, EXAMPLE_CODE, point)
    assert failed.value.message == FAILED
