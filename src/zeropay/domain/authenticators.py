"""What a user authenticates with: bound devices and enrolled authenticators.

A *bound device* is a key pair a device made (a phone app's key, or the browser's
non-extractable WebCrypto P-256 key) whose public half we registered through the device
registration flow. An *authenticator* is an enrolled factor that needs server-side state: a
passkey (WebAuthn credential), a TOTP seed, a phone number for SMS codes, a device's PIN.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from zeropay.domain import bounds
from zeropay.domain.device_classes import DeviceClass
from zeropay.domain.errors import InvalidInput, PaymentLimitExceeded
from zeropay.domain.money import Money


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    user_id: str
    name: str
    platform: str
    jkt: str
    public_jwk: str  # JSON
    status: str  # active | removed
    created_at: datetime
    last_seen_at: datetime
    reduced_until: datetime | None = None
    removed_at: datetime | None = None
    # What the device said it keeps its keys in, at registration (``domain.device_classes``).
    device_class: DeviceClass = DeviceClass.PLATFORM

    def is_reduced(self, now: datetime) -> bool:
        """A new device pays only small amounts for its first hours (the policy says how long)."""
        return self.reduced_until is not None and now < self.reduced_until

    def was_bound_before(self, moment: datetime) -> bool:
        """Only a device bound before a flow began may approve it: otherwise an attacker who
        just bound a device could approve their own next step."""
        return self.status == "active" and self.created_at < moment


def check_new_device_limit(
    device: Device | None, amount: Money, now: datetime, ceilings: Mapping[str, int]
) -> None:
    """A device in its first hours pays at most the policy's small ceiling per payment: a
    device registered by someone who stole the email and a password cannot empty the wallet.
    A currency without a ceiling in the policy is not reduced."""
    if device is None or not device.is_reduced(now):
        return
    ceiling = ceilings.get(amount.currency.code)
    if ceiling is not None and amount.amount_minor > ceiling:
        raise PaymentLimitExceeded(
            "this device is new: it can pay only small amounts for now",
            reason="new_device",
            currency=amount.currency.code,
            limit_minor=ceiling,
            until=device.reduced_until.isoformat() if device.reduced_until else None,
        )


class AuthenticatorKind(StrEnum):
    TOTP = "totp"
    PASSKEY = "passkey"
    SMS = "sms_otp"
    OCRA = "ocra"  # RFC 6287 seed for payment confirmation codes; its suite in ``ocra_suite``
    PIN = "pin"  # a device PIN's argon2id hash, encrypted; bound to ``device_id`` (domain.pins)


@dataclass(frozen=True, slots=True)
class Authenticator:
    id: str
    user_id: str
    kind: AuthenticatorKind
    label: str
    status: str  # pending | active | removed
    created_at: datetime
    secret_ciphertext: bytes | None = None
    credential_id: bytes | None = None
    public_key: bytes | None = None
    sign_count: int = 0
    clone_signals: int = 0
    last_step: int | None = None  # TOTP and OCRA: the last time step accepted (replay record)
    device_id: str | None = None
    last_used_at: datetime | None = None
    pending_secret: bytes | None = None
    pending_expires_at: datetime | None = None
    ocra_suite: str | None = None  # OCRA: the RFC 6287 suite its codes are computed under


def sign_count_is_clone_signal(stored: int, received: int) -> bool:
    """WebAuthn L3 §6.1.1: an authenticator that keeps a counter increases it on every use. A
    counter that does not increase means two copies of the credential may exist. Both zero means
    the authenticator keeps no counter (many synced passkeys), which proves nothing."""
    if stored == 0 and received == 0:
        return False
    return received <= stored


def parse_label(raw: object, *, field: str = "name", default: str = "") -> str:
    """A short human name for a device or authenticator: NFKC, trimmed, printable."""
    if raw is None and default:
        return default
    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    text = unicodedata.normalize("NFKC", raw).strip()
    if not 1 <= len(text) <= bounds.LABEL_LENGTH_MAX or not text.isprintable():
        raise InvalidInput(
            f"{field} has 1 to {bounds.LABEL_LENGTH_MAX} printable characters", field=field
        )
    return text
