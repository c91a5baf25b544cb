"""The bound device key's signature over the canonical transaction data: valid for that payment
only; another amount, payee, payment or nonce, another key, or a mangled signature is refused."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from support.dpop_client import DeviceKey
from zeropay.domain.dynamic_linking import Transaction, canonical
from zeropay.domain.errors import ProofInvalid
from zeropay.domain.money import parse_money
from zeropay.services.device_keys import verify_transaction_signature

TXN = Transaction("pay_01", parse_money(1000, "EUR"), "mer_cafe", bytes(range(16)))


def _sign(device: DeviceKey, data: bytes) -> str:
    """As WebCrypto signs: ECDSA P-256 SHA-256, r || s."""
    r, s = decode_dss_signature(device.private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_the_devices_signature_over_this_transaction_verifies():
    device = DeviceKey()
    verify_transaction_signature(
        json.dumps(device.public_jwk), canonical(TXN), _sign(device, canonical(TXN))
    )


@pytest.mark.parametrize(
    "other",
    [
        replace(TXN, amount=parse_money(1001, "EUR")),
        replace(TXN, amount=parse_money(1000, "USD")),
        replace(TXN, payee="mer_thief"),
        replace(TXN, payment_id="pay_02"),
        replace(TXN, nonce=bytes(16)),
    ],
)
def test_a_signature_for_one_transaction_is_refused_for_any_other(other):
    device = DeviceKey()
    signed = _sign(device, canonical(TXN))
    with pytest.raises(ProofInvalid) as refused:
        verify_transaction_signature(json.dumps(device.public_jwk), canonical(other), signed)
    assert refused.value.details["reason"] == "signature"


def test_another_keys_signature_or_a_mangled_one_is_refused():
    device, thief = DeviceKey(), DeviceKey()
    jwk = json.dumps(device.public_jwk)
    with pytest.raises(ProofInvalid):
        verify_transaction_signature(jwk, canonical(TXN), _sign(thief, canonical(TXN)))
    good = _sign(device, canonical(TXN))
    flipped = ("A" if good[5] != "A" else "B").join((good[:5], good[6:]))
    for bad, reason in (
        (flipped, "signature"),
        (good[:-4], "malformed"),
        ("!!!" + good[3:], "malformed"),
        (None, "malformed"),
        ("A" * 200, "malformed"),
    ):
        with pytest.raises(ProofInvalid) as refused:
            verify_transaction_signature(jwk, canonical(TXN), bad)
        assert refused.value.details["reason"] == reason
