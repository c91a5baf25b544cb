"""OCRA (RFC 6287): a one-way challenge-response code over the transaction, for payment
confirmation on devices without a secure key store (DESIGN.md, "payment confirmation").

Dynamic linking (PSD2 RTS Art. 5) comes from the question. The server never invents it: it is
the start of the SHA-256 of the canonical transaction data of ``domain.dynamic_linking`` (the
same bytes a passkey and a bound device key answer for), so a device that shows the payer the
amount, currency and payee computes the same question from what it shows::

    question = lower-case hex of SHA-256(canonical(transaction)), first N digits, for a QHN suite

where ``canonical`` is ``b"zeropay-txn-v1"`` followed by, for each of payment id, amount in minor
units as decimal ASCII, currency code, payee id and the flow's 16-byte nonce, a 4-byte big-endian
length and the field's bytes. Any change of amount, currency, payee, payment or nonce changes it.

The computation (RFC 6287 §5) is written here with ``hmac``: the data input is
the suite, a 0x00 byte, then C (8 bytes), Q (padded to 128 bytes), P (the PIN hash), S and T
(8 bytes), and the code is HOTP's dynamic truncation (RFC 4226 §5.3) of its HMAC. The ``oath``
package (1.4.4) was evaluated first and computes every Appendix C vector when handed the PIN
itself, but not from a stored PIN hash -- its ``P_digest`` path raises ``AttributeError``
(it asks ``hashlib.sha1`` for ``digest_size``) -- and a server keeps only the hash; it also
refuses odd-length hex questions, which §5.1 pads. The few lines below are clearer than working
around it. ``tests/vectors/rfc6287_ocra.json`` holds every Appendix C vector they must meet.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from zeropay.domain.bounds import OCRA_DRIFT_STEPS_MAX, OCRA_SUITE_LENGTH_MAX
from zeropay.domain.dynamic_linking import Transaction, digest
from zeropay.domain.errors import AuthenticationFailed, InvalidInput, InvariantViolation, invariant

HASH_BYTES: Final = {"SHA1": 20, "SHA256": 32, "SHA512": 64}
PAYMENT_HASHES: Final = frozenset({"SHA256", "SHA512"})
# 8 digits: one guess in 10^8, and at most 5 guesses per flow (RTS 4(3)(b)); 6 would be 10^6.
PAYMENT_DIGITS: Final = 8
# The question carries the dynamic link: at least 160 bits of the transaction digest, so nobody
# can find another transaction with the same question (a QN08 question holds under 27 bits).
PAYMENT_QUESTION_HEX_DIGITS_MIN: Final = 40
KEY_BYTES_MIN: Final = 14  # NIST SP 800-63B: an OTP key has at least 112 bits
COUNTER_MAX: Final = 2**64 - 1  # C is an 8-byte unsigned integer (RFC 6287 §5.1)
QUESTION_BYTES: Final = 128  # Q is padded with zeros to 128 bytes (RFC 6287 §5.1)
_TIME_UNITS_S: Final = {"S": 1, "M": 60, "H": 3600}
_TIME_AMOUNT_MAX: Final = {"S": 59, "M": 59, "H": 48}  # RFC 6287 §6: [1-59]S, [1-59]M, [0-48]H

_CRYPTO_FUNCTION = re.compile(r"HOTP-(SHA1|SHA256|SHA512)-(\d{1,2})")
_DATA_INPUT = re.compile(
    r"(?:(C)-)?Q([ANH])(\d\d)(?:-P(SHA1|SHA256|SHA512))?(?:-S(\d{3}))?(?:-T(\d{1,2})([SMH]))?"
)
_QUESTION_ALPHABET: Final = {
    "N": frozenset("0123456789"),
    "A": frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
    "H": frozenset("0123456789ABCDEFabcdef"),
}


class QuestionFormat(StrEnum):
    NUMERIC = "N"
    ALPHANUMERIC = "A"
    HEX = "H"


@dataclass(frozen=True, slots=True)
class Suite:
    """An OCRA suite as RFC 6287 §6 defines it, e.g. ``OCRA-1:HOTP-SHA256-8:QH40-T1M``."""

    text: str
    hash_name: str  # of the HMAC: SHA1, SHA256 or SHA512
    digits: int  # 0 means the code is not truncated
    counter: bool
    question_format: QuestionFormat
    question_length: int  # characters of the question, at most
    pin_hash_name: str | None
    session_bytes: int | None
    time_step_s: int | None


@dataclass(frozen=True, slots=True)
class VerifiedOCRA:
    """A code that matched. ``time_step`` is the step it matched at (None without T): the caller
    stores it and passes it back as ``step_last_used``, so the same step is never accepted twice."""

    time_step: int | None


def _refuse(reason: str, message: str) -> InvalidInput:
    return InvalidInput(message, field="ocra_suite", reason=reason)


def parse_suite(text: object) -> Suite:
    """Any suite the RFC 6287 §6 grammar allows; payments ask more (``parse_payment_suite``)."""
    if not isinstance(text, str) or not text.isascii():
        raise _refuse("suite_not_text", "an OCRA suite is ASCII text")
    if len(text) > OCRA_SUITE_LENGTH_MAX:
        raise _refuse("suite_too_long", "the OCRA suite is too long")
    parts = text.split(":")
    if len(parts) != 3:
        raise _refuse("suite_malformed", "an OCRA suite is Algorithm:CryptoFunction:DataInput")
    algorithm, crypto_function, data_input = parts
    if algorithm != "OCRA-1":
        raise _refuse("algorithm_unsupported", "only OCRA-1 is defined")
    crypto = _CRYPTO_FUNCTION.fullmatch(crypto_function)
    if crypto is None:
        raise _refuse("crypto_function_unsupported", "the crypto function is HOTP-SHAx-t")
    digits = int(crypto[2])
    if digits != 0 and not 4 <= digits <= 10:
        raise _refuse("digits_out_of_range", "an OCRA code has 0 or 4 to 10 digits")
    found = _DATA_INPUT.fullmatch(data_input)
    if found is None:
        raise _refuse("data_input_malformed", "the data input is [C-]QFxx[-PH][-Snnn][-TG]")
    counter, question_format, question_length, pin_hash, session, amount, unit = found.groups()
    if not 4 <= int(question_length) <= 64:
        raise _refuse("question_length_out_of_range", "a question has 4 to 64 characters")
    if session is not None and int(session) == 0:
        raise _refuse("session_length_out_of_range", "session information has 1 to 999 bytes")
    if amount is not None and not 1 <= int(amount) <= _TIME_AMOUNT_MAX[unit]:
        raise _refuse("time_step_out_of_range", "a time step is 1-59S, 1-59M or 1-48H")
    return Suite(
        text=text,
        hash_name=crypto[1],
        digits=digits,
        counter=counter is not None,
        question_format=QuestionFormat(question_format),
        question_length=int(question_length),
        pin_hash_name=pin_hash,
        session_bytes=None if session is None else int(session),
        time_step_s=None if amount is None else int(amount) * _TIME_UNITS_S[unit],
    )


def parse_payment_suite(text: object) -> Suite:
    """A suite ZeroPay accepts for confirming payments: a valid one (RFC 6287 §6) that is also
    strong enough to carry the dynamic link (PSD2 RTS Art. 5). Counter, PIN, session and time
    step are optional."""
    suite = parse_suite(text)
    _check_payment_suite(suite)
    return suite


def _check_payment_suite(suite: Suite) -> None:
    if suite.hash_name not in PAYMENT_HASHES:
        raise _refuse("hash_not_allowed", "payments use HOTP-SHA256 or HOTP-SHA512")
    if suite.digits != PAYMENT_DIGITS:
        raise _refuse("digits_not_allowed", "payment codes have 8 digits")
    if (
        suite.question_format is not QuestionFormat.HEX
        or suite.question_length < PAYMENT_QUESTION_HEX_DIGITS_MIN
    ):
        raise _refuse("question_too_weak", "payments use a hex question of 40 to 64 digits (QH40)")


def transaction_question(txn: Transaction, *, suite: Suite) -> str:
    """The question for this transaction under a payment suite (the encoding is in the module
    docstring): a changed amount, currency, payee, payment or nonce gives another question."""
    _check_payment_suite(suite)
    return digest(txn).hex()[: suite.question_length]


def compute(
    suite: Suite,
    key: bytes,
    question: str,
    *,
    timestamp_s: int | None = None,
    counter: int | None = None,
    pin_hash: bytes | None = None,
    session: bytes | None = None,
    mutual: bool = False,
) -> str:
    """The OCRA code (RFC 6287 §5). ``mutual`` takes a question of two challenges put together
    (§7.3), which may be twice as long; ZeroPay's payment flow is one-way."""
    time_step = None
    if suite.time_step_s is not None:
        if timestamp_s is None or timestamp_s < 0:
            raise _data_input("timestamp", "the suite needs a timestamp (T)")
        time_step = timestamp_s // suite.time_step_s
    elif timestamp_s is not None:
        raise _data_input("timestamp", "the suite has no timestamp (T)")
    return _code(suite, key, question, time_step, counter, pin_hash, session, mutual)


