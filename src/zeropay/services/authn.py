"""Authentication flows: sign-up verification, login, step-up, device registration, recovery.

Every access point runs the same engine. ``start`` plans the paths this user may take under the
policy and persists a flow bound to the DPoP key of the device that started it; ``submit``
checks one factor and moves the flow with ``domain.flows.transition``; the last step finishes
the flow (a session, a bound device, a verified address; for a recovery, a record that the
device completes in ``services.recovery``). The server decides the next step: a
factor the flow does not expect now is refused before any secret is looked at.

Every secret in play is single use, in one conditional statement shared by all processes: the
emailed code, the WebAuthn challenge, the TOTP step, the recovery code, the DPoP ``jti``.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.authenticators import (
    Authenticator,
    AuthenticatorKind,
    Device,
    parse_label,
)
from zeropay.domain.device_classes import DeviceClass, parse_device_class, registered_as
from zeropay.domain.dynamic_linking import (
    NONCE_BYTES,
    binding_of,
    bound_transaction,
    canonical,
    digest,
)
from zeropay.domain.errors import (
    AuthenticationFailed,
    Conflict,
    DomainError,
    FactorLocked,
    Forbidden,
    InvalidInput,
    NotFound,
    ProofInvalid,
    RateLimited,
    TransactionChanged,
    invariant,
)
from zeropay.domain.factors import Factor, parse_factor
from zeropay.domain.flows import (
    ADDRESSED,
    FactorFailed,
    FactorPassed,
    Flow,
    FlowState,
    Identified,
    Narrowed,
    check_step,
    start_flow,
    transition,
)
from zeropay.domain.payments import Payment
from zeropay.domain.policy import AccessPoint, plan_paths, risk_paths
from zeropay.domain.recovery import Recovery, Restricted
from zeropay.domain.risk.engine import Action, RiskDecision
from zeropay.domain.risk.events import EventType
from zeropay.domain.sessions import AuthMethod, Session
from zeropay.services import (
    accounts,
    audit,
    factor_checks,
    mail,
    notices,
    onboarding,
    passkeys,
    payments,
    recovery,
    risk,
)
from zeropay.services.accounts import Registered, email_index, parse_email
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.device_keys import VerifiedProof
from zeropay.services.factor_checks import (
    CODE_DIGITS,
    FAILED,
    PREVIOUS_NONCES,
    Checked,
    Requester,
    TransactionMismatch,
    code_hash,
)
from zeropay.services.fallbacks import DEVICE_CLASS, bind_pin, device_class, holds_pin
from zeropay.services.ports import StoredFlow

APPROVAL_DIGITS = 2  # number matching: the approver types what the new device shows
STEP_LEASE_S = 30  # an answer being checked holds its flow this long at most (a crashed process)
STARTABLE = frozenset(
    {
        AccessPoint.LOGIN,
        AccessPoint.STEP_UP,
        AccessPoint.DEVICE_REGISTRATION,
        AccessPoint.RECOVERY,
    }
)


@dataclass(frozen=True, slots=True)
class Outcome:
    stored: StoredFlow
    token: str | None = None
    session: Session | None = None
    device: Device | None = None
    blocked: RiskDecision | None = None  # the risk engine refused (the flow has failed)
    payment: Payment | None = None  # a payment confirmation flow that passed: the payment
    recovery: Recovery | None = None  # a recovery flow that passed: held or ready to complete
    refusal: DomainError | None = None  # raised once the transaction that ended the flow commits


# ---- starting a flow --------------------------------------------------------------------------


def parse_point(raw: object) -> AccessPoint:
    try:
        point = AccessPoint(raw) if isinstance(raw, str) else None
    except ValueError:
        point = None
    if point is None:
        raise InvalidInput(
            "unknown access point", field="point", expected=sorted(p.value for p in STARTABLE)
        )
    if point not in STARTABLE:
        raise InvalidInput(
            f"a {point.value} flow cannot be started here", field="point", reason="not_startable"
        )
    return point


def _require_proof(ctx: AppContext, requester: Requester, *, always: bool = False) -> None:
    if requester.proof is None and (always or ctx.policy.require_dpop):
        raise ProofInvalid(
            "this flow must be bound to a device key: send a DPoP proof", reason="missing"
        )


def _limit(ctx: AppContext, uow: UnitOfWork, key: str, *, max_count: int, window_s: int) -> None:
    """Fixed-window rate limit shared by every process (the counter lives in the database)."""
    now = ctx.now()
    start = int(now.timestamp()) // window_s * window_s
    window_start = datetime.fromtimestamp(start, now.tzinfo)
    expires = window_start + timedelta(seconds=2 * window_s)
    if uow.replay.hit(key, window_start, expires) > max_count:
        retry = int((window_start + timedelta(seconds=window_s) - now).total_seconds()) + 1
        raise RateLimited("too many attempts; wait and try again", retry_after_s=retry)


def available_factors(
    uow: UnitOfWork, user_id: str, requester: Requester, *, point: AccessPoint
) -> frozenset[Factor]:
    """The factors this user can present now, from this device."""
    out = {Factor.PASSWORD, Factor.EMAIL_OTP}
    kinds = {a.kind for a in uow.authenticators.of_user(user_id)}
    devices = uow.devices.of_user(user_id)
    this_device = next(
        (d for d in devices if requester.proof and d.jkt == requester.proof.jkt), None
    )
    if AuthenticatorKind.TOTP in kinds:
        out.add(Factor.TOTP)
    if AuthenticatorKind.SMS in kinds:
        out.add(Factor.SMS_OTP)
    if AuthenticatorKind.OCRA in kinds:
        out.add(Factor.OCRA)
    # "Passkey with user verification on a bound device": at login the passkey counts only
    # from a device bound to this user; registering a device creates its passkey.
    if point is AccessPoint.DEVICE_REGISTRATION or (
        AuthenticatorKind.PASSKEY in kinds and this_device is not None
    ):
        out.add(Factor.PASSKEY)
    if this_device is not None:
        out.add(Factor.DEVICE_KEY)
    # A device PIN counts only from its own device; registering a device without a platform
    # authenticator sets its PIN (services.fallbacks).
    if point is AccessPoint.DEVICE_REGISTRATION or holds_pin(uow, user_id, this_device):
        out.add(Factor.PIN)
    if any(d is not this_device for d in devices):
        out.add(Factor.BOUND_DEVICE_APPROVAL)
    if uow.authenticators.security_answers(user_id):
        out.add(Factor.SECURITY_QUESTION)
    if uow.authenticators.recovery_codes_left(user_id) > 0:
        out.add(Factor.RECOVERY_CODE)
    return frozenset(out)


def _public_paths(
    ctx: AppContext, uow: UnitOfWork, point: AccessPoint, binding: Mapping[str, str]
) -> tuple[tuple[Factor, ...], ...]:
    return plan_paths(ctx.policy, point, frozenset(Factor), _class_of(uow, binding))


def _class_of(uow: UnitOfWork, binding: Mapping[str, str]) -> DeviceClass | None:
    """The class of the device the flow is bound to: it narrows the paths (README: Older
    phones)."""
    return device_class(uow, binding, binding.get("jkt"))


def _narrowed(
    ctx: AppContext, uow: UnitOfWork, flow: Flow, factor: Factor, requester: Requester
) -> Flow:
    """An addressed flow's first passed factor: keep the user's own paths that begin with it."""
    if not flow.binding.get(ADDRESSED) or flow.done or flow.user_id is None:
        return flow
    available = available_factors(uow, flow.user_id, requester, point=flow.point)
    planned = plan_paths(ctx.policy, flow.point, available, _class_of(uow, flow.binding))
    keep = tuple(p for p in planned if p[0] is factor)
    if not keep:
        raise Forbidden("no way to pass this step with the factors enrolled", reason="no_path")
    return transition(flow, Narrowed(keep), ctx.now())


def start(
    ctx: AppContext,
    *,
    point: object,
    requester: Requester,
    email: object = None,
    session: Session | None = None,
    device: Mapping[str, object] | None = None,
) -> StoredFlow:
    access = parse_point(point)
    _require_proof(ctx, requester, always=access in _BINDS_DEVICE)
    address = parse_email(email) if email is not None else None
    binding: dict[str, str] = {}
    if requester.proof is not None:
        binding["jkt"] = requester.proof.jkt
    if requester.ip:
        binding["ip"] = requester.ip[:64]
    if access is AccessPoint.STEP_UP:
        if session is None:
            raise ProofInvalid("a step-up needs the session it steps up", reason="missing")
        binding["session_id"] = session.id
    if access is AccessPoint.DEVICE_REGISTRATION:
        if address is None:
            raise InvalidInput("email is required", field="email")
        binding.update(_parse_device(device, requester))
    if access is AccessPoint.RECOVERY:
        # By the address, like a login; the device that runs it is bound at the end if new.
        if address is None:
            raise InvalidInput("email is required", field="email")
        binding.update(_parse_device(device or _UNNAMED, requester))
    if access is AccessPoint.LOGIN and address is None:
        paths = tuple(p for p in ctx.policy.point(access).paths if p == (Factor.PASSKEY,))
        if not paths:
            raise InvalidInput("email is required", field="email")
    index = email_index(ctx, address) if address is not None else None

    def work(uow: UnitOfWork) -> StoredFlow:
        now = ctx.now()
        # Shared by every process. Keyed by the address, not the account, so an unknown
        # address is limited exactly like a known one (a 429 tells nothing).
        if requester.ip:
            _limit(
                ctx,
                uow,
                f"flow:ip:{requester.ip[:64]}",
                max_count=ctx.policy.login_attempts_per_ip_max,
                window_s=60,
            )
        if index is not None:
            _limit(
                ctx,
                uow,
                f"flow:email:{index.hex()[:32]}",
                max_count=ctx.policy.login_attempts_per_account_max,
                window_s=60,
            )
        user_id: str | None = None
        if session is not None:
            user_id = session.user_id
        elif index is not None:
            user = uow.accounts.user_by_email_index(index)
            user_id = user.id if user is not None and user.status == "active" else None
        if access is AccessPoint.DEVICE_REGISTRATION and uow.devices.by_jkt(binding["jkt"]):
            raise Conflict("this device key is already bound", reason="device_bound")
        if access is AccessPoint.RECOVERY:
            known = uow.devices.by_jkt(binding["jkt"])
            if known is not None and known.status != "active":
                # a removed device's key binds nothing again: this device needs a new key
                raise Conflict("this device key cannot be bound again", reason="device_bound")
        if session is not None:
            available = available_factors(uow, session.user_id, requester, point=access)
            paths = plan_paths(ctx.policy, access, available, _class_of(uow, binding))
        elif index is not None:
            paths = _public_paths(ctx, uow, access, binding)
            binding[ADDRESSED] = index.hex()[:32]  # the address, keyed: for its code limit
        else:
            opened = ctx.policy.point(access).paths_for(_class_of(uow, binding))
            paths = tuple(p for p in opened if p == (Factor.PASSKEY,))
        if not paths:
            raise Forbidden("no way to pass this step with the factors enrolled", reason="no_path")
        flow = start_flow(
            flow_id=ctx.new_id("flw"),
            point=access,
            rule=ctx.policy.point(access),
            paths=paths,
            user_id=user_id,
            now=now,
            binding=binding,
        )
        stored = StoredFlow(flow=flow)
        uow.flows.add(stored, now)
        return stored

    return ctx.run(work)


def register(
    ctx: AppContext, *, email: object, password: object, requester: Requester
) -> tuple[Registered, StoredFlow]:
    """A new account and its sign-up flow, in one transaction; the code goes out with it."""
    _require_proof(ctx, requester)
    flows: list[StoredFlow] = []

    def then(uow: UnitOfWork, made: Registered) -> None:
        flows.append(
            start_signup(
                ctx, uow, user_id=made.user_id, proof=requester.proof, password_at=made.created_at
            )
        )

    made = accounts.register(ctx, email=email, password=password, then=then)
    onboarding.started()
    return made, send_code(ctx, flows[0].flow.id, Factor.EMAIL_OTP.value, requester)


def password_login(
    ctx: AppContext, *, email: object, password: object, requester: Requester
) -> Outcome:
    """A login flow's start and its password step in one call. Any failure, a malformed address
    included, is the same ``AuthenticationFailed`` after the same work (no enumeration)."""
    try:
        parse_email(email)
    except InvalidInput:
        ctx.hasher.burn(password if isinstance(password, str) else "")
        raise AuthenticationFailed(FAILED) from None
    stored = start(ctx, point=AccessPoint.LOGIN.value, email=email, requester=requester)
    try:
        return submit(
            ctx,
            stored.flow.id,
            factor=Factor.PASSWORD.value,
            payload={"password": password},
            requester=requester,
        )
    except AuthenticationFailed:
        raise AuthenticationFailed(FAILED) from None  # the same bytes for every failure


def start_signup(
    ctx: AppContext,
    uow: UnitOfWork,
    *,
    user_id: str,
    proof: VerifiedProof | None,
    password_at: datetime,
) -> StoredFlow:
    """The flow a registration opens: the password is done; the emailed code proves the address
    before it can serve as a factor (against pre-account hijacking)."""
    binding = {"jkt": proof.jkt} if proof is not None else {}
    rule = ctx.policy.point(AccessPoint.SIGNUP)
    flow = start_flow(
        flow_id=ctx.new_id("flw"),
        point=AccessPoint.SIGNUP,
        rule=rule,
        paths=rule.paths,
        user_id=user_id,
        now=ctx.now(),
        binding=binding,
        done=(AuthMethod(Factor.PASSWORD.value, password_at),),
    )
    stored = StoredFlow(flow=flow)
    uow.flows.add(stored, ctx.now())
    return stored


_BINDS_DEVICE = frozenset({AccessPoint.DEVICE_REGISTRATION, AccessPoint.RECOVERY})
_UNNAMED = {"name": "Recovered device", "platform": "unknown"}


def _parse_device(device: Mapping[str, object] | None, requester: Requester) -> dict[str, str]:
    if not isinstance(device, Mapping):
        raise InvalidInput("device is required: {name, platform}", field="device")
    proof = requester.proof
    invariant(proof is not None, "device registration is bound to the new device's key")
    assert proof is not None
    name = parse_label(device.get("name"), field="device.name")
    platform = parse_label(device.get("platform"), field="device.platform")[
        : bounds.PLATFORM_LENGTH_MAX
    ]
    return {
        "jkt": proof.jkt,
        "jwk": proof.jwk_json(),
        "device_name": name,
        "platform": platform,
        DEVICE_CLASS: parse_device_class(device.get("device_class")).value,
    }


# ---- loading and checking a flow ----------------------------------------------------------------


def _load(ctx: AppContext, flow_id: object, requester: Requester) -> StoredFlow:
    if not isinstance(flow_id, str) or len(flow_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such flow")
    stored = ctx.read(lambda uow: uow.flows.get(flow_id))
    if stored is None:
        raise NotFound("no such flow")
    _check_binding(stored.flow, requester)
    return stored


def _check_binding(flow: Flow, requester: Requester) -> None:
    """A flow moves only for the device key that started it: a flow id seen by someone else
    (a shoulder, a log) is useless to them."""
    bound = flow.binding.get("jkt")
    if bound is None:
        return
    if requester.proof is None:
        raise ProofInvalid(
            "this flow is bound to a device key: send a DPoP proof", reason="missing"
        )
    if not hmac.compare_digest(requester.proof.jkt, bound):
        raise ProofInvalid("this flow belongs to another device key", reason="flow_key")


def view(ctx: AppContext, flow_id: object, requester: Requester) -> StoredFlow:
    return _load(ctx, flow_id, requester)


# ---- secrets sent for a step: email and SMS codes, WebAuthn options, approval requests -----------


def _new_code(ctx: AppContext, digits: int) -> str:
    # 64 random bits reduced mod 10^digits: the bias is below 2^-37.
    return str(int.from_bytes(ctx.random_bytes(8), "big") % 10**digits).zfill(digits)


def send_code(ctx: AppContext, flow_id: object, factor: object, requester: Requester) -> StoredFlow:
    """Send the email or SMS code for the flow's next step. The code works only in this flow,
    for ``code_ttl_s`` (10 minutes), once."""
    stored = _load(ctx, flow_id, requester)
    chosen = parse_factor(factor)
    if chosen not in (Factor.EMAIL_OTP, Factor.SMS_OTP):
        raise InvalidInput("only email_otp and sms_otp codes are sent", field="factor")
    code = _new_code(ctx, CODE_DIGITS)
    sms: list[tuple[str, str]] = []

    def work(uow: UnitOfWork) -> StoredFlow:
        now = ctx.now()
        current = _locked(uow, stored.flow.id)
        check_step(current.flow, chosen, now)
        if current.code_sends >= ctx.policy.code_sends_max:
            raise RateLimited("no more codes for this flow; start a new one", retry_after_s=0)
        # Across flows too, or new flows would mail an address without end. Keyed by the
        # address when the flow was started by one, so an unknown address is limited alike.
        flow = current.flow
        to = flow.binding.get(ADDRESSED) or flow.user_id or flow.id
        _limit(ctx, uow, f"codes:{to}", max_count=ctx.policy.code_sends_per_hour_max, window_s=3600)
        after = replace(
            current,
            code_hash=code_hash(ctx, current.flow.id, chosen, code),
            code_factor=chosen.value,
            code_expires_at=now + timedelta(seconds=ctx.policy.code_ttl_s),
            code_sends=current.code_sends + 1,
        )
        uow.flows.save(after, now)
        user_id = current.flow.user_id
        if user_id is None:
            return after  # an unknown address: nothing is sent, and nothing says so
        text = (
            f"Your ZeroPay code is {code[:4]} {code[4:]}. It works only for the "
            f"{current.flow.point.value.replace('_', ' ')} you just started, for "
            f"{ctx.policy.code_ttl_s // 60} minutes. Never share it."
        )
        if chosen is Factor.EMAIL_OTP:
            mail.queue(ctx, uow, user_id=user_id, subject="ZeroPay: your code", body=text)
        else:
            phone = _phone_of(ctx, uow, user_id)
            if phone is not None:
                sms.append((phone, text))
        audit.record(
            ctx, uow, "flow.code_sent", actor=user_id, subject=current.flow.id, factor=chosen.value
        )
        return after

    after = ctx.run(work)
    if sms and ctx.sms is not None:
        ctx.sms.send(to=sms[0][0], body=sms[0][1])
    return after


def _phone_of(ctx: AppContext, uow: UnitOfWork, user_id: str) -> str | None:
    for a in uow.authenticators.of_user(user_id):
        if a.kind is AuthenticatorKind.SMS and a.secret_ciphertext is not None:
            return ctx.keyring.decrypt(
                a.secret_ciphertext, table="authenticators", column="secret", row_id=a.id
            ).decode()
    return None


def passkey_options(ctx: AppContext, flow_id: object, requester: Requester) -> dict[str, Any]:
    """WebAuthn options for the flow's passkey step (``publicKey``): creation options when a
    device is being registered, request options otherwise. The challenge is stored and answers
    one ceremony. At a payment confirmation, also the ``transaction`` the challenge is the
    digest of (with this ceremony's nonce), for the wallet to check before it signs."""
    stored = _load(ctx, flow_id, requester)
    random_challenge = ctx.random_bytes(passkeys.CHALLENGE_BYTES)
    nonce = ctx.random_bytes(NONCE_BYTES)

    def work(uow: UnitOfWork) -> dict[str, Any] | None:
        now = ctx.now()
        current = _locked(uow, stored.flow.id)
        flow = current.flow
        check_step(flow, Factor.PASSKEY, now)
        challenge = random_challenge
        if flow.point is AccessPoint.PAYMENT_CONFIRMATION:
            if not payments.terms_hold(ctx, uow, flow):
                return None
            # Dynamic linking: the challenge is the transaction's digest. Each ceremony gets a
            # fresh nonce, so an assertion made for an earlier one is worth nothing now.
            txn = replace(bound_transaction(flow.binding), nonce=nonce)
            earlier = [*flow.binding.get(PREVIOUS_NONCES, "").split(), flow.binding["nonce"]]
            kept = " ".join(earlier[-bounds.CONFIRMATION_NONCES_KEPT :])
            flow = replace(flow, binding={**flow.binding, **binding_of(txn), PREVIOUS_NONCES: kept})
            current = replace(current, flow=flow)
            challenge = digest(txn)
        uow.flows.save(replace(current, challenge=challenge), now)
        mine = (
            [
                a
                for a in uow.authenticators.of_user(flow.user_id)
                if a.kind is AuthenticatorKind.PASSKEY and a.credential_id
            ]
            # An addressed flow names no credential before a factor has proven the person:
            # the list would tell who has an account and which passkeys (discoverable login).
            if flow.user_id and not (flow.binding.get(ADDRESSED) and not flow.done)
            else []
        )
        if flow.point is AccessPoint.DEVICE_REGISTRATION:
            made = passkeys.registration_options(
                ctx.relying_party,
                challenge=challenge,
                user_id=flow.user_id or ctx.new_id("usr"),
                user_name=flow.binding.get("device_name", "ZeroPay"),
                exclude=[a.credential_id for a in mine if a.credential_id],
            )
            return {"publicKey": made}
        options = passkeys.authentication_options(
            ctx.relying_party,
            challenge=challenge,
            allow=[a.credential_id for a in mine if a.credential_id],
        )
        if flow.point is AccessPoint.PAYMENT_CONFIRMATION:
            return {"publicKey": options, "transaction": transaction_json(flow)}
        return {"publicKey": options}

    options = ctx.run(work)
    if options is None:
        raise _changed()
    return options


def request_approval(ctx: AppContext, flow_id: object, requester: Requester) -> StoredFlow:
    """Ask the user's bound devices to approve this flow. Rate-limited per user (no push
    bombing), and the approver must type the number this device shows (number matching)."""
    stored = _load(ctx, flow_id, requester)
    number = _new_code(ctx, APPROVAL_DIGITS)

    def work(uow: UnitOfWork) -> StoredFlow:
        now = ctx.now()
        current = _locked(uow, stored.flow.id)
        flow = current.flow
        check_step(flow, Factor.BOUND_DEVICE_APPROVAL, now)
        key = f"approval:{flow.user_id or flow.id}"
        _limit(ctx, uow, key, max_count=ctx.policy.approval_requests_max, window_s=3600)
        after = replace(current, approval_code=number, approval_state="requested", approved_by=None)
        uow.flows.save(after, now)
        if flow.user_id is not None:
            uow.accounts.notify(
                notification_id=ctx.new_id("ntf"),
                user_id=flow.user_id,
                kind="approval.requested",
                body=(
                    "An account recovery is waiting for your approval. Approve it only if you are "
                    "recovering your account on another device"
                    if flow.point is AccessPoint.RECOVERY
                    else "A new sign-in is waiting for your approval. Approve it only if it is you"
                )
                + ", by typing the number shown on the other device.",
                now=now,
            )
            audit.record(ctx, uow, "approval.requested", actor=flow.user_id, subject=flow.id)
        return after

    return ctx.run(work)


def pending_approvals(ctx: AppContext, session: Session) -> list[StoredFlow]:
    def work(uow: UnitOfWork) -> list[StoredFlow]:
        device = _approving_device(uow, session)
        flows = uow.flows.awaiting_approval(
            session.user_id, ctx.now(), limit=bounds.APPROVALS_LISTED_MAX
        )
        return [s for s in flows if device.was_bound_before(s.flow.issued_at)]

    return ctx.read(work)


def _approving_device(uow: UnitOfWork, session: Session) -> Device:
    device = uow.devices.get(session.device_id) if session.device_id else None
    if device is None or device.status != "active" or session.aal < 2:
        raise Forbidden(
            "approve from a bound device signed in with two factors", reason="not_bound_device"
        )
    return device


def decide_approval(
    ctx: AppContext, session: Session, flow_id: object, *, approve: bool, number: object
) -> None:
    """Approve or deny a flow from a device bound before it started. A wrong number denies."""
    if not isinstance(flow_id, str) or not isinstance(number, str) or len(number) > 8:
        raise InvalidInput("flow id and number are strings", field="number")

    def work(uow: UnitOfWork) -> None:
        now = ctx.now()
        device = _approving_device(uow, session)
        # A device that recovered the account lately approves nothing (it could bring in more).
        recovery.check_in(uow, session, Restricted.APPROVE, now)
        current = uow.flows.get(flow_id, lock=True)
        if current is None or current.flow.user_id != session.user_id:
            raise NotFound("no such flow")
        flow = current.flow
        if current.approval_state != "requested" or flow.state is not FlowState.ACTIVE:
            raise Conflict("this flow is not waiting for approval", reason="not_requested")
        if flow.is_expired(now) or not device.was_bound_before(flow.issued_at):
            raise Forbidden("this device cannot approve that flow", reason="not_bound_device")
        if hmac.compare_digest(device.jkt, flow.binding.get("jkt", "")):
            # the approval is a second device's say: a device never approves its own flow
            raise Forbidden("approve from another device", reason="own_flow")
        matched = current.approval_code is not None and hmac.compare_digest(
            current.approval_code, number
        )
        granted = approve and matched
        after = replace(
            current,
            approval_state="approved" if granted else "denied",
            approved_by=device.id,
            flow=flow if granted else replace(flow, state=FlowState.FAILED),
        )
        uow.flows.save(after, now)
        if not granted:
            _settle(ctx, uow, flow, passed=False)
        audit.record(
            ctx,
            uow,
            "approval.granted" if granted else "approval.denied",
            actor=session.user_id,
            subject=flow.id,
            device=device.id,
            number_matched=matched,
        )

    ctx.run(work)


def _locked(uow: UnitOfWork, flow_id: str) -> StoredFlow:
    current = uow.flows.get(flow_id, lock=True)
    invariant(current is not None, "flows are never deleted while in use")
    assert current is not None
    return current


# ---- answering a step --------------------------------------------------------------------------


def submit(
    ctx: AppContext,
    flow_id: object,
    *,
    factor: object,
    payload: Mapping[str, object],
    requester: Requester,
) -> Outcome:
    stored = _load(ctx, flow_id, requester)
    chosen = parse_factor(factor)
    now = ctx.now()
    check_step(stored.flow, chosen, now)  # out of order: refused before any secret is checked
    # One answer at a time: answers raced at one flow would otherwise each cost an attempt
    # (and a lockout count) while the right one is being checked, and could fail the flow
    # under it.
    until = now + timedelta(seconds=STEP_LEASE_S)
    if not ctx.read(lambda uow: uow.flows.claim_step(stored.flow.id, now, until)):
        raise Conflict("another answer to this flow is being checked", reason="step_in_progress")
    paying = stored.flow.point is AccessPoint.PAYMENT_CONFIRMATION
    try:
        # The server checks its own record of the payment at every step, before any proof.
        if paying and not ctx.run(lambda uow: payments.terms_hold(ctx, uow, stored.flow)):
            raise _changed()
        try:
            checked = factor_checks.check(ctx, stored, chosen, payload, requester)
        except TransactionMismatch:
            ctx.run(lambda uow: payments.tampered(ctx, uow, stored.flow, None, what="proof"))
            raise _changed() from None
        except (AuthenticationFailed, FactorLocked) as exc:
            # A locked factor answers like a wrong one: a stranger cannot tell an account that
            # exists and is locked from one that does not exist; the owner was alerted at the
            # lock.
            clone = bool(exc.details.get("clone_signal"))
            after = ctx.run(
                lambda uow: _fail(ctx, uow, stored.flow.id, chosen, requester, clone=clone)
            )
            raise AuthenticationFailed(
                FAILED, attempts_left=after.flow.attempts_left, flow_id=after.flow.id
            ) from None
        done = ctx.run(lambda uow: _pass(ctx, uow, stored.flow.id, chosen, checked, requester))
        if done.blocked is not None:
            raise risk.refuse(done.blocked)  # after the commit: the attempt counts
        if done.refusal is not None:
            raise done.refusal  # after the commit: the flow has ended, the funds are released
        return done
    finally:
        ctx.read(lambda uow: uow.flows.release_step(stored.flow.id, until))


def _changed() -> TransactionChanged:
    return TransactionChanged(
        "the payment is not the one this confirmation was for; nothing was paid and the funds "
        "are released: open the payment again and confirm what it says now",
        reason="transaction_changed",
    )


def _fail(
    ctx: AppContext,
    uow: UnitOfWork,
    flow_id: str,
    factor: Factor,
    requester: Requester,
    *,
    clone: bool = False,
) -> StoredFlow:
    current = _locked(uow, flow_id)
    now = ctx.now()
    if current.flow.state is not FlowState.ACTIVE or current.flow.is_expired(now):
        return current
    after = replace(current, flow=transition(current.flow, FactorFailed(factor), now))
    uow.flows.save(after, now)
    _risk_of_failure(ctx, uow, current.flow, factor, requester, clone=clone)
    if after.flow.state is FlowState.FAILED:
        _settle(ctx, uow, after.flow, passed=False)
        if after.flow.point is AccessPoint.PAYMENT_CONFIRMATION:
            payments.abandon_confirmation(ctx, uow, after.flow)  # the funds are released
        audit.record(
            ctx,
            uow,
            "flow.failed",
            actor=after.flow.user_id or "anonymous",
            subject=flow_id,
            point=after.flow.point.value,
        )
    return after


# ---- the risk engine's say on a flow -------------------------------------------------------------

_RISK_POINTS = {
    AccessPoint.LOGIN: EventType.LOGIN,
    AccessPoint.DEVICE_REGISTRATION: EventType.DEVICE_REGISTRATION,
    AccessPoint.RECOVERY: EventType.RECOVERY,
}
_FIRST_FACTORS = frozenset({Factor.PASSWORD, Factor.PASSKEY})


def _risk_subject(flow: Flow) -> str | None:
    if flow.user_id is not None:
        return flow.user_id
    addressed = flow.binding.get(ADDRESSED)
    return risk.addressed_subject(addressed) if addressed else None


def _risk_of_failure(
    ctx: AppContext,
    uow: UnitOfWork,
    flow: Flow,
    factor: Factor,
    requester: Requester,
    *,
    clone: bool,
) -> None:
    """A failed first factor of a login is an event too: failures per user and per IP are how
    credential stuffing shows."""
    subject = _risk_subject(flow)
    setup = ctx.risk
    if setup is None or subject is None or flow.point is not AccessPoint.LOGIN or flow.done:
        return
    if factor not in _FIRST_FACTORS:
        return
    event = risk.live_event(
        ctx,
        setup,
        kind=EventType.LOGIN,
        user=subject,
        requester=requester,
        first_factor=factor,
        first_factor_ok=False,
        passkey_clone=clone,
    )
    risk.assess(ctx, setup, uow, event, ref=flow.id)


def _risk_of_first_factor(
    ctx: AppContext, uow: UnitOfWork, flow: Flow, factor: Factor, requester: Requester
) -> tuple[Flow, RiskDecision | None]:
    """The engine decides once the first factor has passed (it knows who it is then): allow,
    ask for more (the flow's paths narrow to ones with the factors it named), or block."""
    setup = ctx.risk
    kind = _RISK_POINTS.get(flow.point)
    user_id = flow.user_id
    if setup is None or kind is None or flow.done or user_id is None or "risk" in flow.binding:
        return flow, None
    login = kind is EventType.LOGIN
    event = risk.live_event(
        ctx,
        setup,
        kind=kind,
        user=user_id,
        requester=requester,
        device=flow.binding.get("jkt") if not login else None,
        first_factor=factor if login and factor in _FIRST_FACTORS else None,
        first_factor_ok=True if login else None,
    )
    made = risk.assess(ctx, setup, uow, event, ref=flow.id)
    flow = replace(flow, binding={**flow.binding, "risk": made.id})
    decision = made.decision
    if decision.action is Action.BLOCK:
        return flow, decision
    if kind is EventType.RECOVERY:
        # A recovery's paths are the engine's own answers to a recovery challenge (security
        # question + passkey on a trusted device, emailed code + approval from another, recovery
        # code + emailed code), and it is for people who lost a factor: a challenge is met by the
        # path, not narrowed to factors the user may no longer hold. Above the review threshold
        # it is held for an operator once its factors pass.
        if decision.action is Action.REVIEW:
            reasons = " ".join((decision.action.value, *decision.reasons))
            flow = replace(flow, binding={**flow.binding, recovery.HOLD: reasons})
        return flow, None
    if not risk.asks_for_more(decision):
        return flow, None
    available = available_factors(uow, user_id, requester, point=flow.point)
    paths = risk_paths(flow.paths, (factor,), decision.factors, available)
    if not paths:
        return flow, decision._replace(
            action=Action.BLOCK, reasons=(*decision.reasons, "no_factor_available")
        )
    return transition(flow, Narrowed(paths), ctx.now()), None


def _settle(ctx: AppContext, uow: UnitOfWork, flow: Flow, *, passed: bool) -> None:
    assessment = flow.binding.get("risk")
    if ctx.risk is not None and assessment:
        risk.settle(ctx, ctx.risk, uow, assessment, passed=passed)


def _pass(
    ctx: AppContext,
    uow: UnitOfWork,
    flow_id: str,
    factor: Factor,
    checked: Checked,
    requester: Requester,
) -> Outcome:
    now = ctx.now()
    current = _locked(uow, flow_id)
    flow = current.flow
    if checked.user_id is not None and flow.user_id is None:
        available = available_factors(uow, checked.user_id, requester, point=flow.point)
        paths = plan_paths(ctx.policy, flow.point, available, _class_of(uow, flow.binding))
        flow = transition(flow, Identified(checked.user_id, paths), now)
    flow = _narrowed(ctx, uow, flow, factor, requester)
    flow, blocked = _risk_of_first_factor(ctx, uow, flow, factor, requester)
    if blocked is not None:
        failed = replace(current, flow=replace(flow, state=FlowState.FAILED))
        uow.flows.save(failed, now)
        _settle(ctx, uow, failed.flow, passed=False)
        return Outcome(stored=failed, blocked=blocked)
    # Transition again under the row lock: of two racing answers to one step, one wins.
    flow = transition(flow, FactorPassed(factor), now)
    binding = {**flow.binding, **checked.binding}
    if checked.new_passkey is not None:
        made = checked.new_passkey
        binding["passkey_credential_id"] = _b64(made.credential_id)
        binding["passkey_public_key"] = _b64(made.public_key)
        binding["passkey_sign_count"] = str(made.sign_count)
    if checked.passkey_id is not None and checked.sign_count is not None:
        uow.authenticators.record_passkey_use(
            checked.passkey_id, sign_count=checked.sign_count, clone_signal=False, now=now
        )
    after = replace(current, flow=replace(flow, binding=binding))
    uow.flows.save(after, now)
    audit.record(
        ctx,
        uow,
        "flow.factor_passed",
        actor=flow.user_id or "anonymous",
        subject=flow.id,
        factor=factor.value,
        point=flow.point.value,
    )
    if after.flow.state is not FlowState.COMPLETE:
        return Outcome(stored=after)
    return _finish(ctx, uow, after, requester)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


# ---- finishing a flow --------------------------------------------------------------------------


def _finish(ctx: AppContext, uow: UnitOfWork, stored: StoredFlow, requester: Requester) -> Outcome:
    flow = stored.flow
    invariant(flow.user_id is not None, "a complete flow knows its user")
    assert flow.user_id is not None
    user_id = flow.user_id
    now = ctx.now()
    user = uow.accounts.user(user_id)
    if user is None or user.status != "active":  # frozen while the flow ran
        raise Forbidden("this account cannot sign in now", reason="account_not_active")
    if Factor.EMAIL_OTP in flow.done_factors:
        uow.accounts.mark_email_verified(user_id, now)  # the code proved the address
    # A recovery held for review has proved nothing to the engine yet: it learns nothing from it.
    _settle(ctx, uow, flow, passed=not flow.binding.get(recovery.HOLD))
    audit.record(
        ctx,
        uow,
        "flow.completed",
        actor=user_id,
        subject=flow.id,
        point=flow.point.value,
        factors=[f.value for f in flow.done_factors],
    )
    if flow.point is AccessPoint.PAYMENT_CONFIRMATION:
        paid = payments.complete_confirmation(ctx, uow, flow)
        if paid is None:
            failed = replace(stored, flow=replace(flow, state=FlowState.FAILED))
            uow.flows.save(failed, now)
            return Outcome(stored=failed, refusal=_changed())
        return Outcome(stored=stored, payment=paid)
    if flow.point is AccessPoint.RECOVERY:
        return Outcome(stored=stored, recovery=recovery.passed(ctx, uow, stored))
    if flow.point is AccessPoint.STEP_UP:
        session = uow.sessions.get(flow.binding["session_id"])
        invariant(session is not None and session.user_id == user_id, "step-up of own session")
        assert session is not None
        methods = (*session.methods, *flow.done)
        uow.sessions.add_methods(session.id, methods)
        return Outcome(stored=stored, session=replace(session, methods=methods))
    device: Device | None = None
    if flow.point is AccessPoint.DEVICE_REGISTRATION:
        device = _bind_device(ctx, uow, flow)
    jkt = flow.binding.get("jkt")
    if device is None and jkt is not None:
        found = uow.devices.by_jkt(jkt)
        device = found if found and found.user_id == user_id and found.status == "active" else None
    if device is not None:
        uow.devices.touch(device.id, now)
    token, session = accounts.issue_session(
        ctx,
        uow,
        user_id=user_id,
        methods=flow.done,
        jkt=jkt,
        device_id=device.id if device else None,
        user_agent=requester.user_agent,
    )
    return Outcome(stored=stored, token=token, session=session, device=device)


def _bind_device(ctx: AppContext, uow: UnitOfWork, flow: Flow) -> Device:
    """The device registration's last step: bind the key, keep the passkey made on the device
    (or the PIN set for it, on a device without a platform authenticator), start the
    reduced-limits period and tell every other device."""
    user_id = flow.user_id
    assert user_id is not None
    now = ctx.now()
    b = flow.binding
    if len(uow.devices.of_user(user_id)) >= bounds.DEVICES_PER_USER_MAX:
        raise Conflict("too many devices; remove one first", reason="too_many_devices")
    device = Device(
        id=ctx.new_id("dev"),
        user_id=user_id,
        name=b["device_name"],
        platform=b["platform"],
        jkt=b["jkt"],
        public_jwk=b["jwk"],
        status="active",
        created_at=now,
        last_seen_at=now,
        reduced_until=now + timedelta(seconds=ctx.policy.new_device_reduced_s),
        device_class=registered_as(
            DeviceClass(b.get(DEVICE_CLASS, DeviceClass.PLATFORM)),
            made_passkey="passkey_credential_id" in b,
        ),
    )
    others = uow.devices.of_user(user_id)
    uow.devices.add(device)
    pin = bind_pin(ctx, uow, b, device)
    passkey = _keep_passkey(ctx, uow, b, device) if "passkey_credential_id" in b else None
    invariant((pin is None) != (passkey is None), "a device registers with a passkey or a PIN")
    audit.record(
        ctx,
        uow,
        "device.bound",
        actor=user_id,
        subject=device.id,
        platform=device.platform,
        device_class=device.device_class.value,
        passkey=passkey,
        pin=pin,
    )
    notices.alert(
        ctx,
        uow,
        user_id=user_id,
        kind="device.added",
        subject="ZeroPay: a new device was added",
        body=f"A new device, {device.name} ({device.platform}), was added to your account. "
        f"It can make only small payments for the next "
        f"{ctx.policy.new_device_reduced_s // 3600} hours. If this wasn't you, remove it in "
        f"Devices and change your password."
        + (f" You have {len(others)} other device(s)." if others else ""),
    )
    onboarding.record_enrollment(ctx, uow, user_id)  # the device and its passkey
    return device


def _keep_passkey(ctx: AppContext, uow: UnitOfWork, b: Mapping[str, str], device: Device) -> str:
    """The passkey a registration made on its device, kept as the device's. Its id."""
    passkey = Authenticator(
        id=ctx.new_id("auth"),
        user_id=device.user_id,
        kind=AuthenticatorKind.PASSKEY,
        label=f"Passkey on {device.name}",
        status="active",
        created_at=ctx.now(),
        credential_id=base64.urlsafe_b64decode(b["passkey_credential_id"]),
        public_key=base64.urlsafe_b64decode(b["passkey_public_key"]),
        sign_count=int(b["passkey_sign_count"]),
        device_id=device.id,
    )
    if not uow.authenticators.add(passkey):
        raise Conflict("this passkey is already registered", reason="passkey_taken")
    return passkey.id


def flow_json(
    stored: StoredFlow, now: datetime, *, requester_sees_approval: bool = True
) -> dict[str, Any]:
    flow = stored.flow
    out: dict[str, Any] = {
        "id": flow.id,
        "point": flow.point.value,
        "status": flow.status(now),
        "paths": [[f.value for f in p] for p in flow.paths],
        "done": [{"factor": m.factor, "at": m.at.isoformat()} for m in flow.done],
        "next": sorted(f.value for f in flow.next_factors())
        if flow.status(now) == "active"
        else [],
        "attempts_left": flow.attempts_left,
        "issued_at": flow.issued_at.isoformat(),
        "expires_at": flow.expires_at.isoformat(),
    }
    if stored.code_expires_at is not None and stored.code_factor:
        out["code"] = {
            "factor": stored.code_factor,
            "expires_at": stored.code_expires_at.isoformat(),
        }
    if flow.point is AccessPoint.PAYMENT_CONFIRMATION:
        out["transaction"] = transaction_json(flow)
    if stored.approval_state is not None:
        out["approval"] = {"state": stored.approval_state}
        if stored.approval_state == "requested":  # only the flow's own device reads this
            out["approval"]["number"] = stored.approval_code
    return out


def approval_json(stored: StoredFlow) -> dict[str, Any]:
    b = stored.flow.binding
    return {
        "flow_id": stored.flow.id,
        "point": stored.flow.point.value,
        "device": {"name": b.get("device_name"), "platform": b.get("platform")},
        "ip": b.get("ip"),
        "issued_at": stored.flow.issued_at.isoformat(),
        "expires_at": stored.flow.expires_at.isoformat(),
    }


def transaction_json(flow: Flow) -> dict[str, Any]:
    """What a confirmation flow asks the payer to confirm, and the bytes each way of answering
    proves: ``canonical`` (what a device key signs), ``challenge`` (its SHA-256, the passkey
    challenge) and ``question`` (its hex, whose first digits are the OCRA question)."""
    txn = bound_transaction(flow.binding)
    data = canonical(txn)
    return {
        "payment_id": txn.payment_id,
        "amount": txn.amount.amount_minor,
        "currency": txn.amount.currency.code,
        "payee": txn.payee,
        "nonce": _b64(txn.nonce).rstrip("="),
        "canonical": _b64(data).rstrip("="),
        "challenge": _b64(digest(txn)).rstrip("="),
        "question": digest(txn).hex(),
    }
