"""The platform's own fraud rate, the feed of the transaction-risk-analysis exemption (PSD2 RTS
Art. 18-20; the rules and the reasons for them are in ``domain.fraud``).

- Merchants report the refunds they made because a payment was fraudulent; risk operators and
  the CLI report chargebacks (or either kind). A report is checked against the payment (it
  succeeded, the report is in its currency, at most what it captured, once per kind), stored and
  audited in one transaction, with the payment row locked, so two reports on one payment are
  counted one after the other.
- A leased job (``close_periods``) closes each UTC day and each calendar quarter once it has
  ended: it stores the value captured (read from the ledger) and the value of fraud reported in
  it, per currency. Closed figures never change, and a period is closed once however many
  processes try (its primary key).
- ``standing`` is what a payment confirmation reads: three small indexed queries (the newest
  closed day, the sums of the 90 days up to it, the recent quarters), never a scan of payments.
  When no recent day is closed, the rate is unknown and ``standing`` is None: no TRA.
- ``status`` is what operators see: the 90-day rate, the quarters, and where TRA is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zeropay.domain.errors import Conflict, CurrencyMismatch, FraudReportExists, NotFound
from zeropay.domain.exemptions import FraudStanding, Profile, TraBand
from zeropay.domain.exemptions import amount_in_tra_currency as amount_in_tra_currency
from zeropay.domain.fraud import (
    ClosedPeriod,
    FraudKind,
    FraudRate,
    FraudReport,
    PeriodKind,
    Reporter,
    Totals,
    bands_allowed,
    days_to_close,
    is_fresh,
    next_quarter,
    parse_kind,
    plan_report,
    quarter_reference,
    quarters_above,
    quarters_since,
    quarters_to_close,
    rate_of,
    standing_of,
    window_of,
    window_start,
)
from zeropay.domain.money import Money, currency, parse_money
from zeropay.domain.operators import Operator, Permission, parse_reason, require
from zeropay.domain.payments import Payment
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.idempotency import Hook

# ---- what a payment confirmation reads ----------------------------------------------------------


def standing(ctx: AppContext, uow: UnitOfWork, profile: Profile) -> FraudStanding | None:
    """The rolling 90-day fraud rate by value and how many of the latest closed quarters were
    above the reference rate, for ``domain.exemptions.tra_allows``. None when the profile has no
    TRA bands, or when the newest closed day is stale (the closing job has not run): without a
    known rate there is no TRA. Reads only, inside the caller's transaction."""
    if not profile.tra_bands:
        return None
    now = ctx.now()
    newest = uow.fraud.newest_closed(PeriodKind.DAY)
    if newest is None or not is_fresh(newest, now):
        return None
    first, last = window_of(newest)
    window = uow.fraud.day_totals(first, last)
    return standing_of(profile, window, uow.fraud.quarters(since=quarters_since(now)))


# ---- reports ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Who:
    reporter: Reporter
    actor: str
    audited: dict[str, Any]


def _stated(payment: Payment, amount_minor: int | None, currency_code: str | None) -> Money | None:
    """The amount the client stated, read in its currency (the payment's, when it named none);
    None for all that was captured."""
    code = payment.amount.currency.code if currency_code is None else currency_code
    if amount_minor is not None:
        return parse_money(amount_minor, code)
    if currency(code) != payment.amount.currency:
        raise CurrencyMismatch(
            f"a fraud report is in the payment's currency, {payment.amount.currency.code}",
            expected=payment.amount.currency.code,
            got=code,
        )
    return None


def _report(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    kind: FraudKind,
    *,
    amount_minor: int | None,
    currency_code: str | None,
    reason: str | None,
    who: _Who,
) -> FraudReport:
    stated, counted = plan_report(
        payment,
        kind,
        _stated(payment, amount_minor, currency_code),
        uow.fraud.reports_of(payment.id),
    )
    report = FraudReport(
        id=ctx.new_id("frd"),
        payment_id=payment.id,
        kind=kind,
        amount=stated,
        counted_minor=counted,
        reporter=who.reporter,
        reported_by=who.actor,
        reason=reason,
        reported_at=ctx.now(),
    )
    # The payment row is locked, so the check above saw every earlier report; the unique key
    # is the database's own copy of the rule.
    if not uow.fraud.add_report(report):
        raise FraudReportExists(f"this payment already has a {kind} report", field="kind")
    audit.record(
        ctx,
        uow,
        "fraud.reported",
        actor=who.actor,
        subject=payment.id,
        kind=kind.value,
        amount=stated.amount_minor,
        currency=stated.currency.code,
        counted=counted,
        reporter=who.reporter.value,
        **who.audited,
    )
    return report


