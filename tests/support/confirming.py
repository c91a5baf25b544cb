"""Payers who confirm payments with their bound device's key, for the tests and benchmarks that
drive a real server: the policy that offers that path, the device bound straight into the
database, and the signature over a confirmation flow's canonical transaction data."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from zeropay.domain.authenticators import Device

from .dpop_client import DeviceKey

PASSWORD_ONLY_POLICY = Path(__file__).parents[1] / "policies" / "password-only.toml"
_ONLY_PASSKEY = '[points.payment_confirmation]\npaths = [["passkey"]]'
_WITH_DEVICE_KEY = (
    '[points.payment_confirmation]\npaths = [["passkey"], ["device_key", "password"]]\nttl_s = 300'
)


def device_key_policy(folder: Path) -> Path:
    """The tests' password-only policy (a password alone signs in), whose payment confirmation
    also takes the shipped default's device path (the bound device key's signature over the
    transaction, then the password) and lasts the shipped 5 minutes. Written to ``folder``;
    its path."""
    shipped = PASSWORD_ONLY_POLICY.read_text()
    assert _ONLY_PASSKEY in shipped, "tests/policies/password-only.toml changed"
    out = folder / "password-and-device-key.toml"
    out.write_text(
        shipped.replace(_ONLY_PASSKEY, _WITH_DEVICE_KEY).replace(
            'version = "tests-password-only"', 'version = "tests-password-and-device-key"'
        )
    )
    return out


def bind_device(container: Any, *, user_id: str, key: DeviceKey, now: datetime) -> str:
    """Bind ``key`` to the user as a device past its reduced-limits period: the row the device
    registration flow's last step writes, without its email code and passkey (that flow has
    tests and a benchmark of its own). ``container`` is ``bootstrap.build``'s, on the server's
    database. The device's id."""
    device = Device(
        id=container.ctx.new_id("dev"),
        user_id=user_id,
        name="Bench phone",
        platform="android",
        jkt=key.jkt,
        public_jwk=json.dumps(key.public_jwk, sort_keys=True, separators=(",", ":")),
        status="active",
        created_at=now - timedelta(days=2),
        last_seen_at=now,
        reduced_until=None,
    )
    container.ctx.run(lambda uow: uow.devices.add(device))
    return device.id


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def transaction_signature(key: DeviceKey, canonical_b64url: str) -> str:
    """The device's answer to a confirmation flow: ES256 over the canonical transaction data
    (``transaction.canonical``), r || s in base64url, as WebCrypto makes it."""
    data = base64.urlsafe_b64decode(canonical_b64url + "=" * (-len(canonical_b64url) % 4))
    r, s = decode_dss_signature(key.sign(data))
    return _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
