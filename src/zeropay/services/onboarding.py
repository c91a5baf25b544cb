"""Onboarding with skip-and-return: the user's steps, skipping one, marking one completed when an
enrollment succeeds, refusing a payment policy says needs a step, reminding skipped steps.

A step is completed when the user holds what it stands for -- an active bound device, an active
passkey (or an OCRA app, its stand-in on a phone without a platform authenticator), a confirmed
TOTP app -- so enrollments made before this module, or by any path that
calls :func:`record_enrollment`, count. The rules are ``domain.onboarding``; the figures of the
funnel (started, skipped, completed per step) are Prometheus counters, read at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from zeropay.domain import bounds
from zeropay.domain import onboarding as rules
from zeropay.domain.authenticators import AuthenticatorKind
from zeropay.domain.errors import NotFound, OnboardingRequired
from zeropay.domain.money import Money
from zeropay.domain.onboarding import OnboardingPolicy, Requirement, Step, StepState, StepStatus
from zeropay.domain.sessions import Session
from zeropay.services import audit, notices
from zeropay.services.context import AppContext, UnitOfWork

FUNNEL = Counter(
    "zeropay_onboarding_steps_total",
    "Onboarding funnel: steps started (at sign-up), skipped and completed",
    ["step", "event"],
)

_TITLES = {
    Step.BIND_DEVICE: "bind this phone to your account",
    Step.PASSKEY: "add a passkey",
    Step.SECOND_FACTOR: "add an authenticator app",
}


@dataclass(frozen=True, slots=True)
class OnboardingView:
    user_id: str
    signed_up_at: datetime
    steps: Mapping[Step, StepState]
    next_required: Step | None
    required_for_all_payments_at: datetime
    policy: OnboardingPolicy
    above_low_value_rule: bool  # an SCA profile sets a low-value ceiling the rule can apply to


def policy_of(ctx: AppContext) -> OnboardingPolicy:
    return ctx.auth_policy.onboarding if ctx.auth_policy is not None else OnboardingPolicy()


def parse_step(raw: object) -> Step:
    try:
        return Step(str(raw))
    except ValueError:
        raise NotFound("no such onboarding step", field="step") from None


def started() -> None:
    """Sign-up: every step enters the funnel (counted once the account exists)."""
    for step in Step:
        FUNNEL.labels(step.value, "started").inc()


def _held(uow: UnitOfWork, user_id: str) -> set[Step]:
    held: set[Step] = set()
    if any(d.status == "active" for d in uow.devices.of_user(user_id)):
        held.add(Step.BIND_DEVICE)
        # A bound device's key signs the payment itself (policy: device key + password), so it
        # too is a way to confirm payments on this phone: the passkey step's purpose.
        held.add(Step.PASSKEY)
    for a in uow.authenticators.of_user(user_id):
        if a.status != "active":
            continue
        # On a phone without a platform authenticator the OCRA app stands in for the passkey
        # at payment confirmation (policy: password + OCRA code), so it completes that step.
        if a.kind in (AuthenticatorKind.PASSKEY, AuthenticatorKind.OCRA):
            held.add(Step.PASSKEY)
        elif a.kind is AuthenticatorKind.TOTP:
            held.add(Step.SECOND_FACTOR)
    return held


def _reconciled(ctx: AppContext, uow: UnitOfWork, user_id: str) -> dict[Step, StepState]:
    """The user's steps, those whose enrollment the user holds marked completed (and saved)."""
    now = ctx.now()
    states = rules.initial_states()
    states.update(uow.onboarding.states(user_id, lock=True))
    for step in _held(uow, user_id):
        if states[step].status is not StepStatus.COMPLETED:
            states[step] = rules.complete(states[step], now)
            uow.onboarding.save(user_id, states[step])
            audit.record(ctx, uow, "onboarding.completed", actor=user_id, subject=step.value)
            FUNNEL.labels(step.value, "completed").inc()
    return states


def record_enrollment(ctx: AppContext, uow: UnitOfWork, user_id: str) -> None:
    """An enrollment succeeded in this transaction (a device bound, a passkey registered, a TOTP
    app confirmed): mark the steps it completes."""
    _reconciled(ctx, uow, user_id)


def _view(ctx: AppContext, uow: UnitOfWork, user_id: str) -> OnboardingView:
    user = uow.accounts.user(user_id)
    if user is None:
        raise NotFound("no such user")
    policy = policy_of(ctx)
    states = _reconciled(ctx, uow, user_id)
    return OnboardingView(
        user_id=user_id,
        signed_up_at=user.created_at,
        steps=states,
        next_required=rules.next_required(states, policy),
        required_for_all_payments_at=rules.required_for_all_payments_at(user.created_at, policy),
        policy=policy,
        above_low_value_rule=ctx.exemptions is not None and bool(ctx.exemptions.ceiling_minor),
    )


