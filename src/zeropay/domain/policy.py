"""Which factors each access point asks for: the authentication policy.

The policy is data (a TOML file, ``zeropay/policies/default.toml``, replaced with
``ZEROPAY_AUTH_POLICY``); this module parses and checks it, and plans the ways one user can pass a
point given the factors that user holds. A *path* is an ordered list of factors: the flow asks
them in that order and never lets the client skip one.

Device classes (``domain.device_classes``) narrow the paths: a point's ``classes`` table lists,
per class, the paths of that point a device of the class may take (a class it does not name may
take them all), and no class is ever offered a path with a factor it cannot present (a passkey
without a platform authenticator). ``class_table`` is what README.md's fallback table shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.device_classes import CANNOT_PRESENT, STRONGEST_FIRST, DeviceClass
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.factors import CATEGORIES, RESTRICTED, Factor, FactorCategory, is_strong
from zeropay.domain.onboarding import OnboardingPolicy, parse_onboarding
from zeropay.domain.pins import PIN_DIGITS_MIN_DEFAULT, PIN_DIGITS_MIN_FLOOR
from zeropay.domain.recovery import RecoveryPolicy, parse_recovery


class AccessPoint(StrEnum):
    SIGNUP = "signup"  # proves the email address before it can serve as a factor
    LOGIN = "login"
    STEP_UP = "step_up"  # re-authentication before a sensitive action
    DEVICE_REGISTRATION = "device_registration"
    RECOVERY = "recovery"  # then ``domain.recovery``: held, completed, cooling off
    PAYMENT_CONFIRMATION = "payment_confirmation"  # with dynamic linking


Path = tuple[Factor, ...]

# Points where every path must be strong (two categories) however the policy file is written:
# nothing adds a device, confirms a sensitive action or a payment on one category (PSD2 RTS
# Art. 4, 5). Recovery needs two factors at least -- the product's "recovery code + email" is two
# possession factors -- and never a single one.
ALWAYS_STRONG = frozenset(
    {AccessPoint.STEP_UP, AccessPoint.DEVICE_REGISTRATION, AccessPoint.PAYMENT_CONFIRMATION}
)
NEVER_SINGLE = ALWAYS_STRONG | {AccessPoint.RECOVERY}


@dataclass(frozen=True, slots=True)
class PointPolicy:
    paths: tuple[Path, ...]
    # Factors dropped from a path when the user has none to present -- "approval from an
    # already-bound device when the user has one".
    waived_when_unavailable: frozenset[Factor] = frozenset()
    ttl_s: int = 600
    attempts_max: int = 5  # PSD2 RTS Art. 4(3)(b)
    # The paths each named device class may take, a subset of ``paths``; a class not named here
    # may take every path (less what it cannot present).
    classes: Mapping[DeviceClass, tuple[Path, ...]] = field(default_factory=dict)

    def paths_for(self, device_class: DeviceClass | None) -> tuple[Path, ...]:
        """The paths open to a device of ``device_class``; None (a device that is not bound,
        whose class nobody has stated) may take every path."""
        if device_class is None:
            return self.paths
        cannot = CANNOT_PRESENT[device_class]
        allowed = self.classes.get(device_class, self.paths)
        return tuple(p for p in allowed if not cannot & set(p))


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    version: str
    points: Mapping[AccessPoint, PointPolicy]
    recent_auth_s: int = 300
    require_dpop: bool = True
    sms_alone_allowed: bool = False
    new_device_reduced_s: int = 24 * 3600
    # Per-payment ceiling for a device in its first hours, by currency, in minor units.
    new_device_payment_max_minor: Mapping[str, int] = field(default_factory=dict)
    dpop_iat_window_s: int = 60
    code_ttl_s: int = 600  # NIST 800-63B §5.1.3.2: out-of-band codes expire within 10 minutes
    code_sends_max: int = 3  # per flow
    code_sends_per_hour_max: int = 10  # per address or user, across flows (no mail bombing)
    approval_requests_max: int = 3  # per user and hour, against push bombing
    login_attempts_per_ip_max: int = 60  # per minute, shared by all processes
    login_attempts_per_account_max: int = 20  # per minute
    pin_digits_min: int = PIN_DIGITS_MIN_DEFAULT  # device PINs (domain.pins)
    # Skip-and-return onboarding: reminders and when a skipped step becomes required.
    onboarding: OnboardingPolicy = field(default_factory=OnboardingPolicy)
    # After a recovery: the cooling-off period and its payment ceiling; the alerts' links.
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)

    def point(self, point: AccessPoint) -> PointPolicy:
        return self.points[point]


def plan_paths(
    policy: AuthPolicy,
    point: AccessPoint,
    available: frozenset[Factor],
    device_class: DeviceClass | None = None,
) -> tuple[Path, ...]:
    """The paths this user can take from a device of ``device_class``: only the paths the class
    may take; waivable factors the user lacks are dropped, paths needing any other factor the
    user lacks are left out, and -- unless the policy allows it -- a path whose only possession
    proof is SMS is offered only to users who hold another second factor."""
    rule = policy.point(point)
    # Email is a confirmation channel, not an out-of-band authenticator (NIST 800-63B), so it
    # does not count as the user's "other" second factor.
    second = {f for f in available if CATEGORIES[f] - {FactorCategory.KNOWLEDGE}}
    sms_may_stand = policy.sms_alone_allowed or bool(second - RESTRICTED - {Factor.EMAIL_OTP})
    out: list[Path] = []
    for path in rule.paths_for(device_class):
        kept = tuple(f for f in path if f in available or f not in rule.waived_when_unavailable)
        if not kept or any(f not in available for f in kept):
            continue
        possession = [f for f in kept if FactorCategory.POSSESSION in CATEGORIES[f]]
        if possession and all(f in RESTRICTED for f in possession) and not sms_may_stand:
            continue
        if kept not in out:
            out.append(kept)
    return tuple(out)


def class_table(policy: AuthPolicy) -> dict[AccessPoint, dict[DeviceClass, tuple[Path, ...]]]:
    """Every access point, every device class: the paths the policy opens to it (before what
    one user holds narrows them further). README.md's fallback table is this table."""
    return {
        point: {c: policy.point(point).paths_for(c) for c in STRONGEST_FIRST}
        for point in AccessPoint
    }


