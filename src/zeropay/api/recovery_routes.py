"""HTTP routes for account recovery after its flow: completing it on the device that ran it,
"this wasn't me" (from the app or the emailed link), and the operators' queue of held ones.

The flow itself runs on the flow routes (``POST /v1/auth/flows`` with ``point: recovery``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field, StrictBool, StrictStr

from zeropay.api import render
from zeropay.api.auth_routes import set_session_cookies
from zeropay.api.deps import Ctx, CurrentRequester, CurrentSession
from zeropay.api.operator_routes import Decider, DecisionIn, ReviewReader
from zeropay.api.pages import html_page
from zeropay.api.schemas import Strict
from zeropay.domain import bounds
from zeropay.domain import recovery as rules
from zeropay.domain.errors import RateLimited, RecoveryLinkInvalid
from zeropay.services import enrollment, recovery
from zeropay.services.context import urlsafe

router = APIRouter()


Password = Annotated[StrictStr, Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)]


class CompleteIn(Strict):
    # Omitted: the password stays as it was (a lost phone, not a forgotten password).
    new_password: (
        Annotated[StrictStr, Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)] | None
    ) = None
    use_cookie: StrictBool = False


class LinkIn(Strict):
    token: Annotated[StrictStr, Field(max_length=rules.LINK_LENGTH_MAX)]


def _json(ctx: Ctx, found: rules.Recovery) -> dict[str, Any]:
    return recovery.recovery_json(found, ctx.now())


@router.get("/v1/auth/flows/{flow_id}/recovery", tags=["authentication"])
def get_recovery(ctx: Ctx, flow_id: str, who: CurrentRequester) -> dict[str, Any]:
    """The recovery this flow ended in: ``held`` (an operator is looking), ``ready`` or
    ``approved`` (complete it), ``denied``, ``completed`` or ``expired``."""
    jkt = who.proof.jkt if who.proof else None
    return _json(ctx, recovery.view(ctx, flow_id, jkt=jkt))


@router.post("/v1/auth/flows/{flow_id}/recovery/complete", tags=["authentication"])
def complete_recovery(
    ctx: Ctx, flow_id: str, body: CompleteIn, who: CurrentRequester
) -> JSONResponse:
    """Complete a ready (or approved) recovery from the device that ran its flow: an optional new
    password, the device bound if new, and a session with the flow's factors (201)."""
    done = recovery.complete(
        ctx,
        flow_id,
        jkt=who.proof.jkt if who.proof else None,
        user_agent=who.user_agent,
        new_password=body.new_password,
    )
    out: dict[str, Any] = {
        "recovery": _json(ctx, done.recovery),
        "session": render.session(done.session, current=True),
        "device": enrollment.device_json(done.device, current_device_id=done.device.id),
        "token_type": "DPoP",
    }
    csrf = urlsafe(ctx.random_bytes(24)) if body.use_cookie else None
    if csrf is not None:
        out["csrf_token"] = csrf
    else:
        out["token"] = done.token
    response = JSONResponse(out, status_code=201)
    if csrf is not None:
        set_session_cookies(ctx, response, done.token, csrf)
    return response


@router.get("/v1/me/recoveries", tags=["payer"])
def my_recoveries(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Recent recoveries of this account, newest first, with their cooling-off periods."""
    return {"items": [_json(ctx, r) for r in recovery.of_user(ctx, session)]}


@router.post("/v1/me/recoveries/{recovery_id}/not-me", tags=["payer"])
def not_me(ctx: Ctx, session: CurrentSession, recovery_id: str) -> dict[str, Any]:
    """ "This wasn't me": the account is frozen and every session ends (this one too)."""
    reported = recovery.report_by_session(ctx, session, recovery_id)
    return {"recovery": _json(ctx, reported), "account": "frozen"}


@router.post("/v1/recovery/not-me", tags=["payer"])
def not_me_by_link(ctx: Ctx, body: LinkIn) -> dict[str, Any]:
    """The emailed link's token: freezes the account (once, within 10 minutes)."""
    reported = recovery.report_by_link(ctx, body.token)
    return {"recovery": {"id": reported.id, "status": reported.state.value}, "account": "frozen"}


@router.post("/v1/recovery/not-me/resend", status_code=202, tags=["payer"])
def resend(ctx: Ctx, body: LinkIn) -> dict[str, Any]:
    """An expired but genuine link: a fresh one goes to the account's own address."""
    recovery.resend_link(ctx, body.token)
    return {"sent": True}


# ---- the page the emailed link opens -------------------------------------------------------------
#
# GET shows a button and changes nothing (mail scanners open links); the button posts the form to
# the same address, query string and all, so the page carries no request data of its own.


@router.get("/recovery/not-me", include_in_schema=False)
def not_me_page(request: Request) -> HTMLResponse:
    return html_page("not-me", request)


@router.post("/recovery/not-me", include_in_schema=False)
async def not_me_page_post(ctx: Ctx, request: Request) -> HTMLResponse:
    token = request.query_params.get("t", "")
    form = parse_qs((await request.body())[:256].decode("ascii", "replace"))
    try:
        if form.get("resend") == ["1"]:
            recovery.resend_link(ctx, token)
            return html_page("not-me-sent", request)
        recovery.report_by_link(ctx, token)
    except RecoveryLinkInvalid as exc:
        reason = exc.details.get("reason")
        page = {"expired": "not-me-expired", "used": "not-me-used"}.get(str(reason))
        return html_page(page or "not-me-invalid", request, status_code=400)
    except RateLimited:
        return html_page("not-me-sent", request)  # one was sent already: say the same
    return html_page("not-me-done", request)


# ---- operators ----------------------------------------------------------------------------------


@router.get("/v1/operator/recoveries", tags=["operator"])
def held_recoveries(ctx: Ctx, operator: ReviewReader) -> dict[str, Any]:
    """Recoveries the risk engine held, oldest first, with its reasons."""
    return {
        "items": [
            {**_json(ctx, r), "user_id": r.user_id, "risk_reasons": list(r.risk_reasons)}
            for r in recovery.held(ctx, operator)
        ]
    }


@router.post("/v1/operator/recoveries/{recovery_id}/approve", tags=["operator"])
def approve_recovery(
    ctx: Ctx, operator: Decider, recovery_id: str, body: DecisionIn
) -> dict[str, Any]:
    return _json(ctx, recovery.decide(ctx, operator, recovery_id, approve=True, reason=body.reason))


@router.post("/v1/operator/recoveries/{recovery_id}/deny", tags=["operator"])
def deny_recovery(
    ctx: Ctx, operator: Decider, recovery_id: str, body: DecisionIn
) -> dict[str, Any]:
    return _json(
        ctx, recovery.decide(ctx, operator, recovery_id, approve=False, reason=body.reason)
    )


@router.post("/v1/operator/users/{user_id}/unfreeze", tags=["operator"])
def unfreeze(ctx: Ctx, operator: Decider, user_id: str, body: DecisionIn) -> dict[str, Any]:
    """Unfreeze an account frozen by "this wasn't me", once support has checked who the owner
    is. The owner then recovers it with their own factors."""
    moved = recovery.unfreeze(
        ctx, user_id=user_id[: bounds.ID_LENGTH_MAX], actor=operator.user_id, reason=body.reason
    )
    return {"user_id": user_id, "unfrozen": moved}
