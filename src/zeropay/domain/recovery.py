"""Account recovery after the flow's factors have passed: its states, the cooling-off period that
follows a recovery from a new device, and the signed one-click links of the alerts.

The factors themselves are the flow's business (``domain.flows`` and the policy's ``recovery``
paths, each of two factors at least). What happens once they have passed is here:

- a recovery the risk engine found risky is ``held`` until an operator approves or denies it;
  one it let through is ``ready``. Either way nothing is granted yet: the device that ran the flow
  completes it (a new password, if the user wants one; the device bound; a session whose methods
  are the factors the flow used, so it is never more assured than they are).
- A recovery starts a cooling-off period (``cooling_off_s``, a day by default) unless it was
  made on a bound device with that device's passkey (user verification on the phone itself): a
  device key alone may be a copy (a software key from an older phone). Until it ends, the device
  it completed on, and any session not on a device bound before the recovery began, can look but
  cannot pay above ``payment_max_minor`` a payment nor ``total_max_minor`` in all, add payees,
  factors or instruments, remove factors or devices, end other sessions, change the password or
  withhold risk signals, approve other flows, or read, export or erase the account's data. The
  devices the user had before stay in charge: from them the user removes the new one, or says
  "this wasn't me".
- "This wasn't me" freezes the account and ends every session; it removes the device the
  recovery completed on and every factor added since the recovery began, and makes a password
  the recovery set unusable. Each alert carries it as a link
  signed by the server, bound to the recovery and the account, valid for ten minutes and once.
  The link grants nothing: it can only freeze.

No clock is read here; every function that depends on time takes ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from zeropay.domain.errors import (
    ConfigurationError,
    InvalidStateTransition,
    RecoveryLinkInvalid,
    invariant,
)

DAY_S = 86_400
COOLING_OFF_S_MAX = 30 * DAY_S
LINK_TTL_S_MAX = 600  # messages over email expire within ten minutes
COMPLETE_WITHIN_S = 600  # a ready recovery is completed within this, or it lapses
APPROVED_COMPLETE_WITHIN_S = DAY_S  # once an operator approves, the user has a day


class RecoveryState(StrEnum):
    HELD = "held"  # the risk engine found it risky: an operator decides
    READY = "ready"  # the device that ran the flow may complete it
    APPROVED = "approved"  # held, then approved by an operator: as ready
    DENIED = "denied"  # held, then denied by an operator
    COMPLETED = "completed"  # the device is bound and signed in
    REPORTED = "reported"  # "this wasn't me": the account was frozen


class Restricted(StrEnum):
    """What a session outside the devices bound before a recovery cannot do while it cools off."""

    PAY = "pay"  # above the policy's small ceiling, per payment or in all
    ADD_PAYEE = "add_payee"
    ADD_FACTOR = "add_factor"  # a factor added now would outlive "this wasn't me"
    REMOVE_FACTOR = "remove_factor"  # factors, devices, recovery codes, security questions
    END_SESSIONS = "end_sessions"  # other sessions
    CHANGE_PASSWORD = "change_password"  # noqa: S105 - an action's name
    APPROVE = "approve"  # another flow, as a bound device
    ADD_INSTRUMENT = "add_instrument"  # a funding card or carrier number, or a device to it
    WITHHOLD_SIGNALS = "withhold_signals"  # consents: the signals that would catch a thief
    EXPORT = "export"  # the privacy center's view of the data, and the archive
    ERASE = "erase"


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    cooling_off_s: int = DAY_S
    # Per-payment ceiling while cooling off, by currency in minor units; a currency not named
    # pays nothing above zero.
    payment_max_minor: Mapping[str, int] = field(
        default_factory=lambda: {"EUR": 1000, "USD": 1000, "GBP": 1000, "KRW": 10000, "JPY": 1000}
    )
    # What all payments during the period may add up to, by currency (no draining in slices).
    total_max_minor: Mapping[str, int] = field(
        default_factory=lambda: {"EUR": 3000, "USD": 3000, "GBP": 3000, "KRW": 30000, "JPY": 3000}
    )
    link_ttl_s: int = LINK_TTL_S_MAX


@dataclass(frozen=True, slots=True)
class Recovery:
    id: str
    user_id: str
    flow_id: str
    state: RecoveryState
    factors: tuple[str, ...]  # what the flow's path used, in order
    jkt: str  # the device key that ran the flow; only it completes the recovery
    new_device: bool  # the key was not bound to the account when the factors passed
    password_replaced: bool  # the recovery set a new password (undone by "this wasn't me")
    device_name: str  # the device as it will be bound, if new
    platform: str
    device_class: str  # as the device stated it (``domain.device_classes``)
    public_jwk: str
    created_at: datetime  # when the flow started: devices bound before this are trusted
    passed_at: datetime  # when the flow's last factor passed
    expires_at: datetime  # complete before this (ready or approved), or it lapses
    risk_reasons: tuple[str, ...] = ()
    device_id: str | None = None  # the device it completed on
    cooling_until: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    completed_at: datetime | None = None
    reported_at: datetime | None = None

    def status(self, now: datetime) -> str:
        if self.state in (RecoveryState.READY, RecoveryState.APPROVED) and now >= self.expires_at:
            return "expired"
        return self.state.value

    def is_cooling(self, now: datetime) -> bool:
        return (
            self.state is RecoveryState.COMPLETED
            and self.cooling_until is not None
            and now < self.cooling_until
        )


def passed(recovery: Recovery, *, held: bool, now: datetime) -> Recovery:
    """The flow's factors passed: held for an operator, or ready for the device to complete."""
    invariant(recovery.completed_at is None, "a new recovery")
    return replace(
        recovery,
        state=RecoveryState.HELD if held else RecoveryState.READY,
        expires_at=now + timedelta(seconds=COMPLETE_WITHIN_S),
    )


