"""Shamir's secret sharing of the 256-bit root key, and how a share is written down.

pycryptodome's ``Shamir`` shares 16-byte secrets over GF(2^128), so the root key is shared as two
halves, each with its own random polynomial, and a custodian's share carries both evaluations at
the same index. Any ``threshold`` shares rebuild both halves; fewer say nothing about either.

A share is text a custodian can copy: ``zeropay-share-v1:<vault>:<index>:<value>:<check>``, where
``check`` is the first 4 bytes of SHA-256 over the rest (a typo is caught before anything is sent).
Shamir alone cannot tell a wrong share from a right one (it rebuilds a wrong key), so ``init``
also stores a commitment to each share, SHA-256 of (vault, index, value): a corrupted or foreign
share is refused when it is submitted, and the rebuilt key is checked against the vault once more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir

from zeropay.adapters.vault.crypto import length_prefixed
from zeropay.domain import bounds
from zeropay.domain.errors import ShareRefused

PREFIX = "zeropay-share-v1"
HALF_BYTES = 16
ROOT_BYTES = 2 * HALF_BYTES
CHECK_BYTES = 4
COMMITMENT_INFO = b"zeropay/vault/share-commitment/v1"


@dataclass(frozen=True, slots=True)
class Share:
    vault_id: str
    index: int
    value: bytes  # the two halves' evaluations at ``index``

    def __repr__(self) -> str:  # a share never lands in a log by accident
        return f"Share(vault_id={self.vault_id!r}, index={self.index}, value=<redacted>)"

    def text(self) -> str:
        body = f"{PREFIX}:{self.vault_id}:{self.index}:{_b64(self.value)}"
        return f"{body}:{_check(body)}"

    def commitment(self) -> bytes:
        return hashlib.sha256(
            COMMITMENT_INFO + length_prefixed(self.vault_id, str(self.index), self.value)
        ).digest()


def split(root: bytes, *, shares: int, threshold: int, vault_id: str) -> list[Share]:
    check_scheme(shares=shares, threshold=threshold)
    if len(root) != ROOT_BYTES:
        raise ValueError("the root key is 32 bytes")
    low = Shamir.split(threshold, shares, root[:HALF_BYTES])
    high = Shamir.split(threshold, shares, root[HALF_BYTES:])
    out = []
    for (index, a), (same, b) in zip(low, high, strict=True):
        assert index == same
        out.append(Share(vault_id=vault_id, index=index, value=a + b))
    return out


def combine(shares: Sequence[Share], *, threshold: int) -> bytes:
    """The root key from at least ``threshold`` distinct shares of one vault."""
    indices = {s.index for s in shares}
    if len(indices) != len(shares):
        raise ShareRefused("the same share was given twice", reason="duplicate")
    if len({s.vault_id for s in shares}) > 1:
        raise ShareRefused("the shares belong to different vaults", reason="wrong_vault")
    if len(shares) < threshold:
        raise ShareRefused(
            f"{threshold} shares are needed, {len(shares)} were given", reason="too_few"
        )
    chosen = sorted(shares, key=lambda s: s.index)[:threshold]
    low = Shamir.combine([(s.index, s.value[:HALF_BYTES]) for s in chosen])
    high = Shamir.combine([(s.index, s.value[HALF_BYTES:]) for s in chosen])
    return low + high


def check_scheme(*, shares: int, threshold: int) -> None:
    # A threshold of 1 would let one person unseal alone; development vaults use it knowingly
    # (see ``Vault.initialize(development=True)``), so the floor is enforced by the CLI and API.
    if not 1 <= threshold <= shares <= bounds.VAULT_SHARES_MAX:
        raise ValueError(
            f"need 1 <= threshold <= shares <= {bounds.VAULT_SHARES_MAX}, "
            f"got {threshold} of {shares}"
        )


def parse_share(text: object) -> Share:
    """A share typed or pasted by a custodian; surrounding whitespace is forgiven."""
    if not isinstance(text, str) or len(text) > bounds.VAULT_SHARE_TEXT_MAX:
        raise ShareRefused("a share is a line of text", reason="malformed")
    text = text.strip()
    parts = text.split(":")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise ShareRefused(f"a share starts with {PREFIX}: and has five parts", reason="malformed")
    _, vault_id, index_text, value_text, check = parts
    body = text.rsplit(":", 1)[0]
    if not hmac.compare_digest(check.encode(), _check(body).encode()):
        raise ShareRefused(
            "the share's checksum does not match: was it copied whole?", reason="checksum"
        )
    try:
        index = int(index_text)
        value = base64.urlsafe_b64decode(value_text + "=" * (-len(value_text) % 4))
    except ValueError as exc:
        raise ShareRefused("the share is malformed", reason="malformed") from exc
    if not 1 <= index <= bounds.VAULT_SHARES_MAX or len(value) != ROOT_BYTES or not vault_id:
        raise ShareRefused("the share is malformed", reason="malformed")
    return Share(vault_id=vault_id, index=index, value=value)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _check(body: str) -> str:
    return hashlib.sha256(body.encode()).digest()[:CHECK_BYTES].hex()