def view(ctx: AppContext, session: Session) -> OnboardingView:
    return ctx.run(lambda uow: _view(ctx, uow, session.user_id))


def view_for_operator(ctx: AppContext, *, operator_id: str, user_id: str) -> OnboardingView:
    """A user's onboarding as an operator reads it (the route checked the role); the read is
    audited."""

    def work(uow: UnitOfWork) -> OnboardingView:
        made = _view(ctx, uow, user_id[: bounds.ID_LENGTH_MAX])
        audit.record(ctx, uow, "operator.read_onboarding", actor=operator_id, subject=user_id)
        return made

    return ctx.run(work)


def skip(ctx: AppContext, session: Session, raw_step: object) -> OnboardingView:
    step = parse_step(raw_step)

    def work(uow: UnitOfWork) -> OnboardingView:
        states = _reconciled(ctx, uow, session.user_id)
        skipped = rules.skip(states[step], ctx.now())  # refuses a completed step
        uow.onboarding.save(session.user_id, skipped)
        audit.record(ctx, uow, "onboarding.skipped", actor=session.user_id, subject=step.value)
        return _view(ctx, uow, session.user_id)

    made = ctx.run(work)
    FUNNEL.labels(step.value, "skipped").inc()
    return made


def _above_low_value(ctx: AppContext, amount: Money) -> bool:
    """Above the low-value ceiling of the SCA profile (PSD2 RTS Art. 16). Without a profile or
    a ceiling for the currency there is no low-value ceiling to be above: only the account-age
    rule applies."""
    if ctx.exemptions is None:
        return False
    ceiling = ctx.exemptions.ceiling_minor.get(amount.currency.code)
    return ceiling is not None and amount.amount_minor > ceiling


def check_payment(ctx: AppContext, uow: UnitOfWork, payer_id: str, amount: Money) -> None:
    """Refuse a payment that policy says needs an onboarding step the payer has not completed."""
    if ctx.auth_policy is None:
        return
    user = uow.accounts.user(payer_id)
    if user is None:
        return
    policy = ctx.auth_policy.onboarding
    above = _above_low_value(ctx, amount)
    now = ctx.now()
    # Most payments are small and early: when no step could be required, read nothing more.
    if (
        rules.requirement(
            rules.initial_states(), policy, now, signed_up_at=user.created_at, above_low_value=above
        )
        is None
    ):
        return
    states = _reconciled(ctx, uow, payer_id)
    needed: Requirement | None = rules.requirement(
        states, policy, now, signed_up_at=user.created_at, above_low_value=above
    )
    if needed is None:
        return
    why = (
        "payments above the low-value limit need it"
        if needed.because is rules.RequiredBecause.ABOVE_LOW_VALUE
        else f"every payment needs it {policy.required_after_days} days after sign-up"
    )
    raise OnboardingRequired(
        f"first {_TITLES[needed.step]}: {why}", step=needed.step.value, reason=needed.because.value
    )


def send_reminders(ctx: AppContext, *, batch: int = bounds.ONBOARDING_REMINDER_BATCH) -> int:
    """Remind skipped steps whose next scheduled reminder is due: an in-app notification and an
    email through the outbox, in the transaction that spends the reminder, so each scheduled
    reminder is sent at most once. Run by a leased job (``services.jobs``)."""
    policy = policy_of(ctx)
    if not policy.reminder_days:
        return 0

    def work(uow: UnitOfWork) -> int:
        now = ctx.now()
        sent = 0
        first = now - timedelta(days=policy.reminder_days[0])
        for user_id, state in uow.onboarding.skipped_before(
            first, reminders_below=len(policy.reminder_days), limit=batch
        ):
            if not rules.reminders_due(state, policy, now):
                continue
            uow.onboarding.save(user_id, rules.mark_reminded(state, policy, now))
            user = uow.accounts.user(user_id)
            if user is None or user.status != "active":
                continue  # an erased or frozen account is not nudged; the reminder is spent
            notices.alert(
                ctx,
                uow,
                user_id=user_id,
                kind="onboarding.reminder",
                subject="ZeroPay: finish setting up your account",
                body=f"You skipped a step: {_TITLES[state.step]}. Open ZeroPay and choose "
                "Security to finish it; larger payments will need it.",
            )
            sent += 1
        return sent

    return ctx.run(work)
