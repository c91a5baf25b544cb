"""Spending limits and the policy profile that names them.

A profile is the set of rules the payment path runs under. Tests and benchmarks name theirs
explicitly, so that later rules (step-up, SCA exemptions, risk) can be switched on per profile
without silently changing what an older test measures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from zeropay.domain.errors import MonthlyLimitExceeded, PaymentLimitExceeded, invariant
from zeropay.domain.money import Currency, Money, currency

# The micropayment ceiling per payment, in major units.
PAYMENT_MAX_MAJOR: Mapping[str, int] = {
    "USD": 50,
    "EUR": 50,
    "GBP": 40,
    "KRW": 65_000,
    "JPY": 7_500,
}

# Per user per calendar month. KRW 1,000,000 is the Korean carrier-billing cap.
MONTHLY_MAX_MAJOR: Mapping[str, int] = {
    "USD": 700,
    "EUR": 650,
    "GBP": 550,
    "KRW": 1_000_000,
    "JPY": 100_000,
}


def _to_minor(major: Mapping[str, int]) -> dict[str, int]:
    return {code: amount * currency(code).minor_per_major for code, amount in major.items()}


@dataclass(frozen=True, slots=True)
class SpendingLimits:
    payment_max_minor: Mapping[str, int] = field(
        default_factory=lambda: _to_minor(PAYMENT_MAX_MAJOR)
    )
    monthly_max_minor: Mapping[str, int] = field(
        default_factory=lambda: _to_minor(MONTHLY_MAX_MAJOR)
    )
    month_zone: str = "Asia/Seoul"

    def __post_init__(self) -> None:
        for code, per_payment in self.payment_max_minor.items():
            monthly = self.monthly_max_minor.get(code)
            invariant(monthly is not None, f"{code} has a payment limit but no monthly limit")
            invariant(0 < per_payment <= (monthly or 0), f"{code}: payment limit above monthly")
        ZoneInfo(self.month_zone)  # fails at start-up on an unknown zone, not at first payment

    def currencies(self) -> tuple[Currency, ...]:
        return tuple(currency(code) for code in self.payment_max_minor)

    def check_payment(self, amount: Money) -> None:
        """A single payment above the ceiling for its currency, or in no configured currency."""
        ceiling = self.payment_max_minor.get(amount.currency.code)
        if ceiling is None:
            raise PaymentLimitExceeded(
                f"payments in {amount.currency.code} are not enabled",
                currency=amount.currency.code,
                limit_minor=0,
            )
        if amount.amount_minor > ceiling:
            raise PaymentLimitExceeded(
                f"a payment may be at most {Money(ceiling, amount.currency)}",
                currency=amount.currency.code,
                limit_minor=ceiling,
            )

    def monthly_max(self, cur: Currency) -> int:
        return self.monthly_max_minor.get(cur.code, 0)

    def check_month(self, *, spent_minor: int, amount: Money) -> None:
        limit = self.monthly_max(amount.currency)
        if spent_minor + amount.amount_minor > limit:
            raise MonthlyLimitExceeded(
                f"this payment would pass the monthly limit of {Money(limit, amount.currency)}",
                currency=amount.currency.code,
                limit_minor=limit,
                spent_minor=spent_minor,
            )

    def period(self, now: datetime) -> str:
        """The calendar month, in the configured zone, that ``now`` falls in (``2026-11``)."""
        invariant(now.tzinfo is not None, "naive datetime")
        local = now.astimezone(ZoneInfo(self.month_zone))
        return f"{local.year:04d}-{local.month:02d}"


@dataclass(frozen=True, slots=True)
class PolicyProfile:
    name: str
    limits: SpendingLimits


def builtin_profile(name: str, *, limits: SpendingLimits | None = None) -> PolicyProfile:
    """``core``: the payments core alone (limits, no step-up). ``default``: the product default,
    which for now equals ``core``; the MFA, risk and SCA issues add their checks to it."""
    if name not in {"core", "default"}:
        raise ValueError(f"unknown policy profile {name!r} (known: core, default)")
    return PolicyProfile(name=name, limits=limits or SpendingLimits())
