"""HOTP and TOTP against the published vectors (RFC 4226 App. D, RFC 6238 App. B) and oathtool.

The vectors live in ``tests/vectors/``; the only process started here is ``oathtool``, an
independent implementation, so our codes are checked against more than our own library.
"""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from zeropay.domain.errors import AuthenticationFailed, InvalidInput
from zeropay.services.totp import (
    new_seed,
    parse_code,
    provisioning_uri,
    qr_svg,
    seed_base32,
    verify_totp,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
HOTP = json.loads((VECTORS / "rfc4226_hotp.json").read_text())
TOTP = json.loads((VECTORS / "rfc6238_totp.json").read_text())
SEEDS = {digest: ascii_seed.encode() for digest, ascii_seed in TOTP["seeds_ascii"].items()}

OATHTOOL = "/usr/bin/oathtool"
# Mid-step on purpose: 09:00:15 is 15 s into its 30-second step, so a second either way of
# clock rounding cannot move the expected step.
NOW = datetime(2026, 11, 2, 9, 0, 15, tzinfo=UTC)
NOW_STEP = int(NOW.timestamp()) // 30
# Any fixed 160-bit seed; it only has to differ from the RFC ones.
SEED = bytes.fromhex("8f3a5c1e9b7d2046e1c3a5b7d9f0214365877a9c")


def at(unix_s: int) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def rfc6238(time_s: int, digest: str) -> str:
    return next(
        v["totp"] for v in TOTP["vectors"] if v["time_s"] == time_s and v["digest"] == digest
    )


def oathtool_code(seed: bytes, when: datetime, *, digest: str = "SHA1", digits: int = 6) -> str:
    result = subprocess.run(
        [
            OATHTOOL,
            f"--totp={digest}",
            "--base32",
            f"--digits={digits}",
            f"--now={when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
            seed_base32(seed),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return result.stdout.strip()


# ---- RFC 4226 (HOTP) ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", HOTP["vectors"], ids=lambda v: f"counter={v['counter']}")
def test_pyotp_gives_the_rfc_4226_hotp_value_for_each_counter(vector):
    secret = base64.b32encode(HOTP["secret_ascii"].encode()).decode()
    hotp = pyotp.HOTP(secret, digits=HOTP["digits"])
    assert hotp.at(vector["counter"]) == vector["hotp"]


# ---- RFC 6238 (TOTP) through verify_totp -------------------------------------------------------


@pytest.mark.parametrize("vector", TOTP["vectors"], ids=lambda v: f"{v['digest']}-T={v['time_s']}")
def test_every_rfc_6238_vector_is_accepted_at_its_time_and_returns_its_step(vector):
    verified = verify_totp(
        SEEDS[vector["digest"]],
        vector["totp"],
        now=at(vector["time_s"]),
        after_step=None,
        digits=TOTP["digits"],
        period_s=TOTP["period_s"],
        digest=vector["digest"],
    )
    assert verified.step == vector["time_s"] // TOTP["period_s"]


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_an_rfc_6238_code_is_refused_under_another_digest(digest):
    other = {"sha1": "sha256", "sha256": "sha512", "sha512": "sha1"}[digest]
    with pytest.raises(AuthenticationFailed):
        verify_totp(
            SEEDS[digest],
            rfc6238(1234567890, digest),
            now=at(1234567890),
            after_step=None,
            digits=8,
            digest=other,
        )


# T=1111111109 is step 37037036; its neighbours are 30 s away either side (RFC 6238 §5.2).
DRIFT_T = 1111111109
DRIFT_STEP = DRIFT_T // 30


@pytest.mark.parametrize(
    "offset_s", [-30, 30], ids=["clock-one-step-behind", "clock-one-step-ahead"]
)
def test_a_code_one_step_either_side_of_now_is_accepted(offset_s):
    verified = verify_totp(
        SEEDS["sha1"],
        rfc6238(DRIFT_T, "sha1"),
        now=at(DRIFT_T + offset_s),
        after_step=None,
        digits=8,
    )
    assert verified.step == DRIFT_STEP


@pytest.mark.parametrize("offset_s", [-60, 60], ids=["two-steps-behind", "two-steps-ahead"])
def test_a_code_two_steps_from_now_is_refused(offset_s):
    with pytest.raises(AuthenticationFailed):
        verify_totp(
            SEEDS["sha1"],
            rfc6238(DRIFT_T, "sha1"),
            now=at(DRIFT_T + offset_s),
            after_step=None,
            digits=8,
        )


def test_second_use_of_a_totp_code_is_refused():
    code = rfc6238(DRIFT_T, "sha1")
    first = verify_totp(SEEDS["sha1"], code, now=at(DRIFT_T), after_step=None, digits=8)
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEEDS["sha1"], code, now=at(DRIFT_T), after_step=first.step, digits=8)


def test_a_code_from_a_step_before_the_last_accepted_one_is_refused():
    # NIST 800-63B §5.1.4.2: once a step is accepted, so is every step before it.
    code = rfc6238(DRIFT_T, "sha1")
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEEDS["sha1"], code, now=at(DRIFT_T), after_step=DRIFT_STEP + 1, digits=8)


def test_a_code_from_the_step_after_the_last_accepted_one_is_accepted():
    code = rfc6238(DRIFT_T, "sha1")
    verified = verify_totp(
        SEEDS["sha1"], code, now=at(DRIFT_T), after_step=DRIFT_STEP - 1, digits=8
    )
    assert verified.step == DRIFT_STEP


def test_a_wrong_code_is_refused():
    code = rfc6238(DRIFT_T, "sha1")
    wrong = code[:-1] + str((int(code[-1]) + 1) % 10)
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEEDS["sha1"], wrong, now=at(DRIFT_T), after_step=None, digits=8)


