"""The risk engine's rules, read from a versioned TOML document (``policies/risk.toml``).

Every weight, threshold, window and limit is named there; nothing here is tuned by hand in code.
A document missing a key or holding a value out of range is refused at start with a
``ConfigurationError`` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from zeropay.domain.consents import SignalGroup
from zeropay.domain.errors import ConfigurationError

SIGNALS = (
    "new_device",
    "untrusted_device",
    "impossible_travel",
    "new_country",
    "unusual_hour",
    "unusual_amount",
    "new_payee",
    "velocity_user",
    "velocity_device",
    "velocity_ip",
    "velocity_payee",
    "failed_attempts",
    "shared_device",
    "cashout_mcc",
    "cashout_velocity",
    "monthly_cap",
    "recent_recovery",
    "recent_new_device",
    "clone_signal",
    "blocked_device",
    "blocked_ip",
    "blocked_payee",
)
WINDOWS = ("short_s", "long_s", "recent_change_s", "shared_device_s")
INT_LIMITS = (
    "impossible_speed_kmh",
    "travel_distance_min_km",
    "user_payments_short_max",
    "device_payments_short_max",
    "device_payees_long_max",
    "ip_failures_short_max",
    "payee_payers_short_max",
    "user_failures_long_max",
    "device_users_max",
    "cashout_payments_long_max",
    "amount_history_min",
    "hour_history_min",
    "device_trust_half_life_s",
)
FLOAT_LIMITS = ("amount_ratio_max", "amount_z_max", "hour_share_min", "monthly_cap_share")
LIST_LENGTH_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    challenge: int
    review: int
    block: int


@dataclass(frozen=True)
class RiskConfig:
    version: str
    thresholds: Thresholds
    weights: Mapping[str, int]
    # Points a withheld signal group adds (``domain.consents``): fewer signals, more challenges.
    withheld: Mapping[SignalGroup, int]
    windows: Mapping[str, int]
    limits: Mapping[str, float]
    monthly_cap_minor: Mapping[str, int]
    cashout_mcc: frozenset[str]
    blocked_devices: frozenset[str]
    blocked_ips: frozenset[str]
    blocked_payees: frozenset[str]

    def limit(self, name: str) -> float:
        return self.limits[name]

    @cached_property
    def rules(self) -> Rules:
        """The same rules laid out for the engine's hot path, made once per config (a replay
        reads them for every event). The config is frozen, so they never go stale."""
        return Rules.of(self)


@dataclass(frozen=True, slots=True)
class Rules:
    """A ``RiskConfig`` flattened into attributes, with what the engine derives from it per
    event computed once: the order of reasons and each currency's monthly cap share."""

    version: str
    challenge: int
    review: int
    block: int
    weights: Mapping[str, int]
    rank: Mapping[str, int]  # a signal's place among reasons: heaviest first, then by name
    withheld: Mapping[SignalGroup, int]
    short_s: int
    long_s: int
    recent_change_s: int
    shared_device_s: int
    impossible_speed_kmh: float
    travel_distance_min_km: float
    user_payments_short_max: float
    device_payments_short_max: float
    device_payees_long_max: float
    ip_failures_short_max: float
    payee_payers_short_max: float
    user_failures_long_max: float
    device_users_max: float
    cashout_payments_long_max: float
    amount_history_min: float
    amount_ratio_max: float
    amount_z_max: float
    hour_history_min: float
    hour_share_of_three_min: float  # unusual_hour looks at three hours around the event's
    monthly_cap_at_minor: Mapping[str, float]  # a currency's cap times monthly_cap_share
    cashout_mcc: frozenset[str]
    blocked_devices: frozenset[str]
    blocked_ips: frozenset[str]
    blocked_payees: frozenset[str]
    any_blocked: bool  # whether any of the three lists holds anything

    @classmethod
    def of(cls, config: RiskConfig) -> Rules:
        weights, windows, limits = config.weights, config.windows, config.limits
        ordered = sorted(weights, key=lambda s: (-weights[s], s))
        return cls(
            version=config.version,
            challenge=config.thresholds.challenge,
            review=config.thresholds.review,
            block=config.thresholds.block,
            weights=dict(weights),
            rank={s: i for i, s in enumerate(ordered)},
            withheld=dict(config.withheld),
            short_s=windows["short_s"],
            long_s=windows["long_s"],
            recent_change_s=windows["recent_change_s"],
            shared_device_s=windows["shared_device_s"],
            impossible_speed_kmh=limits["impossible_speed_kmh"],
            travel_distance_min_km=limits["travel_distance_min_km"],
            user_payments_short_max=limits["user_payments_short_max"],
            device_payments_short_max=limits["device_payments_short_max"],
            device_payees_long_max=limits["device_payees_long_max"],
            ip_failures_short_max=limits["ip_failures_short_max"],
            payee_payers_short_max=limits["payee_payers_short_max"],
            user_failures_long_max=limits["user_failures_long_max"],
            device_users_max=limits["device_users_max"],
            cashout_payments_long_max=limits["cashout_payments_long_max"],
            amount_history_min=limits["amount_history_min"],
            amount_ratio_max=limits["amount_ratio_max"],
            amount_z_max=limits["amount_z_max"],
            hour_history_min=limits["hour_history_min"],
            hour_share_of_three_min=3 * limits["hour_share_min"],
            monthly_cap_at_minor={
                c: cap * limits["monthly_cap_share"] for c, cap in config.monthly_cap_minor.items()
            },
            cashout_mcc=config.cashout_mcc,
            blocked_devices=config.blocked_devices,
            blocked_ips=config.blocked_ips,
            blocked_payees=config.blocked_payees,
            any_blocked=bool(config.blocked_devices or config.blocked_ips or config.blocked_payees),
        )


