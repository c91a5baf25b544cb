"""The platform's own fraud rate, the condition of the transaction-risk-analysis exemption
(PSD2 RTS, Delegated Regulation (EU) 2018/389, Art. 18-20).

Art. 19(1): the fraud rate is the total value of unauthorised or fraudulent remote transactions
divided by the total value of all remote transactions, "on a rolling quarterly basis (90 days)".
Here:

- **Fraud** is what merchants and operators report on a payment (``FraudReport``): a refund the
  merchant made because the payment was fraudulent, or a chargeback the payer's bank raised. A
  payment is one transaction and is fraudulent once, however many ways it is reported: each
  report counts only what it adds to the payment's fraud value (``counted_minor``).
- **Volume** is the value captured: money that moved from a payer to a merchant, when it moved.
- The window is by **report date** for fraud (and capture date for volume). By payment date, a
  chargeback that arrives after its payment has left the 90 days (card schemes allow 120) would
  never count anywhere, and a quarter's rate would keep changing after the quarter closed. By
  report date every report counts, once, during the 90 days after it is made, and a closed
  quarter is final. The price: a wave of late reports weighs against a quieter window's volume,
  which errs on the strict side.
- Days and quarters are UTC calendar days and quarters. A job closes each day (stores its
  figures, per currency) shortly after it ends; the rolling window is the last 90 closed days.

Rates are exact fractions of whole numbers (``Fraction``): no float holds money, and a rate
exactly at a reference rate compares as equal instead of landing a rounding error either side of
it. ``FraudStanding.rate_90d`` carries the same rate as a float, which is what ``tra_allows``
compares and what people read.

Pure: the figures come in as values; ``services.fraud`` reads and stores them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from zeropay.domain import bounds
from zeropay.domain.errors import (
    CurrencyMismatch,
    FraudReportExceedsPayment,
    FraudReportExists,
    InvalidInput,
    InvalidStateTransition,
    invariant,
)
from zeropay.domain.exemptions import FraudStanding, Profile, TraBand, tra_allows, tra_weight
from zeropay.domain.money import Money
from zeropay.domain.payments import Payment, PaymentStatus

WINDOW_DAYS = 90  # RTS Art. 19(1): "on a rolling quarterly basis (90 days)"
# A day or quarter is closed this long after it ends. Every transaction stamps its rows with the
# time it ran and commits within seconds, so by then all of the period's rows are committed and
# the figures read are final.
CLOSE_GRACE = timedelta(minutes=10)
# The standing is known while the newest closed day is at most this many days before today. The
# freshest possible is yesterday (or, in the minutes after midnight, the day before); the slack
# rides out a job that missed a day. Beyond it the rate is unknown, and so TRA is off.
STALE_AFTER_DAYS = 3
_DAY = timedelta(days=1)

invariant(
    bounds.FRAUD_DAYS_CLOSED_PER_RUN >= WINDOW_DAYS, "one run of the job closes a whole window"
)
invariant(bounds.FRAUD_QUARTERS_KEPT >= 2, "Art. 20 looks at two consecutive quarters")


class FraudKind(StrEnum):
    REFUND_FRAUD = "refund_fraud"  # the merchant refunded because the payment was fraudulent
    CHARGEBACK = "chargeback"  # the payer's bank reported the payment as unauthorised


def parse_kind(raw: object) -> FraudKind:
    for kind in FraudKind:
        if raw == kind.value:
            return kind
    names = ", ".join(k.value for k in FraudKind)
    raise InvalidInput(f"a fraud report's kind is one of: {names}", field="kind")


class Reporter(StrEnum):
    MERCHANT = "merchant"
    OPERATOR = "operator"
    CLI = "cli"


@dataclass(frozen=True, slots=True)
class FraudReport:
    id: str
    payment_id: str
    kind: FraudKind
    amount: Money  # as reported, in the payment's currency, at most what it captured
    counted_minor: int  # what this report added to the payment's fraud value
    reporter: Reporter
    reported_by: str  # the merchant, the operator's user id, or the CLI's user
    reason: str | None
    reported_at: datetime

    def __post_init__(self) -> None:
        invariant(self.amount.amount_minor > 0, "a fraud report states a positive amount")
        invariant(0 <= self.counted_minor <= self.amount.amount_minor, "counted within stated")


def plan_report(
    payment: Payment, kind: FraudKind, amount: Money | None, earlier: Sequence[FraudReport]
) -> tuple[Money, int]:
    """The amount a new report on ``payment`` states (all that was captured, by default) and
    what it adds to the payment's fraud value, given the reports it already has."""
    # Only money that moved is in the volume, so only it can be fraud against it.
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise InvalidStateTransition(
            f"only a succeeded payment can be reported as fraud; this one is {payment.status}",
            payment_status=str(payment.status),
        )
    captured = Money(payment.amount_captured_minor, payment.amount.currency)
    stated = captured if amount is None else amount
    if stated.currency != captured.currency:
        raise CurrencyMismatch(
            f"a fraud report is in the payment's currency, {captured.currency.code}",
            expected=captured.currency.code,
            got=stated.currency.code,
        )
    if stated > captured:
        raise FraudReportExceedsPayment(
            f"the payment captured {captured}", limit_minor=captured.amount_minor
        )
    if any(r.kind is kind for r in earlier):
        # Otherwise a report sent twice would count twice.
        raise FraudReportExists(f"this payment already has a {kind} report", field="kind")
    known = sum(r.counted_minor for r in earlier)
    counted = max(0, stated.amount_minor - known)
    invariant(known + counted <= captured.amount_minor, "a payment's fraud is within its capture")
    return stated, counted


