"""OCRA (RFC 6287) against the Appendix C vectors, ZeroPay's payment suites, the transaction
question and the verification window."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain import ocra
from zeropay.domain.dynamic_linking import Transaction
from zeropay.domain.errors import AuthenticationFailed, InvalidInput
from zeropay.domain.money import parse_money

VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "rfc6287_ocra.json").read_text()
)
PAYMENT_SUITE = ocra.parse_payment_suite("OCRA-1:HOTP-SHA256-8:QH40-T1M")
KEY = bytes(range(32))
# 12:00:30 is mid-step for one-minute steps, so clock rounding cannot move the expected step.
NOW = datetime(2026, 11, 2, 12, 0, 30, tzinfo=UTC)
NOW_STEP = int(NOW.timestamp()) // 60
TXN = Transaction(
    payment_id="pay_01", amount=parse_money(1000, "EUR"), payee="mer_cafe", nonce=bytes(16)
)


def vector_id(vector: dict[str, object]) -> str:
    return f"{vector['section']}-{vector['suite']}-{vector['question']}-{vector['counter']}"


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_every_rfc6287_appendix_c_vector_is_computed(vector: dict[str, object]) -> None:
    suite = ocra.parse_suite(vector["suite"])
    steps_hex = vector["timestamp_steps_hex"]
    code = ocra.compute(
        suite,
        bytes.fromhex(VECTORS["keys_hex"][vector["key"]]),
        str(vector["question"]),
        counter=vector["counter"],  # type: ignore[arg-type]
        pin_hash=bytes.fromhex(VECTORS["pin_sha1_hex"]) if vector["pin"] else None,
        timestamp_s=None if steps_hex is None else int(str(steps_hex), 16) * 60,
        mutual=str(vector["mode"]).startswith("mutual"),
    )
    assert code == vector["ocra"]


def test_the_vector_file_covers_every_appendix_c_table() -> None:
    suites = {(v["section"], v["mode"], v["suite"]) for v in VECTORS["vectors"]}
    assert len(VECTORS["vectors"]) == 70
    assert {s for section, _, s in suites if section == "C.1"} == {
        "OCRA-1:HOTP-SHA1-6:QN08",
        "OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1",
        "OCRA-1:HOTP-SHA256-8:QN08-PSHA1",
        "OCRA-1:HOTP-SHA512-8:C-QN08",
        "OCRA-1:HOTP-SHA512-8:QN08-T1M",
    }


def test_the_vector_pin_hash_is_sha1_of_the_pin() -> None:
    assert hashlib.sha1(VECTORS["pin"].encode()).hexdigest() == VECTORS["pin_sha1_hex"]


@pytest.mark.parametrize(
    ("text", "step_s", "counter", "pin", "session"),
    [
        ("OCRA-1:HOTP-SHA256-8:QH40-T1M", 60, False, None, None),
        ("OCRA-1:HOTP-SHA512-8:C-QH64-PSHA256-S064-T30S", 30, True, "SHA256", 64),
        ("OCRA-1:HOTP-SHA256-8:QH40", None, False, None, None),
        ("OCRA-1:HOTP-SHA512-8:QH48-T2H", 7200, False, None, None),
    ],
)
def test_payment_suites_are_parsed(
    text: str, step_s: int | None, counter: bool, pin: str | None, session: int | None
) -> None:
    suite = ocra.parse_payment_suite(text)
    assert (suite.time_step_s, suite.counter, suite.pin_hash_name, suite.session_bytes) == (
        step_s,
        counter,
        pin,
        session,
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "suite_not_text"),
        ("OCRA-1:HOTP-SHA256-8:QH40-T1M-" + "x" * 40, "suite_too_long"),
        ("OCRA-1:HOTP-SHA256-8", "suite_malformed"),
        ("OCRA-2:HOTP-SHA256-8:QH40", "algorithm_unsupported"),
        ("OCRA-1:HOTP-MD5-8:QH40", "crypto_function_unsupported"),
        ("OCRA-1:TOTP-SHA256-8:QH40", "crypto_function_unsupported"),
        ("OCRA-1:HOTP-SHA256-3:QH40", "digits_out_of_range"),
        ("OCRA-1:HOTP-SHA256-11:QH40", "digits_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:T1M-QH40", "data_input_malformed"),
        ("OCRA-1:HOTP-SHA256-8:QX40", "data_input_malformed"),
        ("OCRA-1:HOTP-SHA256-8:C", "data_input_malformed"),
        ("OCRA-1:HOTP-SHA256-8:QH40-S64", "data_input_malformed"),
        ("OCRA-1:HOTP-SHA256-8:QH03", "question_length_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:QH65", "question_length_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:QH40-S000", "session_length_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:QH40-T60M", "time_step_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:QH40-T0S", "time_step_out_of_range"),
        ("OCRA-1:HOTP-SHA256-8:QH40-T49H", "time_step_out_of_range"),
        # Valid RFC 6287 suites that are too weak for a payment:
        ("OCRA-1:HOTP-SHA1-8:QH40", "hash_not_allowed"),
        ("OCRA-1:HOTP-SHA256-6:QH40", "digits_not_allowed"),
        ("OCRA-1:HOTP-SHA256-0:QH40", "digits_not_allowed"),
        ("OCRA-1:HOTP-SHA256-8:QN08", "question_too_weak"),
        ("OCRA-1:HOTP-SHA256-8:QA64", "question_too_weak"),
        ("OCRA-1:HOTP-SHA256-8:QH39", "question_too_weak"),
    ],
)
def test_bad_payment_suites_are_refused_with_a_stable_reason(text: object, reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        ocra.parse_payment_suite(text)
    assert refused.value.details["reason"] == reason


def test_the_rfc_suites_parse_but_are_not_payment_suites() -> None:
    for text in {v["suite"] for v in VECTORS["vectors"]}:
        ocra.parse_suite(text)
        with pytest.raises(InvalidInput):
            ocra.parse_payment_suite(text)


def test_the_transaction_question_is_the_start_of_the_documented_digest() -> None:
    question = ocra.transaction_question(TXN, suite=PAYMENT_SUITE)
    encoded = (
        b"zeropay-txn-v1"
        + b"\x00\x00\x00\x06pay_01"
        + b"\x00\x00\x00\x041000"
        + b"\x00\x00\x00\x03EUR"
        + b"\x00\x00\x00\x08mer_cafe"
        + b"\x00\x00\x00\x10"
        + bytes(16)
    )
    assert question == hashlib.sha256(encoded).hexdigest()[:40]


def test_each_field_changes_the_transaction_question() -> None:
    changed = [
        replace(TXN, payment_id="pay_02"),
        replace(TXN, amount=parse_money(1001, "EUR")),
        replace(TXN, amount=parse_money(1000, "USD")),
        replace(TXN, payee="mer_other"),
        replace(TXN, nonce=bytes(15) + b"\x01"),
    ]
    questions = {ocra.transaction_question(t, suite=PAYMENT_SUITE) for t in [TXN, *changed]}
    assert len(questions) == 6


def test_no_transaction_question_under_a_weak_suite() -> None:
    with pytest.raises(InvalidInput) as refused:
        ocra.transaction_question(TXN, suite=ocra.parse_suite("OCRA-1:HOTP-SHA256-8:QN08"))
    assert refused.value.details["reason"] == "question_too_weak"


def code_at(when: datetime, txn: Transaction = TXN) -> str:
    question = ocra.transaction_question(txn, suite=PAYMENT_SUITE)
    return ocra.compute(PAYMENT_SUITE, KEY, question, timestamp_s=int(when.timestamp()))


def verify(response: str, *, txn: Transaction = TXN, **kwargs: object) -> ocra.VerifiedOCRA:
    question = ocra.transaction_question(txn, suite=PAYMENT_SUITE)
    return ocra.verify(PAYMENT_SUITE, KEY, response, expected_question=question, now=NOW, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("drift", [-1, 0, 1])
def test_a_code_within_one_step_is_accepted_and_names_its_step(drift: int) -> None:
    verified = verify(code_at(NOW + timedelta(minutes=drift)))
    assert verified.time_step == NOW_STEP + drift


@pytest.mark.parametrize("drift", [-2, 2, -10])
def test_a_code_outside_the_window_is_refused(drift: int) -> None:
    with pytest.raises(AuthenticationFailed):
        verify(code_at(NOW + timedelta(minutes=drift)))


def test_a_wider_window_is_bounded_and_takes_two_steps() -> None:
    assert verify(code_at(NOW - timedelta(minutes=2)), drift_steps=2).time_step == NOW_STEP - 2


def test_the_same_step_is_not_accepted_twice() -> None:
    code = code_at(NOW)
    first = verify(code)
    # Otherwise a replay: the caller passes back the step it stored after the first success.
    with pytest.raises(AuthenticationFailed):
        verify(code, step_last_used=first.time_step)
    later = verify(code_at(NOW + timedelta(minutes=1)), step_last_used=first.time_step)
    assert later.time_step == NOW_STEP + 1


@pytest.mark.parametrize(
    "other",
    [
        replace(TXN, amount=parse_money(1001, "EUR")),
        replace(TXN, amount=parse_money(1000, "USD")),
        replace(TXN, payee="mer_evil"),
        replace(TXN, payment_id="pay_02"),
        replace(TXN, nonce=bytes(15) + b"\x01"),
    ],
)
def test_a_code_for_another_transaction_is_refused(other: Transaction) -> None:
    with pytest.raises(AuthenticationFailed):
        verify(code_at(NOW, other))


@pytest.mark.parametrize("response", ["", "1234567", "123456789", "abcdefgh", "１２３４５６７８"])
def test_malformed_codes_are_refused_like_wrong_ones(response: str) -> None:
    with pytest.raises(AuthenticationFailed):
        verify(response)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = ocra.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ocra.hmac, "compare_digest", spy)
    verify(code_at(NOW - timedelta(minutes=1)))
    # Every step of the window is compared, even after the first one matched.
    assert len(compared) == 3


def test_missing_or_extra_data_input_is_refused() -> None:
    question = ocra.transaction_question(TXN, suite=PAYMENT_SUITE)
    cases: list[tuple[dict[str, object], str]] = [
        ({}, "timestamp"),
        ({"timestamp_s": 0, "counter": 1}, "counter"),
        ({"timestamp_s": 0, "pin_hash": bytes(20)}, "pin_hash"),
        ({"timestamp_s": 0, "session": bytes(64)}, "session"),
    ]
    for kwargs, reason in cases:
        with pytest.raises(InvalidInput) as refused:
            ocra.compute(PAYMENT_SUITE, KEY, question, **kwargs)  # type: ignore[arg-type]
        assert refused.value.details["reason"] == reason
    for bad_question in ["", "g" * 40, "a" * 41]:
        with pytest.raises(InvalidInput):
            ocra.compute(PAYMENT_SUITE, KEY, bad_question, timestamp_s=0)
    with pytest.raises(InvalidInput):
        ocra.compute(PAYMENT_SUITE, bytes(13), question, timestamp_s=0)


@given(
    key=st.binary(min_size=14, max_size=64),
    question=st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=40),
    timestamp_s=st.integers(min_value=0, max_value=2**37),
)
def test_compute_then_verify_round_trips(key: bytes, question: str, timestamp_s: int) -> None:
    code = ocra.compute(PAYMENT_SUITE, key, question, timestamp_s=timestamp_s)
    assert len(code) == 8 and code.isdigit()
    now = datetime.fromtimestamp(timestamp_s, UTC)
    verified = ocra.verify(PAYMENT_SUITE, key, code, expected_question=question, now=now)
    assert verified.time_step == timestamp_s // 60
