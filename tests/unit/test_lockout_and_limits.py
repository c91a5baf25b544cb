from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain.errors import FactorLocked, MonthlyLimitExceeded, PaymentLimitExceeded
from zeropay.domain.limits import SpendingLimits
from zeropay.domain.lockout import (
    FactorState,
    LockoutEvent,
    LockoutPolicy,
    check_usable,
    register_failure,
    register_success,
)
from zeropay.domain.money import Money

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def fail(state, times, policy, now=NOW):
    events = []
    for _ in range(times):
        state, more = register_failure(state, now, policy)
        events += more
    return state, events


def test_five_consecutive_failures_lock_the_factor_and_four_do_not():
    policy = LockoutPolicy()
    state, events = fail(FactorState(), 4, policy)
    check_usable(state, NOW)
    assert events == []
    state, events = fail(state, 1, policy)
    assert events == [LockoutEvent.LOCKED]
    with pytest.raises(FactorLocked):
        check_usable(state, NOW + timedelta(seconds=59))
    check_usable(state, NOW + timedelta(seconds=60))


def test_each_lock_lasts_twice_as_long_and_the_user_is_warned_before_the_permanent_one():
    policy = LockoutPolicy(locks_max=4, lock_base_s=60)
    state = FactorState()
    durations, all_events = [], []
    for _ in range(3):
        state, events = fail(state, 5, policy)
        all_events.append(events)
        durations.append((state.locked_until - NOW).total_seconds())
    assert durations == [60, 120, 240]
    assert all_events[-1] == [LockoutEvent.LOCKED, LockoutEvent.FINAL_WARNING]
    assert LockoutEvent.FINAL_WARNING not in all_events[0] + all_events[1]
    state, events = fail(state, 5, policy)
    assert events == [LockoutEvent.LOCKED_PERMANENTLY]
    with pytest.raises(FactorLocked) as caught:
        check_usable(state, NOW + timedelta(days=365))
    assert caught.value.details["permanent"] is True


def test_a_success_restarts_the_count():
    policy = LockoutPolicy()
    state, _ = fail(FactorState(), 4, policy)
    state = register_success(state)
    state, events = fail(state, 4, policy)
    assert events == [] and state.failures == 4


def test_payment_ceilings_follow_the_micropayment_defaults():
    limits = SpendingLimits()
    limits.check_payment(Money.of(5000, "USD"))
    limits.check_payment(Money.of(65000, "KRW"))
    for amount in (
        Money.of(5001, "USD"),
        Money.of(65001, "KRW"),
        Money.of(7501, "JPY"),
        Money.of(4001, "GBP"),
        Money.of(1, "CHF"),
    ):
        with pytest.raises(PaymentLimitExceeded):
            limits.check_payment(amount)


def test_the_month_is_counted_in_the_configured_zone():
    limits = SpendingLimits(month_zone="Asia/Seoul")
    # 15:30 UTC on 31 October is already 1 November in Seoul.
    assert limits.period(datetime(2026, 10, 31, 15, 30, tzinfo=UTC)) == "2026-11"
    assert limits.period(datetime(2026, 10, 31, 14, 59, tzinfo=UTC)) == "2026-10"
    assert (
        SpendingLimits(month_zone="UTC").period(datetime(2026, 10, 31, 15, 30, tzinfo=UTC))
        == "2026-10"
    )


def test_the_monthly_cap_admits_exactly_up_to_the_limit():
    limits = SpendingLimits()
    limits.check_month(spent_minor=935_000, amount=Money.of(65_000, "KRW"))
    with pytest.raises(MonthlyLimitExceeded):
        limits.check_month(spent_minor=935_001, amount=Money.of(65_000, "KRW"))
