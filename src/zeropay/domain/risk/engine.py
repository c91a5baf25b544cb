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

A user may withhold the ``location`` and ``behaviour`` signal groups (``domain.consents`` says
which signals each holds): the engine then neither scores nor learns them for that user, adds the
``[withheld]`` points of the rules instead -- enough to ask for a factor more often, never enough
on their own for a review or a block -- and names each group in the reasons
(``signals_withheld:location``). The security signals stay: they protect the account.

No clock is read here: time is the event's ``at_s``. The same code runs live and in replay.
"""

from __future__ import annotations

import math
import time
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from zeropay.domain.consents import SignalGroup, withheld_reason
from zeropay.domain.factors import Factor
from zeropay.domain.risk.config import RiskConfig, Rules
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


class RiskDecision(NamedTuple):
    action: Action
    score: int
    reasons: tuple[str, ...]
    factors: tuple[Factor, ...]
    config_version: str

    def as_dict(self, event_id: str) -> dict[str, object]:
        return {
            "id": event_id,
            "action": _ACTION_VALUES[self.action],
            "score": self.score,
            "reasons": list(self.reasons),
            "factors": [_FACTOR_VALUES[f] for f in self.factors] if self.factors else [],
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
#
# One event reads every rule, so the rules come from ``config.rules`` (plain attributes, made once)
# and the enum members the engine compares with are module names. A window is only walked when it
# holds enough entries for its limit to be reached at all.

_LOGIN, _PAYMENT = EventType.LOGIN, EventType.PAYMENT
_REGISTRATION, _RECOVERY = EventType.DEVICE_REGISTRATION, EventType.RECOVERY
_ALLOW, _CHALLENGE, _REVIEW, _BLOCK = Action.ALLOW, Action.CHALLENGE, Action.REVIEW, Action.BLOCK
_PASSKEY = Factor.PASSKEY
_LOCATION, _BEHAVIOUR = SignalGroup.LOCATION, SignalGroup.BEHAVIOUR
_WITHHELD_REASONS = {g: withheld_reason(g) for g in SignalGroup}
_STRONG = frozenset({Factor.PASSKEY, Factor.BOUND_DEVICE_APPROVAL})
_ACTION_VALUES = {a: a.value for a in Action}
_FACTOR_VALUES = {f: f.value for f in Factor}
# Two places closer than this in latitude plus longitude are under 450 km apart (the haversine is
# at most the path along a meridian and then a parallel), so no trip between them is long enough
# to be impossible travel while travel_distance_min_km is above that.
_NEAR_DEGREES = 4.0
_NEAR_KM = EARTH_RADIUS_KM * math.radians(_NEAR_DEGREES)


def _is_passkey_login(event: RiskEvent) -> bool:
    return event.type is _LOGIN and event.first_factor is _PASSKEY and event.first_factor_ok is True


def _signals(event: RiskEvent, view: RiskView, rules: Rules, passkey_login: bool) -> list[str]:
    """The names of the signals that fire for this event."""
    fired: list[str] = []
    user, at = view.user, event.at_s
    if rules.any_blocked:
        if event.device is not None and event.device in rules.blocked_devices:
            fired.append("blocked_device")
        if event.ip is not None and event.ip in rules.blocked_ips:
            fired.append("blocked_ip")
        if event.payee is not None and event.payee in rules.blocked_payees:
            fired.append("blocked_payee")
    _device_signals(event, view, rules, fired, passkey_login)
    location = behaviour = True  # which groups the user lets the engine use
    if event.withheld:
        location, behaviour = _LOCATION not in event.withheld, _BEHAVIOUR not in event.withheld
    _place_and_time_signals(event, user, rules, fired, location=location, behaviour=behaviour)
    if view.ip is not None:
        limit = rules.ip_failures_short_max
        failures = view.ip.failures
        if len(failures) >= limit and count_since(failures, at - rules.short_s) >= limit:
            fired.append("velocity_ip")
    limit = rules.user_failures_long_max
    if len(user.failures) >= limit and count_since(user.failures, at - rules.long_s) >= limit:
        fired.append("failed_attempts")
    recovered_s = user.recovery_s if event.type is not _RECOVERY else None
    if recovered_s is not None and at - recovered_s < rules.recent_change_s:
        fired.append("recent_recovery")
    if event.type is _PAYMENT:
        _payment_signals(event, view, rules, fired, behaviour=behaviour)
    return fired


def _device_signals(
    event: RiskEvent, view: RiskView, rules: Rules, fired: list[str], passkey_login: bool
) -> None:
    user, at, device = view.user, event.at_s, event.device
    seen = user.devices.get(device) if device is not None else None
    # A passkey only works on the device it is bound to; a registration is about a new device.
    if not passkey_login and event.type is not _REGISTRATION:
        if seen is None:
            if user.devices:  # on a user's very first event there is no baseline
                fired.append("new_device")
        elif not seen.trusted:
            fired.append("untrusted_device")
    if event.passkey_clone:
        fired.append("clone_signal")
    if seen is not None and seen.trusted and at - seen.first_s < rules.recent_change_s:
        for other, other_seen in user.devices.items():  # user.trusted_devices(...) > 0, sooner
            if other_seen.trusted and other != device:
                fired.append("recent_new_device")
                break
    if view.device is not None:
        users = view.device.users
        # Only users other than this one count, and there must be enough of them to pass the limit.
        if len(users) - (event.user in users) + 1 > rules.device_users_max:
            since = at - rules.shared_device_s
            others = sum(1 for u, last in users.items() if u != event.user and last >= since)
            if others + 1 > rules.device_users_max:
                fired.append("shared_device")


def _place_and_time_signals(
    event: RiskEvent,
    user: UserRisk,
    rules: Rules,
    fired: list[str],
    *,
    location: bool,
    behaviour: bool,
) -> None:
    """Location signals (travel, country) and the behaviour signal of the hour of day, each
    only with the user's consent."""
    lat, lon, last_lat, last_lon = event.lat, event.lon, user.last_lat, user.last_lon
    if (
        location
        and lat is not None
        and lon is not None
        and user.last_s is not None
        and last_lat is not None
        and last_lon is not None
        and (
            abs(lat - last_lat) + abs(lon - last_lon) >= _NEAR_DEGREES
            or rules.travel_distance_min_km <= _NEAR_KM
        )
    ):
        km = distance_km(last_lat, last_lon, lat, lon)
        hours = max(event.at_s - user.last_s, 60.0) / SECONDS_PER_HOUR
        if km >= rules.travel_distance_min_km and km / hours > rules.impossible_speed_kmh:
            fired.append("impossible_travel")
    if (
        location
        and event.country is not None
        and user.countries
        and event.country not in user.countries
    ):
        fired.append("new_country")
    total = user.hours_total
    if behaviour and total >= rules.hour_history_min:
        # hour_of(event.at_s), spelt out: this and learn_outcome run for every event
        hours_seen, h = user.hours, int(event.at_s % 86400) // SECONDS_PER_HOUR
        around = hours_seen[h - 1] + hours_seen[h] + hours_seen[(h + 1) % 24]
        if around / total < rules.hour_share_of_three_min:
            fired.append("unusual_hour")


