"""Strong customer authentication for payments: which exemption applies to a confirmation, the
payer's counters since the last SCA, trusted beneficiaries and recurring series.

The rules are ``domain.exemptions``; this module reads what they need inside the confirmation's
own transaction and writes what they decided. The payer's counter row is locked first thing
after the payment row, so two payments confirmed at once are counted one after the other: of
two racing "fifth" payments, one is exempt and the other asks for SCA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.errors import NotFound
from zeropay.domain.exemptions import (
    AFTER_SCA,
    Counters,
    Decision,
    FraudStanding,
    Profile,
    ScaReason,
    Series,
    amount_in_tra_currency,
    decide,
)
from zeropay.domain.payments import Payment
from zeropay.domain.recovery import Restricted
from zeropay.domain.sessions import Session, require_recent_auth
from zeropay.services import audit, fraud, recovery
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.ports import ScaDecisionRecord, SeriesRecord

DECISIONS_SHOWN = 20


class Outcome:
    EXEMPT = "exempt"
    CHALLENGED = "challenged"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decided:
    decision: Decision
    counters: Counters  # before this payment
    last_sca_at: datetime | None


def decide_for(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    payer_id: str,
    *,
    risk_challenge: bool,
    risk_clean: bool,
) -> Decided | None:
    """Whether this payment may skip SCA, and under which exemption; the payer's counters are
    locked until the transaction ends. ``risk_clean``: the engine scored the payment and saw
    nothing abnormal (RTS Art. 18(2)), the condition of transaction risk analysis.

    None: no exemption profile is configured (``ZEROPAY_SCA_PROFILE=off``, for development)
    and the engine did not ask for SCA, so nothing is decided or counted."""
    now = ctx.now()
    profile = ctx.exemptions
    if profile is None and not risk_challenge:
        return None
    counters, last_sca_at = uow.sca.lock_counters(payer_id, now)
    if profile is None:
        return Decided(Decision(None, (ScaReason.RISK,)), counters, last_sca_at)
    payee = payment.merchant_id
    trusted = (
        frozenset({payee})
        if profile.trusted_beneficiaries and uow.sca.is_trusted(payer_id, payee)
        else frozenset()
    )
    series = None
    if payment.series_ref is not None:
        found = uow.sca.series(payee, payment.series_ref, payer_id)
        if found is not None:
            series = Series(payee=found.merchant_id, amount=found.amount, first_had_sca=True)
    fraud, amount_in_tra = None, None
    if risk_clean and profile.tra_bands:
        fraud, amount_in_tra = _tra_inputs(ctx, uow, profile, payment)
    decision = decide(
        profile,
        payment.amount,
        payee,
        counters=counters,
        trusted_payees=trusted,
        series=series,
        risk_challenge=risk_challenge,
        fraud=fraud,
        amount_in_tra_currency_minor=amount_in_tra,
    )
    return Decided(decision, counters, last_sca_at)


def _tra_inputs(
    ctx: AppContext, uow: UnitOfWork, profile: Profile, payment: Payment
) -> tuple[FraudStanding | None, int | None]:
    """The platform's fraud standing (rolling 90 days and closed quarters, ``services.fraud``)
    and the payment's amount in the profile's TRA currency, which places it in a band."""
    return fraud.standing(ctx, uow, profile), amount_in_tra_currency(profile, payment.amount)


def record(
    ctx: AppContext,
    uow: UnitOfWork,
    payment: Payment,
    payer_id: str,
    decided: Decided | None,
    *,
    flow_id: str | None,
) -> ScaDecisionRecord | None:
    """Keep the decision (the payer sees it) and, for an exempt payment, count it."""
    if decided is None:
        return None
    now = ctx.now()
    decision = decided.decision
    if decision.exempt:
        uow.sca.save_counters(
            payer_id,
            decided.counters.after_exempt(payment.amount),
            last_sca_at=decided.last_sca_at,
            now=now,
        )
    made = ScaDecisionRecord(
        id=ctx.new_id("sca"),
        payment_id=payment.id,
        user_id=payer_id,
        exemption=decision.exemption.value if decision.exemption else None,
        reasons=tuple(r.value for r in decision.sca_reasons),
        profile=ctx.exemptions.name if ctx.exemptions is not None else "off",
        flow_id=flow_id,
        outcome=Outcome.EXEMPT if decision.exempt else Outcome.CHALLENGED,
        created_at=now,
        updated_at=now,
    )
    uow.sca.add_decision(made)
    return made


def authenticated(ctx: AppContext, uow: UnitOfWork, payment: Payment, flow_id: str) -> None:
    """A confirmation flow passed: the payer's counters start again (RTS Art. 16), and the
    first payment of a recurring series establishes it (Art. 14)."""
    now = ctx.now()
    payer_id = payment.payer_id
    assert payer_id is not None
    uow.sca.lock_counters(payer_id, now)
    uow.sca.save_counters(payer_id, AFTER_SCA, last_sca_at=now, now=now)
    decision = uow.sca.decision_of_flow(flow_id)
    if decision is not None:
        uow.sca.set_outcome(decision.id, Outcome.AUTHENTICATED, now)
    ref = payment.series_ref
    if ref is not None and uow.sca.series(payment.merchant_id, ref, payer_id) is None:
        uow.sca.add_series(
            SeriesRecord(
                merchant_id=payment.merchant_id,
                series_ref=ref,
                user_id=payer_id,
                amount=payment.amount,
                first_payment_id=payment.id,
                created_at=now,
            )
        )


def failed(ctx: AppContext, uow: UnitOfWork, flow_id: str) -> None:
    decision = uow.sca.decision_of_flow(flow_id)
    if decision is not None and decision.outcome == Outcome.CHALLENGED:
        uow.sca.set_outcome(decision.id, Outcome.FAILED, ctx.now())


# ---- trusted beneficiaries (RTS Art. 13) --------------------------------------------------------


def add_trusted(ctx: AppContext, session: Session, merchant_id: object) -> bool:
    """Trust a payee: payments to it may skip SCA. Adding one is itself a sensitive change, so
    the session must have passed strong authentication within the last few minutes."""
    require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
    recovery.check(ctx, session, Restricted.ADD_PAYEE)
    if not isinstance(merchant_id, str) or len(merchant_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such merchant")

    def work(uow: UnitOfWork) -> bool:
        if uow.merchants.name(merchant_id) is None:
            raise NotFound("no such merchant", merchant_id=merchant_id[:40])
        added = uow.sca.add_trusted(session.user_id, merchant_id, session.id, ctx.now())
        if added:
            audit.record(
                ctx,
                uow,
                "beneficiary.trusted",
                actor=session.user_id,
                subject=merchant_id,
                session=session.id,
            )
        return added

    added: bool = ctx.run(work)
    return added


def remove_trusted(ctx: AppContext, session: Session, merchant_id: str) -> None:
    """Removing trust lowers what an attacker could do, so it needs no fresh SCA."""

    def work(uow: UnitOfWork) -> None:
        if not uow.sca.remove_trusted(session.user_id, merchant_id):
            raise NotFound("that payee is not trusted", merchant_id=merchant_id[:40])
        audit.record(ctx, uow, "beneficiary.untrusted", actor=session.user_id, subject=merchant_id)

    ctx.run(work)


# ---- what the payer sees -------------------------------------------------------------------------


def overview(ctx: AppContext, user_id: str) -> dict[str, Any]:
    """The payer's standing: exempt payments since the last SCA, how many more (or how much
    more) may skip it, trusted payees and recent decisions with their reasons."""

    def work(uow: UnitOfWork) -> dict[str, Any]:
        counters, last = uow.sca.read_counters(user_id)
        return {
            "profile": ctx.exemptions.name if ctx.exemptions is not None else "off",
            "since_last_sca": {
                "last_sca_at": last.isoformat() if last else None,
                "exempt_payments": counters.count,
                "spent": dict(sorted(counters.spent_minor.items())),
            },
            "low_value": _low_value_left(ctx.exemptions, counters),
            "trusted_beneficiaries": [
                {"merchant_id": b.merchant_id, "name": b.merchant_name, "added_at": b.created_at}
                for b in uow.sca.trusted(user_id)
            ],
            "decisions": [
                decision_json(d) for d in uow.sca.decisions_of(user_id, limit=DECISIONS_SHOWN)
            ],
        }

    out: dict[str, Any] = ctx.read(work)
    for b in out["trusted_beneficiaries"]:
        b["added_at"] = b["added_at"].isoformat()
    return out


def _low_value_left(profile: Profile | None, counters: Counters) -> dict[str, Any] | None:
    if profile is None or profile.low_value_rule is None:
        return None
    out: dict[str, Any] = {
        "rule": profile.low_value_rule.value,
        "ceiling_per_payment": dict(sorted(profile.ceiling_minor.items())),
    }
    if profile.low_value_rule.value == "count":
        out["exempt_payments_left"] = max(0, profile.count_max - counters.count)
    else:
        out["amount_left"] = {
            code: max(0, cap - counters.spent_minor.get(code, 0))
            for code, cap in sorted(profile.cumulative_minor.items())
        }
    return out


def decision_json(d: ScaDecisionRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "payment_id": d.payment_id,
        "exemption": d.exemption,
        "sca_required": d.exemption is None,
        "reasons": list(d.reasons),
        "profile": d.profile,
        "outcome": d.outcome,
        "at": d.created_at.isoformat(),
    }