def _table(doc: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = doc.get(key)
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"risk config: [{key}] is missing")
    return value


def _int(table: Mapping[str, object], where: str, key: str, low: int, high: int) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"risk config: {where}.{key} must be an integer {low}..{high}")
    return value


def _float(table: Mapping[str, object], where: str, key: str) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise ConfigurationError(f"risk config: {where}.{key} must be a positive number")
    return float(value)


def _strings(table: Mapping[str, object], where: str, key: str) -> frozenset[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or len(value) > LIST_LENGTH_MAX:
        raise ConfigurationError(f"risk config: {where}.{key} must be a list")
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigurationError(f"risk config: {where}.{key} holds only non-empty strings")
    return frozenset(value)


def parse_risk_config(doc: Mapping[str, object]) -> RiskConfig:
    version = doc.get("version")
    if not isinstance(version, str) or not 0 < len(version) <= 64:
        raise ConfigurationError("risk config: version must be a short string")
    th = _table(doc, "thresholds")
    thresholds = Thresholds(
        challenge=_int(th, "thresholds", "challenge", 1, 100),
        review=_int(th, "thresholds", "review", 1, 100),
        block=_int(th, "thresholds", "block", 1, 100),
    )
    if not thresholds.challenge <= thresholds.review <= thresholds.block:
        raise ConfigurationError("risk config: thresholds must be challenge <= review <= block")
    weights_table = _table(doc, "weights")
    unknown = set(weights_table) - set(SIGNALS)
    if unknown:
        raise ConfigurationError(f"risk config: unknown signal(s) {sorted(unknown)} in [weights]")
    weights = {s: _int(weights_table, "weights", s, 0, 100) for s in SIGNALS}
    withheld_table = _table(doc, "withheld")
    unknown = set(withheld_table) - {g.value for g in SignalGroup}
    if unknown:
        raise ConfigurationError(f"risk config: unknown group(s) {sorted(unknown)} in [withheld]")
    withheld = {g: _int(withheld_table, "withheld", g.value, 0, 100) for g in SignalGroup}
    windows_table = _table(doc, "windows")
    windows = {w: _int(windows_table, "windows", w, 1, 366 * 86400) for w in WINDOWS}
    if windows["short_s"] > windows["long_s"]:
        raise ConfigurationError("risk config: windows.short_s must not exceed windows.long_s")
    limits_table = _table(doc, "limits")
    limits: dict[str, float] = {k: _int(limits_table, "limits", k, 1, 10**9) for k in INT_LIMITS}
    limits.update({k: _float(limits_table, "limits", k) for k in FLOAT_LIMITS})
    caps_table = _table(doc, "monthly_cap_minor")
    caps = {c: _int(caps_table, "monthly_cap_minor", c, 1, 10**15) for c in caps_table}
    if any(len(c) != 3 or not c.isupper() for c in caps):
        raise ConfigurationError("risk config: [monthly_cap_minor] keys are ISO 4217 codes")
    lists = doc.get("lists", {})
    if not isinstance(lists, Mapping):
        raise ConfigurationError("risk config: [lists] must be a table")
    return RiskConfig(
        version=version,
        thresholds=thresholds,
        weights=weights,
        withheld=withheld,
        windows=windows,
        limits=limits,
        monthly_cap_minor=caps,
        cashout_mcc=_strings(_table(doc, "cashout"), "cashout", "mcc"),
        blocked_devices=_strings(lists, "lists", "blocked_devices"),
        blocked_ips=_strings(lists, "lists", "blocked_ips"),
        blocked_payees=_strings(lists, "lists", "blocked_payees"),
    )
