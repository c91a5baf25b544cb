"""OCRA codes (RFC 6287) that confirm a payment from a device without a secure key store.

The payer's app keeps a seed it was shown once. To confirm a payment it shows the payer the
amount, currency and payee, derives the question from them (``domain.ocra.transaction_question``:
the first N hex digits of SHA-256 of the canonical transaction data) and computes the code over
it at the current time step. The server derives the same question from the confirmation flow's
binding -- never from anything the client sends -- so a code is good for that amount and that
payee only (PSD2 RTS Art. 5).

A code is accepted once: the time step it matched becomes the authenticator's ``last_step`` in
one conditional UPDATE shared by every process, and only a later step is accepted after it (the
TOTP replay record). So one app confirms at most one payment per time step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from zeropay.domain.dynamic_linking import bound_transaction
from zeropay.domain.errors import InvalidInput, invariant
from zeropay.domain.ocra import Suite, parse_payment_suite, transaction_question

# SHA-256, 8 digits, the whole 256-bit digest as the question, one-minute time steps.
SUITE: Final = "OCRA-1:HOTP-SHA256-8:QH64-T1M"
# 256 bits: the key length RFC 6287 Appendix C uses with HOTP-SHA256, well over the 112 bits
# NIST SP 800-63B asks of an OTP key.
SEED_BYTES: Final = 32
DRIFT_STEPS: Final = 1  # one step either side of now, as for TOTP (RFC 6238 §5.2)
# NIST SP 800-63B: an OTP's time step is at most 2 minutes. Under 30 s a payer cannot read a
# code off one device and type it into another.
TIME_STEP_S_MIN: Final = 30
TIME_STEP_S_MAX: Final = 120
ENROLLMENT_TTL_S: Final = 900  # a pending app is confirmed within 15 minutes, like TOTP


def _refused(reason: str, message: str) -> InvalidInput:
    return InvalidInput(message, field="suite", reason=reason)


def parse_app_suite(raw: object) -> Suite:
    """The suite a new app computes under: ``SUITE`` when none is asked for, otherwise one that
    ``parse_payment_suite`` accepts (strong enough to carry the dynamic link) and that the
    server can check on its own: a time step of 30 s to 2 minutes, which is the replay record,
    and no counter, PIN hash or session data, which the server does not keep."""
    if raw is None:
        return parse_payment_suite(SUITE)
    try:
        suite = parse_payment_suite(raw)
    except InvalidInput as exc:
        raise _refused(str(exc.details.get("reason", "suite_malformed")), exc.message) from None
    if suite.counter or suite.pin_hash_name is not None or suite.session_bytes is not None:
        raise _refused("data_input_not_allowed", "an app suite has no counter, PIN or session")
    if suite.time_step_s is None or not TIME_STEP_S_MIN <= suite.time_step_s <= TIME_STEP_S_MAX:
        raise _refused("time_step_not_allowed", "an app suite has a time step of 30 s to 2 minutes")
    return suite


def new_test_question(random_bytes: Callable[[int], bytes], suite: Suite) -> str:
    """A random question of the suite's length, for the app to prove it computes codes before it
    confirms anything (the enrollment's only use of it)."""
    question = random_bytes((suite.question_length + 1) // 2).hex()[: suite.question_length]
    invariant(len(question) == suite.question_length, "the test question fills the suite")
    return question


def flow_question(binding: Mapping[str, str], suite: Suite) -> str:
    """The question a confirmation flow asks under ``suite``: derived from the transaction the
    flow was issued for, as the app derives it from what it shows the payer."""
    return transaction_question(bound_transaction(binding), suite=suite)
