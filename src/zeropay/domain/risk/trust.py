"""How far a session is trusted (0-100), shown to the user and to operators.

It rises with how the session authenticated (a passkey with user verification counts most, a
password with an emailed code least), borrows part of its device's trust (age, passkeys and
approvals used on it, consistency; ``engine.device_trust``), and halves every
``HALF_LIFE_S`` since the session last authenticated.
"""

from __future__ import annotations

from collections.abc import Iterable

HALF_LIFE_S = 3600.0
_FACTOR_POINTS = {
    "passkey": 60,
    "bound_device_approval": 45,
    "device_key": 35,
    "totp": 35,
    "security_question": 20,
    "recovery_code": 20,
    "sms_otp": 20,
    "email_otp": 15,
    "password": 15,
}
_METHODS_MAX = 70  # the rest comes from the device


def session_trust(
    factors: Iterable[str], *, authenticated_s: float, now_s: float, device_trust: int
) -> int:
    points = min(_METHODS_MAX, sum(_FACTOR_POINTS.get(f, 0) for f in set(factors)))
    base = points + 0.3 * max(0, min(100, device_trust))
    idle = max(0.0, now_s - authenticated_s)
    return min(100, int(round(base * 0.5 ** (idle / HALF_LIFE_S))))
