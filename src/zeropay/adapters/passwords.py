"""argon2id password hashing (argon2-cffi) and the shipped common-password list."""

from __future__ import annotations

import contextlib
import secrets
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import Argon2Error

from zeropay.domain.errors import AuthenticationFailed
from zeropay.domain.passwords import load_common_passwords

# argon2-cffi raises Argon2Error subclasses for mismatches and undecodable hashes, and ValueError
# (InvalidHashError, UnicodeEncodeError) or TypeError for input it cannot even parse.
_VERIFY_FAILURES = (Argon2Error, ValueError, TypeError)


class Argon2PasswordHasher:
    def __init__(self, *, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._argon2 = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_cost_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Hashed with these parameters, so ``burn`` costs what a real verification costs.
        self._dummy = self._argon2.hash(secrets.token_urlsafe(16))

    @classmethod
    def production(cls) -> Argon2PasswordHasher:
        # OWASP Password Storage Cheat Sheet (Argon2id): the floor is m=19 MiB, t=2, p=1, and
        # this spends more memory and more passes. RFC 9106 §4 suggests t=3, m=64 MiB with four
        # lanes where memory is tight; one lane keeps a login on one core.
        return cls(time_cost=3, memory_cost_kib=65536, parallelism=1)

    @classmethod
    def cheap_for_tests(cls) -> Argon2PasswordHasher:
        return cls(time_cost=1, memory_cost_kib=1024, parallelism=1)

    def hash(self, secret: str) -> str:
        return self._argon2.hash(secret)

    def verify(self, encoded: str, secret: str) -> None:
        try:
            self._argon2.verify(encoded, secret)
        except _VERIFY_FAILURES:
            # One answer for a wrong password and a broken hash (PSD2 RTS Art. 4(3)(a)).
            raise AuthenticationFailed("authentication failed") from None

    def needs_rehash(self, encoded: str) -> bool:
        try:
            return self._argon2.check_needs_rehash(encoded)
        except (ValueError, TypeError):  # InvalidHashError is a ValueError
            return True  # a hash we cannot parse must be replaced at the next login

    def burn(self, secret: str) -> None:
        with contextlib.suppress(*_VERIFY_FAILURES):
            self._argon2.verify(self._dummy, secret)

    def __repr__(self) -> str:
        p = self._argon2
        return f"Argon2PasswordHasher(t={p.time_cost}, m={p.memory_cost}, p={p.parallelism})"


@lru_cache(maxsize=1)
def shipped_common_passwords() -> frozenset[str]:
    """The common-password list in ``zeropay/data`` (Django's, see the file's header)."""
    text = resources.files("zeropay.data").joinpath("common-passwords.txt").read_text("utf-8")
    return load_common_passwords(text.splitlines())
