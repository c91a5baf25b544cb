"""The fraud rate behind transaction risk analysis (PSD2 RTS Art. 18-20) as pure rules: amounts
in the TRA currency at the profile's rates, what a fraud report may state and what it counts,
UTC days and quarters, the exact rate by value, and the streak of quarters above."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from zeropay.bootstrap import load_exemption_profile
from zeropay.domain import bounds
from zeropay.domain.errors import (
    ConfigurationError,
    CurrencyMismatch,
    FraudReportExceedsPayment,
    FraudReportExists,
    InvalidInput,
    InvalidStateTransition,
)
from zeropay.domain.exemptions import (
    Counters,
    Exemption,
    FraudStanding,
    amount_in_tra_currency,
    decide,
    parse_profile,
    tra_allows,
)
from zeropay.domain.fraud import (
    CLOSE_GRACE,
    ClosedPeriod,
    FraudKind,
    FraudReport,
    PeriodKind,
    Reporter,
    Totals,
    day_of,
    days_to_close,
    is_fresh,
    next_quarter,
    parse_kind,
    plan_report,
    previous_quarter,
    quarter_name,
    quarter_of,
    quarter_reference,
    quarters_above,
    quarters_to_close,
    rate_of,
    standing_of,
    window_of,
)
from zeropay.domain.money import Money, parse_money
from zeropay.domain.payments import CaptureMethod, Payment, PaymentStatus

PSD2 = load_exemption_profile("psd2")
DEFAULT = load_exemption_profile("default")
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def money(minor: int, code: str = "USD") -> Money:
    return parse_money(minor, code)


# ---- amounts in the TRA currency ----------------------------------------------------------------


def test_both_shipped_profiles_price_every_currency_they_have_a_low_value_ceiling_for():
    for profile in (PSD2, DEFAULT):
        assert profile.tra_currency == "EUR"
        assert set(profile.ceiling_minor) - {"EUR"} <= set(profile.tra_minor_per_unit)


@pytest.mark.parametrize(
    ("minor", "code", "eur_cents"),
    [
        (3000, "EUR", 3000),
        (3000, "USD", 3000),  # USD 1 taken as EUR 1: above its worth
        (42000, "KRW", 3000),  # KRW 1,400 per EUR
        (4500, "JPY", 3000),  # JPY 150 per EUR
        (2500, "GBP", 3013),  # 83 pence per EUR: 3012.05 rounded up
        (1, "KRW", 1),  # a fraction of a cent is a whole cent: never below its value
    ],
)
def test_an_amount_is_converted_at_the_profiles_rate_and_rounded_up(minor, code, eur_cents):
    assert amount_in_tra_currency(PSD2, money(minor, code)) == eur_cents


def test_a_currency_without_a_rate_has_no_tra_amount_and_so_no_tra():
    chf = money(1000, "CHF")
    assert amount_in_tra_currency(PSD2, chf) is None
    standing = FraudStanding(rate_90d=0.0)
    assert not tra_allows(PSD2, standing, amount_in_tra_currency(PSD2, chf))


def test_a_krw_payment_is_placed_in_the_band_of_its_value_in_eur():
    # KRW 140,000 is EUR 100 at the profile's rate: the first band (0.13 %); one won more is
    # the second (0.06 %), where a 0.1 % fraud rate is too high.
    standing = FraudStanding(rate_90d=0.001)
    for won, exempt in ((140_000, True), (140_014, False)):
        d = decide(
            PSD2,
            money(won, "KRW"),
            "m",
            counters=Counters(count=5),  # low value used up
            fraud=standing,
            amount_in_tra_currency_minor=amount_in_tra_currency(PSD2, money(won, "KRW")),
        )
        assert (d.exemption is Exemption.TRANSACTION_RISK_ANALYSIS) is exempt


def _tra(**table):
    return {"tra": {"bands": [{"ceiling_minor": 10000, "reference_rate": 0.0013}], **table}}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (_tra(minor_per_unit={"usd": 100}), "tra.minor_per_unit.usd"),
        (_tra(minor_per_unit={"USD": 0}), "tra.minor_per_unit.USD"),
        (_tra(minor_per_unit={"USD": 1.08}), "tra.minor_per_unit.USD"),  # never a float
        (_tra(minor_per_unit={"XYZ": 100}), "tra.minor_per_unit.XYZ"),
        (_tra(minor_per_unit={"EUR": 99}), "tra.minor_per_unit.EUR"),
        (_tra(minor_per_unit=[100]), "tra.minor_per_unit"),
        (_tra(currency="EURO"), "tra.currency"),
        ({"tra": "on"}, "tra"),
        ({"tra": {"bands": {"ceiling_minor": 1}}}, "tra.bands"),
        ({"tra": {"bands": [5]}}, "tra.bands[0]"),
    ],
)
def test_a_bad_tra_table_is_refused_naming_the_key(doc, key):
    escaped = key.replace("[", r"\[").replace("]", r"\]")
    with pytest.raises(ConfigurationError, match=rf"exemption profile custom: {escaped}:"):
        parse_profile("custom", doc)


def test_the_tra_currency_may_be_listed_at_one_unit_and_another_tra_currency_works_too():
    assert parse_profile("c", _tra(minor_per_unit={"EUR": 100})).tra_minor_per_unit == {"EUR": 100}
    krw = parse_profile("k", _tra(currency="KRW", minor_per_unit={"EUR": 1}))
    # One euro cent taken as KRW 1 (the won's unit: KRW has no minor unit).
    assert amount_in_tra_currency(krw, money(250, "EUR")) == 250
    assert amount_in_tra_currency(krw, money(5000, "KRW")) == 5000


# ---- fraud reports ------------------------------------------------------------------------------


def _payment(status=PaymentStatus.SUCCEEDED, amount=4000, captured=4000, refunded=0):
    return Payment(
        id="pay_1",
        merchant_id="mer_1",
        amount=money(amount),
        description="Flat white",
        reference=None,
        capture_method=CaptureMethod.MANUAL,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        payer_id="usr_1",
        amount_captured_minor=captured,
        amount_refunded_minor=refunded,
    )


def _report(kind, stated, counted):
    return FraudReport(
        id=f"frd_{kind}",
        payment_id="pay_1",
        kind=kind,
        amount=money(stated),
        counted_minor=counted,
        reporter=Reporter.OPERATOR,
        reported_by="usr_op",
        reason=None,
        reported_at=NOW,
    )


def test_a_report_states_all_that_was_captured_by_default_not_the_payments_full_amount():
    stated, counted = plan_report(_payment(captured=2500), FraudKind.CHARGEBACK, None, [])
    assert stated == money(2500) and counted == 2500


def test_a_report_above_what_was_captured_is_refused_and_exactly_all_of_it_is_not():
    payment = _payment(captured=2500)
    with pytest.raises(FraudReportExceedsPayment) as refused:
        plan_report(payment, FraudKind.CHARGEBACK, money(2501), [])
    assert refused.value.details["limit_minor"] == 2500
    assert plan_report(payment, FraudKind.CHARGEBACK, money(2500), [])[1] == 2500


def test_a_report_in_another_currency_is_refused():
    with pytest.raises(CurrencyMismatch):
        plan_report(_payment(), FraudKind.CHARGEBACK, money(100, "EUR"), [])


@pytest.mark.parametrize(
    "status",
    [s for s in PaymentStatus if s is not PaymentStatus.SUCCEEDED],
)
def test_only_a_succeeded_payment_can_be_reported(status):
    payment = _payment(status=status, captured=0)
    with pytest.raises(InvalidStateTransition) as refused:
        plan_report(payment, FraudKind.REFUND_FRAUD, None, [])
    assert refused.value.details["payment_status"] == status.value


def test_the_same_kind_twice_is_refused_so_a_report_counts_once():
    earlier = [_report(FraudKind.REFUND_FRAUD, 4000, 4000)]
    with pytest.raises(FraudReportExists):
        plan_report(_payment(), FraudKind.REFUND_FRAUD, None, earlier)


def test_a_chargeback_after_a_fraud_refund_counts_only_what_it_adds():
    # A payment is fraudulent once: the bank's chargeback for the same money adds nothing, a
    # larger one adds the difference.
    earlier = [_report(FraudKind.REFUND_FRAUD, 1500, 1500)]
    assert plan_report(_payment(), FraudKind.CHARGEBACK, money(1000), earlier)[1] == 0
    assert plan_report(_payment(), FraudKind.CHARGEBACK, money(4000), earlier)[1] == 2500


def test_a_kind_is_one_of_two_names():
    assert parse_kind("chargeback") is FraudKind.CHARGEBACK
    for bad in ("Chargeback", "fraud", None, 1):
        with pytest.raises(InvalidInput):
            parse_kind(bad)


# ---- days and quarters --------------------------------------------------------------------------


def test_quarters_are_utc_calendar_quarters_across_a_year_end():
    q4 = quarter_of(NOW)
    assert q4 == datetime(2026, 10, 1, tzinfo=UTC) and quarter_name(q4) == "2026-Q4"
    assert next_quarter(q4) == datetime(2027, 1, 1, tzinfo=UTC)
    assert previous_quarter(datetime(2027, 1, 1, tzinfo=UTC)) == q4
    assert quarter_of(datetime(2027, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)) == q4


def test_the_days_to_close_are_the_90_before_today_once_the_grace_has_passed():
    days = days_to_close(NOW, set())
    assert len(days) == 90 and days == sorted(days)
    assert days[0] == day_of(NOW) - timedelta(days=90)
    assert days[-1] == day_of(NOW) - timedelta(days=1)
    midnight = day_of(NOW)
    assert days_to_close(midnight + CLOSE_GRACE - timedelta(seconds=1), set())[-1] == (
        midnight - timedelta(days=2)
    )
    assert days_to_close(midnight + CLOSE_GRACE, set())[-1] == midnight - timedelta(days=1)


def test_days_already_closed_are_not_closed_again():
    closed = set(days_to_close(NOW, set())[:-1])
    assert days_to_close(NOW, closed) == [day_of(NOW) - timedelta(days=1)]
    assert len(days_to_close(NOW, set())) <= bounds.FRAUD_DAYS_CLOSED_PER_RUN


def test_a_quarter_is_closed_after_it_ends_and_only_the_kept_ones():
    starts = quarters_to_close(NOW, set())
    assert len(starts) == bounds.FRAUD_QUARTERS_KEPT
    assert starts[-1] == datetime(2026, 7, 1, tzinfo=UTC)  # Q3 has ended; Q4 has not
    new_year = datetime(2027, 1, 1, tzinfo=UTC)
    assert quarters_to_close(new_year + CLOSE_GRACE / 2, set(starts)) == []
    assert quarters_to_close(new_year + CLOSE_GRACE, set(starts)) == [quarter_of(NOW)]


def test_the_window_is_90_days_and_stale_when_the_newest_closed_day_is_old():
    first, last = window_of(datetime(2026, 11, 1, tzinfo=UTC))
    assert (last - first).days == 89 and first == datetime(2026, 8, 4, tzinfo=UTC)
    assert is_fresh(day_of(NOW) - timedelta(days=3), NOW)
    assert not is_fresh(day_of(NOW) - timedelta(days=4), NOW)


# ---- rates --------------------------------------------------------------------------------------


def test_the_rate_is_by_value_in_eur_across_currencies_exactly():
    totals = Totals(
        captured_minor={"USD": 4000, "KRW": 42000, "EUR": 2000},  # EUR 40 + 30 + 20
        fraud_minor={"KRW": 14000},  # EUR 10
    )
    rate = rate_of(PSD2, totals)
    assert rate.fraud_minor / rate.captured_minor == Fraction(1, 9)
    assert rate.unpriced == () and rate.as_float() == pytest.approx(1 / 9)


def test_a_currency_without_a_rate_is_left_out_of_both_sides_and_named():
    totals = Totals(captured_minor={"EUR": 1000, "CHF": 9000}, fraud_minor={"CHF": 9000})
    rate = rate_of(PSD2, totals)
    assert rate.unpriced == ("CHF",) and rate.as_float() == 0.0


def test_a_rate_exactly_at_the_reference_is_not_under_it_and_one_unit_less_is():
    at = rate_of(PSD2, Totals({"EUR": 1_000_000}, {"EUR": 1_300}))  # 0.13 % exactly
    below = rate_of(PSD2, Totals({"EUR": 1_000_000}, {"EUR": 1_299}))
    assert not at.under(0.0013) and below.under(0.0013)
    assert not tra_allows(PSD2, FraudStanding(at.as_float()), 5000)
    assert tra_allows(PSD2, FraudStanding(below.as_float()), 5000)


def test_no_volume_and_no_fraud_is_a_zero_rate_and_fraud_with_no_volume_is_under_nothing():
    assert rate_of(PSD2, Totals()).under(0.0001)
    lonely = rate_of(PSD2, Totals({}, {"EUR": 1}))
    assert not lonely.under(0.5) and lonely.as_float() == float("inf")
    assert not tra_allows(PSD2, FraudStanding(lonely.as_float()), 100)


def _quarter(start: datetime, fraud: int, captured: int = 1_000_000) -> ClosedPeriod:
    return ClosedPeriod(
        PeriodKind.QUARTER,
        start,
        next_quarter(start),
        Totals({"EUR": captured}, {"EUR": fraud} if fraud else {}),
    )


Q1, Q2, Q3 = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 4, 7))


def test_quarters_are_held_to_the_lowest_reference_rate_of_any_band():
    assert quarter_reference(PSD2) == 0.0001
    # 0.05 % is under the EUR 100 band's 0.13 %, but above the EUR 500 band's 0.01 %: it counts.
    assert quarters_above(PSD2, [_quarter(Q3, 500)]) == 1
    assert quarters_above(PSD2, [_quarter(Q3, 99)]) == 0
    assert quarters_above(PSD2, [_quarter(Q3, 100)]) == 1  # at the reference is not under it


def test_two_quarters_above_in_a_row_switch_tra_off_even_when_the_90_day_rate_is_zero():
    quarters = [_quarter(Q3, 500), _quarter(Q2, 800), _quarter(Q1, 0)]
    standing = standing_of(PSD2, Totals({"EUR": 1_000_000}, {}), quarters)
    assert standing == FraudStanding(rate_90d=0.0, quarters_above=2)
    assert not tra_allows(PSD2, standing, 3000)


def test_one_quarter_above_then_one_below_leaves_no_quarter_above():
    assert quarters_above(PSD2, [_quarter(Q3, 0), _quarter(Q2, 900)]) == 0
    standing = standing_of(PSD2, Totals(), [_quarter(Q3, 0), _quarter(Q2, 900)])
    assert tra_allows(PSD2, standing, 3000)


def test_a_gap_between_closed_quarters_ends_the_streak():
    assert quarters_above(PSD2, [_quarter(Q3, 500), _quarter(Q1, 500)]) == 1


def test_a_profile_with_a_single_band_holds_quarters_to_that_bands_rate():
    micro = replace(PSD2, tra_bands=PSD2.tra_bands[:1])
    assert quarter_reference(micro) == 0.0013
    assert quarters_above(micro, [_quarter(Q3, 500), _quarter(Q2, 800)]) == 0
