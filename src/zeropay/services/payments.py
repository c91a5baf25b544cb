"""Merchant payments and what the payer does with them: confirm, and the merchant's capture,
cancel and refund. Each use case is one transaction; locks are taken in one order everywhere
(payment row, then the payer's monthly counter, then ledger accounts by id) so that no two use
cases can deadlock."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import timedelta

from zeropay.domain import bounds
from zeropay.domain.authenticators import check_new_device_limit
from zeropay.domain.dynamic_linking import (
    NONCE_BYTES,
    Transaction,
    binding_of,
    bound_transaction,
    same_terms,
)
from zeropay.domain.errors import (
    Conflict,
    FlowEnded,
    InsufficientFunds,
    MonthlyLimitExceeded,
    NotFound,
    ScaUnavailable,
)
from zeropay.domain.factors import Factor
from zeropay.domain.flows import Flow, FlowState, start_flow
from zeropay.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    plan_resolution,
    plan_transfer,
)
from zeropay.domain.money import Money, parse_money
from zeropay.domain.payments import (
    CaptureMethod,
    Payment,
    PaymentEvent,
    PaymentStatus,
    plan_refund,
    transition,
)
from zeropay.domain.policy import AccessPoint, plan_paths, risk_paths
from zeropay.domain.records import Refund
from zeropay.domain.sessions import Session
from zeropay.services import audit, onboarding, recovery, sca
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.factor_checks import Requester
from zeropay.services.fallbacks import device_class
from zeropay.services.idempotency import Hook
from zeropay.services.ports import PaymentEventRecord, ScaDecisionRecord, StoredFlow
from zeropay.services.risk import PaymentCheck, Verdict

# The merchant event a payment's change makes; a change not listed makes none.
_EVENT_OF_STATUS = {
    PaymentStatus.SUCCEEDED: "payment.succeeded",
    PaymentStatus.AUTHORIZED: "payment.authorized",
    PaymentStatus.IN_REVIEW: "payment.in_review",
    PaymentStatus.DECLINED: "payment.failed",
    PaymentStatus.EXPIRED: "payment.failed",
    PaymentStatus.CANCELED: "payment.canceled",
    PaymentStatus.REQUIRES_ACTION: "payment.requires_action",
}


def save(ctx: AppContext, uow: UnitOfWork, before: Payment, after: Payment) -> None:
    """Save a payment's change and, in the same transaction, the merchant event it makes (a
    transactional outbox): committed together or not at all."""
    uow.payments.save(before, after)
    kind = _EVENT_OF_STATUS.get(after.status) if after.status is not before.status else None
    if before.status is PaymentStatus.REQUIRES_ACTION and kind is None:
        kind = "payment.failed"  # the confirmation failed or expired; it may be paid afresh
    if kind is None and after.amount_refunded_minor > before.amount_refunded_minor:
        kind = "payment.refunded"
    if kind is None:
        return
    now = ctx.now()
    event_id = ctx.new_id("evt")
    body = {
        "id": event_id,
        "type": kind,
        "created": now.isoformat().replace("+00:00", "Z"),
        "data": {
            "payment": {
                "id": after.id,
                "amount": after.amount.amount_minor,
                "currency": after.amount.currency.code,
                "status": after.status.value,
                "amount_captured": after.amount_captured_minor,
                "amount_refunded": after.amount_refunded_minor,
                "reference": after.reference,
            }
        },
    }
    uow.payment_events.add(
        PaymentEventRecord(
            id=event_id,
            merchant_id=after.merchant_id,
            payment_id=after.id,
            type=kind,
            body=json.dumps(body, separators=(",", ":"), sort_keys=True),
            created_at=now,
        )
    )


def create(
    ctx: AppContext,
    *,
    merchant_id: str,
    amount: Money,
    description: str,
    reference: str | None,
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC,
    series_ref: str | None = None,
    on_commit: Hook | None = None,
) -> Payment:
    ctx.profile.limits.check_payment(amount)
    payment_id = ctx.new_id("pay")

    def work(uow: UnitOfWork) -> Payment:
        now = ctx.now()
        payment = Payment(
            id=payment_id,
            merchant_id=merchant_id,
            amount=amount,
            description=description,
            reference=reference,
            capture_method=capture_method,
            status=PaymentStatus.REQUIRES_CONFIRMATION,
            created_at=now,
            updated_at=now,
            series_ref=series_ref,
        )
        uow.payments.add(payment)
        return payment

    return ctx.run(work, on_commit)


def _in_currency_of(payment: Payment, amount_minor: int | None) -> Money | None:
    """An amount the client gave in minor units, read in the payment's own currency."""
    if amount_minor is None:
        return None
    return parse_money(amount_minor, payment.amount.currency.code)


