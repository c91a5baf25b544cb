"""The authentication factors and the category each one proves.

Categories after PSD2 RTS Art. 6-8 and DESIGN.md: knowledge (password, device PIN, security answer),
possession (a bound device key, a passkey, a TOTP app, an email or SMS code, a recovery code),
inherence (biometric user verification performed on the device; the server never receives
biometric data). Strong authentication means two different categories (RTS Art. 4(1)).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class FactorCategory(StrEnum):
    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    INHERENCE = "inherence"


class Factor(StrEnum):
    PASSWORD = "password"  # noqa: S105 - a factor's name
    TOTP = "totp"
    PASSKEY = "passkey"  # WebAuthn with user verification required
    DEVICE_KEY = "device_key"
    EMAIL_OTP = "email_otp"
    SMS_OTP = "sms_otp"
    SECURITY_QUESTION = "security_question"
    RECOVERY_CODE = "recovery_code"
    BOUND_DEVICE_APPROVAL = "bound_device_approval"
    # A code over the transaction (RFC 6287) from a device without a secure key store.
    OCRA = "ocra"
    # A PIN bound to one device, checked by the server with that device's DPoP proof: the
    # knowledge half of a device key held in software (``domain.pins``).
    PIN = "pin"


K, P, INH = FactorCategory.KNOWLEDGE, FactorCategory.POSSESSION, FactorCategory.INHERENCE

CATEGORIES: dict[Factor, frozenset[FactorCategory]] = {
    Factor.PASSWORD: frozenset({K}),
    Factor.TOTP: frozenset({P}),
    # A passkey is an authenticator bound to the account (possession) that releases its key only
    # after verifying the user's biometric or PIN on the device (inherence); UV is required.
    Factor.PASSKEY: frozenset({P, INH}),
    Factor.DEVICE_KEY: frozenset({P}),
    Factor.EMAIL_OTP: frozenset({P}),
    Factor.SMS_OTP: frozenset({P}),
    Factor.SECURITY_QUESTION: frozenset({K}),
    Factor.RECOVERY_CODE: frozenset({P}),
    Factor.BOUND_DEVICE_APPROVAL: frozenset({P}),
    Factor.OCRA: frozenset({P}),
    Factor.PIN: frozenset({K}),
}

# SMS is a restricted channel (NIST 800-63B §5.1.3.3): by default it never stands alone as the
# second factor; see ``domain.policy``.
RESTRICTED: frozenset[Factor] = frozenset({Factor.SMS_OTP})

# Factors a user enrolls and keeps (the others are checked against the account itself: the
# password, the verified email address, the bound devices).
ENROLLABLE: frozenset[Factor] = frozenset(
    {
        Factor.TOTP,
        Factor.PASSKEY,
        Factor.SMS_OTP,
        Factor.SECURITY_QUESTION,
        Factor.RECOVERY_CODE,
        Factor.OCRA,
    }
)


def parse_factor(raw: object) -> Factor:
    from zeropay.domain.errors import InvalidInput

    if isinstance(raw, str):
        try:
            return Factor(raw)
        except ValueError:
            pass
    raise InvalidInput("unknown factor", field="factor", expected=sorted(f.value for f in Factor))


def categories_of(factors: Iterable[str]) -> frozenset[FactorCategory]:
    out: set[FactorCategory] = set()
    for name in factors:
        try:
            out |= CATEGORIES[Factor(name)]
        except ValueError:
            continue  # a name from an older vocabulary proves nothing
    return frozenset(out)


def is_strong(factors: Iterable[str]) -> bool:
    """Two different categories (PSD2 RTS Art. 4(1); NIST AAL2)."""
    return len(categories_of(factors)) >= 2
