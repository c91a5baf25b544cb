"""Merchant payments: what a payment may do in each state.

    requires_confirmation --confirm--> succeeded    capture "automatic": money moves now
    requires_confirmation --confirm--> authorized   capture "manual": the payer's funds are held
    authorized --capture--> succeeded               all or part of the hold; the rest is released
    authorized --expire--> expired                  the hold ran out; funds released
    requires_confirmation | authorized --cancel--> canceled    a hold is voided
    succeeded --refund--> succeeded                 in full or in parts, never above captured
    requires_confirmation --challenge--> requires_action   SCA is required: funds are held while
                                                    the payer answers the confirmation flow
    requires_action --authenticate--> succeeded | authorized   the flow passed (as confirm would)
    requires_action --abandon--> requires_confirmation   the flow failed, expired or met a
                                                    changed transaction; the hold is voided
    requires_action --cancel--> canceled            the merchant gave up; the hold is voided
    requires_confirmation --review--> in_review     the risk engine held it: funds are held
    in_review --approve--> succeeded | authorized   an operator let it through (as confirm would)
    in_review --decline--> declined                 an operator refused it; the hold is voided
    in_review --expire--> expired | --cancel--> canceled

The ledger is the record of money; a payment row is the business view of it and changes state
only through ``transition``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from zeropay.domain.errors import InvalidStateTransition, RefundExceedsPayment, invariant
from zeropay.domain.money import Money


class PaymentStatus(StrEnum):
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"  # SCA in progress: a confirmation flow and a hold
    IN_REVIEW = "in_review"
    AUTHORIZED = "authorized"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    DECLINED = "declined"
    EXPIRED = "expired"


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


class PaymentEvent(StrEnum):
    CONFIRM = "confirm"
    CAPTURE = "capture"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REVIEW = "review"
    APPROVE = "approve"
    DECLINE = "decline"
    CHALLENGE = "challenge"
    AUTHENTICATE = "authenticate"
    ABANDON = "abandon"


_NEXT: dict[tuple[PaymentStatus, PaymentEvent, CaptureMethod | None], PaymentStatus] = {
    (PaymentStatus.REQUIRES_CONFIRMATION, PaymentEvent.CONFIRM, CaptureMethod.AUTOMATIC): (
        PaymentStatus.SUCCEEDED
    ),
    (PaymentStatus.REQUIRES_CONFIRMATION, PaymentEvent.CONFIRM, CaptureMethod.MANUAL): (
        PaymentStatus.AUTHORIZED
    ),
    (PaymentStatus.AUTHORIZED, PaymentEvent.CAPTURE, None): PaymentStatus.SUCCEEDED,
    (PaymentStatus.AUTHORIZED, PaymentEvent.EXPIRE, None): PaymentStatus.EXPIRED,
    (PaymentStatus.REQUIRES_CONFIRMATION, PaymentEvent.CANCEL, None): PaymentStatus.CANCELED,
    (PaymentStatus.AUTHORIZED, PaymentEvent.CANCEL, None): PaymentStatus.CANCELED,
    (PaymentStatus.REQUIRES_CONFIRMATION, PaymentEvent.REVIEW, None): PaymentStatus.IN_REVIEW,
    (PaymentStatus.IN_REVIEW, PaymentEvent.APPROVE, CaptureMethod.AUTOMATIC): (
        PaymentStatus.SUCCEEDED
    ),
    (PaymentStatus.IN_REVIEW, PaymentEvent.APPROVE, CaptureMethod.MANUAL): PaymentStatus.AUTHORIZED,
    (PaymentStatus.IN_REVIEW, PaymentEvent.DECLINE, None): PaymentStatus.DECLINED,
    (PaymentStatus.IN_REVIEW, PaymentEvent.EXPIRE, None): PaymentStatus.EXPIRED,
    (PaymentStatus.IN_REVIEW, PaymentEvent.CANCEL, None): PaymentStatus.CANCELED,
    (PaymentStatus.REQUIRES_CONFIRMATION, PaymentEvent.CHALLENGE, None): (
        PaymentStatus.REQUIRES_ACTION
    ),
    (PaymentStatus.REQUIRES_ACTION, PaymentEvent.AUTHENTICATE, CaptureMethod.AUTOMATIC): (
        PaymentStatus.SUCCEEDED
    ),
    (PaymentStatus.REQUIRES_ACTION, PaymentEvent.AUTHENTICATE, CaptureMethod.MANUAL): (
        PaymentStatus.AUTHORIZED
    ),
    (PaymentStatus.REQUIRES_ACTION, PaymentEvent.ABANDON, None): (
        PaymentStatus.REQUIRES_CONFIRMATION
    ),
    (PaymentStatus.REQUIRES_ACTION, PaymentEvent.CANCEL, None): PaymentStatus.CANCELED,
}
_BY_CAPTURE_METHOD = frozenset(
    {PaymentEvent.CONFIRM, PaymentEvent.APPROVE, PaymentEvent.AUTHENTICATE}
)


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    merchant_id: str
    amount: Money
    description: str
    reference: str | None
    capture_method: CaptureMethod
    status: PaymentStatus
    created_at: datetime
    updated_at: datetime
    payer_id: str | None = None
    amount_captured_minor: int = 0
    amount_refunded_minor: int = 0
    spend_period: str | None = None  # the month this payment counted against the payer's limit
    # A merchant's recurring series (PSD2 RTS Art. 14): same payee, same amount, SCA on the first.
    series_ref: str | None = None
    # Holds placed on the payer's wallet so far: a payment whose confirmation flow failed holds
    # again when it is confirmed afresh, and every hold is a transfer of its own.
    hold_seq: int = 0

    def __post_init__(self) -> None:
        invariant(self.amount.amount_minor > 0, "payment amount is positive")
        invariant(self.hold_seq >= 0, "hold numbers count up from zero")
        invariant(
            0
            <= self.amount_refunded_minor
            <= self.amount_captured_minor
            <= self.amount.amount_minor,
            "refunded <= captured <= amount",
        )

    @property
    def refundable(self) -> Money:
        return Money(self.amount_captured_minor - self.amount_refunded_minor, self.amount.currency)

    def hold_transfer_id(self) -> str:
        """The payment's current (latest) hold."""
        invariant(self.hold_seq >= 0, "hold numbers count up from zero")
        return f"{self.id}:hold" if self.hold_seq <= 1 else f"{self.id}:hold.{self.hold_seq}"

    def charge_transfer_id(self) -> str:
        return f"{self.id}:charge"


