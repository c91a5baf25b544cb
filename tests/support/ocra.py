"""A payer's OCRA app (RFC 6287) as a third party would write it: from the seed it was shown, the
suite, and the transaction it shows the payer. The question is derived here by hand from the
encoding README.md documents, not with the server's own function, so the two are checked against
each other."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zeropay.domain import ocra

VERSION = b"zeropay-txn-v1"


def canonical(payment_id: str, amount_minor: int, currency: str, payee: str, nonce: bytes) -> bytes:
    """The canonical transaction data: the version tag, then each field with a 4-byte
    big-endian length before it (text as UTF-8, the nonce raw)."""
    fields = [
        payment_id.encode(),
        str(amount_minor).encode(),
        currency.encode(),
        payee.encode(),
        nonce,
    ]
    return VERSION + b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def question(suite: str, **transaction: Any) -> str:
    """The first N hex digits (lower case) of SHA-256 of the canonical data, for a QHN suite."""
    length = ocra.parse_suite(suite).question_length
    return hashlib.sha256(canonical(**transaction)).hexdigest()[:length]


@dataclass
class OcraApp:
    id: str
    suite: str
    seed: bytes
    test_question: str

    def code(self, asked: str, at: datetime) -> str:
        return ocra.compute(
            ocra.parse_suite(self.suite), self.seed, asked, timestamp_s=int(at.timestamp())
        )

    def code_for(self, at: datetime, **transaction: Any) -> str:
        return self.code(question(self.suite, **transaction), at)


def from_enrollment(made: dict[str, Any]) -> OcraApp:
    """The app keeps the seed as the enrollment showed it (base32 and hex say the same)."""
    seed = base64.b32decode(made["seed_base32"] + "=" * (-len(made["seed_base32"]) % 8))
    assert seed == bytes.fromhex(made["seed_hex"])
    return OcraApp(made["id"], made["suite"], seed, made["test_question"])


def enroll(device: Any, now: datetime, **body: Any) -> OcraApp:
    """Enroll and confirm an OCRA app from ``device`` (needs a recent strong login)."""
    r = device.call("POST", "/v1/me/factors/ocra", body)
    assert r.status_code == 201, r.text
    app = from_enrollment(r.json())
    r = device.call(
        "POST",
        f"/v1/me/factors/ocra/{app.id}/confirm",
        {"code": app.code(app.test_question, now)},
    )
    assert r.status_code == 204, r.text
    return app