def _payment(uow: UnitOfWork, payment_id: str, merchant_id: str | None = None) -> Payment:
    payment = uow.payments.get(payment_id, lock=True)
    # Another merchant's payment is "no such payment": its existence is not theirs to learn.
    if payment is None or (merchant_id is not None and payment.merchant_id != merchant_id):
        raise NotFound("no such payment", payment_id=payment_id[:40])
    return payment


def report_for_merchant(
    ctx: AppContext,
    *,
    merchant_id: str,
    key_id: str,
    payment_id: str,
    amount_minor: int | None,
    currency_code: str | None,
    reason: str | None,
    on_commit: Hook | None = None,
) -> FraudReport:
    """A merchant flags a payment it refunded because it was fraudulent (``refund_fraud``): in
    full by default, or the amount it names."""

    def work(uow: UnitOfWork) -> FraudReport:
        payment = _payment(uow, payment_id, merchant_id)
        who = _Who(Reporter.MERCHANT, merchant_id, {"key": key_id})
        return _report(
            ctx,
            uow,
            payment,
            FraudKind.REFUND_FRAUD,
            amount_minor=amount_minor,
            currency_code=currency_code,
            reason=reason,
            who=who,
        )

    return ctx.run(work, on_commit)


def report_for_operator(
    ctx: AppContext,
    operator: Operator,
    payment_id: str,
    *,
    kind: object,
    amount_minor: int | None,
    currency_code: str | None,
    reason: object,
) -> FraudReport:
    """A risk operator reports a payment as fraud, usually a chargeback from the payer's bank.
    The reason is required and kept in the audit log."""
    # The role first: an operator who may not report learns nothing from the input's checks.
    require(operator.roles, Permission.REPORT_FRAUD)
    wanted, why = parse_kind(kind), parse_reason(reason)

    def work(uow: UnitOfWork) -> FraudReport:
        role = require(uow.operators.roles_of(operator.user_id), Permission.REPORT_FRAUD)
        who = _Who(
            Reporter.OPERATOR,
            operator.user_id,
            {"role": role.value, "session": operator.session_id, "reason": why},
        )
        return _report(
            ctx,
            uow,
            _payment(uow, payment_id),
            wanted,
            amount_minor=amount_minor,
            currency_code=currency_code,
            reason=why,
            who=who,
        )

    return ctx.run(work)


def report_from_cli(
    ctx: AppContext,
    *,
    payment_id: str,
    kind: object,
    amount_minor: int | None,
    reason: str | None,
    actor: str,
) -> FraudReport:
    """``zeropay fraud report``: whoever runs the CLI holds the database already."""
    wanted = parse_kind(kind)
    why = None if reason is None else parse_reason(reason)

    def work(uow: UnitOfWork) -> FraudReport:
        extra = {} if why is None else {"reason": why}
        return _report(
            ctx,
            uow,
            _payment(uow, payment_id),
            wanted,
            amount_minor=amount_minor,
            currency_code=None,
            reason=why,
            who=_Who(Reporter.CLI, actor, extra),
        )

    return ctx.run(work)


def reports_for_merchant(
    ctx: AppContext, *, merchant_id: str, payment_id: str
) -> list[FraudReport]:
    def work(uow: UnitOfWork) -> list[FraudReport]:
        payment = uow.payments.get(payment_id)
        if payment is None or payment.merchant_id != merchant_id:
            raise NotFound("no such payment", payment_id=payment_id[:40])
        return uow.fraud.reports_of(payment.id)

    return ctx.read(work)


# ---- closing days and quarters (a job) ----------------------------------------------------------


