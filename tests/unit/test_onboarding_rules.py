"""Onboarding with skip-and-return: step states, reminders and requirements, on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain.errors import ConfigurationError, InvalidStateTransition, InvariantViolation
from zeropay.domain.onboarding import (
    OnboardingPolicy,
    RequiredBecause,
    Step,
    StepState,
    StepStatus,
    complete,
    initial_states,
    mark_reminded,
    next_reminder_at,
    next_required,
    parse_onboarding,
    reminders_due,
    requirement,
    skip,
)
from zeropay.domain.policy import parse_policy

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
POLICY = OnboardingPolicy()


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_every_step_starts_pending() -> None:
    states = initial_states()
    assert set(states) == set(Step)
    assert all(s.status is StepStatus.PENDING for s in states.values())


def test_skipping_then_completing_a_step_records_both_times() -> None:
    skipped = skip(StepState(Step.PASSKEY), day(0))
    assert (skipped.status, skipped.skipped_at) == (StepStatus.SKIPPED, day(0))
    done = complete(skipped, day(2))
    assert (done.status, done.completed_at, done.skipped_at) == (
        StepStatus.COMPLETED,
        day(2),
        day(0),
    )
    assert complete(done, day(5)).completed_at == day(2)


def test_a_completed_step_cannot_be_skipped() -> None:
    with pytest.raises(InvalidStateTransition):
        skip(complete(StepState(Step.PASSKEY), day(0)), day(1))


def test_a_skipped_step_is_reminded_one_three_and_seven_days_later_and_then_no_more() -> None:
    state = skip(StepState(Step.PASSKEY), day(0))
    assert next_reminder_at(state, POLICY) == day(1)
    assert reminders_due(state, POLICY, day(1) - timedelta(seconds=1)) == 0
    sent = []
    for now in (day(1), day(2), day(3), day(5), day(7), day(30)):
        if reminders_due(state, POLICY, now):
            state = mark_reminded(state, POLICY, now)
            sent.append(now)
    assert sent == [day(1), day(3), day(7)]
    assert next_reminder_at(state, POLICY) is None
    assert reminders_due(state, POLICY, day(365)) == 0


def test_overdue_reminders_are_spent_together_so_a_late_job_sends_one() -> None:
    state = skip(StepState(Step.PASSKEY), day(0))
    assert reminders_due(state, POLICY, day(8)) == 3
    state = mark_reminded(state, POLICY, day(8))
    assert reminders_due(state, POLICY, day(100)) == 0
    with pytest.raises(InvariantViolation):
        mark_reminded(state, POLICY, day(100))


def test_pending_and_completed_steps_are_never_reminded() -> None:
    assert reminders_due(StepState(Step.PASSKEY), POLICY, day(30)) == 0
    done = complete(skip(StepState(Step.PASSKEY), day(0)), day(0.5))
    assert reminders_due(done, POLICY, day(30)) == 0


def test_skipping_again_restarts_the_schedule() -> None:
    state = mark_reminded(skip(StepState(Step.PASSKEY), day(0)), POLICY, day(8))
    again = skip(state, day(10))
    assert (again.reminders_sent, next_reminder_at(again, POLICY)) == (0, day(11))


def test_a_low_value_payment_in_the_first_days_needs_no_step() -> None:
    states = initial_states()
    assert requirement(states, POLICY, day(13), signed_up_at=T0, above_low_value=False) is None


def test_a_payment_above_the_low_value_ceiling_needs_the_first_required_step() -> None:
    states = initial_states()
    states[Step.BIND_DEVICE] = complete(states[Step.BIND_DEVICE], day(0))
    states[Step.PASSKEY] = skip(states[Step.PASSKEY], day(0))
    got = requirement(states, POLICY, day(1), signed_up_at=T0, above_low_value=True)
    assert got is not None
    assert (got.step, got.because) == (Step.PASSKEY, RequiredBecause.ABOVE_LOW_VALUE)


def test_after_the_configured_days_every_payment_needs_the_required_steps() -> None:
    states = initial_states()
    just_before = day(14) - timedelta(seconds=1)
    assert requirement(states, POLICY, just_before, signed_up_at=T0, above_low_value=False) is None
    got = requirement(states, POLICY, day(14), signed_up_at=T0, above_low_value=False)
    assert got is not None
    assert (got.step, got.because) == (Step.PASSKEY, RequiredBecause.ACCOUNT_AGE)


def test_nothing_is_required_once_the_required_steps_are_completed() -> None:
    states = initial_states()
    for step in POLICY.required_steps:
        states[step] = complete(states[step], day(0))
    assert requirement(states, POLICY, day(400), signed_up_at=T0, above_low_value=True) is None
    assert next_required(states, POLICY) is None
    assert states[Step.SECOND_FACTOR].status is StepStatus.PENDING


def test_the_policy_file_sets_the_schedule_the_days_and_the_steps() -> None:
    got = parse_onboarding(
        {"reminder_days": [2, 5], "required_after_days": 30, "required_steps": ["second_factor"]}
    )
    assert got == OnboardingPolicy((2, 5), 30, (Step.SECOND_FACTOR,))
    assert parse_onboarding(None) == OnboardingPolicy()
    assert parse_onboarding({}) == OnboardingPolicy()


@pytest.mark.parametrize(
    "table",
    [
        {"reminder_days": [3, 1]},
        {"reminder_days": [1, 1]},
        {"reminder_days": [0]},
        {"reminder_days": [1, 2, 3, 4, 5, 6]},
        {"reminder_days": [91]},
        {"reminder_days": "1"},
        {"reminder_days": [True]},
        {"required_after_days": 0},
        {"required_after_days": 366},
        {"required_after_days": True},
        {"required_steps": ["passkey", "passkey"]},
        {"required_steps": ["fingerprint"]},
        {"required_steps": "passkey"},
        {"remind": [1]},
        [],
    ],
)
def test_a_bad_onboarding_table_is_refused_at_start(table: object) -> None:
    with pytest.raises(ConfigurationError, match="onboarding"):
        parse_onboarding(table)


def test_the_default_policy_file_carries_safe_onboarding_defaults() -> None:
    import tomllib
    from importlib.resources import files

    text = files("zeropay.policies").joinpath("default.toml").read_text()
    policy = parse_policy(tomllib.loads(text))
    assert policy.onboarding == OnboardingPolicy((1, 3, 7), 14, (Step.PASSKEY,))
