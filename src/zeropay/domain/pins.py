"""Device PINs: the knowledge factor of a device without a platform authenticator.

A PIN is chosen by the payer when the device is registered and is bound to that one device: the
server checks it only together with a DPoP proof of that device's key, hashes it with argon2id
like a password, keeps the hash encrypted, and locks it after 5 consecutive failures (PSD2 RTS
Art. 4(3)(b)).

Length. NIST SP 800-63B (rev 3 §5.1.1.1) asks at least 8 characters for a memorized secret the
subscriber chooses; 6 digits are allowed only for secrets the verifier picks at random. A PIN
checked by our server is such a memorized secret, so the default minimum is 8 digits. A policy
may lower it to 6 (``pin_digits_min``): the PIN never stands alone (only with the device key's
proof) and 5 failures lock it. STANDARDS.md: the stricter source is the default, the other a
configuration choice.

Guessable PINs are refused (800-63B §5.1.1.2 asks for a blocklist): one digit repeated, a short
pattern repeated (``121212``, ``123123``), a run up or down (``123456``, ``987654``), and the
common PINs below.
"""

from __future__ import annotations

from zeropay.domain import bounds
from zeropay.domain.errors import WeakPin

PIN_DIGITS_MIN_FLOOR = 6  # no policy may go below this
PIN_DIGITS_MIN_DEFAULT = 8  # NIST SP 800-63B §5.1.1.1 for a secret the payer chooses

# Frequent PINs that no pattern rule below catches (from published analyses of leaked PINs).
COMMON: frozenset[str] = frozenset(
    {
        "112233",
        "102030",
        "159753",
        "147258",
        "147852",
        "258456",
        "520520",
        "123321",
        "654456",
        "696969",
        "789456",
        "456789",
        "112358",
        "11223344",
        "12344321",
        "19841984",
        "20202020",
        "12121985",
        "01011980",
        "01012000",
    }
)


def _repeats_a_short_pattern(pin: str) -> bool:
    """One to three digits over and over, the last time maybe cut short (``1212121``)."""
    return any(pin == (pin[:size] * len(pin))[: len(pin)] for size in range(1, 4))


def _is_a_run(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    return steps in ({1}, {9})


def check_new_pin(raw: object, *, digits_min: int) -> str:
    """The PIN a payer chose, or ``WeakPin`` with a ``reason``: ``not_digits``, ``too_short``,
    ``too_long`` or ``guessable``."""
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        raise WeakPin("the PIN is digits only", reason="not_digits")
    if len(raw) < digits_min:
        raise WeakPin(f"the PIN needs at least {digits_min} digits", reason="too_short")
    if len(raw) > bounds.PIN_LENGTH_MAX:
        raise WeakPin(f"the PIN has at most {bounds.PIN_LENGTH_MAX} digits", reason="too_long")
    if raw in COMMON or _repeats_a_short_pattern(raw) or _is_a_run(raw):
        raise WeakPin("this PIN is too easy to guess; choose another", reason="guessable")
    return raw


def is_pin_shaped(raw: object) -> bool:
    """An answer worth hashing: digits, no longer than any PIN can be."""
    return (
        isinstance(raw, str)
        and raw.isascii()
        and raw.isdigit()
        and 1 <= len(raw) <= bounds.PIN_LENGTH_MAX
    )