# Possession a thief of a password (or of a mailbox) does not hold: when the risk engine's own
# choice is out of the user's reach, a challenge falls back to a path with one of these.
_STRONG_FALLBACK = frozenset({Factor.PASSKEY, Factor.BOUND_DEVICE_APPROVAL, Factor.TOTP})


def risk_paths(
    paths: tuple[Path, ...],
    done: Path,
    required: tuple[Factor, ...],
    available: frozenset[Factor],
) -> tuple[Path, ...]:
    """The paths a risk challenge leaves: those of ``paths`` that continue ``done`` and present
    every ``required`` factor; failing that, ``done`` followed by the required factors, when the
    user holds them all; failing that, the paths that present a possession factor a thief of
    the first factor would lack. Empty: nothing the user holds answers the challenge."""
    want = set(required)
    ahead = tuple(
        p for p in paths if p[: len(done)] == done and len(p) > len(done) and want <= set(p)
    )
    if ahead:
        return ahead
    extra = tuple(f for f in required if f not in done)
    if extra and want <= available:
        return ((*done, *extra),)
    return tuple(
        p
        for p in paths
        if p[: len(done)] == done
        and len(p) > len(done)
        and set(p[len(done) :]) & _STRONG_FALLBACK
        and set(p) <= available
    )


# ---- parsing the policy file ------------------------------------------------------------------

_MADE_AT_REGISTRATION = frozenset({Factor.PASSKEY, Factor.PIN})
_TOP = {
    "version",
    "points",
    "recent_auth_s",
    "require_dpop",
    "sms_alone_allowed",
    "new_device_reduced_s",
    "new_device_payment_max_minor",
    "dpop_iat_window_s",
    "code_ttl_s",
    "code_sends_max",
    "code_sends_per_hour_max",
    "approval_requests_max",
    "login_attempts_per_ip_max",
    "login_attempts_per_account_max",
    "pin_digits_min",
    "onboarding",
    "recovery",
}
_POINT = {
    "paths",
    "waived_when_unavailable",
    "ttl_s",
    "attempts_max",
    "single_factor_allowed",
    "classes",
}


