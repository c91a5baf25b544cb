"""HTTP routes for authentication: flows, factors, devices, approvals.

A client runs a flow by starting it, then answering the step it names in ``next`` until the flow
is ``complete``; the server keeps the state and refuses a step out of order. Requests from a
device carry a DPoP proof (RFC 9449) of its key; the flow and the session it ends in are bound
to that key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field, StrictBool, StrictStr

from zeropay.api import render
from zeropay.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Ctx,
    CurrentRequester,
    CurrentSession,
)
from zeropay.api.schemas import Strict
from zeropay.domain import bounds
from zeropay.services import authn, enrollment, questions, recovery, totp
from zeropay.services.context import AppContext, urlsafe

router = APIRouter()

Short = Annotated[StrictStr, Field(max_length=64)]
Id = Annotated[StrictStr, Field(max_length=bounds.ID_LENGTH_MAX)]


class DeviceIn(Strict):
    name: Annotated[StrictStr, Field(max_length=bounds.DEVICE_NAME_LENGTH_MAX)]
    platform: Annotated[StrictStr, Field(max_length=bounds.PLATFORM_LENGTH_MAX)]
    # What the device keeps its keys in (README: Older phones); platform when not said.
    device_class: Literal["platform", "key_store", "software"] | None = None


class FlowStart(Strict):
    point: Short
    email: Annotated[StrictStr, Field(max_length=bounds.EMAIL_INPUT_LENGTH_MAX)] | None = None
    device: DeviceIn | None = None


class FlowStep(Strict):
    factor: Short
    password: Annotated[StrictStr, Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)] | None = None
    code: Annotated[StrictStr, Field(max_length=32)] | None = None
    credential: dict[str, Any] | None = None
    answers: dict[StrictStr, StrictStr] | None = Field(default=None, max_length=8)
    # pin: the device PIN (set at a registration without a passkey, checked afterwards).
    pin: Annotated[StrictStr, Field(max_length=bounds.PIN_LENGTH_MAX)] | None = None
    # device_key at a payment confirmation: the device's ES256 signature (r || s, base64url)
    # over the canonical transaction data, and optionally the bytes it signed (base64url).
    signature: Annotated[StrictStr, Field(max_length=128)] | None = None
    signed: Annotated[StrictStr, Field(max_length=bounds.SIGNED_TRANSACTION_LENGTH_MAX)] | None = (
        None
    )
    # Pages ask for the session in a __Host- cookie (HttpOnly, Secure, SameSite=Strict).
    use_cookie: StrictBool = False


class CodeRequest(Strict):
    factor: Literal["email_otp", "sms_otp"]


class Decision(Strict):
    decision: Literal["approve", "deny"]
    number: Annotated[StrictStr, Field(max_length=8)]


class CodeIn(Strict):
    code: Annotated[StrictStr, Field(max_length=32)]


class LabelIn(Strict):
    label: Annotated[StrictStr, Field(max_length=bounds.LABEL_LENGTH_MAX)] | None = None


class OcraIn(LabelIn):
    suite: Annotated[StrictStr, Field(max_length=bounds.OCRA_SUITE_LENGTH_MAX)] | None = None


class PasskeyConfirm(LabelIn):
    credential: dict[str, Any]


class PhoneIn(Strict):
    phone: Annotated[StrictStr, Field(max_length=bounds.PHONE_LENGTH_MAX)]


class AnswersIn(Strict):
    answers: dict[StrictStr, StrictStr] = Field(max_length=8)


class PasswordChange(Strict):
    new_password: Annotated[StrictStr, Field(max_length=bounds.PASSWORD_INPUT_LENGTH_MAX)]
    end_other_sessions: StrictBool = True


def _flow(ctx: AppContext, stored: Any) -> dict[str, Any]:
    return authn.flow_json(stored, ctx.now())


def outcome_response(ctx: AppContext, done: authn.Outcome, *, use_cookie: bool) -> JSONResponse:
    body: dict[str, Any] = {"flow": _flow(ctx, done.stored)}
    if done.session is not None:
        body["session"] = render.session(done.session, current=True)
    if done.device is not None:
        body["device"] = enrollment.device_json(done.device, current_device_id=done.device.id)
    if done.payment is not None:
        body["payment"] = render.payment(done.payment)
    if done.recovery is not None:
        body["recovery"] = recovery.recovery_json(done.recovery, ctx.now())
    csrf = urlsafe(ctx.random_bytes(24)) if done.token and use_cookie else None
    if done.token is not None:
        body["token_type"] = "DPoP" if done.session and done.session.jkt else "Bearer"
        if csrf is not None:
            body["csrf_token"] = csrf
        else:
            body["token"] = done.token
    response = JSONResponse(body, status_code=201 if done.token else 200)
    if done.token is not None and csrf is not None:
        set_session_cookies(ctx, response, done.token, csrf)
    return response


def set_session_cookies(ctx: AppContext, response: JSONResponse, token: str, csrf: str) -> None:
    """``__Host-`` cookies: Secure, Path=/, no Domain -- set by this host only, for this host
    only. The CSRF token is also readable by the page, which echoes it in X-CSRF-Token."""
    max_age = ctx.session_policy.absolute_timeout_s
    for name, value, http_only in ((SESSION_COOKIE, token, True), (CSRF_COOKIE, csrf, False)):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=True,
            httponly=http_only,
            samesite="strict",
        )


def clear_session_cookies(response: Response) -> None:
    """Expire both session cookies (same attributes, or the browser keeps them)."""
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=True, httponly=http_only, samesite="strict")


# ---- flows --------------------------------------------------------------------------------------


@router.post("/v1/auth/flows", status_code=201, tags=["authentication"])
def start_flow(ctx: Ctx, body: FlowStart, who: CurrentRequester) -> dict[str, Any]:
    """Start a login or device registration flow. The answer names the ``next`` factors."""
    stored = authn.start(
        ctx,
        point=body.point,
        email=body.email,
        device=body.device.model_dump() if body.device else None,
        requester=who,
    )
    return _flow(ctx, stored)


@router.post("/v1/me/step-up", status_code=201, tags=["authentication"])
def start_step_up(ctx: Ctx, session: CurrentSession, who: CurrentRequester) -> dict[str, Any]:
    """Start a step-up flow: re-authenticate before a sensitive action."""
    return _flow(ctx, authn.start(ctx, point="step_up", session=session, requester=who))


@router.get("/v1/auth/flows/{flow_id}", tags=["authentication"])
def get_flow(ctx: Ctx, flow_id: str, who: CurrentRequester) -> dict[str, Any]:
    return _flow(ctx, authn.view(ctx, flow_id, who))


@router.post("/v1/auth/flows/{flow_id}/codes", status_code=202, tags=["authentication"])
def send_code(ctx: Ctx, flow_id: str, body: CodeRequest, who: CurrentRequester) -> dict[str, Any]:
    """Send the email or SMS code for the flow's next step (10 minutes, once, this flow only)."""
    return _flow(ctx, authn.send_code(ctx, flow_id, body.factor, who))


