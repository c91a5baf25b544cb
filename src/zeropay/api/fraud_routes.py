"""HTTP routes for fraud reports and the platform's fraud rate (PSD2 RTS Art. 18-20).

Merchants flag a payment they refunded because it was fraudulent (API key scope
``refunds:write``). Risk operators report chargebacks (or either kind); support and risk
operators read the rate, its quarters and where transaction risk analysis is on. Operator routes
check the roles the account holds in the database and a passkey sign-in; the service checks the
roles again inside its own transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import Field, StrictInt, StrictStr

from zeropay.api.deps import Ctx, CurrentMerchant, CurrentSession, idempotent_request
from zeropay.api.problems import render_error
from zeropay.api.render import ts
from zeropay.api.schemas import Reason, Strict
from zeropay.domain.fraud import FraudRate, FraudReport, quarter_name
from zeropay.domain.operators import Operator, Permission, require
from zeropay.domain.sessions import Session
from zeropay.services import fraud, operators
from zeropay.services import idempotency as idem
from zeropay.services.context import AppContext

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _allowed(permission: Permission) -> Callable[[AppContext, Session], Operator]:
    def dependency(ctx: Ctx, session: CurrentSession) -> Operator:
        operator = operators.operator_of(ctx, session)
        require(operator.roles, permission)
        return operator

    return dependency


FraudReader = Annotated[Operator, Depends(_allowed(Permission.READ_FRAUD))]
FraudReporter = Annotated[Operator, Depends(_allowed(Permission.REPORT_FRAUD))]


class MerchantReportIn(Strict):
    amount: StrictInt | None = Field(
        default=None, description="Minor units; all that the payment captured by default"
    )
    currency: StrictStr | None = Field(
        default=None, min_length=3, max_length=3, description="The payment's currency"
    )
    reason: Reason | None = None


class OperatorReportIn(Strict):
    kind: StrictStr = Field(description="chargeback or refund_fraud")
    amount: StrictInt | None = None
    currency: StrictStr | None = Field(default=None, min_length=3, max_length=3)
    # Checked by the service (``domain.operators.parse_reason``): 1 to 500 printable characters.
    reason: StrictStr


def report_json(r: FraudReport, *, operator_view: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": r.id,
        "object": "fraud_report",
        "payment_id": r.payment_id,
        "kind": r.kind.value,
        "amount": r.amount.amount_minor,
        "currency": r.amount.currency.code,
        "counted": r.counted_minor,  # what it added to the fraud rate (once per payment)
        "reporter": r.reporter.value,
        "reason": r.reason,
        "reported_at": ts(r.reported_at),
    }
    if operator_view:
        body["reported_by"] = r.reported_by
    return body


def _day(value: datetime) -> str:
    return value.date().isoformat()


def _rate_json(rate: FraudRate) -> dict[str, Any]:
    value = rate.as_float()
    return {
        "rate": None if math.isinf(value) else value,  # fraud with no volume: no finite rate
        "fraud": round(rate.fraud_minor),
        "captured": round(rate.captured_minor),
    }


def status_json(s: fraud.FraudStatus) -> dict[str, Any]:
    """The fraud rate, in minor units of the profile's TRA currency, and where TRA is on."""
    return {
        "profile": s.profile.name,
        "currency": s.profile.tra_currency,
        "window": None
        if s.window is None
        else {"first_day": _day(s.window[0]), "last_day": _day(s.window[1])},
        "fresh": s.fresh,
        **_rate_json(s.rate),
        "by_currency": {
            code: {
                "captured": s.totals.captured_minor.get(code, 0),
                "fraud": s.totals.fraud_minor.get(code, 0),
            }
            for code in s.totals.currencies()
        },
        "unpriced": list(s.rate.unpriced),
        "quarter_reference_rate": s.quarter_reference,
        "quarters_above": s.quarters_above,
        "quarters": [
            {
                "quarter": quarter_name(q.period.starts_at),
                "first_day": _day(q.period.starts_at),
                **_rate_json(q.rate),
                "above": q.above,
            }
            for q in s.quarters
        ],
        "tra": [
            {"up_to": band.ceiling_minor, "reference_rate": band.reference_rate, "on": on}
            for band, on in s.bands
        ],
    }


# ---- merchants ----------------------------------------------------------------------------------


@router.post("/v1/payments/{payment_id}/fraud-reports", status_code=201, tags=["merchant"])
def report_fraud(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    payment_id: str,
    body: MerchantReportIn | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Flag a payment you refunded because it was fraudulent: all it captured by default, or
    ``amount``. It counts in the platform's fraud rate, once."""
    merchant.require("refunds:write")
    body = body or MerchantReportIn()
    answer = idem.run(
        ctx,
        idempotent_request(request, merchant.merchant_id, key, body.model_dump()),
        lambda hook: fraud.report_for_merchant(
            ctx,
            merchant_id=merchant.merchant_id,
            key_id=merchant.key_id,
            payment_id=payment_id,
            amount_minor=body.amount,
            currency_code=body.currency,
            reason=body.reason,
            on_commit=hook,
        ),
        render=lambda made: (201, report_json(made)),
        render_error=render_error,
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media = "application/problem+json" if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers, media_type=media)


@router.get("/v1/payments/{payment_id}/fraud-reports", tags=["merchant"])
def list_fraud_reports(ctx: Ctx, merchant: CurrentMerchant, payment_id: str) -> dict[str, Any]:
    merchant.require("payments:read")
    rows = fraud.reports_for_merchant(ctx, merchant_id=merchant.merchant_id, payment_id=payment_id)
    return {"data": [report_json(r) for r in rows]}


# ---- operators ----------------------------------------------------------------------------------


@router.post("/v1/operator/payments/{payment_id}/fraud-reports", status_code=201, tags=["operator"])
def report_fraud_as_operator(
    ctx: Ctx, operator: FraudReporter, payment_id: str, body: OperatorReportIn
) -> dict[str, Any]:
    """Report a payment as fraud (risk role): a ``chargeback`` from the payer's bank, or a
    ``refund_fraud``. The reason is kept in the audit log."""
    made = fraud.report_for_operator(
        ctx,
        operator,
        payment_id,
        kind=body.kind,
        amount_minor=body.amount,
        currency_code=body.currency,
        reason=body.reason,
    )
    return report_json(made, operator_view=True)


@router.get("/v1/operator/fraud", tags=["operator"])
def fraud_status(ctx: Ctx, operator: FraudReader) -> dict[str, Any]:
    """The platform's fraud rate by value over the last 90 closed days, the closed quarters
    (and how many in a row were above the reference rate), and whether transaction risk
    analysis is on in each band."""
    return status_json(fraud.status_for_operator(ctx, operator))