def _int(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigurationError(f"policy: {key} must be an integer from {low} to {high}")
    return value


def _factors(raw: object, where: str) -> tuple[Factor, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"policy: {where} must be a non-empty list of factors")
    try:
        factors = tuple(Factor(x) for x in raw)
    except ValueError as exc:
        raise ConfigurationError(f"policy: {where}: {exc}") from None
    if len(set(factors)) != len(factors):
        raise ConfigurationError(f"policy: {where} names a factor twice")
    return factors


def _point(name: AccessPoint, data: object) -> PointPolicy:
    if not isinstance(data, dict):
        raise ConfigurationError(f"policy: points.{name} must be a table")
    if unknown := set(data) - _POINT:
        raise ConfigurationError(f"policy: points.{name} has unknown keys {sorted(unknown)}")
    raw_paths = data.get("paths")
    if not isinstance(raw_paths, list) or not raw_paths:
        raise ConfigurationError(f"policy: points.{name}.paths must list at least one path")
    paths = tuple(_factors(p, f"points.{name}.paths[{i}]") for i, p in enumerate(raw_paths))
    waived = frozenset(
        _factors(data["waived_when_unavailable"], f"points.{name}.waived_when_unavailable")
        if "waived_when_unavailable" in data
        else ()
    )
    single_ok = data.get("single_factor_allowed", False)
    if not isinstance(single_ok, bool):
        raise ConfigurationError(f"policy: points.{name}.single_factor_allowed is true or false")
    if single_ok and name in NEVER_SINGLE:
        raise ConfigurationError(f"policy: points.{name} can never allow a single factor")
    for i, path in enumerate(paths):
        minimal = [f for f in path if f not in waived]
        if name is not AccessPoint.RECOVERY and not single_ok and not is_strong(minimal):
            raise ConfigurationError(
                f"policy: points.{name}.paths[{i}] {[f.value for f in path]} is not strong "
                "authentication: it needs two categories (knowledge, possession, inherence)"
            )
        if name is AccessPoint.RECOVERY and len(minimal) < 2:
            raise ConfigurationError(f"policy: points.recovery.paths[{i}] has one factor")
        if (
            name is AccessPoint.RECOVERY
            and Factor.SECURITY_QUESTION in path
            and Factor.PASSKEY not in minimal
        ):
            # Knowledge-based answers are weak (NIST 800-63B does not accept them; ASVS 2.5.2
            # forbids them alone): they recover an account only beside a passkey with user
            # verification on a bound device.
            raise ConfigurationError(
                f"policy: points.recovery.paths[{i}] pairs security_question with something "
                "other than a passkey"
            )
        # A registered device holds what its registration made: a passkey, or a PIN.
        if name is AccessPoint.DEVICE_REGISTRATION and len(_MADE_AT_REGISTRATION & set(path)) != 1:
            raise ConfigurationError(
                f"policy: points.device_registration.paths[{i}] must make the device's passkey "
                "or set its PIN: exactly one of passkey, pin"
            )
    return PointPolicy(
        paths=paths,
        waived_when_unavailable=waived,
        ttl_s=_int(data, "ttl_s", 600, 60, 3600),
        attempts_max=_int(data, "attempts_max", 5, 1, 5),
        classes=_classes(name, data.get("classes", {}), paths),
    )


def _classes(
    name: AccessPoint, raw: object, paths: tuple[Path, ...]
) -> dict[DeviceClass, tuple[Path, ...]]:
    """``points.NAME.classes``: per device class, the point's paths that class may take."""
    where = f"points.{name}.classes"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"policy: {where} must be a table of device classes")
    out: dict[DeviceClass, tuple[Path, ...]] = {}
    for key, listed in raw.items():
        try:
            device_class = DeviceClass(key)
        except ValueError:
            raise ConfigurationError(
                f"policy: {where} names an unknown device class {key!r} "
                f"(known: {[c.value for c in STRONGEST_FIRST]})"
            ) from None
        if not isinstance(listed, list):
            raise ConfigurationError(f"policy: {where}.{key} must be a list of paths")
        chosen = tuple(_factors(p, f"{where}.{key}[{i}]") for i, p in enumerate(listed))
        for i, path in enumerate(chosen):
            # A class narrows: it never adds a path the point does not have.
            if path not in paths:
                raise ConfigurationError(
                    f"policy: {where}.{key}[{i}] {[f.value for f in path]} is not one of "
                    f"points.{name}.paths"
                )
            if cannot := CANNOT_PRESENT[device_class] & set(path):
                raise ConfigurationError(
                    f"policy: {where}.{key}[{i}] asks for {sorted(f.value for f in cannot)}, "
                    f"which a {key} device cannot present"
                )
        out[device_class] = chosen
    return out


def _possession(path: Path) -> set[Factor]:
    return {f for f in path if FactorCategory.POSSESSION in CATEGORIES[f]}


