"""The platform's fraud rate on SQLite and PostgreSQL (PSD2 RTS Art. 18-20): payments paid over
HTTP, fraud reported, the job closing days and quarters as a fixed clock moves, the rolling
90-day window by report date, the rate by value across currencies, the streak of quarters above,
and what transaction risk analysis then allows."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import func, select

from zeropay import cli
from zeropay.adapters.sql import tables as t
from zeropay.bootstrap import load_exemption_profile
from zeropay.domain.errors import FraudReportExists
from zeropay.domain.exemptions import FraudStanding, amount_in_tra_currency, tra_allows
from zeropay.domain.fraud import ClosedPeriod, PeriodKind, Totals, day_of, quarter_name
from zeropay.domain.money import parse_money
from zeropay.services import fraud, jobs

PSD2 = load_exemption_profile("psd2")
EUR_30 = amount_in_tra_currency(PSD2, parse_money(3000, "EUR"))


class Shop:
    """A merchant, and payers who each pay it once at the clock's current time."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.headers = api.merchant()
        self.numbers = itertools.count()

    def paid(self, amount: int, currency: str = "USD", **extra: Any) -> str:
        payer = self.api.payer(f"payer{next(self.numbers)}@example.com")
        r = self.api.client.post(
            "/v1/wallet/topups", headers=payer, json={"amount": amount, "currency": currency}
        )
        assert r.status_code == 201, r.text
        body = {"amount": amount, "currency": currency, "description": "Gift card", **extra}
        r = self.api.client.post("/v1/payments", headers=self.headers, json=body)
        assert r.status_code == 201, r.text
        payment_id = str(r.json()["id"])
        r = self.api.client.post(f"/v1/checkout/{payment_id}/confirm", headers=payer)
        assert r.status_code == 200, r.text
        return payment_id


@pytest.fixture
def shop(api):
    return Shop(api)


def _at(clock, when: datetime) -> None:
    clock.at = when


def _chargeback(ctx, payment_id: str, amount: int | None = None) -> Any:
    return fraud.report_from_cli(
        ctx,
        payment_id=payment_id,
        kind="chargeback",
        amount_minor=amount,
        reason="the payer's bank",
        actor="cli:test",
    )


def _standing(ctx) -> FraudStanding | None:
    fraud.close_periods(ctx)
    return ctx.read(lambda uow: fraud.standing(ctx, uow, PSD2))


def _rate(ctx) -> Fraction:
    rate = fraud.status(ctx, PSD2).rate
    return rate.fraud_minor / rate.captured_minor


# ---- the rolling window -------------------------------------------------------------------------


def test_a_report_counts_from_the_day_after_it_is_made_for_90_days_then_drops_out(
    container, clock, shop
):
    ctx = container.ctx
    made = clock.now()
    _chargeback(ctx, shop.paid(4000), 1000)
    assert _standing(ctx) == FraudStanding(rate_90d=0.0, quarters_above=0)  # today not closed

    clock.advance(days=1)
    assert _standing(ctx).rate_90d == 0.25
    clock.advance(days=49)
    shop.paid(4000)  # volume with no fraud
    clock.advance(days=40)  # 90 days after the report: its last day in the window
    assert _standing(ctx).rate_90d == 1000 / 8000
    clock.advance(days=1)
    assert _standing(ctx).rate_90d == 0.0
    first_day = fraud.status(ctx, PSD2).window[0]
    assert first_day == datetime(made.year, made.month, made.day, tzinfo=UTC) + timedelta(days=1)


def test_the_rate_is_by_value_across_currencies_at_the_profiles_rates(container, clock, shop):
    ctx = container.ctx
    shop.paid(4000, "USD")  # EUR 40 at USD 1 = EUR 1
    korean = shop.paid(42000, "KRW")  # EUR 30 at KRW 1,400
    shop.paid(2000, "EUR")
    _chargeback(ctx, korean, 14000)  # EUR 10
    clock.advance(days=1)
    fraud.close_periods(ctx)
    status = fraud.status(ctx, PSD2)
    assert _rate(ctx) == Fraction(1000, 9000)
    assert status.totals.captured_minor == {"EUR": 2000, "KRW": 42000, "USD": 4000}
    assert status.totals.fraud_minor == {"EUR": 0, "KRW": 14000, "USD": 0}
    assert status.rate.unpriced == ()


