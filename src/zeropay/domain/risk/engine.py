"""The risk engine: one decision per event, then learning from what happened.

``decide`` reads the event and the records it touches and returns an action (allow, challenge,
review, block), a score 0-100, the reasons (the signals that fired, heaviest first) and, for a
challenge, the factors to ask for. It never sees what the actor holds. ``learn`` runs after the
outcome is known: it records every attempt (velocity, failures, devices and IPs seen), and only
an event that *passed* teaches the engine anything about the user's habits or makes a device
trusted -- a failed challenge, a review or a block grants nothing.

The factors of a challenge are chosen so that an attacker in that situation would not hold them:
on the user's own trusted device the passkey (the thief of a password has no fingerprint on that
phone); on any other device an approval from a device that was bound before; and where the user
has no trusted device at all, a payment is held for an operator instead of asking for something
a phished mailbox would give.

No clock is read here: time is the event's ``at_s``. The same code runs live and in replay.
"""

from __future__ import annotations

import math
import time
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from zeropay.domain.factors import Factor
from zeropay.domain.risk.config import RiskConfig
from zeropay.domain.risk.events import EventType, RiskEvent
from zeropay.domain.risk.state import (
    AmountStats,
    RiskView,
    UserRisk,
    count_pairs_since,
    count_since,
    distinct_since,
)

EARTH_RADIUS_KM = 6371.0088
SECONDS_PER_HOUR = 3600


