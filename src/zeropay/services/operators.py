"""Operators: accounts that hold a role (``domain.operators``), signed in with a passkey. They
read the queue of payments the risk engine held for review, and a risk operator decides each
one: approve (the hold is posted, or kept for a manual capture) or decline (the hold is voided
and the payer's money released).

Roles are read again inside the transaction of every operator action, so a role revoked while a
request is in flight no longer counts. Every read of the queue or of a user's risk view, and
every decision, lands in the audit log with who, in which role and, for a decision, why. Roles
are granted and revoked from the CLI only: no HTTP route can make an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.errors import (
    InvalidStateTransition,
    NotAnOperator,
    NotFound,
    PasskeyRequired,
)
from zeropay.domain.factors import Factor
from zeropay.domain.ledger import Transfer, TransferKind
from zeropay.domain.operators import (
    Operator,
    Permission,
    Role,
    parse_reason,
    parse_role,
    require,
)
from zeropay.domain.payments import CaptureMethod, Payment, PaymentEvent, transition
from zeropay.domain.risk.engine import Action
from zeropay.domain.sessions import Session
from zeropay.services import audit, notices, payments
from zeropay.services.accounts import email_index, parse_email
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.payments import resolve_hold
from zeropay.services.ports import HeldForReview, RoleGrant, StoredAssessment
from zeropay.services.risk import RECENT_DECISIONS_SHOWN, decision_json, trust_view

# ---- who is an operator -------------------------------------------------------------------------


def operator_of(ctx: AppContext, session: Session) -> Operator:
    """The operator behind ``session``: an account that holds a role, signed in with a passkey
    (phishing-resistant, with user verification on the device: a stolen password and a code
    are not enough to act on other people's money)."""
    roles = ctx.read(lambda uow: uow.operators.roles_of(session.user_id))
    if not roles:
        raise NotAnOperator("this account is not an operator")
    if Factor.PASSKEY.value not in [m.factor for m in session.methods]:
        raise PasskeyRequired("operators sign in with a passkey")
    return Operator(user_id=session.user_id, roles=roles, session_id=session.id)


def _acting(uow: UnitOfWork, operator: Operator, permission: Permission) -> Role:
    """The role that allows ``permission`` among the roles the operator holds now."""
    return require(uow.operators.roles_of(operator.user_id), permission)


def _viewed(
    ctx: AppContext,
    uow: UnitOfWork,
    operator: Operator,
    role: Role,
    *,
    subject: str,
    view: str,
    **data: Any,
) -> None:
    """Staff reading payers' data is security-relevant: each read is audited."""
    audit.record(
        ctx,
        uow,
        "operator.viewed",
        actor=operator.user_id,
        subject=subject,
        view=view,
        role=role.value,
        session=operator.session_id,
        **data,
    )


# ---- roles (the CLI) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleChange:
    user_id: str
    role: Role
    changed: bool  # False: the user already held the role (grant) or did not (revoke)


def _user_id_by_email(ctx: AppContext, uow: UnitOfWork, email: str, *, active: bool) -> str:
    """The account at ``email``; with ``active``, only one in use (a role is never granted to a
    frozen or erased account, but it can always be taken away)."""
    user = uow.accounts.user_by_email_index(email_index(ctx, email))
    if user is None:
        raise NotFound("no account has this email address")
    if active and user.status != "active":
        raise NotFound("no active account has this email address")
    return user.id


def grant(ctx: AppContext, *, email: str, role: str, actor: str) -> RoleChange:
    """Give the account at ``email`` an operator role. The account is told, in the app and by
    email: a role it did not ask for is how an insider would widen their reach."""
    address, wanted = parse_email(email), parse_role(role)

    def work(uow: UnitOfWork) -> RoleChange:
        user_id = _user_id_by_email(ctx, uow, address, active=True)
        changed = uow.operators.grant(user_id, wanted, granted_by=actor, now=ctx.now())
        if changed:
            audit.record(
                ctx, uow, "operator.granted", actor=actor, subject=user_id, role=wanted.value
            )
            notices.alert(
                ctx,
                uow,
                user_id=user_id,
                kind="operator.granted",
                subject="ZeroPay: your account is now an operator",
                body=f"Your account was given the operator role '{wanted}'. "
                "If you did not expect this, tell your security team.",
            )
        return RoleChange(user_id, wanted, changed)

    return ctx.run(work)


def revoke(ctx: AppContext, *, email: str, role: str, actor: str) -> RoleChange:
    address, unwanted = parse_email(email), parse_role(role)

    def work(uow: UnitOfWork) -> RoleChange:
        user_id = _user_id_by_email(ctx, uow, address, active=False)
        changed = uow.operators.revoke(user_id, unwanted)
        if changed:
            audit.record(
                ctx, uow, "operator.revoked", actor=actor, subject=user_id, role=unwanted.value
            )
            notices.alert(
                ctx,
                uow,
                user_id=user_id,
                kind="operator.revoked",
                subject="ZeroPay: an operator role was removed from your account",
                body=f"Your account no longer holds the operator role '{unwanted}'.",
            )
        return RoleChange(user_id, unwanted, changed)

    return ctx.run(work)


@dataclass(frozen=True, slots=True)
class ListedGrant:
    grant: RoleGrant
    email: str


def list_grants(ctx: AppContext) -> list[ListedGrant]:
    """Every role grant, oldest first, with the operator's email address."""

    def work(uow: UnitOfWork) -> list[ListedGrant]:
        out = []
        for g in uow.operators.grants(limit=bounds.OPERATORS_LISTED_MAX):
            user = uow.accounts.user(g.user_id)
            email = ""
            if user is not None:
                email = ctx.keyring.decrypt(
                    user.email_ciphertext, table="users", column="email", row_id=user.id
                ).decode()
            out.append(ListedGrant(g, email))
        return out

    return ctx.read(work)


# ---- the review queue ---------------------------------------------------------------------------


def reviews(
    ctx: AppContext, operator: Operator, *, limit: int, starting_after: str | None
) -> list[HeldForReview]:
    """Payments held for review, oldest first, a page at a time."""

    def work(uow: UnitOfWork) -> list[HeldForReview]:
        role = _acting(uow, operator, Permission.READ_REVIEWS)
        cursor = None
        if starting_after is not None:
            cursor = uow.payments.get(starting_after)
            if cursor is None:
                raise NotFound("no such payment", payment_id=starting_after[:40])
        page = uow.operators.in_review(
            limit=max(1, min(limit, bounds.PAGE_SIZE_MAX)), starting_after=cursor
        )
        shown = [h.payment.id for h in page]
        _viewed(ctx, uow, operator, role, subject="review_queue", view="reviews", payments=shown)
        return page

    return ctx.run(work)


@dataclass(frozen=True, slots=True)
class Review:
    """One payment as an operator sees it: the payment and payee, every risk decision about it
    (newest first), and its hold with what resolved it, if anything has."""

    held: HeldForReview
    decisions: list[StoredAssessment]
    hold: Transfer | None
    resolved_by: Transfer | None


def review(ctx: AppContext, operator: Operator, payment_id: str) -> Review:
    def work(uow: UnitOfWork) -> Review:
        role = _acting(uow, operator, Permission.READ_REVIEWS)
        payment = uow.payments.get(payment_id)
        if payment is None:
            raise NotFound("no such payment", payment_id=payment_id[:40])
        decisions = uow.operators.decisions_about(
            payment.id, limit=bounds.REVIEW_DECISIONS_LISTED_MAX
        )
        held_by = next((d for d in decisions if d.decision.action is Action.REVIEW), None)
        hold = uow.ledger.transfer(payment.hold_transfer_id())
        resolved_by = uow.ledger.resolution_of(hold.id) if hold is not None else None
        _viewed(ctx, uow, operator, role, subject=payment.id, view="review")
        return Review(
            held=HeldForReview(payment, uow.merchants.name(payment.merchant_id) or "", held_by),
            decisions=decisions,
            hold=hold,
            resolved_by=resolved_by,
        )

    return ctx.run(work)


def user_risk(ctx: AppContext, operator: Operator, user_id: str) -> dict[str, Any]:
    """A user's device trust scores and recent risk decisions (the decisions alone when the
    live risk engine is off: there are no trust scores to compute without its rules)."""

    def work(uow: UnitOfWork) -> dict[str, Any]:
        role = _acting(uow, operator, Permission.READ_RISK)
        if len(user_id) > bounds.ID_LENGTH_MAX or uow.accounts.user(user_id) is None:
            raise NotFound("no such user")
        if ctx.risk is not None:
            view = trust_view(ctx, ctx.risk, uow, user_id, None)
        else:
            recent = uow.risk.recent(user_id, limit=RECENT_DECISIONS_SHOWN)
            view = {"decisions": [decision_json(a) for a in recent]}
        _viewed(ctx, uow, operator, role, subject=user_id, view="user_risk")
        return view

    return ctx.run(work)


# ---- decisions ----------------------------------------------------------------------------------


def approve(ctx: AppContext, operator: Operator, payment_id: str, reason: object) -> Payment:
    """Let a held payment through, as its confirmation would have: automatic capture posts the
    hold in full (the payment succeeds), manual capture keeps it for the merchant to capture
    (the payment is authorized; the hold keeps the expiry it was given for the review)."""
    return _decide(ctx, operator, payment_id, reason, PaymentEvent.APPROVE)


def decline(ctx: AppContext, operator: Operator, payment_id: str, reason: object) -> Payment:
    """Refuse a held payment: the hold is voided, the payer's money and the room under the
    monthly limit it took are given back."""
    return _decide(ctx, operator, payment_id, reason, PaymentEvent.DECLINE)


def _decide(
    ctx: AppContext, operator: Operator, payment_id: str, reason: object, event: PaymentEvent
) -> Payment:
    # The role first: an operator who may not decide learns nothing from the reason's checks.
    require(operator.roles, Permission.DECIDE_REVIEWS)
    why = parse_reason(reason)

    def work(uow: UnitOfWork) -> Payment:
        role = _acting(uow, operator, Permission.DECIDE_REVIEWS)
        now = ctx.now()
        payment = uow.payments.get(payment_id, lock=True)
        if payment is None:
            raise NotFound("no such payment", payment_id=payment_id[:40])
        # Raises for anything but a payment in review: a second decision is refused here.
        after = transition(payment, event, now)
        _check_hold_unexpired(uow, payment, now)
        if event is PaymentEvent.DECLINE:
            resolve_hold(ctx, uow, payment, TransferKind.VOID_PENDING)
        elif payment.capture_method is CaptureMethod.AUTOMATIC:
            captured = resolve_hold(ctx, uow, payment, TransferKind.POST_PENDING)
            after = transition(payment, event, now, captured=captured)
        payments.save(ctx, uow, payment, after)
        audit.record(
            ctx,
            uow,
            "review.approved" if event is PaymentEvent.APPROVE else "review.declined",
            actor=operator.user_id,
            subject=payment.id,
            role=role.value,
            reason=why,
            session=operator.session_id,
            payment_status=after.status.value,
        )
        return after

    return ctx.run(work)


def _check_hold_unexpired(uow: UnitOfWork, payment: Payment, now: datetime) -> None:
    """A hold whose time ran out is the expiry job's to release, whatever an operator decides:
    otherwise a manual-capture payment would be authorized on money no longer held."""
    hold = uow.ledger.transfer(payment.hold_transfer_id())
    if hold is None:
        raise NotFound("the payment has no hold")
    if hold.expires_at is not None and now >= hold.expires_at:
        raise InvalidStateTransition(
            "the review ran out of time: the hold has expired",
            payment_status=payment.status.value,
            reason="expired",
        )