def _owned(uow: UnitOfWork, payment_id: str, merchant_id: str, *, lock: bool) -> Payment:
    payment = uow.payments.get(payment_id, lock=lock)
    if payment is None or payment.merchant_id != merchant_id:
        raise NotFound("no such payment", payment_id=payment_id[:40])
    return payment


def get(ctx: AppContext, *, merchant_id: str, payment_id: str) -> Payment:
    return ctx.read(lambda uow: _owned(uow, payment_id, merchant_id, lock=False))


def list_payments(
    ctx: AppContext, *, merchant_id: str, limit: int, starting_after: str | None
) -> list[Payment]:
    def work(uow: UnitOfWork) -> list[Payment]:
        cursor = None
        if starting_after is not None:
            cursor = _owned(uow, starting_after, merchant_id, lock=False)
        return uow.payments.list_for_merchant(
            merchant_id, limit=min(limit, bounds.PAGE_SIZE_MAX), starting_after=cursor
        )

    return ctx.read(work)


@dataclass(frozen=True)
class Checkout:
    payment: Payment
    merchant_name: str


def checkout(ctx: AppContext, *, payment_id: str, payer_id: str) -> Checkout:
    """What the payer sees before paying: amount, currency, payee and description. A payment
    that someone else already paid is not shown."""

    def work(uow: UnitOfWork) -> Checkout:
        payment = uow.payments.get(payment_id)
        if payment is None or (payment.payer_id is not None and payment.payer_id != payer_id):
            raise NotFound("no such payment", payment_id=payment_id[:40])
        return Checkout(payment, uow.merchants.name(payment.merchant_id) or "")

    return ctx.read(work)


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation did: the payment as it now stands, the SCA decision (which exemption
    applied, or why SCA is required) and, when SCA is required, the flow that asks for it."""

    payment: Payment
    sca: ScaDecisionRecord | None = None
    flow: StoredFlow | None = None


def confirm(
    ctx: AppContext,
    *,
    payment_id: str,
    payer_id: str,
    session: Session | None = None,
    requester: Requester | None = None,
    device_id: str | None = None,
    risk_check: PaymentCheck | None = None,
    on_commit: Hook | None = None,
) -> Confirmation:
    """The payer pays. The risk engine decides first (``services.risk.PaymentCheck``): a block
    is raised before anything here is written; a review holds the funds and leaves the payment
    ``in_review`` for an operator. Then the SCA exemptions decide (``services.sca``):

    - exempt: the money moves (automatic capture) or is held (manual capture) now;
    - SCA required: the funds are held and a confirmation flow is started, bound to this
      payment's amount, currency and payee (dynamic linking); the payment is
      ``requires_action`` until the flow passes (the money moves) or fails or expires (the
      hold is voided and the payment can be confirmed afresh).

    From a device still in its reduced-limits period, only small payments go through."""
    # A confirmation whose flow ran out is released first, so that what follows -- the risk
    # engine included -- decides afresh.
    if ctx.read(lambda uow: _is_stale(ctx, uow, payment_id, payer_id, lock=False)):
        ctx.run(lambda uow: _release_stale(ctx, uow, payment_id, payer_id))
    verdict: Verdict = Verdict.ALLOW
    if risk_check is not None:
        verdict = risk_check.before(payment_id)

    def work(uow: UnitOfWork) -> Confirmation:
        now = ctx.now()
        payment = uow.payments.get(payment_id, lock=True)
        if payment is None or (payment.payer_id is not None and payment.payer_id != payer_id):
            raise NotFound("no such payment", payment_id=payment_id[:40])
        if payment.status is PaymentStatus.REQUIRES_ACTION:
            running = _running_confirmation(ctx, uow, payment)
            if running is not None:
                return running  # the flow already under way answers; no second hold
            # Started and ended since the release above: let the payer confirm again rather
            # than decide without the risk engine.
            raise Conflict(
                "this payment's confirmation just ended; confirm it again",
                reason="confirmation_ended",
            )
        if verdict is Verdict.REVIEW:
            return Confirmation(_hold_for_review(ctx, uow, payment, payer_id, device_id))
        transition(payment, PaymentEvent.CONFIRM, now)  # refuses a payment that cannot be paid
        _check_limits(ctx, uow, payment, payer_id, device_id)
        # Skip-and-return onboarding: a skipped step policy requires now stops the payment.
        onboarding.check_payment(ctx, uow, payer_id, payment.amount)
        decided = sca.decide_for(
            ctx,
            uow,
            payment,
            payer_id,
            risk_challenge=verdict is Verdict.CHALLENGE,
            risk_clean=risk_check is not None and risk_check.clean,
        )
        if decided is None or decided.decision.exempt:
            if risk_check is not None:
                risk_check.after(uow, got_through=True)
            record = sca.record(ctx, uow, payment, payer_id, decided, flow_id=None)
            after = transition(payment, PaymentEvent.CONFIRM, now)
            manual = payment.capture_method is CaptureMethod.MANUAL
            ttl = ctx.durations.hold_ttl_s if manual else None
            return Confirmation(_take(ctx, uow, payment, after, payer_id, hold_ttl_s=ttl), record)
        flow = _start_confirmation(
            ctx,
            uow,
            payment,
            payer_id=payer_id,
            session=session,
            requester=requester or Requester(),
            asked=risk_check.factors if risk_check is not None else (),
            assessment=risk_check.assessment_id if risk_check is not None else None,
        )
        if flow is None:
            if verdict is Verdict.CHALLENGE and risk_check is not None:
                risk_check.unanswerable(uow)
                return Confirmation(_hold_for_review(ctx, uow, payment, payer_id, device_id))
            raise ScaUnavailable(
                "this payment needs you to confirm it with a passkey, this device's key or a "
                "confirmation-code app; add one in Security, then pay again",
                reason="no_confirmation_factor",
            )
        after = transition(payment, PaymentEvent.CHALLENGE, now)
        ttl_s = int((flow.flow.expires_at - now).total_seconds())
        held = _take(ctx, uow, payment, after, payer_id, hold_ttl_s=ttl_s)
        record = sca.record(ctx, uow, payment, payer_id, decided, flow_id=flow.flow.id)
        return Confirmation(held, record, flow)

    return ctx.run(work, on_commit)


def _check_limits(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, payer_id: str, device_id: str | None
) -> None:
    ctx.profile.limits.check_payment(payment.amount)  # it may have been lowered since
    if ctx.auth_policy is not None:
        # Cooling off after a recovery from a new device: small payments only from it.
        recovery.check_payment(ctx, uow, payer_id, device_id, payment.amount, payment_id=payment.id)
    if device_id is not None and ctx.auth_policy is not None:
        check_new_device_limit(
            uow.devices.get(device_id),
            payment.amount,
            ctx.now(),
            ctx.auth_policy.new_device_payment_max_minor,
        )


def _hold_for_review(
    ctx: AppContext, uow: UnitOfWork, payment: Payment, payer_id: str, device_id: str | None
) -> Payment:
    after = transition(payment, PaymentEvent.REVIEW, ctx.now())
    _check_limits(ctx, uow, payment, payer_id, device_id)
    return _take(ctx, uow, payment, after, payer_id, hold_ttl_s=ctx.durations.review_ttl_s)


# ---- the confirmation flow (dynamic linking) -----------------------------------------------------


def transaction_of(payment: Payment, nonce: bytes) -> Transaction:
    """The canonical transaction of a payment as the server's own records have it now."""
    return Transaction(
        payment_id=payment.id, amount=payment.amount, payee=payment.merchant_id, nonce=nonce
    )


