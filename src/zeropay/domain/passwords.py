"""Password rules from NIST SP 800-63B: length and a common-password check, no composition
rules, no forced rotation."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from zeropay.domain.errors import WeakPassword

PASSWORD_LENGTH_MIN = (
    8  # inside MFA (800-63B); the MFA issue raises it when a password stands alone
)
PASSWORD_LENGTH_MAX = 1024  # 800-63B asks that at least 64 be allowed


def check_password_policy(
    password: object, *, common: frozenset[str], email: str | None = None
) -> str:
    """The password, NFKC-normalised, or ``WeakPassword`` naming the reason."""
    if not isinstance(password, str):
        raise WeakPassword("the password must be a string", reason="not_a_string")
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < PASSWORD_LENGTH_MIN:
        raise WeakPassword(
            f"the password needs at least {PASSWORD_LENGTH_MIN} characters", reason="too_short"
        )
    if len(normal) > PASSWORD_LENGTH_MAX:
        raise WeakPassword(
            f"the password may have at most {PASSWORD_LENGTH_MAX} characters", reason="too_long"
        )
    if normal.lower() in common:
        raise WeakPassword("this password is too common; choose another", reason="common")
    local = (email or "").partition("@")[0].lower()
    if len(local) >= 4 and local in normal.lower():
        raise WeakPassword(
            "the password must not contain your email address", reason="contains_email"
        )
    return normal


def load_common_passwords(lines: Iterable[str]) -> frozenset[str]:
    return frozenset(s.lower() for line in lines if (s := line.strip()) and not s.startswith("#"))