def test_a_replayed_code_and_a_wrong_code_are_refused_with_the_same_words():
    # PSD2 RTS Art. 4(3)(a): the refusal does not say which element was wrong.
    code = rfc6238(DRIFT_T, "sha1")
    with pytest.raises(AuthenticationFailed) as replayed:
        verify_totp(SEEDS["sha1"], code, now=at(DRIFT_T), after_step=DRIFT_STEP, digits=8)
    with pytest.raises(AuthenticationFailed) as wrong:
        verify_totp(SEEDS["sha1"], "00000000", now=at(DRIFT_T), after_step=None, digits=8)
    assert str(replayed.value) == str(wrong.value)
    assert replayed.value.details == wrong.value.details


def test_a_code_of_full_width_digits_is_refused_as_a_wrong_code():
    # verify_totp promises AuthenticationFailed for any code it does not accept; a caller that
    # forgot parse_code must not turn a typed code into a server error.
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEED, "１２３４５６", now=NOW, after_step=None)


# ---- oathtool, an independent implementation ---------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "digits"),
    [("SHA1", 6), ("SHA1", 8), ("SHA256", 6), ("SHA256", 8), ("SHA512", 8)],
)
def test_a_code_from_oathtool_is_accepted_at_the_same_time(digest, digits):
    code = oathtool_code(SEED, NOW, digest=digest, digits=digits)
    assert len(code) == digits
    verified = verify_totp(
        SEED, code, now=NOW, after_step=None, digits=digits, digest=digest.lower()
    )
    assert verified.step == NOW_STEP


def test_oathtool_codes_for_the_next_step_are_accepted_and_for_the_step_after_refused():
    next_code = oathtool_code(SEED, NOW + timedelta(seconds=30))
    assert verify_totp(SEED, next_code, now=NOW, after_step=None).step == NOW_STEP + 1
    next_next_code = oathtool_code(SEED, NOW + timedelta(seconds=60))
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEED, next_next_code, now=NOW, after_step=None)


def test_oathtool_codes_for_the_previous_step_are_accepted_and_for_the_step_before_refused():
    previous = oathtool_code(SEED, NOW - timedelta(seconds=30))
    assert verify_totp(SEED, previous, now=NOW, after_step=None).step == NOW_STEP - 1
    before_previous = oathtool_code(SEED, NOW - timedelta(seconds=60))
    with pytest.raises(AuthenticationFailed):
        verify_totp(SEED, before_previous, now=NOW, after_step=None)


# ---- parse_code --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("123456", "123456"), (" 123 456 ", "123456"), ("000000", "000000")]
)
def test_parse_code_keeps_six_ascii_digits_and_drops_spaces(raw, expected):
    assert parse_code(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "12345a",
        "12-456",
        "12345",
        "1234567",
        "",
        "１２３４５６",  # full-width digits: str.isdigit() is true for them
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "¹²³⁴⁵⁶",  # superscripts, also isdigit()
        "12345\n",
        None,
        123456,
        b"123456",
    ],
)
def test_parse_code_refuses_anything_but_six_ascii_digits(raw):
    with pytest.raises(InvalidInput) as caught:
        parse_code(raw)
    assert caught.value.details["field"] == "code"


def test_parse_code_takes_the_number_of_digits_asked_for():
    assert parse_code("12345678", digits=8) == "12345678"
    with pytest.raises(InvalidInput):
        parse_code("123456", digits=8)


# ---- seed, provisioning URI and QR code --------------------------------------------------------


def test_new_seed_keeps_160_bits_and_refuses_fewer():
    assert new_seed(bytes(range(32))) == bytes(range(20))
    with pytest.raises(ValueError):
        new_seed(bytes(19))


def test_the_provisioning_uri_is_an_otpauth_totp_uri_for_zeropay_with_a_160_bit_secret():
    uri = provisioning_uri(SEED, account="ana@example.com")
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/ZeroPay:ana@example.com"
    assert query["issuer"] == ["ZeroPay"]
    (secret,) = query["secret"]
    decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    assert len(decoded) * 8 >= 160
    assert decoded == SEED
    # Authenticator apps default to 6 digits, 30 s, SHA-1; nothing else may be implied.
    assert query.get("digits", ["6"]) == ["6"]
    assert query.get("period", ["30"]) == ["30"]
    assert query.get("algorithm", ["SHA1"]) == ["SHA1"]


def test_the_provisioning_uri_gives_codes_verify_totp_accepts():
    uri = provisioning_uri(SEED, account="ana@example.com")
    code = pyotp.parse_uri(uri).at(NOW)
    assert verify_totp(SEED, code, now=NOW, after_step=None).step == NOW_STEP


def test_qr_svg_draws_an_svg_document():
    svg = qr_svg(provisioning_uri(SEED, account="ana@example.com"))
    assert svg.lstrip().startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