def _start_confirmation(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    *,
    payer_id: str,
    session: Session | None,
    requester: Requester,
    asked: tuple[Factor, ...],
    assessment: str | None,
) -> StoredFlow | None:
    """A confirmation flow for this payment on the paths the payer can take from this device
    (narrowed to the risk engine's factors when it asked for some); None if there are none."""
    from zeropay.services.authn import available_factors  # authn finishes these flows

    now = ctx.now()
    point = AccessPoint.PAYMENT_CONFIRMATION
    available = available_factors(uow, payer_id, requester, point=point)
    # The paying device's class narrows the paths (README: Older phones).
    jkt = requester.proof.jkt if requester.proof is not None else None
    paths = plan_paths(ctx.policy, point, available, device_class(uow, {}, jkt))
    if asked:
        paths = risk_paths(paths, (), asked, available)
    if not paths:
        return None
    txn = transaction_of(payment, ctx.random_bytes(NONCE_BYTES))
    binding = {**binding_of(txn), "hold_seq": str(payment.hold_seq + 1)}
    if session is not None:
        binding["session_id"] = session.id
    if requester.proof is not None:
        binding["jkt"] = requester.proof.jkt
    if assessment is not None:
        binding["risk"] = assessment
    flow = start_flow(
        flow_id=ctx.new_id("flw"),
        point=point,
        rule=ctx.policy.point(point),
        paths=paths,
        user_id=payer_id,
        now=now,
        binding=binding,
        asked=(asked,) if asked else (),
    )
    stored = StoredFlow(flow=flow)
    uow.flows.add(stored, now)
    audit.record(
        ctx,
        uow,
        "payment.confirmation_started",
        actor=payer_id,
        subject=payment.id,
        flow=flow.id,
        amount_minor=payment.amount.amount_minor,
        currency=payment.amount.currency.code,
        payee=payment.merchant_id,
    )
    return stored