def close_periods(ctx: AppContext) -> int:
    """Close every day of the rolling window and every recent quarter that has ended and is not
    closed yet, oldest first, each in a transaction of its own. Returns how many it closed."""
    now = ctx.now()

    def closed(uow: UnitOfWork) -> tuple[set[datetime], set[datetime]]:
        return (
            uow.fraud.closed(PeriodKind.DAY, since=window_start(now)),
            uow.fraud.closed(PeriodKind.QUARTER, since=quarters_since(now)),
        )

    days, quarters = ctx.read(closed)
    done = 0
    for day in days_to_close(now, days):
        done += _close(ctx, PeriodKind.DAY, day, day + timedelta(days=1), now)
    for start in quarters_to_close(now, quarters):
        done += _close(ctx, PeriodKind.QUARTER, start, next_quarter(start), now)
    return done


def _close(ctx: AppContext, kind: PeriodKind, start: datetime, end: datetime, now: datetime) -> int:
    def work(uow: UnitOfWork) -> int:
        totals = Totals(uow.fraud.captured_between(start, end), uow.fraud.fraud_between(start, end))
        return int(uow.fraud.close(ClosedPeriod(kind, start, end, totals), now))

    done: int = ctx.run(work)
    return done


# ---- what operators see -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuarterFigures:
    period: ClosedPeriod
    rate: FraudRate
    above: bool


@dataclass(frozen=True, slots=True)
class FraudStatus:
    profile: Profile
    window: tuple[datetime, datetime] | None  # first and last closed day; None: none closed
    fresh: bool  # False: the rate is unknown, TRA is off everywhere
    totals: Totals  # the window's, per currency
    rate: FraudRate
    quarters: list[QuarterFigures]  # newest first
    quarter_reference: float | None  # the rate quarters are held to; None without TRA bands
    quarters_above: int  # the latest closed quarters above it, one after the other
    standing: FraudStanding | None
    bands: list[tuple[TraBand, bool]]  # each band and whether TRA is on in it


def _profile(ctx: AppContext, profile: Profile | None) -> Profile:
    chosen = profile if profile is not None else ctx.exemptions
    if chosen is None:
        raise Conflict(
            "no SCA exemption profile is configured (ZEROPAY_SCA_PROFILE=off): no TRA",
            reason="no_exemption_profile",
        )
    return chosen


def status(ctx: AppContext, profile: Profile | None = None) -> FraudStatus:
    """The fraud rate and TRA under ``profile`` (the configured one by default)."""
    chosen = _profile(ctx, profile)
    return ctx.read(lambda uow: _status(ctx, uow, chosen))


def status_for_operator(ctx: AppContext, operator: Operator) -> FraudStatus:
    require(operator.roles, Permission.READ_FRAUD)
    chosen = _profile(ctx, None)

    def work(uow: UnitOfWork) -> FraudStatus:
        require(uow.operators.roles_of(operator.user_id), Permission.READ_FRAUD)
        return _status(ctx, uow, chosen)

    return ctx.read(work)


def _status(ctx: AppContext, uow: UnitOfWork, profile: Profile) -> FraudStatus:
    now = ctx.now()
    newest = uow.fraud.newest_closed(PeriodKind.DAY)
    window = window_of(newest) if newest is not None else None
    totals = uow.fraud.day_totals(*window) if window is not None else Totals()
    closed = uow.fraud.quarters(since=quarters_since(now))
    reference = quarter_reference(profile) if profile.tra_bands else None
    quarters = []
    for period in closed:
        rate = rate_of(profile, period.totals)
        quarters.append(
            QuarterFigures(period, rate, reference is not None and not rate.under(reference))
        )
    fresh = newest is not None and is_fresh(newest, now)
    above = quarters_above(profile, closed) if profile.tra_bands else 0
    known = standing_of(profile, totals, closed) if fresh and profile.tra_bands else None
    return FraudStatus(
        profile=profile,
        window=window,
        fresh=fresh,
        totals=totals,
        rate=rate_of(profile, totals),
        quarters=quarters,
        quarter_reference=reference,
        quarters_above=above,
        standing=known,
        bands=bands_allowed(profile, known),
    )