# ---- days and quarters --------------------------------------------------------------------------


class PeriodKind(StrEnum):
    DAY = "day"
    QUARTER = "quarter"


@dataclass(frozen=True, slots=True)
class Totals:
    """Value captured and value of fraud reported, in minor units per currency."""

    captured_minor: Mapping[str, int] = field(default_factory=dict)
    fraud_minor: Mapping[str, int] = field(default_factory=dict)

    def currencies(self) -> list[str]:
        return sorted(set(self.captured_minor) | set(self.fraud_minor))


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    """A day or quarter whose figures are final: [``starts_at``, ``ends_at``)."""

    kind: PeriodKind
    starts_at: datetime
    ends_at: datetime
    totals: Totals


def day_of(moment: datetime) -> datetime:
    """The start (UTC midnight) of the day ``moment`` is in."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


def quarter_of(moment: datetime) -> datetime:
    """The start of the calendar quarter ``moment`` is in (UTC)."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, 3 * ((utc.month - 1) // 3) + 1, 1, tzinfo=UTC)


def next_quarter(start: datetime) -> datetime:
    return quarter_of(start + timedelta(days=93))


def previous_quarter(start: datetime) -> datetime:
    return quarter_of(start - _DAY)


def quarter_name(start: datetime) -> str:
    return f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def window_start(now: datetime) -> datetime:
    """The first day of the window that ends yesterday: the oldest day worth closing."""
    return day_of(now) - WINDOW_DAYS * _DAY


def days_to_close(now: datetime, closed: Collection[datetime]) -> list[datetime]:
    """The days of the current window that have ended (and ``CLOSE_GRACE`` since) and are not
    closed yet, oldest first, at most ``FRAUD_DAYS_CLOSED_PER_RUN``. Closing oldest first means
    the closed days never have a gap below the newest one."""
    first = window_start(now)
    last = day_of(now - CLOSE_GRACE) - _DAY
    out: list[datetime] = []
    day = first
    while day <= last and len(out) < bounds.FRAUD_DAYS_CLOSED_PER_RUN:
        if day not in closed:
            out.append(day)
        day += _DAY
    return out


def quarters_since(now: datetime) -> datetime:
    """The start of the oldest quarter kept: ``FRAUD_QUARTERS_KEPT`` quarters before this one."""
    start = quarter_of(now)
    for _ in range(bounds.FRAUD_QUARTERS_KEPT):
        start = previous_quarter(start)
    return start


def quarters_to_close(now: datetime, closed: Collection[datetime]) -> list[datetime]:
    """Quarters among the last ``FRAUD_QUARTERS_KEPT`` that have ended (and ``CLOSE_GRACE``
    since) and are not closed yet, oldest first."""
    out: list[datetime] = []
    start, current = quarters_since(now), quarter_of(now - CLOSE_GRACE)
    while start < current:
        if start not in closed:
            out.append(start)
        start = next_quarter(start)
    return out