def _is_stale(
    ctx: AppContext, uow: UnitOfWork, payment_id: str, payer_id: str, *, lock: bool
) -> Payment | None:
    """The payment, when it waits on a confirmation of this payer's whose flow has ended."""
    payment = uow.payments.get(payment_id, lock=lock)
    if (
        payment is not None
        and payment.status is PaymentStatus.REQUIRES_ACTION
        and payment.payer_id == payer_id
        and _running_confirmation(ctx, uow, payment) is None
    ):
        return payment
    return None


def _release_stale(ctx: AppContext, uow: UnitOfWork, payment_id: str, payer_id: str) -> None:
    """Checked again under the row lock: a racing confirmation may have released it already."""
    payment = _is_stale(ctx, uow, payment_id, payer_id, lock=True)
    if payment is not None:
        abandon(ctx, uow, payment, expired=True)


def _running_confirmation(
    ctx: AppContext, uow: UnitOfWork, payment: Payment
) -> Confirmation | None:
    decision = uow.sca.open_decision(payment.id)
    if decision is None or decision.flow_id is None:
        return None
    stored = uow.flows.get(decision.flow_id)
    if stored is None or stored.flow.status(ctx.now()) != "active":
        return None
    return Confirmation(payment, decision, stored)


def _bound_payment(uow: UnitOfWork, flow: Flow) -> tuple[Payment | None, Transaction]:
    txn = bound_transaction(flow.binding)
    payment = uow.payments.get(txn.payment_id, lock=True)
    if (
        payment is None
        or payment.status is not PaymentStatus.REQUIRES_ACTION
        or str(payment.hold_seq) != flow.binding.get("hold_seq")
    ):
        return None, txn  # the hold this flow placed is gone (expired, canceled)
    return payment, txn


def terms_hold(ctx: AppContext, uow: UnitOfWork, flow: Flow) -> bool:
    """Whether the payment still has the amount, currency and payee the flow was issued for.
    When it does not, the flow ends, the hold is voided and the change is recorded as an attack
    signal (the server re-checks its own records at every step: OWASP transaction
    authorization)."""
    uow.flows.get(flow.id, lock=True)  # the flow before the payment, as a finishing step locks
    payment, txn = _bound_payment(uow, flow)
    if payment is None:
        return True  # nothing held any more: the flow's own state answers
    if same_terms(transaction_of(payment, txn.nonce), txn):
        return True
    tampered(ctx, uow, flow, payment, what="server_record")
    return False