@router.post("/v1/auth/flows/{flow_id}/passkey-options", tags=["authentication"])
def passkey_options(ctx: Ctx, flow_id: str, who: CurrentRequester) -> dict[str, Any]:
    """WebAuthn options for ``navigator.credentials.get`` (or ``create`` when registering)."""
    return authn.passkey_options(ctx, flow_id, who)


@router.post("/v1/auth/flows/{flow_id}/approval", tags=["authentication"])
def request_approval(ctx: Ctx, flow_id: str, who: CurrentRequester) -> dict[str, Any]:
    """Ask a bound device to approve. Show ``approval.number``: the approver types it."""
    return _flow(ctx, authn.request_approval(ctx, flow_id, who))


@router.post("/v1/auth/flows/{flow_id}/steps", tags=["authentication"])
def answer_step(ctx: Ctx, flow_id: str, body: FlowStep, who: CurrentRequester) -> JSONResponse:
    """Answer the next step. The last one answers 201 with the session."""
    payload = body.model_dump(exclude={"factor", "use_cookie"}, exclude_none=True)
    done = authn.submit(ctx, flow_id, factor=body.factor, payload=payload, requester=who)
    return outcome_response(ctx, done, use_cookie=body.use_cookie)


# ---- approvals, on a bound device ---------------------------------------------------------------