def _check_classes(points: Mapping[AccessPoint, PointPolicy], *, sms_alone: bool) -> None:
    """What no device class may be given, however the file is written."""
    for point, rule in points.items():
        # Registration decides what the device is made into (a passkey or a PIN), so its
        # classes differ rather than nest; everywhere else a weaker class gets no more.
        if point not in (AccessPoint.DEVICE_REGISTRATION, AccessPoint.SIGNUP):
            for stronger, weaker in zip(STRONGEST_FIRST, STRONGEST_FIRST[1:], strict=False):
                if extra := set(rule.paths_for(weaker)) - set(rule.paths_for(stronger)):
                    raise ConfigurationError(
                        f"policy: points.{point}.classes gives {weaker} "
                        f"{sorted([f.value for f in p] for p in extra)}, which {stronger} "
                        "does not get: a weaker device class never gets more"
                    )
        if sms_alone:
            continue
        for device_class in STRONGEST_FIRST:
            open_paths = rule.paths_for(device_class)
            # NIST 800-63B §5.1.3.3: SMS is a restricted channel. Unless the policy allows it,
            # it is never the only second factor a class of device can pass a point with
            # (email does not count as the other one: it is a confirmation channel).
            sms_only = any(_possession(p) and _possession(p) <= RESTRICTED for p in open_paths)
            other = any(_possession(p) - RESTRICTED - {Factor.EMAIL_OTP} for p in open_paths)
            if sms_only and not other:
                raise ConfigurationError(
                    f"policy: points.{point} leaves a {device_class} device only SMS as its "
                    "second factor (set sms_alone_allowed to allow it)"
                )


def parse_policy(data: Mapping[str, Any]) -> AuthPolicy:
    """Check a policy document; every mistake is a ``ConfigurationError`` naming the key."""
    if unknown := set(data) - _TOP:
        raise ConfigurationError(f"policy: unknown keys {sorted(unknown)}")
    version = data.get("version")
    if not isinstance(version, str) or not 1 <= len(version) <= 40:
        raise ConfigurationError("policy: version must be a short string")
    raw_points = data.get("points")
    if not isinstance(raw_points, dict):
        raise ConfigurationError("policy: [points] is missing")
    try:
        points = {AccessPoint(k): _point(AccessPoint(k), v) for k, v in raw_points.items()}
    except ValueError as exc:
        raise ConfigurationError(f"policy: unknown access point: {exc}") from None
    if missing := set(AccessPoint) - set(points):
        raise ConfigurationError(f"policy: points {sorted(missing)} are missing")
    ceilings = data.get("new_device_payment_max_minor", {})
    if not isinstance(ceilings, dict) or not all(
        isinstance(k, str)
        and len(k) == 3
        and isinstance(v, int)
        and not isinstance(v, bool)
        and v >= 0
        for k, v in ceilings.items()
    ):
        raise ConfigurationError(
            "policy: new_device_payment_max_minor maps currency codes to minor units"
        )
    require_dpop = data.get("require_dpop", True)
    sms_alone = data.get("sms_alone_allowed", False)
    if not isinstance(require_dpop, bool) or not isinstance(sms_alone, bool):
        raise ConfigurationError("policy: require_dpop and sms_alone_allowed are true or false")
    _check_classes(points, sms_alone=sms_alone)
    return AuthPolicy(
        version=version,
        points=points,
        recent_auth_s=_int(data, "recent_auth_s", 300, 30, 3600),
        require_dpop=require_dpop,
        sms_alone_allowed=sms_alone,
        new_device_reduced_s=_int(data, "new_device_reduced_s", 86400, 0, 30 * 86400),
        new_device_payment_max_minor=dict(ceilings),
        dpop_iat_window_s=_int(data, "dpop_iat_window_s", 60, 5, 300),
        code_ttl_s=_int(data, "code_ttl_s", 600, 60, 600),
        code_sends_max=_int(data, "code_sends_max", 3, 1, 10),
        code_sends_per_hour_max=_int(data, "code_sends_per_hour_max", 10, 1, 100),
        approval_requests_max=_int(data, "approval_requests_max", 3, 1, 20),
        login_attempts_per_ip_max=_int(data, "login_attempts_per_ip_max", 60, 1, 100_000),
        login_attempts_per_account_max=_int(data, "login_attempts_per_account_max", 20, 1, 1000),
        pin_digits_min=_int(
            data,
            "pin_digits_min",
            PIN_DIGITS_MIN_DEFAULT,
            PIN_DIGITS_MIN_FLOOR,
            bounds.PIN_LENGTH_MAX,
        ),
        onboarding=parse_onboarding(data.get("onboarding")),
        recovery=parse_recovery(data.get("recovery")),
    )
