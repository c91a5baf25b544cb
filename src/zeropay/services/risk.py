"""The risk engine, live: the same ``decide`` and ``learn`` as a replay, over records kept in the
database and locked by each event that reads and changes them.

An event is *assessed* inside the transaction of the use case it guards: the four records it
touches (user, device key, IP, payee) are locked in one order, decided on, and the attempt is
learned at once (velocity, failures, who was seen where). What the engine learns from the
*outcome* waits until the outcome is known: an allowed payment when it commits, a challenge when
the flow that asks for its factors passes or fails (``settle``). A review or a block grants
nothing. Every decision is stored with its event (as a replay line), score, reasons, factors
and the version of the rules.

The user's consents (``domain.consents``) are read with the records: an event of a user who
withholds a signal group is decided, learned and stored with it withheld, so a withheld
location is never stored with the decision nor learned in the user's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from zeropay.domain.consents import withheld
from zeropay.domain.errors import NotFound, RiskBlocked
from zeropay.domain.factors import Factor
from zeropay.domain.payments import PaymentStatus
from zeropay.domain.risk.engine import (
    Action,
    RiskDecision,
    decide,
    device_trust,
    learn_attempt,
    learn_outcome,
)
from zeropay.domain.risk.events import (
    EventType,
    RiskEvent,
    event_as_input,
    parse_event,
    withholding,
)
from zeropay.domain.risk.state import (
    RiskView,
    UserRisk,
    dump_device,
    dump_ip,
    dump_payee,
    dump_user,
    load_device,
    load_ip,
    load_payee,
    load_user,
)
from zeropay.domain.risk.trust import session_trust
from zeropay.domain.sessions import Session
from zeropay.services import audit
from zeropay.services.context import AppContext, RiskSetup, UnitOfWork
from zeropay.services.factor_checks import Requester
from zeropay.services.ports import RecordKey, StoredAssessment
from zeropay.services.risk_replay import located

RECENT_DECISIONS_SHOWN = 20


class Settled(StrEnum):
    SETTLED = "settled"  # final with nothing more to learn: a review or a block grants nothing
    PENDING = "pending"  # a challenge (or a payment not yet committed) waits for its outcome
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Assessed:
    event: RiskEvent
    decision: RiskDecision

    @property
    def id(self) -> str:
        return self.event.id


def addressed_subject(index_hex: str) -> str:
    """The user subject of a flow started by an email address that names no account: failures
    count against the address as they would against an account (no enumeration)."""
    return f"addr:{index_hex}"


def live_event(
    ctx: AppContext,
    setup: RiskSetup,
    *,
    kind: EventType,
    user: str,
    requester: Requester,
    device: str | None = None,
    **fields: Any,
) -> RiskEvent:
    """An event from a live request: the time is now, the device is the DPoP key's thumbprint
    (``device`` overrides it). The place is left to ``assess``, which asks GeoIP only when the
    user does not withhold their location."""
    proof = requester.proof
    return RiskEvent(
        id=ctx.new_id("rsk"),
        at_s=ctx.now().timestamp(),
        type=kind,
        user=user,
        device=device if device is not None else (proof.jkt if proof is not None else None),
        ip=requester.ip or None,
        user_agent=requester.user_agent or None,
        **fields,
    )


# ---- records ------------------------------------------------------------------------------------


def record_keys(event: RiskEvent) -> list[RecordKey]:
    """The records an event reads and changes: its user, and its device, IP and payee if any."""
    keys: list[RecordKey] = [("user", event.user)]
    if event.device is not None:
        keys.append(("device", event.device))
    if event.ip is not None:
        keys.append(("ip", event.ip))
    if event.payee is not None:
        keys.append(("payee", event.payee))
    return keys


def _locked_view(uow: UnitOfWork, event: RiskEvent, now: datetime) -> RiskView:
    docs = uow.risk.lock_records(record_keys(event), now)
    device, ip, payee = event.device, event.ip, event.payee
    return RiskView(
        user=load_user(docs[("user", event.user)]),
        device=load_device(docs[("device", device)]) if device is not None else None,
        ip=load_ip(docs[("ip", ip)]) if ip is not None else None,
        payee=load_payee(docs[("payee", payee)]) if payee is not None else None,
    )


def _save(uow: UnitOfWork, event: RiskEvent, view: RiskView, now: datetime) -> None:
    bodies: dict[RecordKey, dict[str, Any]] = {("user", event.user): dump_user(view.user)}
    if event.device is not None and view.device is not None:
        bodies[("device", event.device)] = dump_device(view.device)
    if event.ip is not None and view.ip is not None:
        bodies[("ip", event.ip)] = dump_ip(view.ip)
    if event.payee is not None and view.payee is not None:
        bodies[("payee", event.payee)] = dump_payee(view.payee)
    uow.risk.save_records(bodies, now)


# ---- deciding and settling ----------------------------------------------------------------------


def assess(
    ctx: AppContext,
    setup: RiskSetup,
    uow: UnitOfWork,
    event: RiskEvent,
    *,
    ref: str | None,
    allowed_passes: bool = False,
) -> Assessed:
    """Decide ``event`` and learn the attempt, in the caller's transaction. With
    ``allowed_passes`` an allowed event is learned as passed at once (the caller commits it in
    this transaction); otherwise it stays pending until ``settle``."""
    now = ctx.now()
    config = setup.config
    # The user's consents first: a withheld location is never even looked up.
    event = located(_consented(uow, event), setup.locate)
    view = _locked_view(uow, event, now)
    decision = decide(event, view, config)
    learn_attempt(event, view=view, config=config)
    state = Settled.PENDING
    if decision.action in (Action.REVIEW, Action.BLOCK):
        state = Settled.SETTLED
    elif decision.action is Action.ALLOW and allowed_passes:
        learn_outcome(event, decision, got_through=True, view=view, config=config)
        state = Settled.PASSED
    _save(uow, event, view, now)
    record(ctx, uow, event, decision, ref=ref, state=state, now=now)
    return Assessed(event, decision)


def _consented(uow: UnitOfWork, event: RiskEvent) -> RiskEvent:
    """The event with the signal groups its user withholds now; a subject that is no account
    (an address that names none) has made no choice."""
    return withholding(event, withheld(uow.consents.of_user(event.user)))


def record(
    ctx: AppContext,
    uow: UnitOfWork,
    event: RiskEvent,
    decision: RiskDecision,
    *,
    ref: str | None,
    state: Settled,
    now: datetime,
) -> None:
    """Keep the decision with its event; one that did not allow is a security event too."""
    uow.risk.add_assessment(
        StoredAssessment(
            id=event.id,
            user_subject=event.user,
            event_type=event.type.value,
            ref=ref,
            decision=decision,
            event=event_as_input(event),
            state=state.value,
            created_at=now,
        )
    )
    if decision.action is not Action.ALLOW:
        audit.record(
            ctx,
            uow,
            f"risk.{decision.action.value}",
            actor=event.user,
            subject=ref or event.id,
            assessment=event.id,
            kind=event.type.value,
            score=decision.score,
            reasons=list(decision.reasons),
            factors=[f.value for f in decision.factors],
            config_version=decision.config_version,
        )


def settle(
    ctx: AppContext, setup: RiskSetup, uow: UnitOfWork, assessment_id: str, *, passed: bool
) -> None:
    """Learn the outcome of a pending decision: the challenge's flow passed or failed, or the
    allowed payment committed. Once: a settled decision is left alone."""
    stored = uow.risk.assessment(assessment_id, lock=True)
    if stored is None or stored.state != Settled.PENDING:
        return
    now = ctx.now()
    # Withheld when decided, or since: a consent withdrawn while a challenge waited holds too.
    event = _consented(uow, parse_event(stored.event))
    view = _locked_view(uow, event, now)
    learn_outcome(event, stored.decision, got_through=passed, view=view, config=setup.config)
    _save(uow, event, view, now)
    uow.risk.set_state(
        assessment_id, state=(Settled.PASSED if passed else Settled.FAILED).value, now=now
    )


def asks_for_more(decision: RiskDecision) -> bool:
    """Whether a challenge is the engine's own (risk rose), not only its rule that a password
    never signs in alone -- which the policy's paths, each of two categories, already meet."""
    return decision.action is Action.CHALLENGE and "second_factor_required" not in decision.reasons