def test_captured_volume_is_what_moved_when_it_moved(container, clock, shop, api):
    ctx = container.ctx
    held = shop.paid(4000, capture_method="manual")  # authorized: nothing captured yet
    canceled = shop.paid(1500, capture_method="manual")
    r = api.client.post(f"/v1/payments/{canceled}/cancel", headers=shop.headers)
    assert r.status_code == 200, r.text
    clock.advance(days=1)
    r = api.client.post(f"/v1/payments/{held}/capture", headers=shop.headers, json={"amount": 2500})
    assert r.status_code == 200, r.text
    refunded = shop.paid(1000)
    r = api.client.post(f"/v1/payments/{refunded}/refunds", headers=shop.headers, json={})
    assert r.status_code == 201, r.text  # a refund does not undo the volume
    clock.advance(days=1)
    fraud.close_periods(ctx)
    days = ctx.read(lambda uow: uow.fraud.day_totals(clock.now() - timedelta(days=3), clock.now()))
    assert days.captured_minor == {"USD": 3500}
    yesterday = ctx.read(
        lambda uow: uow.fraud.captured_between(
            clock.now() - timedelta(days=1), clock.now() - timedelta(hours=1)
        )
    )
    assert yesterday == {"USD": 3500}  # the capture counts on the day of the capture


# ---- reports counted once -----------------------------------------------------------------------


def test_a_report_sent_twice_is_refused_and_counted_once(container, clock, shop):
    ctx = container.ctx
    payment_id = shop.paid(4000)
    _chargeback(ctx, payment_id, 1000)
    with pytest.raises(FraudReportExists):
        _chargeback(ctx, payment_id, 1000)
    # The same fraud through the merchant's refund adds only what is new.
    clock.advance(minutes=1)
    fraud.report_from_cli(
        ctx,
        payment_id=payment_id,
        kind="refund_fraud",
        amount_minor=1500,
        reason=None,
        actor="cli:test",
    )
    reports = ctx.read(lambda uow: uow.fraud.reports_of(payment_id))
    assert [(r.kind.value, r.amount.amount_minor, r.counted_minor) for r in reports] == [
        ("chargeback", 1000, 1000),
        ("refund_fraud", 1500, 500),
    ]
    clock.advance(days=1)
    fraud.close_periods(ctx)
    assert _rate(ctx) == Fraction(1500, 4000)


# ---- quarters (Art. 20) -------------------------------------------------------------------------


def test_two_quarters_above_switch_tra_off_even_after_the_90_day_rate_has_fallen(
    container, clock, shop
):
    ctx = container.ctx
    for month in (5, 8):  # in Q2 and in Q3: 0.5 % fraud, above every band's reference rate
        _at(clock, datetime(2026, month, 10, 12, tzinfo=UTC))
        _chargeback(ctx, shop.paid(4000), 20)
        shop.paid(4000)
    _at(clock, datetime(2026, 12, 20, 12, tzinfo=UTC))  # the Q3 report left the window
    shop.paid(4000)
    clock.advance(days=1)

    standing = _standing(ctx)
    assert standing == FraudStanding(rate_90d=0.0, quarters_above=2)
    assert not tra_allows(PSD2, standing, EUR_30)
    status = fraud.status(ctx, PSD2)
    assert [(quarter_name(q.period.starts_at), q.above) for q in status.quarters][:2] == [
        ("2026-Q3", True),
        ("2026-Q2", True),
    ]
    assert [on for _, on in status.bands] == [False, False, False]


def test_a_quarter_below_after_one_above_leaves_no_quarter_above(container, clock, shop):
    ctx = container.ctx
    _at(clock, datetime(2026, 5, 10, 12, tzinfo=UTC))
    _chargeback(ctx, shop.paid(4000), 20)
    _at(clock, datetime(2026, 8, 10, 12, tzinfo=UTC))
    shop.paid(4000)
    _at(clock, datetime(2026, 10, 20, 12, tzinfo=UTC))
    fraud.close_periods(ctx)
    assert [q.above for q in fraud.status(ctx, PSD2).quarters][:2] == [False, True]

    standing = _standing(ctx)
    assert standing == FraudStanding(rate_90d=0.0, quarters_above=0)
    assert tra_allows(PSD2, standing, EUR_30)