def _payment_signals(
    event: RiskEvent, view: RiskView, rules: Rules, fired: list[str], *, behaviour: bool
) -> None:
    user, at = view.user, event.at_s
    amount, currency = event.amount_minor, event.currency
    assert amount is not None and currency is not None  # parse_event: a payment has both
    stats = user.amounts.get(currency) if behaviour else None
    if stats is not None and stats.count >= rules.amount_history_min:
        excess = math.log(amount) - stats.mean
        stdev = stats.stdev
        z = excess / stdev if stdev > 0 else math.inf
        if math.exp(excess) > rules.amount_ratio_max and z > rules.amount_z_max:
            fired.append("unusual_amount")
    if behaviour and event.payee is not None and user.payees and event.payee not in user.payees:
        fired.append("new_payee")
    # A window is walked only when it holds enough entries, the latest of them recent enough.
    payments, limit, since = user.payments, rules.user_payments_short_max, at - rules.short_s
    if (
        len(payments) + 1 > limit
        and payments[-1] >= since
        and count_since(payments, since) + 1 > limit
    ):
        fired.append("velocity_user")
    if view.device is not None and _device_velocity(view, event, rules):
        fired.append("velocity_device")
    if view.payee is not None:
        payers, limit = view.payee.payers, rules.payee_payers_short_max
        # At most one payer per entry, and this event's: a short window cannot pass the limit.
        if len(payers) + 1 > limit and payers[-1][0] >= since:
            distinct = distinct_since(payers, since)
            distinct.add(event.user)
            if len(distinct) > limit:
                fired.append("velocity_payee")
    if event.mcc is not None and event.mcc in rules.cashout_mcc:
        fired.append("cashout_mcc")
        cashouts = count_since(user.cashouts, at - rules.long_s) + 1
        if cashouts >= rules.cashout_payments_long_max:
            fired.append("cashout_velocity")
    cap_at = rules.monthly_cap_at_minor.get(currency)
    if cap_at is not None:
        month = _month_of_day(int(at // 86400))  # month_of(at), one call fewer
        spent = user.month_spent_minor.get(currency, 0) if user.month == month else 0
        if spent + amount >= cap_at:
            fired.append("monthly_cap")


def _device_velocity(view: RiskView, event: RiskEvent, rules: Rules) -> bool:
    assert view.device is not None
    payments, at = view.device.payments, event.at_s
    # Both counts are at most the window's length plus this payment, and an entry older than the
    # long window (which holds the short one) counts for neither.
    if (
        len(payments) + 1 <= rules.device_payments_short_max
        and len(payments) + 1 <= rules.device_payees_long_max
    ) or payments[-1][0] < at - rules.long_s:
        return False
    if count_pairs_since(payments, at - rules.short_s) + 1 > rules.device_payments_short_max:
        return True
    payees = distinct_since(payments, at - rules.long_s)
    payees.add(event.payee or "")
    return len(payees) > rules.device_payees_long_max


# ---- the decision -------------------------------------------------------------------------------


def _level(score: int, rules: Rules) -> Action:
    if score >= rules.block:
        return _BLOCK
    if score >= rules.review:
        return _REVIEW
    if score >= rules.challenge:
        return _CHALLENGE
    return _ALLOW


def _compensated(score: int, withheld: frozenset[SignalGroup], rules: Rules) -> int:
    """The score with the points of each withheld group added: the engine knows less, so it may
    ask for a factor more often. The points lift the score at most to just below the review
    threshold, so withholding never holds or blocks anyone by itself (the user must not be
    locked out for opting out); a score the signals put higher is left as it is."""
    extra = 0
    for group in withheld:
        extra += rules.withheld[group]
    ceiling = rules.review - 1
    if not extra or score >= ceiling:
        return score
    return min(score + extra, ceiling)


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
    rules = config.rules
    kind = event.type
    passkey_login = _is_passkey_login(event)
    fired = _signals(event, view, rules, passkey_login)
    score, reasons = 0, fired  # the list is the reasons' from here on
    if fired:
        weights = rules.weights
        for signal in fired:
            score += weights[signal]
        score = min(100, score)
        # Heaviest first, then by name, so a signal of weight 0 comes last: it is no reason.
        if len(fired) > 1:
            reasons = sorted(fired, key=rules.rank.__getitem__)
        while reasons and not weights[reasons[-1]]:
            reasons.pop()
    signals_score = score
    if event.withheld:
        score = _compensated(score, event.withheld, rules)
        reasons.extend(_WITHHELD_REASONS[g] for g in SignalGroup if g in event.withheld)
    action = _level(score, rules) if score else _ALLOW  # a challenge threshold is at least 1
    if kind is _LOGIN and event.first_factor_ok is False:
        return RiskDecision(_BLOCK, score, ("first_factor_failed", *reasons), (), rules.version)
    # A password alone never signs in (PSD2 RTS Art. 4: two categories); a registration or a
    # recovery always asks for strong factors.
    if action is _ALLOW and kind is not _PAYMENT and not passkey_login:
        if kind is _LOGIN:
            reasons.append("second_factor_required")
        else:
            reasons.append(f"{kind.value}_needs_strong_factors")
        action = _CHALLENGE
    if action is _REVIEW and (kind is _LOGIN or kind is _REGISTRATION):
        action = _BLOCK  # nothing to hold: a sign-in cannot wait for an operator
    factors: tuple[Factor, ...] = ()
    if action is _CHALLENGE:
        factors = _factors(event, view.user)
        if not factors and signals_score < rules.challenge:
            # Only the withheld points asked, and the payer holds nothing to ask for: holding
            # the payment would lock them out for opting out.
            action = _ALLOW
        elif not factors:
            action = _REVIEW
            reasons.append("no_factor_an_attacker_lacks")
    return RiskDecision(action, score, tuple(reasons), factors, rules.version)


def passed(decision: RiskDecision, holds: frozenset[Factor]) -> bool:
    """Whether the actor got through: allowed, or holding every factor the challenge named."""
    if decision.action is _ALLOW:
        return True
    return decision.action is _CHALLENGE and holds.issuperset(decision.factors)


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
    user, at, kind = view.user, event.at_s, event.type
    if event.device is not None:
        seen = user.devices.get(event.device)
        if seen is not None:
            seen.last_s = at  # all that see_device does for a device it knows
        else:
            user.see_device(event.device, at)
    if view.device is not None:
        users = view.device.users
        if event.user in users:
            users[event.user] = at  # all that see_user does for a user it knows
        else:
            view.device.see_user(event.user, at)
    if kind is _LOGIN:
        if event.first_factor_ok is False:
            _failed(view, at)
    elif kind is _PAYMENT:
        user.payments.append(at)
        if view.device is not None:
            view.device.payments.append((at, event.payee or ""))
        if view.payee is not None:
            view.payee.payers.append((at, event.user))
    elif kind is _RECOVERY:
        user.recovery_s = at


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
    if not got_through:
        if decision.action is _CHALLENGE:
            _failed(view, event.at_s)
        return
    user, at = view.user, event.at_s
    location = behaviour = True  # what the user lets the engine learn about them
    if event.withheld:
        location, behaviour = _LOCATION not in event.withheld, _BEHAVIOUR not in event.withheld
    seen = user.devices.get(event.device) if event.device is not None else None
    if seen is not None:
        seen.trusted, seen.trusted_s = True, at
        if _is_passkey_login(event) or not _STRONG.isdisjoint(decision.factors):
            seen.strong = True
    if event.type is _REGISTRATION:
        user.registration_s = at
    if location and event.lat is not None and event.lon is not None:
        user.last_lat, user.last_lon = event.lat, event.lon
    user.last_s = at
    if location and event.country is not None:
        user.countries.add(event.country)
    if behaviour:
        user.hours[int(at % 86400) // SECONDS_PER_HOUR] += 1  # hour_of(at), spelt out
        user.hours_total += 1
    if event.type is _PAYMENT:
        _learn_payment(event, user, cashout=event.mcc in config.cashout_mcc, behaviour=behaviour)


def _learn_payment(event: RiskEvent, user: UserRisk, *, cashout: bool, behaviour: bool) -> None:
    amount, currency = event.amount_minor, event.currency
    assert amount is not None and currency is not None
    if behaviour:  # the user's typical amounts and usual payees are habits
        stats = user.amounts.get(currency)
        if stats is None:
            stats = user.amounts[currency] = AmountStats()
        stats.add(amount)
        if event.payee is not None:
            user.count_payee(event.payee)
    # The month's spending is the carrier's cap, and cash-outs are abuse: both stay.
    month = _month_of_day(int(event.at_s // 86400))  # month_of(event.at_s), one call fewer
    if user.month != month:
        user.month, user.month_spent_minor = month, {}
    user.month_spent_minor[currency] = user.month_spent_minor.get(currency, 0) + amount
    if cashout:
        user.cashouts.append(event.at_s)


def forget(user: UserRisk, groups: frozenset[SignalGroup]) -> None:
    """Drop what was learned about the user in ``groups`` before they withheld them: a place
    and the countries seen for ``location``; the hours, amounts and payees for ``behaviour``."""
    if _LOCATION in groups:
        user.last_lat = user.last_lon = None
        user.countries.clear()
    if _BEHAVIOUR in groups:
        user.hours = [0] * len(user.hours)
        user.hours_total = 0
        user.amounts.clear()
        user.payees.clear()


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