def verify(
    suite: Suite,
    key: bytes,
    response: str,
    *,
    expected_question: str,
    now: datetime | None = None,
    counter: int | None = None,
    pin_hash: bytes | None = None,
    session: bytes | None = None,
    drift_steps: int = 1,
    step_last_used: int | None = None,
) -> VerifiedOCRA:
    """Check a code against the question the server derived itself (``expected_question``).

    With a time step, the code may come from up to ``drift_steps`` steps either side of ``now``;
    steps at or before ``step_last_used`` are refused (RFC 6238 §5.2: a code is accepted once).
    Every candidate is computed and compared in constant time, and a failure never says why
    (PSD2 RTS 4(3)(a)).
    """
    invariant(0 <= drift_steps <= OCRA_DRIFT_STEPS_MAX, "the OCRA drift window is bounded")
    steps: list[int | None] = [None]
    if suite.time_step_s is not None:
        if now is None or now.tzinfo is None:
            raise InvariantViolation("an OCRA time check needs an aware now")
        now_step = int(now.timestamp()) // suite.time_step_s
        steps = [
            step
            for step in range(now_step - drift_steps, now_step + drift_steps + 1)
            if step >= 0 and (step_last_used is None or step > step_last_used)
        ]
    matched: int | None = None
    any_match = False
    for step in steps:
        expected = _code(suite, key, expected_question, step, counter, pin_hash, session, False)
        # Compare every candidate, not just until the first hit, so time does not tell which.
        if hmac.compare_digest(response.encode(), expected.encode()) and not any_match:
            any_match, matched = True, step
    if not any_match:
        raise AuthenticationFailed("the confirmation code is not valid")
    return VerifiedOCRA(time_step=matched)


