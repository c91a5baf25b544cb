"""HTTP routes: parse input into domain types, call one use case, map the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from zeropay.api import render
from zeropay.api.auth_routes import clear_session_cookies, outcome_response
from zeropay.api.deps import (
    Ctx,
    CurrentMerchant,
    CurrentRequester,
    CurrentSession,
    idempotent_request,
)
from zeropay.api.problems import render_error
from zeropay.api.schemas import (
    ApiKeyCreate,
    BeneficiaryIn,
    Capture,
    Credentials,
    PaymentCreate,
    RefundCreate,
    Registration,
    TopUp,
)
from zeropay.domain import bounds
from zeropay.domain.money import parse_money
from zeropay.domain.payments import CaptureMethod
from zeropay.domain.recovery import Restricted
from zeropay.services import (
    accounts,
    authn,
    merchants,
    payments,
    recovery,
    risk,
    sca,
    totp,
    wallet,
)
from zeropay.services import idempotency as idem
from zeropay.services.context import AppContext

router = APIRouter()
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
PAGE = Annotated[int, Query(ge=1, le=bounds.PAGE_SIZE_MAX)]


def _answer(
    ctx: AppContext,
    request: Request,
    *,
    scope: str,
    key: str | None,
    body: Any,
    call: Callable[[idem.Hook | None], Any],
    render_result: Callable[[Any], dict[str, Any]],
    status: int,
) -> JSONResponse:
    answer = idem.run(
        ctx,
        idempotent_request(request, scope, key, body),
        call,
        render=lambda result: (status, render_result(result)),
        render_error=render_error,
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    media = "application/problem+json" if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers, media_type=media)


# ---- payer: accounts and sessions -------------------------------------------------------------


@router.post("/v1/users", status_code=201, tags=["payer"])
def register(ctx: Ctx, body: Registration, who: CurrentRequester) -> dict[str, Any]:
    """Register a payer with email and password. The answer carries the sign-up flow: the code
    just emailed proves the address (``POST /v1/auth/flows/{id}/steps``, factor ``email_otp``)."""
    made, flow = authn.register(ctx, email=body.email, password=body.password, requester=who)
    return {
        "id": made.user_id,
        "email": made.email,
        "created_at": render.ts(made.created_at),
        "flow": authn.flow_json(flow, ctx.now()),
    }


@router.post("/v1/sessions", tags=["payer"])
def login(ctx: Ctx, body: Credentials, who: CurrentRequester) -> JSONResponse:
    """Sign in with email and password: a login flow's first step in one call. When the policy
    asks for more, the answer is 200 with the ``flow`` to continue; when the flow is complete,
    201 with the token (``Authorization: DPoP`` for a device-bound session)."""
    done = authn.password_login(ctx, email=body.email, password=body.password, requester=who)
    return outcome_response(ctx, done, use_cookie=False)


@router.get("/v1/sessions", tags=["payer"])
def list_sessions(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    rows = accounts.list_sessions(ctx, session)
    return {"data": [render.session(s, ua, current=s.id == session.id) for s, ua in rows]}


@router.delete("/v1/sessions/current", status_code=204, tags=["payer"])
def logout(ctx: Ctx, session: CurrentSession) -> Response:
    accounts.logout(ctx, session)
    response = Response(status_code=204)
    clear_session_cookies(response)
    return response


@router.delete("/v1/sessions/{session_id}", status_code=204, tags=["payer"])
def revoke_session(ctx: Ctx, session: CurrentSession, session_id: str) -> Response:
    if session_id != session.id:  # signing this one out is always allowed
        recovery.check(ctx, session, Restricted.END_SESSIONS)
    accounts.revoke_session(ctx, session, session_id)
    return Response(status_code=204)


@router.get("/v1/me", tags=["payer"])
def me(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    return {
        "id": session.user_id,
        "email": accounts.email_of(ctx, session.user_id),
        "session": render.session(session, current=True),
    }


@router.get("/v1/me/risk", tags=["payer"])
def my_risk(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """How far each of my devices and this session are trusted (0-100), and the risk engine's
    recent decisions about me with their reasons."""
    return risk.my_trust(ctx, session)


@router.get("/v1/me/notifications", tags=["payer"])
def my_notifications(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    rows = accounts.notifications(ctx, session.user_id)
    return {
        "data": [
            {"id": n.id, "kind": n.kind, "body": n.body, "created_at": render.ts(n.created_at)}
            for n in rows
        ]
    }


# ---- payer: wallet ----------------------------------------------------------------------------


@router.get("/v1/wallet", tags=["payer"])
def wallet_balances(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    return {"balances": [render.balance(a) for a in wallet.balances(ctx, session.user_id)]}


@router.get("/v1/wallet/transactions", tags=["payer"])
def wallet_history(
    ctx: Ctx,
    session: CurrentSession,
    limit: PAGE = 20,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    rows = wallet.history(ctx, session.user_id, limit=limit, before=before)
    return {"data": [render.movement(m) for m in rows], "has_more": len(rows) == limit}


@router.post("/v1/wallet/topups", status_code=201, tags=["payer"])
def top_up(
    ctx: Ctx, request: Request, session: CurrentSession, body: TopUp, key: IdempotencyKey = None
) -> JSONResponse:
    """Add money from a test source: ``test_card`` succeeds, ``test_card_declined`` fails."""
    amount = parse_money(body.amount, body.currency)
    transfer_id = wallet.topup_transfer_id(session.user_id, key) if key else ctx.new_id("top")

    def call(hook: idem.Hook | None) -> Any:
        return wallet.top_up(
            ctx,
            user_id=session.user_id,
            amount=amount,
            source=body.source,
            transfer_id=transfer_id,
            on_commit=hook,
        )

    return _answer(
        ctx,
        request,
        scope=session.user_id,
        key=key,
        body=body.model_dump(),
        call=call,
        render_result=lambda r: {
            "id": r[0].id,
            "amount": r[0].amount.amount_minor,
            "currency": r[0].amount.currency.code,
            "balance": render.balance(r[1]),
        },
        status=201,
    )


@router.get("/v1/checkout/{payment_id}", tags=["payer"])
def checkout(ctx: Ctx, session: CurrentSession, payment_id: str) -> dict[str, Any]:
    """What the payer is asked to pay: amount, currency, payee and description."""
    view = payments.checkout(ctx, payment_id=payment_id, payer_id=session.user_id)
    return {
        **render.payment(view.payment),
        "merchant_id": view.payment.merchant_id,
        "merchant_name": view.merchant_name,
    }


@router.post("/v1/checkout/{payment_id}/confirm", tags=["payer"])
def confirm(
    ctx: Ctx,
    request: Request,
    session: CurrentSession,
    who: CurrentRequester,
    payment_id: str,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Pay a merchant's payment request from the wallet. The risk engine decides first: a
    payment may be held for an operator (``status: in_review``, funds held) or refused (403
    ``risk_blocked``). Then SCA: an exempt payment goes through at once (``authentication``
    names the exemption); otherwise the funds are held, the payment is ``requires_action`` and
    ``next_action.flow`` is the confirmation flow to answer, bound to this amount and payee
    (``POST /v1/auth/flows/{id}/steps``); its last step moves the money."""
    check = risk.PaymentCheck(ctx, ctx.risk, session, who) if ctx.risk is not None else None
    return _answer(
        ctx,
        request,
        scope=session.user_id,
        key=key,
        body=None,
        call=lambda hook: payments.confirm(
            ctx,
            payment_id=payment_id,
            payer_id=session.user_id,
            session=session,
            requester=who,
            device_id=session.device_id,
            risk_check=check,
            on_commit=hook,
        ),
        render_result=lambda c: render.confirmation(c, ctx.now()),
        status=200,
    )