def tampered(
    ctx: AppContext, uow: UnitOfWork, flow: Flow, payment: Payment | None, *, what: str
) -> None:
    """A proof over another transaction, or a payment changed under its flow: end the flow,
    release the funds, tell the payer and record it."""
    now = ctx.now()
    current = uow.flows.get(flow.id, lock=True)
    if current is not None and current.flow.state is FlowState.ACTIVE:
        uow.flows.save(replace(current, flow=replace(current.flow, state=FlowState.FAILED)), now)
    if payment is None:
        payment, _ = _bound_payment(uow, flow)
    if payment is not None:
        abandon(ctx, uow, payment, expired=False)
    sca.failed(ctx, uow, flow.id)
    audit.record(
        ctx,
        uow,
        "payment.confirmation_tampered",
        actor=flow.user_id or "anonymous",
        subject=flow.binding.get("payment_id", ""),
        flow=flow.id,
        what=what,
    )
    if flow.user_id is not None:
        uow.accounts.notify(
            notification_id=ctx.new_id("ntf"),
            user_id=flow.user_id,
            kind="payment.confirmation_tampered",
            body="A payment confirmation did not match the payment you were shown, so it was "
            "stopped and nothing was paid. If you did not try to pay just now, change your "
            "password and review your devices.",
            now=now,
        )


def complete_confirmation(ctx: AppContext, uow: UnitOfWork, flow: Flow) -> Payment | None:
    """The flow passed: the held funds move to the merchant (automatic capture) or stay held as
    the authorization (manual capture). None when the terms changed under the flow (it has
    been ended and the funds released): the caller refuses."""
    now = ctx.now()
    payment, txn = _bound_payment(uow, flow)
    if payment is None:
        raise FlowEnded("this confirmation has ended; confirm the payment again", reason="ended")
    if not same_terms(transaction_of(payment, txn.nonce), txn):
        tampered(ctx, uow, flow, payment, what="server_record")
        return None
    after = transition(payment, PaymentEvent.AUTHENTICATE, now)
    if payment.capture_method is CaptureMethod.AUTOMATIC:
        resolve_hold(ctx, uow, payment, TransferKind.POST_PENDING)
        save(ctx, uow, payment, after)
    else:
        # The confirmation's hold lasted as long as the flow; the authorization lasts as long
        # as a manual capture may take. Released and placed again in one transaction.
        resolve_hold(ctx, uow, payment, TransferKind.VOID_PENDING)
        payer_id = after.payer_id
        assert payer_id is not None
        after = _take(ctx, uow, payment, after, payer_id, hold_ttl_s=ctx.durations.hold_ttl_s)
    sca.authenticated(ctx, uow, after, flow.id)
    audit.record(
        ctx, uow, "payment.confirmed", actor=flow.user_id or "", subject=payment.id, flow=flow.id
    )
    return after


def _end_confirmation(ctx: AppContext, uow: UnitOfWork, payment: Payment) -> None:
    """The payment will not be paid (the merchant canceled it): its confirmation flow ends,
    rather than stay open to answers it can only refuse, and its SCA decision failed."""
    decision = uow.sca.open_decision(payment.id)
    if decision is None or decision.flow_id is None:
        return
    current = uow.flows.get(decision.flow_id, lock=True)
    if current is not None and current.flow.state is FlowState.ACTIVE:
        ended = replace(current, flow=replace(current.flow, state=FlowState.FAILED))
        uow.flows.save(ended, ctx.now())
    sca.failed(ctx, uow, decision.flow_id)


def abandon_confirmation(ctx: AppContext, uow: UnitOfWork, flow: Flow) -> None:
    """The flow failed (attempts used up, or a device denied it): release the funds."""
    payment, _ = _bound_payment(uow, flow)
    if payment is not None:
        abandon(ctx, uow, payment, expired=False)
    sca.failed(ctx, uow, flow.id)


def abandon(ctx: AppContext, uow: UnitOfWork, payment: Payment, *, expired: bool) -> Payment:
    """Void (or expire) the hold of a confirmation that did not pass; the payment can be
    confirmed afresh, by anyone it was offered to."""
    after = transition(payment, PaymentEvent.ABANDON, ctx.now())
    kind = TransferKind.EXPIRE_PENDING if expired else TransferKind.VOID_PENDING
    if uow.ledger.resolution_of(payment.hold_transfer_id()) is None:
        resolve_hold(ctx, uow, payment, kind)
    after = replace(after, payer_id=None, spend_period=None)
    save(ctx, uow, payment, after)
    decision = uow.sca.open_decision(payment.id)
    if decision is not None and decision.flow_id is not None:
        sca.failed(ctx, uow, decision.flow_id)
    return after