class Action(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    REVIEW = "review"
    BLOCK = "block"


_RANK = {Action.ALLOW: 0, Action.CHALLENGE: 1, Action.REVIEW: 2, Action.BLOCK: 3}


class RiskDecision(NamedTuple):
    action: Action
    score: int
    reasons: tuple[str, ...]
    factors: tuple[Factor, ...]
    config_version: str

    def as_dict(self, event_id: str) -> dict[str, object]:
        return {
            "id": event_id,
            "action": self.action.value,
            "score": self.score,
            "reasons": list(self.reasons),
            "factors": [f.value for f in self.factors],
            "config_version": self.config_version,
        }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def month_of(at_s: float) -> str:
    return _month_of_day(int(at_s // 86400))


@lru_cache(maxsize=64)
def _month_of_day(day: int) -> str:
    t = time.gmtime(day * 86400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}"


def hour_of(at_s: float) -> int:
    return int(at_s % 86400) // SECONDS_PER_HOUR


# ---- signals -------------------------------------------------------------------------------------


def _is_passkey_login(event: RiskEvent) -> bool:
    return (
        event.type is EventType.LOGIN
        and event.first_factor is Factor.PASSKEY
        and event.first_factor_ok is True
    )


def _signals(event: RiskEvent, view: RiskView, config: RiskConfig) -> list[str]:
    """The names of the signals that fire for this event."""
    fired: list[str] = []
    user, at = view.user, event.at_s
    limit, window = config.limits, config.windows
    if event.device is not None and event.device in config.blocked_devices:
        fired.append("blocked_device")
    if event.ip is not None and event.ip in config.blocked_ips:
        fired.append("blocked_ip")
    if event.payee is not None and event.payee in config.blocked_payees:
        fired.append("blocked_payee")
    _device_signals(event, view, config, fired)
    _place_and_time_signals(event, user, config, fired)
    ip_failures = count_since(view.ip.failures, at - window["short_s"]) if view.ip else 0
    if ip_failures >= limit["ip_failures_short_max"]:
        fired.append("velocity_ip")
    if count_since(user.failures, at - window["long_s"]) >= limit["user_failures_long_max"]:
        fired.append("failed_attempts")
    recovered_s = user.recovery_s if event.type is not EventType.RECOVERY else None
    if recovered_s is not None and at - recovered_s < window["recent_change_s"]:
        fired.append("recent_recovery")
    if event.type is EventType.PAYMENT:
        _payment_signals(event, view, config, fired)
    return fired


def _device_signals(event: RiskEvent, view: RiskView, config: RiskConfig, fired: list[str]) -> None:
    user, at = view.user, event.at_s
    seen = user.devices.get(event.device) if event.device is not None else None
    # A passkey only works on the device it is bound to; a registration is about a new device.
    if not _is_passkey_login(event) and event.type is not EventType.DEVICE_REGISTRATION:
        if seen is None and user.devices:  # on a user's very first event there is no baseline
            fired.append("new_device")
        elif seen is not None and not seen.trusted:
            fired.append("untrusted_device")
    if event.passkey_clone:
        fired.append("clone_signal")
    young = seen is not None and at - seen.first_s < config.windows["recent_change_s"]
    if (
        young
        and seen is not None
        and seen.trusted
        and user.trusted_devices(other_than=event.device)
    ):
        fired.append("recent_new_device")
    if view.device is not None:
        since = at - config.windows["shared_device_s"]
        others = sum(
            1 for u, last in view.device.users.items() if u != event.user and last >= since
        )
        if others + 1 > config.limits["device_users_max"]:
            fired.append("shared_device")


def _place_and_time_signals(
    event: RiskEvent, user: UserRisk, config: RiskConfig, fired: list[str]
) -> None:
    limit = config.limits
    if (
        event.lat is not None
        and event.lon is not None
        and user.last_s is not None
        and user.last_lat is not None
        and user.last_lon is not None
    ):
        km = distance_km(user.last_lat, user.last_lon, event.lat, event.lon)
        hours = max(event.at_s - user.last_s, 60.0) / SECONDS_PER_HOUR
        if km >= limit["travel_distance_min_km"] and km / hours > limit["impossible_speed_kmh"]:
            fired.append("impossible_travel")
    if event.country is not None and user.countries and event.country not in user.countries:
        fired.append("new_country")
    total = user.hours_total
    if total >= limit["hour_history_min"]:
        h = hour_of(event.at_s)
        around = user.hours[h - 1] + user.hours[h] + user.hours[(h + 1) % 24]
        if around / total < 3 * limit["hour_share_min"]:
            fired.append("unusual_hour")


def _payment_signals(
    event: RiskEvent, view: RiskView, config: RiskConfig, fired: list[str]
) -> None:
    user, at = view.user, event.at_s
    limit, window = config.limits, config.windows
    amount, currency = event.amount_minor, event.currency
    assert amount is not None and currency is not None  # parse_event: a payment has both
    stats = user.amounts.get(currency)
    if stats is not None and stats.count >= limit["amount_history_min"]:
        excess = math.log(amount) - stats.mean
        z = excess / stats.stdev if stats.stdev > 0 else math.inf
        if math.exp(excess) > limit["amount_ratio_max"] and z > limit["amount_z_max"]:
            fired.append("unusual_amount")
    if event.payee is not None and user.payees and event.payee not in user.payees:
        fired.append("new_payee")
    if count_since(user.payments, at - window["short_s"]) + 1 > limit["user_payments_short_max"]:
        fired.append("velocity_user")
    if view.device is not None and _device_velocity(view, event, config):
        fired.append("velocity_device")
    if view.payee is not None:
        payers = distinct_since(view.payee.payers, at - window["short_s"]) | {event.user}
        if len(payers) > limit["payee_payers_short_max"]:
            fired.append("velocity_payee")
    if event.mcc is not None and event.mcc in config.cashout_mcc:
        fired.append("cashout_mcc")
        cashouts = count_since(user.cashouts, at - window["long_s"]) + 1
        if cashouts >= limit["cashout_payments_long_max"]:
            fired.append("cashout_velocity")
    cap = config.monthly_cap_minor.get(currency)
    if cap is not None:
        spent = user.month_spent_minor.get(currency, 0) if user.month == month_of(at) else 0
        if spent + amount >= cap * limit["monthly_cap_share"]:
            fired.append("monthly_cap")


def _device_velocity(view: RiskView, event: RiskEvent, config: RiskConfig) -> bool:
    assert view.device is not None
    at, window, limit = event.at_s, config.windows, config.limits
    short = count_pairs_since(view.device.payments, at - window["short_s"]) + 1
    payees = distinct_since(view.device.payments, at - window["long_s"]) | {event.payee or ""}
    return (
        short > limit["device_payments_short_max"] or len(payees) > limit["device_payees_long_max"]
    )


# ---- the decision -------------------------------------------------------------------------------


def _level(score: int, config: RiskConfig) -> Action:
    t = config.thresholds
    if score >= t.block:
        return Action.BLOCK
    if score >= t.review:
        return Action.REVIEW
    if score >= t.challenge:
        return Action.CHALLENGE
    return Action.ALLOW


def _at_least(action: Action, floor: Action) -> Action:
    return action if _RANK[action] >= _RANK[floor] else floor


def _factors(event: RiskEvent, user: UserRisk) -> tuple[Factor, ...]:
    """What to ask for, so that someone holding only what an attacker steals fails."""
    seen = user.devices.get(event.device) if event.device is not None else None
    here = (seen is not None and seen.trusted) or _is_passkey_login(event)
    elsewhere = user.trusted_devices(other_than=event.device) > 0
    match event.type:
        case EventType.DEVICE_REGISTRATION:
            base = (Factor.EMAIL_OTP, Factor.PASSKEY)
            return (*base, Factor.BOUND_DEVICE_APPROVAL) if elsewhere else base
        case EventType.RECOVERY:
            if here:
                return (Factor.SECURITY_QUESTION, Factor.PASSKEY)
            if elsewhere:
                return (Factor.EMAIL_OTP, Factor.BOUND_DEVICE_APPROVAL)
            return (Factor.RECOVERY_CODE, Factor.EMAIL_OTP)
        case EventType.PAYMENT:
            if here:
                return (Factor.PASSKEY,)
            return (Factor.BOUND_DEVICE_APPROVAL,) if elsewhere else ()
        case EventType.LOGIN:
            if here and not _is_passkey_login(event):
                return (Factor.PASSKEY,)
            if elsewhere:
                return (Factor.BOUND_DEVICE_APPROVAL,)
            return (Factor.EMAIL_OTP,)
    return ()  # pragma: no cover - every event type is matched above


def decide(event: RiskEvent, view: RiskView, config: RiskConfig) -> RiskDecision:
    """The decision for ``event``; reads ``view``, changes nothing."""
    fired = _signals(event, view, config)
    weights = config.weights
    score = min(100, sum(weights[s] for s in fired))
    reasons = sorted((s for s in fired if weights[s] > 0), key=lambda s: (-weights[s], s))
    action = _level(score, config)
    if event.type is EventType.LOGIN:
        if event.first_factor_ok is False:
            return RiskDecision(
                Action.BLOCK, score, ("first_factor_failed", *reasons), (), config.version
            )
        if not _is_passkey_login(event):
            # A password alone never signs in (PSD2 RTS Art. 4: two categories).
            if action is Action.ALLOW:
                reasons.append("second_factor_required")
            action = _at_least(action, Action.CHALLENGE)
    elif event.type in (EventType.DEVICE_REGISTRATION, EventType.RECOVERY):
        if action is Action.ALLOW:
            reasons.append(f"{event.type.value}_needs_strong_factors")
        action = _at_least(action, Action.CHALLENGE)
    if action is Action.REVIEW and event.type in (EventType.LOGIN, EventType.DEVICE_REGISTRATION):
        action = Action.BLOCK  # nothing to hold: a sign-in cannot wait for an operator
    factors: tuple[Factor, ...] = ()
    if action is Action.CHALLENGE:
        factors = _factors(event, view.user)
        if not factors:
            action = Action.REVIEW
            reasons.append("no_factor_an_attacker_lacks")
    return RiskDecision(action, score, tuple(reasons), factors, config.version)


def passed(decision: RiskDecision, holds: frozenset[Factor]) -> bool:
    """Whether the actor got through: allowed, or holding every factor the challenge named."""
    if decision.action is Action.ALLOW:
        return True
    return decision.action is Action.CHALLENGE and set(decision.factors) <= holds


# ---- learning ------------------------------------------------------------------------------------


def learn(
    event: RiskEvent,
    decision: RiskDecision,
    *,
    got_through: bool,
    view: RiskView,
    config: RiskConfig,
) -> None:
    """Update the records after the outcome: ``learn_attempt`` then ``learn_outcome``. A replay
    knows both at once; the live path learns the attempt with the decision and the outcome
    when the challenge it asked for ends."""
    learn_attempt(event, view=view, config=config)
    learn_outcome(event, decision, got_through=got_through, view=view, config=config)


def learn_attempt(event: RiskEvent, *, view: RiskView, config: RiskConfig) -> None:
    """What every attempt teaches, whatever comes of it: velocity, failed first factors, who
    was seen on which device."""
    user, at = view.user, event.at_s
    if event.device is not None:
        user.see_device(event.device, at)
    if view.device is not None:
        view.device.see_user(event.user, at)
    if event.type is EventType.LOGIN and event.first_factor_ok is False:
        _failed(view, at)
    if event.type is EventType.RECOVERY:
        user.recovery_s = at
    if event.type is EventType.PAYMENT:
        user.payments.append(at)
        if view.device is not None:
            view.device.payments.append((at, event.payee or ""))
        if view.payee is not None:
            view.payee.payers.append((at, event.user))


def _failed(view: RiskView, at: float) -> None:
    view.user.failures.append(at)
    if view.ip is not None:
        view.ip.failures.append(at)


def learn_outcome(
    event: RiskEvent,
    decision: RiskDecision,
    *,
    got_through: bool,
    view: RiskView,
    config: RiskConfig,
) -> None:
    """Only an event that got through changes what the engine trusts or expects; a failed
    challenge counts as a failure, and a review or a block teaches nothing more."""
    user, at = view.user, event.at_s
    if decision.action is Action.CHALLENGE and not got_through:
        _failed(view, at)
    if not got_through:
        return
    seen = user.devices.get(event.device) if event.device is not None else None
    if seen is not None:
        seen.trusted, seen.trusted_s = True, at
        strong = {Factor.PASSKEY, Factor.BOUND_DEVICE_APPROVAL}
        if _is_passkey_login(event) or strong & set(decision.factors):
            seen.strong = True
    if event.type is EventType.DEVICE_REGISTRATION:
        user.registration_s = at
    if event.lat is not None and event.lon is not None:
        user.last_lat, user.last_lon = event.lat, event.lon
    user.last_s = at
    if event.country is not None:
        user.countries.add(event.country)
    user.hours[hour_of(at)] += 1
    user.hours_total += 1
    if event.type is EventType.PAYMENT:
        _learn_payment(event, user, cashout=event.mcc in config.cashout_mcc)


def _learn_payment(event: RiskEvent, user: UserRisk, *, cashout: bool) -> None:
    amount, currency = event.amount_minor, event.currency
    assert amount is not None and currency is not None
    stats = user.amounts.get(currency)
    if stats is None:
        stats = user.amounts[currency] = AmountStats()
    stats.add(amount)
    if event.payee is not None:
        user.count_payee(event.payee)
    month = month_of(event.at_s)
    if user.month != month:
        user.month, user.month_spent_minor = month, {}
    user.month_spent_minor[currency] = user.month_spent_minor.get(currency, 0) + amount
    if cashout:
        user.cashouts.append(event.at_s)


def device_trust(user: UserRisk, device: str, now_s: float, config: RiskConfig) -> int:
    """0-100: how far this device is trusted for this user. It rises with how it authenticated
    (a passkey or an approval from another bound device counts more) and with age, and halves
    with every ``device_trust_half_life_s`` since a check last passed on it."""
    seen = user.devices.get(device)
    if seen is None or not seen.trusted or seen.trusted_s is None:
        return 0
    base = 60.0 if seen.strong else 40.0
    age_days = max(0.0, now_s - seen.first_s) / 86400
    base += min(40.0, age_days * 4 / 3)  # full after 30 days
    idle = max(0.0, now_s - seen.trusted_s)
    decay = 0.5 ** (idle / config.limits["device_trust_half_life_s"])
    return min(100, int(round(base * decay)))
