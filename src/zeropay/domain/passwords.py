"""Password rules from NIST SP 800-63B §3.1.1.2: a length range and a common-password check; no
composition rules and no forced rotation.

Length counts Unicode code points after NFKC normalisation (800-63B asks that passwords be
normalised before hashing, so the same password typed on two keyboards matches).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from zeropay.domain.errors import WeakPassword

# 8 is the minimum when the password is one factor of several (800-63B); the MFA issue raises it
# to 15 for accounts where the password stands alone.
PASSWORD_LENGTH_MIN = 8
# 800-63B asks that at least 64 be allowed; the cap only bounds the work done per request.
PASSWORD_LENGTH_MAX = 1024
# NFKC never shrinks a string to less than a quarter of its length: composition merges at most
# the 4 code points of one canonical decomposition (U+1FAF is the longest). Longer input is
# refused before normalising, so hostile input cannot make us normalise megabytes.
PASSWORD_LENGTH_RAW_MAX = 4 * PASSWORD_LENGTH_MAX
EMAIL_LOCAL_PART_LENGTH_MIN = 4  # shorter local parts ("bo", "ann") are too common to refuse


def check_password_policy(
    password: object, *, common: frozenset[str], email: str | None = None
) -> str:
    """The password, NFKC-normalised, or ``WeakPassword`` with a ``reason`` detail.

    ``common`` must hold lower-cased, NFKC-normalised entries, as ``load_common_passwords`` makes.
    """
    if not isinstance(password, str):
        raise WeakPassword("the password must be a string", reason="not_a_string")
    if len(password) > PASSWORD_LENGTH_RAW_MAX:
        raise _too_long()
    if not _is_encodable(password):
        # A lone surrogate (JSON allows "\ud800") cannot be UTF-8 encoded, hence never hashed.
        raise WeakPassword("the password must be valid Unicode text", reason="not_a_string")
    normal = unicodedata.normalize("NFKC", password)
    if len(normal) < PASSWORD_LENGTH_MIN:
        raise WeakPassword(
            f"the password needs at least {PASSWORD_LENGTH_MIN} characters", reason="too_short"
        )
    if len(normal) > PASSWORD_LENGTH_MAX:
        raise _too_long()
    folded = normal.lower()
    if folded in common:
        raise WeakPassword("this password is too common; choose another", reason="common")
    local = _email_local_part(email)
    if len(local) >= EMAIL_LOCAL_PART_LENGTH_MIN and local in folded:
        raise WeakPassword(
            "the password must not contain your email address", reason="contains_email"
        )
    return normal


def load_common_passwords(lines: Iterable[str]) -> frozenset[str]:
    """Entries lower-cased and NFKC-normalised like a checked password; blanks and ``#`` lines
    dropped."""
    return frozenset(
        unicodedata.normalize("NFKC", entry).lower()
        for line in lines
        if (entry := line.strip()) and not entry.startswith("#")
    )


def _too_long() -> WeakPassword:
    return WeakPassword(
        f"the password may have at most {PASSWORD_LENGTH_MAX} characters", reason="too_long"
    )


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _email_local_part(email: str | None) -> str:
    # rpartition: a quoted local part may itself hold "@", the domain never does (RFC 5321 §4.1.2).
    folded = unicodedata.normalize("NFKC", email or "").lower()
    local, at, _domain = folded.rpartition("@")
    return local if at else folded