def _take(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    after: Payment,
    payer_id: str,
    *,
    hold_ttl_s: int | None,
) -> Payment:
    """Move the payment's money from the payer's wallet to the merchant: posted now, or held
    (pending) for ``hold_ttl_s``. Counts against the payer's monthly limit either way."""
    now = ctx.now()
    amount = payment.amount
    limits = ctx.profile.limits
    period = limits.period(now)
    code = amount.currency.code
    wallet, merchant = uow.ledger.find_accounts(
        (AccountKind.WALLET, payer_id, code), (AccountKind.MERCHANT, payment.merchant_id, code)
    )
    if wallet is None:
        raise InsufficientFunds("insufficient funds", currency=code)
    if merchant is None:
        merchant = uow.ledger.open_account(AccountKind.MERCHANT, payment.merchant_id, code, now)
    held = hold_ttl_s is not None
    after = replace(
        after,
        payer_id=payer_id,
        spend_period=period,
        hold_seq=payment.hold_seq + 1 if held else payment.hold_seq,
    )
    transfer = Transfer(
        id=after.hold_transfer_id() if held else payment.charge_transfer_id(),
        kind=TransferKind.PENDING if held else TransferKind.POSTED,
        debit_account_id=wallet.id,
        credit_account_id=merchant.id,
        amount=amount,
        code="payment",
        created_at=now,
        reference=payment.id,
        expires_at=now + timedelta(seconds=hold_ttl_s) if hold_ttl_s is not None else None,
    )
    change = plan_transfer(debit=wallet, credit=merchant, amount=amount, pending=held)
    save(ctx, uow, payment, after)
    # The shared rows come last, so their locks are held only for the few statements left
    # before the commit: the payer's monthly counter, then both accounts (by id).
    if not uow.spend.add(
        payer_id, code, period, amount.amount_minor, limit=limits.monthly_max(amount.currency)
    ):
        limits.check_month(spent_minor=uow.spend.spent(payer_id, code, period), amount=amount)
        raise MonthlyLimitExceeded("this payment would pass the monthly limit")
    uow.ledger.apply(transfer, change, debit_limited=True)
    return after


def resolve_hold(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    kind: TransferKind,
    amount: Money | None = None,
) -> Money:
    now = ctx.now()
    hold = uow.ledger.transfer(payment.hold_transfer_id())
    if hold is None:
        raise NotFound("the payment has no hold")
    resolved_by = uow.ledger.resolution_of(hold.id)
    posted, change = plan_resolution(
        hold=hold, kind=kind, resolved_by=resolved_by, now=now, amount=amount
    )
    resolution = Transfer(
        id=f"{hold.id}:{kind.value}",
        kind=kind,
        debit_account_id=hold.debit_account_id,
        credit_account_id=hold.credit_account_id,
        amount=posted if posted.amount_minor > 0 else hold.amount,
        code="payment",
        created_at=now,
        pending_id=hold.id,
        reference=payment.id,
    )
    released = hold.amount - posted
    if released.amount_minor > 0 and payment.payer_id and payment.spend_period:
        # Before the accounts, in the same lock order as a confirmation (counter, then accounts).
        uow.spend.give_back(
            payment.payer_id, released.currency.code, payment.spend_period, released.amount_minor
        )
    uow.ledger.apply(resolution, change, debit_limited=False)
    return posted


def capture(
    ctx: AppContext,
    *,
    merchant_id: str,
    payment_id: str,
    amount_minor: int | None,
    on_commit: Hook | None = None,
) -> Payment:
    """Capture an authorized payment: all of it (no amount) or less; the rest is released."""

    def work(uow: UnitOfWork) -> Payment:
        payment = _owned(uow, payment_id, merchant_id, lock=True)
        if payment.status is not PaymentStatus.AUTHORIZED:
            transition(payment, PaymentEvent.CAPTURE, ctx.now())  # raises: nothing to capture
        amount = _in_currency_of(payment, amount_minor)
        captured = resolve_hold(ctx, uow, payment, TransferKind.POST_PENDING, amount)
        after = transition(payment, PaymentEvent.CAPTURE, ctx.now(), captured=captured)
        save(ctx, uow, payment, after)
        return after

    return ctx.run(work, on_commit)


# The states in which a payment holds the payer's funds: a cancel releases them at once (the
# expiry job leaves a canceled payment alone).
_CANCEL_RELEASES = frozenset(
    {PaymentStatus.AUTHORIZED, PaymentStatus.REQUIRES_ACTION, PaymentStatus.IN_REVIEW}
)


