"""Dynamic linking (PSD2 RTS Art. 5): what a payment confirmation proves is bound to one payment,
its amount, its currency and its payee, so the proof is worthless for anything else.

The server builds the canonical transaction data from its own records at every step -- when it
issues a challenge and again when an answer arrives -- and never from what the client sends.
The encoding is unambiguous (a version tag, then each field length-prefixed), so no two
different transactions share bytes:

    b"zeropay-txn-v1" || for each of (payment id, amount in minor units as decimal ASCII,
    currency, payee id, nonce): 4-byte big-endian length || the field's bytes (UTF-8; the nonce
    raw)

- a passkey answers a WebAuthn challenge equal to SHA-256 of these bytes;
- a bound device key signs these bytes;
- an OCRA device answers a question derived from them (``domain.ocra``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from zeropay.domain.errors import ZeroPayError, invariant
from zeropay.domain.money import Money, currency

VERSION = b"zeropay-txn-v1"
NONCE_BYTES = 16


@dataclass(frozen=True, slots=True)
class Transaction:
    payment_id: str
    amount: Money
    payee: str  # the merchant id
    nonce: bytes  # fresh per confirmation flow: two flows for one payment never share a proof

    def __post_init__(self) -> None:
        invariant(len(self.nonce) == NONCE_BYTES, "a confirmation nonce has 16 bytes")
        invariant(self.amount.amount_minor > 0, "a confirmed amount is positive")


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw


def canonical(txn: Transaction) -> bytes:
    return VERSION + b"".join(
        _field(part)
        for part in (
            txn.payment_id.encode(),
            str(txn.amount.amount_minor).encode("ascii"),
            txn.amount.currency.code.encode("ascii"),
            txn.payee.encode(),
            txn.nonce,
        )
    )


def digest(txn: Transaction) -> bytes:
    """SHA-256 of the canonical bytes: the WebAuthn challenge of a passkey confirmation."""
    return hashlib.sha256(canonical(txn)).digest()


# ---- a confirmation flow's binding -------------------------------------------------------------
# A confirmation flow keeps the transaction it was issued for in its binding (strings), so the
# server can rebuild the canonical data at every step and compare it with the payment row.

_BINDING_KEYS = ("payment_id", "amount_minor", "currency", "payee", "nonce")


def binding_of(txn: Transaction) -> dict[str, str]:
    return {
        "payment_id": txn.payment_id,
        "amount_minor": str(txn.amount.amount_minor),
        "currency": txn.amount.currency.code,
        "payee": txn.payee,
        "nonce": base64.urlsafe_b64encode(txn.nonce).decode(),
    }


def bound_transaction(binding: Mapping[str, str]) -> Transaction:
    """The transaction a confirmation flow was issued for (its binding was written by
    ``binding_of``; a flow without one is a bug)."""
    invariant(all(k in binding for k in _BINDING_KEYS), "a confirmation flow binds a transaction")
    return Transaction(
        payment_id=binding["payment_id"],
        amount=Money(int(binding["amount_minor"]), currency(binding["currency"])),
        payee=binding["payee"],
        nonce=base64.urlsafe_b64decode(binding["nonce"]),
    )


def same_terms(a: Transaction, b: Transaction) -> bool:
    """Same payment, amount, currency and payee (the nonce aside): what the payer saw still
    holds."""
    return (a.payment_id, a.amount, a.payee) == (b.payment_id, b.amount, b.payee)


def parse_canonical(data: bytes) -> Transaction | None:
    """The transaction in canonical bytes, or None when they are not a well-formed encoding --
    to tell a proof over a stale nonce of this payment from one over another transaction."""
    if not data.startswith(VERSION):
        return None
    fields: list[bytes] = []
    at = len(VERSION)
    while at < len(data) and len(fields) < len(_BINDING_KEYS):
        length = int.from_bytes(data[at : at + 4], "big")
        at += 4
        if len(data) < at + length:
            return None
        fields.append(data[at : at + length])
        at += length
    if at != len(data) or len(fields) != len(_BINDING_KEYS):
        return None
    payment_id, amount, code, payee, nonce = fields
    try:
        return Transaction(
            payment_id=payment_id.decode(),
            amount=Money(int(amount.decode("ascii")), currency(code.decode("ascii"))),
            payee=payee.decode(),
            nonce=nonce,
        )
    except (ValueError, ZeroPayError):
        return None
