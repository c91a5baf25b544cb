"""Onboarding with skip-and-return: the steps after sign-up, their states, the reminder schedule
and when policy makes a step required.

Sign-up asks only for what the first payment needs; the steps here (binding the phone, a passkey,
a second factor) can be skipped and taken up later. A skipped step is reminded on a bounded
schedule counted from the skip; a step the policy names becomes required before the first payment
above the low-value ceiling (PSD2 RTS Art. 16) and, for every payment, once the account is
``required_after_days`` old. The policy is the ``[onboarding]`` table of the authentication policy
file; every function that depends on time takes ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from zeropay.domain.errors import ConfigurationError, InvalidStateTransition, invariant

DAY_S = 86_400
REMINDERS_MAX = 5  # reminders per skipped step; a schedule longer than this is refused
REMINDER_DAYS_MAX = 90
REQUIRED_AFTER_DAYS_MAX = 365


class Step(StrEnum):
    BIND_DEVICE = "bind_device"
    PASSKEY = "passkey"  # or an OCRA app, on a phone without a platform authenticator
    SECOND_FACTOR = "second_factor"  # a TOTP app confirmed


class StepStatus(StrEnum):
    PENDING = "pending"
    SKIPPED = "skipped"
    COMPLETED = "completed"


class RequiredBecause(StrEnum):
    ABOVE_LOW_VALUE = "above_low_value"  # the payment is above the low-value ceiling
    ACCOUNT_AGE = "account_age"  # the account is older than required_after_days


@dataclass(frozen=True, slots=True)
class OnboardingPolicy:
    reminder_days: tuple[int, ...] = (1, 3, 7)
    required_after_days: int = 14
    required_steps: tuple[Step, ...] = (Step.PASSKEY,)

    def __post_init__(self) -> None:
        invariant(len(self.reminder_days) <= REMINDERS_MAX, "too many reminders")
        invariant(
            all(a < b for a, b in zip(self.reminder_days, self.reminder_days[1:], strict=False)),
            "reminder days must increase",
        )


@dataclass(frozen=True, slots=True)
class StepState:
    step: Step
    status: StepStatus = StepStatus.PENDING
    updated_at: datetime | None = None
    skipped_at: datetime | None = None
    completed_at: datetime | None = None
    reminders_sent: int = 0  # how many entries of the schedule are spent for this skip


@dataclass(frozen=True, slots=True)
class Requirement:
    step: Step
    because: RequiredBecause


def initial_states() -> dict[Step, StepState]:
    return {step: StepState(step) for step in Step}


def skip(state: StepState, now: datetime) -> StepState:
    """The user puts the step off; the reminder schedule starts again from now."""
    if state.status is StepStatus.COMPLETED:
        raise InvalidStateTransition(f"onboarding step {state.step} is already completed")
    return replace(
        state, status=StepStatus.SKIPPED, updated_at=now, skipped_at=now, reminders_sent=0
    )


def complete(state: StepState, now: datetime) -> StepState:
    """The enrollment behind the step succeeded. Completing twice keeps the first time."""
    if state.status is StepStatus.COMPLETED:
        return state
    return replace(state, status=StepStatus.COMPLETED, updated_at=now, completed_at=now)


def reminders_due(state: StepState, policy: OnboardingPolicy, now: datetime) -> int:
    """How many entries of the schedule have come due and are not yet spent (0: none). A sender
    sends one reminder for any positive answer and spends them all, so a job that was down for a
    week sends one message, not three, and each scheduled reminder is sent at most once."""
    if state.status is not StepStatus.SKIPPED or state.skipped_at is None:
        return 0
    due = sum(1 for d in policy.reminder_days if now >= state.skipped_at + timedelta(days=d))
    return max(0, due - state.reminders_sent)


def mark_reminded(state: StepState, policy: OnboardingPolicy, now: datetime) -> StepState:
    count = reminders_due(state, policy, now)
    invariant(count > 0, "no reminder is due")
    return replace(state, reminders_sent=state.reminders_sent + count)


def next_reminder_at(state: StepState, policy: OnboardingPolicy) -> datetime | None:
    if state.status is not StepStatus.SKIPPED or state.skipped_at is None:
        return None
    if state.reminders_sent >= len(policy.reminder_days):
        return None
    return state.skipped_at + timedelta(days=policy.reminder_days[state.reminders_sent])


def required_for_all_payments_at(signed_up_at: datetime, policy: OnboardingPolicy) -> datetime:
    return signed_up_at + timedelta(days=policy.required_after_days)


def requirement(
    states: Mapping[Step, StepState],
    policy: OnboardingPolicy,
    now: datetime,
    *,
    signed_up_at: datetime,
    above_low_value: bool,
) -> Requirement | None:
    """The first required step not completed for a payment now, and why; ``None``: none."""
    if now >= required_for_all_payments_at(signed_up_at, policy):
        because = RequiredBecause.ACCOUNT_AGE
    elif above_low_value:
        because = RequiredBecause.ABOVE_LOW_VALUE
    else:
        return None
    for step in policy.required_steps:
        if states.get(step, StepState(step)).status is not StepStatus.COMPLETED:
            return Requirement(step=step, because=because)
    return None


def next_required(states: Mapping[Step, StepState], policy: OnboardingPolicy) -> Step | None:
    """The step the user is asked for next (policy order), whatever the payment."""
    for step in policy.required_steps:
        if states.get(step, StepState(step)).status is not StepStatus.COMPLETED:
            return step
    return None


# ---- parsing the [onboarding] table of the policy file ---------------------------------------

_KEYS = {"reminder_days", "required_after_days", "required_steps"}


def parse_onboarding(data: object) -> OnboardingPolicy:
    """Check the ``[onboarding]`` table; a missing table or key takes the safe default."""
    if data is None:
        return OnboardingPolicy()
    if not isinstance(data, dict):
        raise ConfigurationError("policy: [onboarding] must be a table")
    table: Mapping[str, Any] = data
    if unknown := set(table) - _KEYS:
        raise ConfigurationError(f"policy: onboarding has unknown keys {sorted(unknown)}")
    default = OnboardingPolicy()
    days = table.get("reminder_days", list(default.reminder_days))
    if (
        not isinstance(days, list)
        or len(days) > REMINDERS_MAX
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= REMINDER_DAYS_MAX
            for d in days
        )
        or any(a >= b for a, b in zip(days, days[1:], strict=False))
    ):
        raise ConfigurationError(
            f"policy: onboarding.reminder_days is an increasing list of at most {REMINDERS_MAX}"
            f" days from 1 to {REMINDER_DAYS_MAX}"
        )
    after = table.get("required_after_days", default.required_after_days)
    if (
        not isinstance(after, int)
        or isinstance(after, bool)
        or not 1 <= after <= REQUIRED_AFTER_DAYS_MAX
    ):
        raise ConfigurationError(
            f"policy: onboarding.required_after_days must be from 1 to {REQUIRED_AFTER_DAYS_MAX}"
        )
    raw_steps = table.get("required_steps", [s.value for s in default.required_steps])
    try:
        steps = tuple(Step(s) for s in raw_steps) if isinstance(raw_steps, list) else None
    except ValueError:
        steps = None
    if steps is None or len(set(steps)) != len(steps):
        raise ConfigurationError(
            f"policy: onboarding.required_steps lists steps of {[s.value for s in Step]} once"
        )
    return OnboardingPolicy(
        reminder_days=tuple(days), required_after_days=after, required_steps=steps
    )
