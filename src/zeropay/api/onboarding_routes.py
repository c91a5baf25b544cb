"""HTTP routes of skip-and-return onboarding: the payer's own steps, skipping one, and the same
view for operators (``services.onboarding``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from zeropay.api.deps import Ctx, CurrentSession
from zeropay.api.operator_routes import RiskReader
from zeropay.domain.onboarding import next_reminder_at
from zeropay.services import onboarding
from zeropay.services.onboarding import OnboardingView

router = APIRouter(tags=["onboarding"])


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _why(made: OnboardingView) -> str:
    every = f"every payment needs it from {made.required_for_all_payments_at.isoformat()}"
    if made.above_low_value_rule:
        return f"payments above the low-value limit need it now, and {every}"
    return every


def onboarding_json(made: OnboardingView) -> dict[str, Any]:
    """Every step with its state and times, what is asked next and why, and the policy."""
    policy = made.policy
    required = set(policy.required_steps)
    return {
        "user_id": made.user_id,
        "steps": [
            {
                "step": state.step.value,
                "status": state.status.value,
                "required_by_policy": state.step in required,
                "skipped_at": _time(state.skipped_at),
                "completed_at": _time(state.completed_at),
                "reminders_sent": state.reminders_sent,
                "next_reminder_at": _time(next_reminder_at(state, policy)),
            }
            for state in made.steps.values()
        ],
        "next_required": (
            {
                "step": made.next_required.value,
                "why": _why(made),
                "required_for_payments_above_low_value": made.above_low_value_rule,
                "required_for_all_payments_at": made.required_for_all_payments_at.isoformat(),
            }
            if made.next_required is not None
            else None
        ),
    }


@router.get("/v1/me/onboarding")
def my_onboarding(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    return onboarding_json(onboarding.view(ctx, session))


@router.post("/v1/me/onboarding/{step}/skip")
def skip_step(ctx: Ctx, session: CurrentSession, step: str) -> dict[str, Any]:
    return onboarding_json(onboarding.skip(ctx, session, step))


@router.get("/v1/operator/users/{user_id}/onboarding", tags=["operator"])
def user_onboarding(ctx: Ctx, operator: RiskReader, user_id: str) -> dict[str, Any]:
    """A user's onboarding steps, as the user sees them; the read is audited."""
    return onboarding_json(
        onboarding.view_for_operator(ctx, operator_id=operator.user_id, user_id=user_id)
    )