@router.get("/v1/me/sca", tags=["payer"])
def my_sca(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Strong customer authentication for my payments: exempt payments since my last SCA and
    how many more may skip it, my trusted payees, and each recent decision -- which exemption
    applied or why SCA was required."""
    return sca.overview(ctx, session.user_id)


@router.post("/v1/me/trusted-beneficiaries", status_code=201, tags=["payer"])
def trust_payee(ctx: Ctx, session: CurrentSession, body: BeneficiaryIn) -> Response:
    """Trust a merchant: payments to it may skip SCA (PSD2 RTS Art. 13). Needs a strong sign-in
    or step-up in the last few minutes (403 ``recent_auth_required`` otherwise)."""
    added = sca.add_trusted(ctx, session, body.merchant_id)
    return Response(status_code=201 if added else 200)


@router.delete("/v1/me/trusted-beneficiaries/{merchant_id}", status_code=204, tags=["payer"])
def untrust_payee(ctx: Ctx, session: CurrentSession, merchant_id: str) -> Response:
    sca.remove_trusted(ctx, session, merchant_id)
    return Response(status_code=204)


# ---- merchant ---------------------------------------------------------------------------------


@router.post("/v1/payments", status_code=201, tags=["merchant"])
def create_payment(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    body: PaymentCreate,
    key: IdempotencyKey = None,
) -> JSONResponse:
    merchant.require("payments:write")
    amount = parse_money(body.amount, body.currency)
    return _answer(
        ctx,
        request,
        scope=merchant.merchant_id,
        key=key,
        body=body.model_dump(),
        call=lambda hook: payments.create(
            ctx,
            merchant_id=merchant.merchant_id,
            amount=amount,
            description=body.description,
            reference=body.reference,
            capture_method=CaptureMethod(body.capture_method),
            series_ref=body.series_ref,
            on_commit=hook,
        ),
        render_result=render.payment,
        status=201,
    )


@router.get("/v1/payments", tags=["merchant"])
def list_payments(
    ctx: Ctx,
    merchant: CurrentMerchant,
    limit: PAGE = 20,
    starting_after: Annotated[str | None, Query(max_length=bounds.ID_LENGTH_MAX)] = None,
) -> dict[str, Any]:
    merchant.require("payments:read")
    rows = payments.list_payments(
        ctx, merchant_id=merchant.merchant_id, limit=limit, starting_after=starting_after
    )
    return {"data": [render.payment(p) for p in rows], "has_more": len(rows) == limit}


@router.get("/v1/payments/{payment_id}", tags=["merchant"])
def get_payment(ctx: Ctx, merchant: CurrentMerchant, payment_id: str) -> dict[str, Any]:
    merchant.require("payments:read")
    return render.payment(
        payments.get(ctx, merchant_id=merchant.merchant_id, payment_id=payment_id)
    )


@router.get("/v1/payments/{payment_id}/checkout-link", tags=["merchant"])
def checkout_link(ctx: Ctx, merchant: CurrentMerchant, payment_id: str) -> dict[str, Any]:
    """The hosted checkout page of a payment: redirect the payer to ``url``, or show ``qr_svg``
    (an SVG QR code of it) for a phone to scan. The payer confirms there with the wallet."""
    merchant.require("payments:read")
    paying = payments.get(ctx, merchant_id=merchant.merchant_id, payment_id=payment_id)
    url = f"{ctx.public_origins[0]}/pay/{paying.id}"
    return {"payment_id": paying.id, "url": url, "qr_svg": totp.qr_svg(url)}


@router.post("/v1/payments/{payment_id}/cancel", tags=["merchant"])
def cancel_payment(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    payment_id: str,
    key: IdempotencyKey = None,
) -> JSONResponse:
    merchant.require("payments:write")
    return _answer(
        ctx,
        request,
        scope=merchant.merchant_id,
        key=key,
        body=None,
        call=lambda hook: payments.cancel(
            ctx, merchant_id=merchant.merchant_id, payment_id=payment_id, on_commit=hook
        ),
        render_result=render.payment,
        status=200,
    )


@router.post("/v1/payments/{payment_id}/capture", tags=["merchant"])
def capture_payment(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    payment_id: str,
    body: Capture | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Capture an authorized (manual-capture) payment, in full or for less."""
    merchant.require("payments:write")
    body = body or Capture()
    return _answer(
        ctx,
        request,
        scope=merchant.merchant_id,
        key=key,
        body=body.model_dump(),
        call=lambda hook: payments.capture(
            ctx,
            merchant_id=merchant.merchant_id,
            payment_id=payment_id,
            amount_minor=body.amount,
            on_commit=hook,
        ),
        render_result=render.payment,
        status=200,
    )


@router.post("/v1/payments/{payment_id}/refunds", status_code=201, tags=["merchant"])
def refund_payment(
    ctx: Ctx,
    request: Request,
    merchant: CurrentMerchant,
    payment_id: str,
    body: RefundCreate | None = None,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Refund a succeeded payment in full (no amount) or in part; never more than was paid."""
    merchant.require("refunds:write")
    body = body or RefundCreate()
    return _answer(
        ctx,
        request,
        scope=merchant.merchant_id,
        key=key,
        body=body.model_dump(),
        call=lambda hook: payments.refund(
            ctx,
            merchant_id=merchant.merchant_id,
            payment_id=payment_id,
            amount_minor=body.amount,
            reason=body.reason,
            on_commit=hook,
        ),
        render_result=render.refund,
        status=201,
    )


@router.get("/v1/payments/{payment_id}/refunds", tags=["merchant"])
def list_refunds(ctx: Ctx, merchant: CurrentMerchant, payment_id: str) -> dict[str, Any]:
    merchant.require("payments:read")
    rows = payments.refunds_of(ctx, merchant_id=merchant.merchant_id, payment_id=payment_id)
    return {"data": [render.refund(r) for r in rows]}


@router.get("/v1/api-keys", tags=["merchant"])
def list_api_keys(ctx: Ctx, merchant: CurrentMerchant) -> dict[str, Any]:
    merchant.require("keys:manage")
    keys = merchants.list_api_keys(ctx, merchant_id=merchant.merchant_id)
    return {"data": [render.api_key(k) for k in keys]}


@router.post("/v1/api-keys", status_code=201, tags=["merchant"])
def create_api_key(ctx: Ctx, merchant: CurrentMerchant, body: ApiKeyCreate) -> dict[str, Any]:
    """Issue a key with the scopes given. The secret is in this response only."""
    merchant.require("keys:manage")
    issued = merchants.create_api_key(
        ctx,
        merchant_id=merchant.merchant_id,
        scopes=frozenset(body.scopes),
        label=body.label,
        actor=merchant.key_id,
    )
    return {"id": issued.key_id, "secret": issued.secret, "scopes": sorted(issued.scopes)}


@router.delete("/v1/api-keys/{key_id}", status_code=204, tags=["merchant"])
def revoke_api_key(ctx: Ctx, merchant: CurrentMerchant, key_id: str) -> Response:
    merchant.require("keys:manage")
    merchants.revoke_api_key(
        ctx, merchant_id=merchant.merchant_id, key_id=key_id, actor=merchant.key_id
    )
    return Response(status_code=204)