def window_of(newest_day: datetime) -> tuple[datetime, datetime]:
    """The first and last day of the 90-day window that ends with ``newest_day``."""
    return newest_day - (WINDOW_DAYS - 1) * _DAY, newest_day


def is_fresh(newest_day: datetime, now: datetime) -> bool:
    return newest_day >= day_of(now) - STALE_AFTER_DAYS * _DAY


# ---- rates --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FraudRate:
    """Fraud over volume, both in minor units of the profile's TRA currency, exact.
    ``unpriced``: currencies the profile has no rate for, left out of both sides (a payment in
    one of them never gets TRA either)."""

    fraud_minor: Fraction
    captured_minor: Fraction
    unpriced: tuple[str, ...] = ()

    def under(self, reference_rate: float) -> bool:
        """Strictly under, as ``tra_allows`` asks. Fraud with no volume at all is under
        nothing."""
        if self.captured_minor == 0:
            return self.fraud_minor == 0
        # The decimal the profile wrote (0.0013), not the binary float nearest to it.
        return self.fraud_minor / self.captured_minor < Fraction(repr(reference_rate))

    def as_float(self) -> float:
        if self.captured_minor == 0:
            return 0.0 if self.fraud_minor == 0 else math.inf
        return float(self.fraud_minor / self.captured_minor)


def rate_of(profile: Profile, totals: Totals) -> FraudRate:
    """The rate of ``totals``, each currency converted at the profile's rate."""
    fraud, captured, unpriced = Fraction(0), Fraction(0), []
    for code in totals.currencies():
        weight = tra_weight(profile, code)
        if weight is None:
            unpriced.append(code)
            continue
        fraud += weight * totals.fraud_minor.get(code, 0)
        captured += weight * totals.captured_minor.get(code, 0)
    return FraudRate(fraud, captured, tuple(unpriced))


def quarter_reference(profile: Profile) -> float:
    """The reference rate a closed quarter is held to (Art. 20): the lowest of any band's.

    Art. 20(2) counts quarters above for each band on its own. One count against the lowest
    rate is simpler -- one ``quarters_above``, which ``tra_allows`` checks before it looks at
    the band -- and never weaker: a quarter above any band's rate counts against every band, so
    TRA stays on in no band that Art. 20(2) would switch off. The cost is that it is often
    stricter: with the shipped bands it is the EUR 500 band's 0.01 %, while every ZeroPay
    payment (at most EUR 50) falls in the EUR 100 band (0.13 %).

    A quarter counts as above when its rate is not under this one: the test ``tra_allows``
    applies to the 90-day rate (Art. 20 says "exceeds"; at exactly the reference rate TRA is
    already off, and the quarter counts too)."""
    invariant(bool(profile.tra_bands), "only a profile with TRA bands holds quarters to a rate")
    return min(band.reference_rate for band in profile.tra_bands)


def quarters_above(profile: Profile, quarters: Sequence[ClosedPeriod]) -> int:
    """How many of the most recent closed quarters, one after the other, were above the
    reference (``quarter_reference``). A quarter not closed yet is not counted either way; a
    gap between closed quarters ends the count."""
    reference = quarter_reference(profile)
    count, expected = 0, None
    for quarter in sorted(quarters, key=lambda q: q.starts_at, reverse=True):
        if expected is not None and quarter.starts_at != expected:
            break
        if rate_of(profile, quarter.totals).under(reference):
            break
        count += 1
        expected = previous_quarter(quarter.starts_at)
    return count


def standing_of(
    profile: Profile, window: Totals, quarters: Sequence[ClosedPeriod]
) -> FraudStanding:
    """What ``tra_allows`` needs: the 90-day rate and the quarters above."""
    return FraudStanding(
        rate_90d=rate_of(profile, window).as_float(),
        quarters_above=quarters_above(profile, quarters),
    )


def bands_allowed(profile: Profile, standing: FraudStanding | None) -> list[tuple[TraBand, bool]]:
    """Each band and whether TRA is on in it now."""
    return [(b, tra_allows(profile, standing, b.ceiling_minor)) for b in profile.tra_bands]