def transition(
    payment: Payment, event: PaymentEvent, now: datetime, *, captured: Money | None = None
) -> Payment:
    """The one place a payment changes state."""
    method = payment.capture_method if event in _BY_CAPTURE_METHOD else None
    target = _NEXT.get((payment.status, event, method))
    if target is None:
        raise InvalidStateTransition(
            f"a payment that is {payment.status} cannot {event}",
            payment_status=str(payment.status),
            event=str(event),
        )
    changed = replace(payment, status=target, updated_at=now)
    if target is PaymentStatus.SUCCEEDED:
        amount = captured if captured is not None else payment.amount
        invariant(amount.currency == payment.amount.currency, "captured in the payment currency")
        invariant(0 < amount.amount_minor <= payment.amount.amount_minor, "captured within amount")
        changed = replace(changed, amount_captured_minor=amount.amount_minor)
    return changed


def plan_refund(payment: Payment, amount: Money | None) -> Money:
    """The amount to refund now: all that is left by default, never more than was captured."""
    if payment.status is not PaymentStatus.SUCCEEDED:
        raise InvalidStateTransition(
            f"only a succeeded payment can be refunded; this one is {payment.status}",
            payment_status=str(payment.status),
        )
    left = payment.refundable
    want = left if amount is None else amount
    if want.currency != payment.amount.currency:
        raise RefundExceedsPayment(
            f"refunds are in {payment.amount.currency.code}",
            currency=want.currency.code,
        )
    if want.amount_minor <= 0:
        raise RefundExceedsPayment("this payment has been refunded in full", refundable_minor=0)
    if want > left:
        raise RefundExceedsPayment(
            f"at most {left} can still be refunded", refundable_minor=left.amount_minor
        )
    return want