def test_one_quarter_above_is_not_yet_enough_to_switch_tra_off(container, clock, shop):
    ctx = container.ctx
    _at(clock, datetime(2026, 8, 10, 12, tzinfo=UTC))
    _chargeback(ctx, shop.paid(4000), 20)
    _at(clock, datetime(2026, 12, 20, 12, tzinfo=UTC))
    standing = _standing(ctx)
    assert standing == FraudStanding(rate_90d=0.0, quarters_above=1)
    assert tra_allows(PSD2, standing, EUR_30)


# ---- the job ------------------------------------------------------------------------------------


def test_without_a_recent_closed_day_the_rate_is_unknown_and_tra_is_off(container, clock, shop):
    ctx = container.ctx
    shop.paid(4000)
    assert ctx.read(lambda uow: fraud.standing(ctx, uow, PSD2)) is None  # never closed
    fraud.close_periods(ctx)
    assert ctx.read(lambda uow: fraud.standing(ctx, uow, PSD2)) is not None
    clock.advance(days=4)  # the job stopped: the newest closed day is now too old
    assert ctx.read(lambda uow: fraud.standing(ctx, uow, PSD2)) is None
    assert not tra_allows(PSD2, None, EUR_30)


def test_a_profile_without_tra_bands_has_no_standing(container):
    ctx = container.ctx
    fraud.close_periods(ctx)
    no_tra = replace(PSD2, tra_bands=())
    assert ctx.read(lambda uow: fraud.standing(ctx, uow, no_tra)) is None


def _rows(container, table) -> int:
    with container.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_closing_is_idempotent_and_the_leased_job_runs_it(container, clock, shop):
    ctx = container.ctx
    shop.paid(4000)
    clock.advance(days=1)
    first = fraud.close_periods(ctx)
    assert first == 90 + 8  # the window's days and the kept quarters
    periods, totals = _rows(container, t.fraud_periods), _rows(container, t.fraud_period_totals)
    assert fraud.close_periods(ctx) == 0
    # Another process that read the same "not closed yet" list is refused by the key.
    day = day_of(clock.now()) - timedelta(days=1)
    again = ClosedPeriod(PeriodKind.DAY, day, day + timedelta(days=1), Totals({"USD": 1}, {}))
    assert ctx.run(lambda uow: uow.fraud.close(again, clock.now())) is False
    assert (_rows(container, t.fraud_periods), _rows(container, t.fraud_period_totals)) == (
        periods,
        totals,
    )
    clock.advance(days=1)
    jobs.register(ctx)
    assert jobs.run_due(ctx, owner="test")["close_fraud_periods"] == 1


# ---- the CLI ------------------------------------------------------------------------------------


def _cli(monkeypatch, settings, *argv: str) -> int:
    monkeypatch.setenv("ZEROPAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPAY_VAULT_DEV_FILE", str(settings.vault_dev_file))
    return cli.main(list(argv))


def test_the_cli_reports_a_chargeback_once_and_prints_the_status(
    container, shop, monkeypatch, capsys
):
    payment_id = shop.paid(4000)
    settings = container.settings
    assert _cli(monkeypatch, settings, "fraud", "report", payment_id, "--kind", "chargeback") == 0
    made = json.loads(capsys.readouterr().out)
    assert (made["kind"], made["amount"], made["counted"]) == ("chargeback", 4000, 4000)
    assert made["reporter"] == "cli" and made["reported_by"].startswith("cli:")
    again = ("fraud", "report", payment_id, "--kind", "chargeback", "--amount", "10")
    assert _cli(monkeypatch, settings, *again) == 1
    assert "fraud_report_exists" in capsys.readouterr().err

    assert _cli(monkeypatch, settings, "fraud", "status", "--profile", "psd2", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["profile"] == "psd2" and len(status["tra"]) == 3
    assert _cli(monkeypatch, settings, "fraud", "status") == 0
    text = capsys.readouterr().out
    assert "profile default" in text and "transaction risk analysis" in text