def _data_input(reason: str, message: str) -> InvalidInput:
    return InvalidInput(message, field="ocra", reason=reason)


def _code(
    suite: Suite,
    key: bytes,
    question: str,
    time_step: int | None,
    counter: int | None,
    pin_hash: bytes | None,
    session: bytes | None,
    mutual: bool,
) -> str:
    # Guards in the order of the RFC 6287 §5 data input: K, C, Q, P, S (T was checked by callers).
    if len(key) < KEY_BYTES_MIN:
        raise _data_input("key_too_short", "an OCRA key has at least 112 bits")
    message = [suite.text.encode("ascii"), b"\x00"]
    if suite.counter != (counter is not None):
        raise _data_input("counter", "give a counter (C) exactly when the suite has one")
    if counter is not None:
        if not 0 <= counter <= COUNTER_MAX:
            raise _data_input("counter", "the counter is an unsigned 64-bit integer")
        message.append(counter.to_bytes(8, "big"))
    message.append(_question(suite, question, mutual).ljust(QUESTION_BYTES, b"\x00"))
    if (suite.pin_hash_name is None) != (pin_hash is None):
        raise _data_input("pin_hash", "give a PIN hash (P) exactly when the suite has one")
    if suite.pin_hash_name is not None and pin_hash is not None:
        if len(pin_hash) != HASH_BYTES[suite.pin_hash_name]:
            raise _data_input("pin_hash", "the PIN hash has the suite's digest length")
        message.append(pin_hash)
    if (suite.session_bytes is None) != (session is None):
        raise _data_input("session", "give session data (S) exactly when the suite has it")
    if session is not None:
        if len(session) != suite.session_bytes:
            raise _data_input("session", "the session data has the suite's length")
        message.append(session)
    if time_step is not None:
        invariant(0 <= time_step <= COUNTER_MAX, "T is an unsigned 64-bit integer")
        message.append(time_step.to_bytes(8, "big"))
    mac = hmac.new(key, b"".join(message), suite.hash_name.lower()).digest()
    # RFC 4226 §5.3 dynamic truncation, then the suite's number of digits (none when 0).
    offset = mac[-1] & 0x0F
    truncated = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    if suite.digits == 0:
        return str(truncated)
    return str(truncated % 10**suite.digits).zfill(suite.digits)


def _question(suite: Suite, question: str, mutual: bool) -> bytes:
    length_max = suite.question_length * (2 if mutual else 1)
    alphabet = _QUESTION_ALPHABET[suite.question_format]
    if not 1 <= len(question) <= length_max or not set(question) <= alphabet:
        raise _data_input("question", "the question does not fit the suite")
    if suite.question_format is QuestionFormat.ALPHANUMERIC:
        return question.encode("ascii")
    # RFC 6287 §5.1: a numeric question is taken as a number and written in hex; a hex digit
    # string of odd length is completed on the right, as the whole is padded with zeros.
    digits = (
        format(int(question), "x") if suite.question_format is QuestionFormat.NUMERIC else question
    )
    return bytes.fromhex(digits + "0" * (len(digits) % 2))