def decide(
    recovery: Recovery, *, approve: bool, operator: str, reason: str, now: datetime
) -> Recovery:
    if recovery.state is not RecoveryState.HELD:
        raise InvalidStateTransition(
            f"this recovery is {recovery.state.value}, not held for review", reason="not_held"
        )
    return replace(
        recovery,
        state=RecoveryState.APPROVED if approve else RecoveryState.DENIED,
        decided_by=operator,
        decided_at=now,
        decision_reason=reason,
        expires_at=now + timedelta(seconds=APPROVED_COMPLETE_WITHIN_S),
    )


def cools_off(recovery: Recovery) -> bool:
    """Every recovery cools off but one made on a device already bound, with its passkey: user
    verification on that phone. A bound device's key alone may be a copy (older phones keep it in
    software), and the other paths are for a lost phone."""
    return recovery.new_device or "passkey" not in recovery.factors


def complete(
    recovery: Recovery,
    *,
    device_id: str,
    policy: RecoveryPolicy,
    now: datetime,
    password_replaced: bool = False,
) -> Recovery:
    if recovery.state is RecoveryState.HELD:
        raise InvalidStateTransition(
            "this recovery is waiting for a review; you will be told by email",
            reason="recovery_held",
        )
    if recovery.state not in (RecoveryState.READY, RecoveryState.APPROVED):
        raise InvalidStateTransition(
            f"this recovery is {recovery.state.value}; start a new one",
            reason=f"recovery_{recovery.state.value}",
        )
    if now >= recovery.expires_at:
        raise InvalidStateTransition(
            "this recovery has expired; start a new one", reason="recovery_expired"
        )
    cooling = cools_off(recovery) and policy.cooling_off_s > 0
    return replace(
        recovery,
        state=RecoveryState.COMPLETED,
        device_id=device_id,
        password_replaced=password_replaced,
        completed_at=now,
        cooling_until=now + timedelta(seconds=policy.cooling_off_s) if cooling else None,
    )


def report(recovery: Recovery, now: datetime) -> Recovery:
    """ "This wasn't me". Reporting twice changes nothing more; a denied recovery granted nothing
    and a held one nothing yet, but either may be reported (the account is frozen all the same)."""
    if recovery.state is RecoveryState.REPORTED:
        return recovery
    return replace(recovery, state=RecoveryState.REPORTED, reported_at=now)


def is_trusted_device(
    device_id: str | None,
    device_created_at: datetime | None,
    device_active: bool,
    recovery: Recovery,
) -> bool:
    """A device bound before the recovery began keeps every right while the recovery cools off;
    the device the recovery completed on never does."""
    return (
        device_active
        and device_id is not None
        and device_id != recovery.device_id
        and device_created_at is not None
        and device_created_at < recovery.created_at
    )


def payment_allowed(
    policy: RecoveryPolicy, currency: str, amount_minor: int, *, spent_minor: int = 0
) -> tuple[bool, int]:
    """Whether a cooling-off session may pay this, having paid ``spent_minor`` in the currency
    since the recovery; and the ceiling that refuses it (per payment, else in all)."""
    ceiling = policy.payment_max_minor.get(currency, 0)
    if amount_minor > ceiling:
        return False, ceiling
    total = policy.total_max_minor.get(currency, 0)
    return spent_minor + amount_minor <= total, total


# ---- one-click links in alerts -----------------------------------------------------------------
#
# ``v1.<recovery id>.<expiry, epoch seconds>.<nonce>.<mac>``, base64url without padding where
# binary. The MAC is HMAC-SHA256 under a key from the vault over the purpose, recovery, account,
# expiry and nonce: an edited link fails it, and a link for one account never acts on another.

LINK_VERSION = "v1"
LINK_NONCE_BYTES = 16
LINK_LENGTH_MAX = 256


