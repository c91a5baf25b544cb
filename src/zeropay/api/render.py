"""Domain objects to JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from zeropay.domain.ledger import Account
from zeropay.domain.payments import Payment
from zeropay.domain.records import ApiKey, Refund
from zeropay.domain.sessions import Session
from zeropay.services.operators import Review
from zeropay.services.payments import Confirmation
from zeropay.services.ports import HeldForReview, ScaDecisionRecord
from zeropay.services.risk import decision_json
from zeropay.services.sca import decision_json as decision_json_sca
from zeropay.services.wallet import Movement


def ts(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def payment(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "object": "payment",
        "amount": p.amount.amount_minor,
        "currency": p.amount.currency.code,
        "description": p.description,
        "reference": p.reference,
        "capture_method": p.capture_method.value,
        "status": p.status.value,
        "series_ref": p.series_ref,
        "amount_captured": p.amount_captured_minor,
        "amount_refunded": p.amount_refunded_minor,
        "created_at": ts(p.created_at),
        "updated_at": ts(p.updated_at),
    }


def confirmation(c: Confirmation, now: datetime) -> dict[str, Any]:
    """A confirmation's answer: the payment, how SCA was decided (``authentication``) and, when
    the payer must confirm, the flow to answer (``next_action``)."""
    from zeropay.services.authn import flow_json  # render is imported by authn's routes

    out = payment(c.payment)
    if c.sca is not None:
        out["authentication"] = sca_decision(c.sca)
    if c.flow is not None:
        out["next_action"] = {"type": "confirm_payment", "flow": flow_json(c.flow, now)}
    return out


def sca_decision(d: ScaDecisionRecord) -> dict[str, Any]:
    return decision_json_sca(d)


def refund(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "refund",
        "payment_id": r.payment_id,
        "amount": r.amount.amount_minor,
        "currency": r.amount.currency.code,
        "reason": r.reason,
        "created_at": ts(r.created_at),
    }


def balance(a: Account) -> dict[str, Any]:
    return {
        "currency": a.currency.code,
        "available": a.balance.available,
        "held": a.balance.debits_pending,
        "posted": a.balance.posted,
    }


def movement(m: Movement) -> dict[str, Any]:
    t = m.transfer
    return {
        "id": t.id,
        "cursor": m.seq,
        "type": t.code,
        "direction": m.direction,
        "amount": t.amount.amount_minor,
        "currency": t.amount.currency.code,
        "payment_id": t.reference,
        "created_at": ts(t.created_at),
    }


def session(s: Session, user_agent: str | None = None, *, current: bool = False) -> dict[str, Any]:
    return {
        "id": s.id,
        "created_at": ts(s.created_at),
        "last_seen_at": ts(s.last_seen_at),
        "expires_at": ts(min(s.expires_at, s.idle_expires_at())),
        "absolute_expires_at": ts(s.expires_at),
        "methods": [{"factor": m.factor, "at": ts(m.at)} for m in s.methods],
        "aal": s.aal,
        "device_bound": s.jkt is not None,
        "device_id": s.device_id,
        "user_agent": user_agent,
        "current": current,
    }


def api_key(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "object": "api_key",
        "label": k.label,
        "scopes": sorted(k.scopes),
        "created_at": ts(k.created_at),
        "revoked_at": ts(k.revoked_at),
    }


def held_for_review(h: HeldForReview) -> dict[str, Any]:
    """A payment in the operators' queue. The risk decision that held it carries its reasons and
    score: operators see them, the payer and the merchant never do."""
    d = h.decision
    return {
        "id": h.payment.id,
        "object": "review",
        "payment": payment(h.payment),
        "payer_id": h.payment.payer_id,
        "merchant": {"id": h.payment.merchant_id, "name": h.merchant_name},
        "risk": None
        if d is None
        else {
            "assessment_id": d.id,
            "score": d.decision.score,
            "reasons": list(d.decision.reasons),
            "config_version": d.decision.config_version,
            "decided_at": ts(d.created_at),
        },
    }


def review(r: Review) -> dict[str, Any]:
    hold = r.hold
    return {
        **held_for_review(r.held),
        "decisions": [decision_json(a) for a in r.decisions],
        "hold": None
        if hold is None
        else {
            "id": hold.id,
            "amount": hold.amount.amount_minor,
            "currency": hold.amount.currency.code,
            "expires_at": ts(hold.expires_at),
            "resolution": None if r.resolved_by is None else r.resolved_by.kind.value,
        },
    }
