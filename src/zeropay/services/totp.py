"""TOTP (RFC 6238) on top of pyotp: the seed, the provisioning URI and QR code, verification.

Verification accepts the current 30-second step and one step either side (RFC 6238 §5.2 drift)
and returns the step that matched. The caller stores it and accepts only a later step next time,
in one conditional UPDATE shared by every process: a code is accepted once, and so is every code
before it (NIST 800-63B §5.1.4.2).
"""

from __future__ import annotations

import base64
import hmac
import io
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno

from zeropay.domain.errors import AuthenticationFailed, InvalidInput

SEED_BYTES = 20  # 160 bits: RFC 4226 §4 recommends 160; NIST 800-63B asks at least 112
DIGITS = 6
PERIOD_S = 30
DRIFT_STEPS = 1
ISSUER = "ZeroPay"


@dataclass(frozen=True, slots=True)
class VerifiedTOTP:
    step: int  # the 30-second time step the code belonged to


def new_seed(random_bytes: bytes) -> bytes:
    if len(random_bytes) < SEED_BYTES:
        raise ValueError("a TOTP seed needs at least 160 random bits")
    return random_bytes[:SEED_BYTES]


def seed_base32(seed: bytes) -> str:
    return base64.b32encode(seed).decode().rstrip("=")


def provisioning_uri(seed: bytes, *, account: str) -> str:
    totp = pyotp.TOTP(seed_base32(seed), digits=DIGITS, interval=PERIOD_S)
    return totp.provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The URI as an SVG QR code, drawn here so the page needs nothing from the network."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False)
    return out.getvalue().decode()


def parse_code(raw: object, digits: int = DIGITS) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("code must be a string of digits", field="code")
    code = raw.replace(" ", "")
    if len(code) != digits or not code.isascii() or not code.isdigit():
        raise InvalidInput(f"the code has {digits} digits", field="code")
    return code


def verify_totp(
    seed: bytes,
    code: str,
    *,
    now: datetime,
    after_step: int | None,
    digits: int = DIGITS,
    period_s: int = PERIOD_S,
    digest: str = "sha1",
) -> VerifiedTOTP:
    """The step ``code`` belongs to, within ±1 step of ``now`` and later than ``after_step``;
    otherwise ``AuthenticationFailed`` (which never says whether the code was old or wrong)."""
    if not code.isascii():
        raise AuthenticationFailed("the code is not valid")  # compare_digest needs ASCII
    totp = pyotp.TOTP(seed_base32(seed), digits=digits, interval=period_s, digest=digest)
    current = int(now.timestamp()) // period_s
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue  # otherwise a replay: this step's code was already accepted
        if hmac.compare_digest(totp.generate_otp(step), code):
            return VerifiedTOTP(step=step)
    raise AuthenticationFailed("the code is not valid")