@dataclass(frozen=True, slots=True)
class Link:
    recovery_id: str
    expires_at: datetime
    nonce: str

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def link_message(purpose: str, recovery_id: str, user_id: str, expiry_s: int, nonce: str) -> bytes:
    return "\x1f".join((LINK_VERSION, purpose, recovery_id, user_id, str(expiry_s), nonce)).encode()


def make_link(
    *,
    purpose: str,
    recovery_id: str,
    user_id: str,
    nonce: bytes,
    expires_at: datetime,
    mac: Callable[[bytes], bytes],
) -> str:
    invariant(len(nonce) == LINK_NONCE_BYTES, "a link nonce has 128 bits")
    expiry_s = int(expires_at.timestamp())
    nonce_text = _b64(nonce)
    tag = mac(link_message(purpose, recovery_id, user_id, expiry_s, nonce_text))
    return ".".join((LINK_VERSION, recovery_id, str(expiry_s), nonce_text, _b64(tag)))


def parse_link(raw: object) -> tuple[str, int, str, bytes]:
    """The parts of a link as written, unverified: recovery id, expiry, nonce, tag."""
    if not isinstance(raw, str) or not 0 < len(raw) <= LINK_LENGTH_MAX:
        raise RecoveryLinkInvalid("this link is not valid", reason="malformed")
    parts = raw.split(".")
    expiry = parts[2] if len(parts) == 5 else ""
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    if parts[0] != LINK_VERSION or not (
        expiry.isascii() and expiry.isdigit() and len(expiry) <= 12
    ):
        raise RecoveryLinkInvalid("this link is not valid", reason="malformed")
    try:
        tag = base64.urlsafe_b64decode(parts[4] + "=" * (-len(parts[4]) % 4))
    except (ValueError, binascii.Error):
        raise RecoveryLinkInvalid("this link is not valid", reason="malformed") from None
    return parts[1], int(parts[2]), parts[3], tag


def verify_link(
    raw: object,
    *,
    purpose: str,
    user_id_of: Callable[[str], str | None],
    mac: Callable[[bytes], bytes],
    tz: Any,
) -> Link:
    """The link's recovery, if the server signed it for that recovery's account. Expiry is the
    caller's to judge (an expired but genuine link may ask for a fresh one)."""
    recovery_id, expiry_s, nonce, tag = parse_link(raw)
    user_id = user_id_of(recovery_id)
    if user_id is None:
        raise RecoveryLinkInvalid("this link is not valid", reason="forged")
    expected = mac(link_message(purpose, recovery_id, user_id, expiry_s, nonce))
    if not hmac.compare_digest(expected, tag):
        raise RecoveryLinkInvalid("this link is not valid", reason="forged")
    return Link(recovery_id, datetime.fromtimestamp(expiry_s, tz), nonce)


# ---- the [recovery] table of the policy file ---------------------------------------------------

_KEYS = {"cooling_off_s", "payment_max_minor", "total_max_minor", "link_ttl_s"}


def parse_recovery(data: object) -> RecoveryPolicy:
    if data is None:
        return RecoveryPolicy()
    if not isinstance(data, dict):
        raise ConfigurationError("policy: [recovery] must be a table")
    if unknown := set(data) - _KEYS:
        raise ConfigurationError(f"policy: recovery has unknown keys {sorted(unknown)}")
    default = RecoveryPolicy()
    cooling = data.get("cooling_off_s", default.cooling_off_s)
    if (
        not isinstance(cooling, int)
        or isinstance(cooling, bool)
        or not 0 <= cooling <= COOLING_OFF_S_MAX
    ):
        raise ConfigurationError(
            f"policy: recovery.cooling_off_s must be an integer from 0 to {COOLING_OFF_S_MAX}"
        )
    ttl = data.get("link_ttl_s", default.link_ttl_s)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= LINK_TTL_S_MAX:
        raise ConfigurationError(
            f"policy: recovery.link_ttl_s must be an integer from 60 to {LINK_TTL_S_MAX}"
        )
    return RecoveryPolicy(
        cooling_off_s=cooling,
        payment_max_minor=_ceilings(data, "payment_max_minor", default.payment_max_minor),
        total_max_minor=_ceilings(data, "total_max_minor", default.total_max_minor),
        link_ttl_s=ttl,
    )


def _ceilings(data: Mapping[str, Any], key: str, default: Mapping[str, int]) -> dict[str, int]:
    ceilings = data.get(key, default)
    if not isinstance(ceilings, dict) or not all(
        isinstance(k, str)
        and len(k) == 3
        and k.isupper()
        and isinstance(v, int)
        and not isinstance(v, bool)
        and v >= 0
        for k, v in ceilings.items()
    ):
        raise ConfigurationError(f"policy: recovery.{key} maps currency codes to minor units")
    return dict(ceilings)