@router.get("/v1/me/approvals", tags=["authentication"])
def approvals(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    return {"data": [authn.approval_json(s) for s in authn.pending_approvals(ctx, session)]}


@router.post("/v1/me/approvals/{flow_id}", status_code=204, tags=["authentication"])
def decide(ctx: Ctx, session: CurrentSession, flow_id: str, body: Decision) -> Response:
    authn.decide_approval(
        ctx, session, flow_id, approve=body.decision == "approve", number=body.number
    )
    return Response(status_code=204)


# ---- factors -------------------------------------------------------------------------------------


@router.get("/v1/me/factors", tags=["factors"])
def factors(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    s = enrollment.summary(ctx, session)
    return {
        "password": True,
        "email_verified": s.email_verified,
        "authenticators": [enrollment.authenticator_json(a) for a in s.authenticators],
        "devices": [
            enrollment.device_json(d, current_device_id=session.device_id) for d in s.devices
        ],
        "recovery_codes_left": s.recovery_codes_left,
        "security_questions": s.security_questions,
    }


@router.post("/v1/me/factors/totp", status_code=201, tags=["factors"])
def enroll_totp(ctx: Ctx, session: CurrentSession, body: LabelIn) -> dict[str, Any]:
    """Start TOTP enrollment: scan ``qr_svg`` (or type ``secret``), then confirm with a code."""
    made = enrollment.enroll_totp(ctx, session, label=body.label)
    return {
        "id": made.authenticator_id,
        "otpauth_uri": made.uri,
        "secret": made.secret,
        "qr_svg": made.qr_svg,
    }


@router.post("/v1/me/factors/totp/{authenticator_id}/confirm", status_code=204, tags=["factors"])
def confirm_totp(
    ctx: Ctx, session: CurrentSession, authenticator_id: str, body: CodeIn
) -> Response:
    enrollment.confirm_totp(ctx, session, authenticator_id, body.code)
    return Response(status_code=204)


@router.post("/v1/me/factors/ocra", status_code=201, tags=["factors"])
def enroll_ocra(ctx: Ctx, session: CurrentSession, body: OcraIn) -> dict[str, Any]:
    """Start an OCRA app (payment confirmation codes, RFC 6287): keep ``seed_base32`` (or
    ``seed_hex``), then confirm with the app's code over ``test_question``. Shown once."""
    made = enrollment.enroll_ocra(ctx, session, label=body.label, suite=body.suite)
    return {
        "id": made.authenticator_id,
        "suite": made.suite,
        "seed_base32": totp.seed_base32(made.seed),
        "seed_hex": made.seed.hex(),
        "test_question": made.test_question,
    }


@router.post("/v1/me/factors/ocra/{authenticator_id}/confirm", status_code=204, tags=["factors"])
def confirm_ocra(
    ctx: Ctx, session: CurrentSession, authenticator_id: str, body: CodeIn
) -> Response:
    enrollment.confirm_ocra(ctx, session, authenticator_id, body.code)
    return Response(status_code=204)


@router.post("/v1/me/factors/passkey", status_code=201, tags=["factors"])
def enroll_passkey(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Creation options for ``navigator.credentials.create``; confirm with its answer."""
    authenticator_id, options = enrollment.passkey_options(ctx, session)
    return {"id": authenticator_id, "publicKey": options}


@router.post("/v1/me/factors/passkey/{authenticator_id}/confirm", status_code=201, tags=["factors"])
def confirm_passkey(
    ctx: Ctx, session: CurrentSession, authenticator_id: str, body: PasskeyConfirm
) -> dict[str, Any]:
    made = enrollment.confirm_passkey(
        ctx, session, authenticator_id, body.credential, label=body.label
    )
    return {"id": made}


@router.post("/v1/me/factors/sms", status_code=201, tags=["factors"])
def enroll_sms(ctx: Ctx, session: CurrentSession, body: PhoneIn) -> dict[str, Any]:
    return {"id": enrollment.enroll_sms(ctx, session, body.phone)}


@router.post("/v1/me/factors/sms/{authenticator_id}/confirm", status_code=204, tags=["factors"])
def confirm_sms(ctx: Ctx, session: CurrentSession, authenticator_id: str, body: CodeIn) -> Response:
    enrollment.confirm_sms(ctx, session, authenticator_id, body.code)
    return Response(status_code=204)


@router.delete("/v1/me/factors/{authenticator_id}", status_code=204, tags=["factors"])
def remove_factor(ctx: Ctx, session: CurrentSession, authenticator_id: str) -> Response:
    enrollment.remove_authenticator(ctx, session, authenticator_id)
    return Response(status_code=204)


@router.post("/v1/me/recovery-codes", status_code=201, tags=["factors"])
def recovery_codes(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    """Ten new single-use recovery codes, shown this once; earlier codes stop working."""
    return {"codes": enrollment.new_recovery_codes(ctx, session)}


@router.delete("/v1/me/recovery-codes", status_code=204, tags=["factors"])
def remove_recovery_codes(ctx: Ctx, session: CurrentSession) -> Response:
    """Every recovery code stops working (needs a recent strong sign-in)."""
    enrollment.remove_recovery_codes(ctx, session)
    return Response(status_code=204)


@router.get("/v1/security-questions", tags=["factors"])
def list_questions() -> dict[str, Any]:
    return {
        "data": [{"id": k, "text": v} for k, v in questions.QUESTIONS.items()],
        "required": bounds.SECURITY_QUESTIONS_REQUIRED,
    }


@router.put("/v1/me/security-questions", status_code=204, tags=["factors"])
def set_answers(ctx: Ctx, session: CurrentSession, body: AnswersIn) -> Response:
    enrollment.set_security_answers(ctx, session, body.answers)
    return Response(status_code=204)


@router.delete("/v1/me/security-questions", status_code=204, tags=["factors"])
def remove_answers(ctx: Ctx, session: CurrentSession) -> Response:
    """The security answers are deleted (needs a recent strong sign-in)."""
    enrollment.remove_security_answers(ctx, session)
    return Response(status_code=204)


@router.post("/v1/me/password", tags=["factors"])
def change_password(ctx: Ctx, session: CurrentSession, body: PasswordChange) -> dict[str, Any]:
    ended = enrollment.change_password(
        ctx, session, new_password=body.new_password, end_other_sessions=body.end_other_sessions
    )
    return {"sessions_ended": ended}


# ---- devices -------------------------------------------------------------------------------------


@router.get("/v1/me/devices", tags=["devices"])
def devices(ctx: Ctx, session: CurrentSession) -> dict[str, Any]:
    s = enrollment.summary(ctx, session)
    return {
        "data": [enrollment.device_json(d, current_device_id=session.device_id) for d in s.devices]
    }


@router.delete("/v1/me/devices/{device_id}", status_code=204, tags=["devices"])
def remove_device(ctx: Ctx, session: CurrentSession, device_id: str) -> Response:
    enrollment.remove_device(ctx, session, device_id)
    return Response(status_code=204)
