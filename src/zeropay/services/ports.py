"""Ports: the small interfaces through which use cases reach time, randomness and I/O.

Adapters implement them; ``bootstrap.py`` chooses which. Nothing here knows about SQL or HTTP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class KeyRing(Protocol):
    """Field encryption and blind indexes under keys the application never stores in plaintext.

    ``encrypt`` binds each ciphertext to where it lives (table, column, row) through AES-GCM
    associated data, so a ciphertext copied into another row or column fails to decrypt.
    The key version travels inside the ciphertext, so old versions stay readable after rotation.
    """

    def encrypt(self, plaintext: bytes, *, table: str, column: str, row_id: str) -> bytes: ...

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes: ...

    def blind_index(self, value: bytes, *, purpose: str) -> bytes:
        """A keyed HMAC-SHA256 of ``value``: equal inputs give equal outputs, nothing else leaks."""
        ...


class PasswordHasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, encoded: str, secret: str) -> None:
        """Return when ``secret`` matches ``encoded``; raise ``AuthenticationFailed`` otherwise."""
        ...

    def needs_rehash(self, encoded: str) -> bool: ...

    def burn(self, secret: str) -> None:
        """Spend the time of one verification without a stored hash (unknown account)."""
        ...
