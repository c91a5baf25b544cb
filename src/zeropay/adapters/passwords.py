"""argon2id password hashing (argon2-cffi) and the shipped common-password list."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from zeropay.domain.errors import AuthenticationFailed
from zeropay.domain.passwords import load_common_passwords


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
        self._dummy = self._argon2.hash("zeropay-dummy-password")

    @classmethod
    def production(cls) -> Argon2PasswordHasher:
        # OWASP Password Storage Cheat Sheet: argon2id with m=64 MiB, t=3, p=1 is within the
        # recommended settings (the minimum is m=19 MiB, t=2, p=1).
        return cls(time_cost=3, memory_cost_kib=65536, parallelism=1)

    @classmethod
    def cheap_for_tests(cls) -> Argon2PasswordHasher:
        return cls(time_cost=1, memory_cost_kib=1024, parallelism=1)

    def hash(self, secret: str) -> str:
        return self._argon2.hash(secret)

    def verify(self, encoded: str, secret: str) -> None:
        try:
            self._argon2.verify(encoded, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise AuthenticationFailed("authentication failed") from None

    def needs_rehash(self, encoded: str) -> bool:
        return self._argon2.check_needs_rehash(encoded)

    def burn(self, secret: str) -> None:
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            self._argon2.verify(self._dummy, secret)

    def __repr__(self) -> str:
        p = self._argon2
        return f"Argon2PasswordHasher(t={p.time_cost}, m={p.memory_cost}, p={p.parallelism})"


@lru_cache(maxsize=1)
def shipped_common_passwords() -> frozenset[str]:
    text = resources.files("zeropay.data").joinpath("common-passwords.txt").read_text("utf-8")
    return load_common_passwords(text.splitlines())