def cancel(
    ctx: AppContext, *, merchant_id: str, payment_id: str, on_commit: Hook | None = None
) -> Payment:
    def work(uow: UnitOfWork) -> Payment:
        # A confirmation under way is locked before its payment, as its own steps lock them.
        under_way = uow.sca.open_decision(payment_id)
        if under_way is not None and under_way.flow_id is not None:
            uow.flows.get(under_way.flow_id, lock=True)
        payment = _owned(uow, payment_id, merchant_id, lock=True)
        after = transition(payment, PaymentEvent.CANCEL, ctx.now())
        if payment.status in _CANCEL_RELEASES:
            resolve_hold(ctx, uow, payment, TransferKind.VOID_PENDING)
        if payment.status is PaymentStatus.REQUIRES_ACTION:
            _end_confirmation(ctx, uow, payment)
        save(ctx, uow, payment, after)
        return after

    return ctx.run(work, on_commit)


_HELD = frozenset({PaymentStatus.AUTHORIZED, PaymentStatus.IN_REVIEW})


def expire_holds(ctx: AppContext, *, batch: int = bounds.HOLD_EXPIRY_BATCH) -> int:
    """Release holds whose time ran out (authorized payments not captured, payments in review no
    operator decided) and mark their payments expired. Safe to run from many
    processes at once: each hold is resolved once (unique ``pending_id``)."""

    def work(uow: UnitOfWork) -> int:
        done = 0
        for hold in uow.ledger.expired_holds(ctx.now(), limit=batch):
            payment = uow.payments.get(hold.reference or "", lock=True)
            if payment is None or payment.hold_transfer_id() != hold.id:
                continue
            if payment.status is PaymentStatus.REQUIRES_ACTION:
                abandon(ctx, uow, payment, expired=True)  # its confirmation flow ran out
                done += 1
                continue
            if payment.status not in _HELD:
                continue
            after = transition(payment, PaymentEvent.EXPIRE, ctx.now())
            resolve_hold(ctx, uow, payment, TransferKind.EXPIRE_PENDING)
            save(ctx, uow, payment, after)
            done += 1
        return done

    return ctx.run(work)


def refund(
    ctx: AppContext,
    *,
    merchant_id: str,
    payment_id: str,
    amount_minor: int | None,
    reason: str | None,
    on_commit: Hook | None = None,
) -> Refund:
    refund_id = ctx.new_id("re")

    def work(uow: UnitOfWork) -> Refund:
        now = ctx.now()
        payment = _owned(uow, payment_id, merchant_id, lock=True)
        give = plan_refund(payment, _in_currency_of(payment, amount_minor))
        payer_id = payment.payer_id
        assert payer_id is not None and payment.spend_period is not None
        code = give.currency.code
        # Refunds give room back under the monthly limit of the month the payment counted in.
        uow.spend.give_back(payer_id, code, payment.spend_period, give.amount_minor)
        merchant = uow.ledger.open_account(AccountKind.MERCHANT, merchant_id, code, now)
        wallet = uow.ledger.open_account(AccountKind.WALLET, payer_id, code, now)
        transfer = Transfer(
            id=f"{refund_id}:refund",
            kind=TransferKind.POSTED,
            debit_account_id=merchant.id,
            credit_account_id=wallet.id,
            amount=give,
            code="refund",
            created_at=now,
            reference=payment.id,
        )
        change = plan_transfer(debit=merchant, credit=wallet, amount=give)
        uow.ledger.apply(transfer, change, debit_limited=True)
        after = replace(
            payment,
            amount_refunded_minor=payment.amount_refunded_minor + give.amount_minor,
            updated_at=now,
        )
        save(ctx, uow, payment, after)
        made = Refund(
            id=refund_id,
            payment_id=payment.id,
            amount=give,
            reason=reason,
            transfer_id=transfer.id,
            created_at=now,
        )
        uow.payments.add_refund(made)
        return made

    return ctx.run(work, on_commit)


def refunds_of(ctx: AppContext, *, merchant_id: str, payment_id: str) -> list[Refund]:
    def work(uow: UnitOfWork) -> list[Refund]:
        _owned(uow, payment_id, merchant_id, lock=False)
        return uow.payments.refunds_of(payment_id)

    return ctx.read(work)