def refuse(decision: RiskDecision) -> RiskBlocked:
    return RiskBlocked(
        "refused for your protection; contact support if this was you",
        reasons=list(decision.reasons),
        score=decision.score,
    )


# ---- payments -----------------------------------------------------------------------------------


class Verdict(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"  # confirm with SCA, on a path with the named factors
    REVIEW = "review"


@dataclass(slots=True)
class PaymentCheck:
    """The engine's say on one payment confirmation, in two parts around the payment's own
    transaction: ``before`` decides (in a transaction of its own, so a refusal still counts as
    an attempt) and raises for a block; ``after`` learns the outcome inside the payment's
    transaction, so only a payment that commits teaches the engine anything. A challenge
    becomes the payment's confirmation flow, which settles the decision when it ends."""

    ctx: AppContext
    setup: RiskSetup
    session: Session
    requester: Requester
    assessment_id: str | None = None
    factors: tuple[Factor, ...] = ()  # what a challenge asks for
    clean: bool = False  # allowed with no signal at all (RTS Art. 18(2): TRA may apply)

    def before(self, payment_id: str) -> Verdict:
        outcome: tuple[Verdict | None, Exception | None] = self.ctx.run(
            lambda uow: self._decide(uow, payment_id)
        )
        verdict, refusal = outcome
        if refusal is not None:
            raise refusal
        assert verdict is not None
        return verdict

    def _decide(self, uow: UnitOfWork, payment_id: str) -> tuple[Verdict | None, Exception | None]:
        ctx, payer = self.ctx, self.session.user_id
        payment = uow.payments.get(payment_id)
        if payment is None or (payment.payer_id is not None and payment.payer_id != payer):
            raise NotFound("no such payment", payment_id=payment_id[:40])
        if payment.status is not PaymentStatus.REQUIRES_CONFIRMATION:
            # The payment's own rules answer: a confirmation in progress, or a refusal.
            return Verdict.ALLOW, None
        event = live_event(
            ctx,
            self.setup,
            kind=EventType.PAYMENT,
            user=payer,
            requester=self.requester,
            amount_minor=payment.amount.amount_minor,
            currency=payment.amount.currency.code,
            payee=payment.merchant_id,
            mcc=uow.merchants.mcc(payment.merchant_id),
        )
        made = assess(ctx, self.setup, uow, event, ref=payment_id)
        match made.decision.action:
            case Action.ALLOW:
                self.assessment_id = made.id
                self.clean = not made.decision.reasons
                return Verdict.ALLOW, None
            case Action.REVIEW:
                return Verdict.REVIEW, None
            case Action.BLOCK:
                return None, refuse(made.decision)
        self.assessment_id = made.id
        self.factors = tuple(made.decision.factors)
        return Verdict.CHALLENGE, None

    def after(self, uow: UnitOfWork, *, got_through: bool) -> None:
        if self.assessment_id is not None:
            settle(self.ctx, self.setup, uow, self.assessment_id, passed=got_through)

    def unanswerable(self, uow: UnitOfWork) -> None:
        """The challenge asks for what the payer does not hold: an operator decides instead.
        Not a failed challenge (nobody was asked), so it ends like a review, teaching nothing."""
        if self.assessment_id is not None:
            uow.risk.set_state(self.assessment_id, state=Settled.SETTLED.value, now=self.ctx.now())


# ---- what the user and operators see ------------------------------------------------------------


def my_trust(ctx: AppContext, session: Session) -> dict[str, Any]:
    return ctx.read(lambda uow: trust_view(ctx, ctx.risk, uow, session.user_id, session))


def trust_view(
    ctx: AppContext,
    setup: RiskSetup | None,
    uow: UnitOfWork,
    user_id: str,
    session: Session | None,
) -> dict[str, Any]:
    """Trust scores (0-100) of the user's devices and of ``session``, and recent decisions.
    With the engine off there are no scores, only the decisions made while it was on."""
    decisions = [decision_json(a) for a in uow.risk.recent(user_id, limit=RECENT_DECISIONS_SHOWN)]
    if setup is None:
        return {"engine": "off", "devices": [], "decisions": decisions}
    now_s = ctx.now().timestamp()
    doc = uow.risk.read_record(("user", user_id))
    user = load_user(doc) if doc is not None else UserRisk()
    devices = []
    for device in uow.devices.of_user(user_id):
        devices.append(
            {
                "id": device.id,
                "name": device.name,
                "trust": device_trust(user, device.jkt, now_s, setup.config),
            }
        )
    out: dict[str, Any] = {"engine": setup.config.version, "devices": devices}
    if session is not None:
        on_device = device_trust(user, session.jkt, now_s, setup.config) if session.jkt else 0
        out["session"] = {
            "id": session.id,
            "trust": session_trust(
                [m.factor for m in session.methods],
                authenticated_s=max(m.at.timestamp() for m in session.methods),
                now_s=now_s,
                device_trust=on_device,
            ),
        }
    out["decisions"] = decisions
    return out


def decision_json(a: StoredAssessment) -> dict[str, Any]:
    d = a.decision
    return {
        "id": a.id,
        "event": a.event_type,
        "at": a.created_at.isoformat(),
        "action": d.action.value,
        "score": d.score,
        "reasons": list(d.reasons),
        "factors": [f.value for f in d.factors],
        "config_version": d.config_version,
        "outcome": a.state,
    }
