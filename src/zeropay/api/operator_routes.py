"""HTTP routes for operators: the queue of payments held for review, decisions on them, and a
user's risk view.

Every route names the permission it needs; the dependency checks it against the roles the
account holds in the database (never anything the client says) and that the session was signed
in with a passkey. The service checks the roles again inside its own transaction and audits the
read or the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from zeropay.api import render
from zeropay.api.deps import Ctx, CurrentSession
from zeropay.api.schemas import Strict
from zeropay.domain import bounds
from zeropay.domain.operators import Operator, Permission, require
from zeropay.domain.sessions import Session
from zeropay.services import operators
from zeropay.services.context import AppContext

router = APIRouter(prefix="/v1/operator", tags=["operator"])
PAGE = Annotated[int, Query(ge=1, le=bounds.PAGE_SIZE_MAX)]
Cursor = Annotated[str | None, Query(max_length=bounds.ID_LENGTH_MAX)]


def _allowed(permission: Permission) -> Callable[[AppContext, Session], Operator]:
    def dependency(ctx: Ctx, session: CurrentSession) -> Operator:
        operator = operators.operator_of(ctx, session)
        require(operator.roles, permission)
        return operator

    return dependency


ReviewReader = Annotated[Operator, Depends(_allowed(Permission.READ_REVIEWS))]
RiskReader = Annotated[Operator, Depends(_allowed(Permission.READ_RISK))]
Decider = Annotated[Operator, Depends(_allowed(Permission.DECIDE_REVIEWS))]


class DecisionIn(Strict):
    # Checked by the service (``domain.operators.parse_reason``): 1 to 500 printable characters,
    # refused with the one code ``invalid_reason``; the body limit bounds what is read.
    reason: str


@router.get("/reviews")
def list_reviews(
    ctx: Ctx, operator: ReviewReader, limit: PAGE = 20, starting_after: Cursor = None
) -> dict[str, Any]:
    """Payments the risk engine held for review, oldest first. Page with ``starting_after``
    (the last id of the previous page)."""
    page = operators.reviews(ctx, operator, limit=limit, starting_after=starting_after)
    return {"data": [render.held_for_review(h) for h in page], "has_more": len(page) == limit}


@router.get("/reviews/{payment_id}")
def get_review(ctx: Ctx, operator: ReviewReader, payment_id: str) -> dict[str, Any]:
    """One payment: payer, payee, amount, every risk decision about it and its hold."""
    return render.review(operators.review(ctx, operator, payment_id))


@router.post("/reviews/{payment_id}/approve")
def approve(ctx: Ctx, operator: Decider, payment_id: str, body: DecisionIn) -> dict[str, Any]:
    """Let the payment through (risk role): automatic capture succeeds at once, manual capture
    is authorized for the merchant to capture. The reason is kept in the audit log."""
    return render.payment(operators.approve(ctx, operator, payment_id, body.reason))


@router.post("/reviews/{payment_id}/decline")
def decline(ctx: Ctx, operator: Decider, payment_id: str, body: DecisionIn) -> dict[str, Any]:
    """Refuse the payment (risk role): the hold is voided and the payer's money released."""
    return render.payment(operators.decline(ctx, operator, payment_id, body.reason))


@router.get("/users/{user_id}/risk")
def user_risk(ctx: Ctx, operator: RiskReader, user_id: str) -> dict[str, Any]:
    """A user's device trust scores (0-100) and recent risk decisions with their reasons."""
    return operators.user_risk(ctx, operator, user_id)
