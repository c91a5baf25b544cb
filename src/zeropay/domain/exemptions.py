"""SCA exemptions (PSD2 RTS, Commission Delegated Regulation (EU) 2018/389): when a payment may
skip the prompt, and exactly when the next prompt is due.

Checked in this order, the first that applies wins, and every answer names what applied or why
SCA is required:

- the risk engine asked for more (a challenge overrides every exemption);
- trusted beneficiary (Art. 13): a payee the payer added or changed with SCA;
- recurring (Art. 14): the same amount to the same payee as a series whose first payment had SCA;
- low value (Art. 16): at most the per-payment ceiling, and, since the payer's last SCA, either
  at most ``cumulative`` in that currency or at most ``count`` payments -- the profile chooses
  which rule; counters are per payer, exact, and reset only by a successful SCA;
- transaction risk analysis (Art. 18): only while the platform's own fraud rate (by value,
  rolling 90 days) is under the reference rate of the amount's band, and never after two
  consecutive quarters above it (Art. 20).

Pure: counters, series and fraud rates come in as values; the caller stores them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction
from typing import Any

from zeropay.domain.errors import ConfigurationError, UnknownCurrency
from zeropay.domain.money import Money, currency


class Exemption(StrEnum):
    TRUSTED_BENEFICIARY = "trusted_beneficiary"  # Art. 13
    RECURRING = "recurring"  # Art. 14
    LOW_VALUE = "low_value"  # Art. 16
    TRANSACTION_RISK_ANALYSIS = "transaction_risk_analysis"  # Art. 18


class ScaReason(StrEnum):
    RISK = "risk_challenge"
    ABOVE_CEILING = "above_low_value_ceiling"
    CUMULATIVE_REACHED = "low_value_cumulative_reached"
    COUNT_REACHED = "low_value_count_reached"
    NO_CEILING = "no_low_value_ceiling_for_currency"
    TRA_OFF = "tra_not_available"
    LOW_VALUE_OFF = "low_value_not_in_profile"


class LowValueRule(StrEnum):
    CUMULATIVE = "cumulative"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class TraBand:
    """Art. 18: up to ``ceiling_minor`` (in the profile's reference currency) while the fraud
    rate is under ``reference_rate`` (a fraction: 0.0013 is 0.13 %)."""

    ceiling_minor: int
    reference_rate: float


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    low_value_rule: LowValueRule | None  # None: no low-value exemption
    ceiling_minor: Mapping[str, int]  # per payment, per currency
    cumulative_minor: Mapping[str, int]  # since the last SCA, per currency (cumulative rule)
    count_max: int  # payments since the last SCA (count rule)
    trusted_beneficiaries: bool = True
    recurring: bool = True
    tra_bands: tuple[TraBand, ...] = ()  # ascending ceilings; empty: no TRA
    tra_currency: str = "EUR"
    # Minor units of each currency worth one unit of ``tra_currency`` (KRW = 1400: KRW 1,400 is
    # taken as EUR 1). A currency without a rate cannot be placed in a band: no TRA for it.
    tra_minor_per_unit: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Counters:
    """The payer's exempt payments since the last successful SCA."""

    count: int = 0
    spent_minor: Mapping[str, int] = field(default_factory=dict)

    def after_exempt(self, amount: Money) -> Counters:
        code = amount.currency.code
        spent = dict(self.spent_minor)
        spent[code] = spent.get(code, 0) + amount.amount_minor
        return replace(self, count=self.count + 1, spent_minor=spent)


AFTER_SCA = Counters()  # a successful SCA resets both counters, in every currency


@dataclass(frozen=True, slots=True)
class Series:
    """A recurring series: its payee and amount, and whether its first payment had SCA."""

    payee: str
    amount: Money
    first_had_sca: bool


@dataclass(frozen=True, slots=True)
class FraudStanding:
    """The platform's own fraud, by value over the rolling 90 days, and how many consecutive
    quarters ended above the reference rate (Art. 20: two switch TRA off)."""

    rate_90d: float
    quarters_above: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    exemption: Exemption | None  # None: SCA is required
    sca_reasons: tuple[ScaReason, ...] = ()  # why SCA is required (empty when exempt)

    @property
    def exempt(self) -> bool:
        return self.exemption is not None


def decide(
    profile: Profile,
    amount: Money,
    payee: str,
    *,
    counters: Counters,
    trusted_payees: frozenset[str] = frozenset(),
    series: Series | None = None,
    risk_challenge: bool = False,
    fraud: FraudStanding | None = None,
    amount_in_tra_currency_minor: int | None = None,
) -> Decision:
    if risk_challenge:
        return Decision(None, (ScaReason.RISK,))
    if profile.trusted_beneficiaries and payee in trusted_payees:
        return Decision(Exemption.TRUSTED_BENEFICIARY)
    if (
        profile.recurring
        and series is not None
        and series.first_had_sca
        and series.payee == payee
        and series.amount == amount
    ):
        return Decision(Exemption.RECURRING)
    low = low_value(profile, amount, counters)
    if low is None:
        return Decision(Exemption.LOW_VALUE)
    if tra_allows(profile, fraud, amount_in_tra_currency_minor):
        return Decision(Exemption.TRANSACTION_RISK_ANALYSIS)
    return Decision(None, (low, ScaReason.TRA_OFF) if profile.tra_bands else (low,))


def low_value(profile: Profile, amount: Money, counters: Counters) -> ScaReason | None:
    """None when the payment is exempt as low value; else why not."""
    if profile.low_value_rule is None:
        return ScaReason.LOW_VALUE_OFF
    code = amount.currency.code
    ceiling = profile.ceiling_minor.get(code)
    if ceiling is None:
        return ScaReason.NO_CEILING
    if amount.amount_minor > ceiling:
        return ScaReason.ABOVE_CEILING
    if profile.low_value_rule is LowValueRule.COUNT:
        return ScaReason.COUNT_REACHED if counters.count + 1 > profile.count_max else None
    cap = profile.cumulative_minor.get(code)
    if cap is None:
        return ScaReason.NO_CEILING
    spent = counters.spent_minor.get(code, 0)
    if spent + amount.amount_minor > cap:
        return ScaReason.CUMULATIVE_REACHED
    # Art. 16(b) caps what the payer spent since the last SCA, not what they spent in each
    # currency: where the profile converts every currency involved, the sum counts too.
    total = _in_reference(profile, {**counters.spent_minor, code: spent + amount.amount_minor})
    cap_total = profile.cumulative_minor.get(profile.tra_currency)
    if total is not None and cap_total is not None and total > cap_total:
        return ScaReason.CUMULATIVE_REACHED
    return None


def _in_reference(profile: Profile, spent_minor: Mapping[str, int]) -> int | None:
    """The amounts summed in the profile's reference currency, rounded up; None when a
    currency has no rate (each currency's own cap then stands alone)."""
    total = Fraction(0)
    for code, minor in spent_minor.items():
        weight = tra_weight(profile, code)
        if weight is None:
            return None
        total += minor * weight
    return math.ceil(total)


def tra_allows(profile: Profile, fraud: FraudStanding | None, amount_minor: int | None) -> bool:
    """Art. 18-20: the band of the amount (in the reference currency) and the fraud rate."""
    if not profile.tra_bands or fraud is None or amount_minor is None:
        return False
    if fraud.quarters_above >= 2:
        return False
    for band in profile.tra_bands:
        if amount_minor <= band.ceiling_minor:
            return fraud.rate_90d < band.reference_rate
    return False


def tra_weight(profile: Profile, currency_code: str) -> Fraction | None:
    """What one minor unit of ``currency_code`` is worth in minor units of the profile's TRA
    currency, exactly (a ratio of whole numbers); None for a currency the profile has no rate
    for."""
    if currency_code == profile.tra_currency:
        return Fraction(1)
    per_unit = profile.tra_minor_per_unit.get(currency_code)
    if per_unit is None:
        return None
    return Fraction(currency(profile.tra_currency).minor_per_major, per_unit)


def amount_in_tra_currency(profile: Profile, amount: Money) -> int | None:
    """``amount`` in minor units of the profile's TRA currency, for placing a payment in a band
    (Art. 18): rounded up, so a payment is never placed below its value. None when the profile
    has no rate for the currency: TRA is then unavailable for it."""
    weight = tra_weight(profile, amount.currency.code)
    if weight is None:
        return None
    return math.ceil(amount.amount_minor * weight)


# ---- profiles from TOML --------------------------------------------------------------------------


def parse_profile(name: str, doc: Mapping[str, Any]) -> Profile:
    """A profile from its policy file; a mistake raises ``ConfigurationError`` naming the key."""

    def fail(key: str, why: str) -> ConfigurationError:
        return ConfigurationError(f"exemption profile {name}: {key}: {why}")

    low = doc.get("low_value", {})
    if not isinstance(low, Mapping):
        raise fail("low_value", "a table")
    rule_raw = low.get("rule")
    rule = None
    if rule_raw is not None:
        try:
            rule = LowValueRule(rule_raw)
        except ValueError:
            raise fail("low_value.rule", "cumulative or count") from None
    ceiling = _amounts(low.get("ceiling_minor", {}), fail, "low_value.ceiling_minor")
    cumulative = _amounts(low.get("cumulative_minor", {}), fail, "low_value.cumulative_minor")
    count = low.get("count_max", 5)
    if type(count) is not int or not 1 <= count <= 100:
        raise fail("low_value.count_max", "an integer from 1 to 100")
    if rule is LowValueRule.CUMULATIVE and set(ceiling) - set(cumulative):
        raise fail("low_value.cumulative_minor", "every currency with a ceiling needs one")
    tra = doc.get("tra", {})
    if not isinstance(tra, Mapping):
        raise fail("tra", "a table")
    bands: list[TraBand] = []
    raw_bands = tra.get("bands", [])
    if not isinstance(raw_bands, list):
        raise fail("tra.bands", "a list of {ceiling_minor, reference_rate}")
    for i, raw in enumerate(raw_bands):
        if not isinstance(raw, Mapping):
            raise fail(f"tra.bands[{i}]", "a table of ceiling_minor and reference_rate")
        c, r = raw.get("ceiling_minor"), raw.get("reference_rate")
        if type(c) is not int or c <= 0 or not isinstance(r, float) or not 0 < r < 1:
            raise fail(f"tra.bands[{i}]", "ceiling_minor > 0 and 0 < reference_rate < 1")
        if bands and c <= bands[-1].ceiling_minor:
            raise fail(f"tra.bands[{i}]", "ceilings ascend")
        bands.append(TraBand(c, r))
    tra_currency, per_unit = _tra_rates(tra, fail)
    return Profile(
        name=name,
        low_value_rule=rule,
        ceiling_minor=ceiling,
        cumulative_minor=cumulative,
        count_max=count,
        trusted_beneficiaries=bool(doc.get("trusted_beneficiaries", True)),
        recurring=bool(doc.get("recurring", True)),
        tra_bands=tuple(bands),
        tra_currency=tra_currency,
        tra_minor_per_unit=per_unit,
    )


def _tra_rates(tra: Mapping[str, Any], fail: Any) -> tuple[str, dict[str, int]]:
    """The TRA currency and ``[tra.minor_per_unit]``: for each other currency, how many of its
    minor units are worth one unit of the TRA currency (whole numbers: no float holds money)."""
    code = tra.get("currency", "EUR")
    try:
        unit = currency(code).minor_per_major
    except UnknownCurrency:
        raise fail("tra.currency", "an ISO 4217 code ZeroPay knows") from None
    rates = _amounts(tra.get("minor_per_unit", {}), fail, "tra.minor_per_unit")
    for other in rates:
        try:
            currency(other)
        except UnknownCurrency:
            raise fail(f"tra.minor_per_unit.{other}", "an ISO 4217 code ZeroPay knows") from None
    if rates.get(code, unit) != unit:
        raise fail(f"tra.minor_per_unit.{code}", f"the TRA currency itself is {unit} (one unit)")
    return code, rates


def _amounts(raw: object, fail: Any, key: str) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise fail(key, "a table of currency = minor units")
    out: dict[str, int] = {}
    for code, value in raw.items():
        if not (isinstance(code, str) and len(code) == 3 and code.isupper()):
            raise fail(f"{key}.{code}", "an ISO 4217 code")
        if type(value) is not int or value <= 0:
            raise fail(f"{key}.{code}", "a positive integer of minor units")
        out[code] = value
    return out
