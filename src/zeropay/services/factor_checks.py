"""Checking one factor's answer for a flow step.

Each check raises ``AuthenticationFailed`` with one message whatever was wrong (PSD2 RTS Art.
4(3)(a)) and runs under the factor's lockout. What can be used once is used up by the check itself
in one conditional statement shared by all processes: the code in play, the WebAuthn challenge,
the TOTP or OCRA time step, the recovery code.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.authenticators import (
    Authenticator,
    AuthenticatorKind,
    sign_count_is_clone_signal,
)
from zeropay.domain.dynamic_linking import (
    bound_transaction,
    canonical,
    digest,
    parse_canonical,
    same_terms,
)
from zeropay.domain.errors import AuthenticationFailed, InvalidInput, ProofInvalid, invariant
from zeropay.domain.factors import Factor
from zeropay.domain.flows import ADDRESSED
from zeropay.domain.ocra import parse_payment_suite
from zeropay.domain.ocra import verify as verify_ocra
from zeropay.domain.pins import is_pin_shaped
from zeropay.domain.policy import AccessPoint
from zeropay.services import audit, fallbacks, lockouts, ocra_codes, passkeys, questions, totp
from zeropay.services.context import AppContext, RelyingParty, UnitOfWork
from zeropay.services.device_keys import VerifiedProof, verify_transaction_signature
from zeropay.services.ports import StoredFlow

CODE_DIGITS = 8  # 26.6 bits; NIST 800-63B §5.1.3.2 asks at least 20 for out-of-band codes
FAILED = "the factor was not accepted"  # one message for every failure (PSD2 RTS Art. 4(3)(a))


class TransactionMismatch(AuthenticationFailed):
    """A genuine proof over another transaction than the payment's (PSD2 RTS Art. 5): the
    confirmation flow ends at once instead of counting a failed attempt."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is asking: the verified DPoP proof of their device key, and where from."""

    proof: VerifiedProof | None = None
    ip: str = ""
    user_agent: str = ""


def code_hash(ctx: AppContext, flow_id: str, factor: Factor, code: str) -> bytes:
    return ctx.keyring.blind_index(f"{flow_id}:{factor.value}:{code}".encode(), purpose="flow.code")


@dataclass(frozen=True, slots=True)
class Checked:
    """What a successful check learned, applied in the transaction that moves the flow."""

    user_id: str | None = None  # a usernameless passkey names its user
    passkey_id: str | None = None
    sign_count: int | None = None
    new_passkey: passkeys.NewPasskey | None = None
    binding: Mapping[str, str] = field(default_factory=dict)  # added to the flow's binding


def check(
    ctx: AppContext,
    stored: StoredFlow,
    factor: Factor,
    payload: Mapping[str, object],
    requester: Requester,
) -> Checked:
    flow = stored.flow
    if factor is Factor.PASSKEY:
        return _check_passkey(ctx, stored, payload, requester)
    if factor is Factor.PIN and flow.point is AccessPoint.DEVICE_REGISTRATION:
        # Registering a device without a platform authenticator sets its PIN, as registering
        # one with it makes its passkey: nothing to check yet.
        return Checked(binding=fallbacks.set_for_registration(ctx, flow, payload.get("pin")))
    user_id = flow.user_id
    if user_id is None:
        ctx.hasher.burn(str(payload.get("password", "")))  # as slow as a real check
        raise AuthenticationFailed(FAILED)

    def run() -> Checked:
        _CHECKS[factor](ctx, stored, user_id, payload, requester)
        return Checked()

    return lockouts.guarded(ctx, user_id=user_id, factor=factor.value, check=run)


def _check_password(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    password = payload.get("password")
    if not isinstance(password, str) or len(password) > bounds.PASSWORD_INPUT_LENGTH_MAX:
        raise AuthenticationFailed(FAILED)
    user = ctx.read(lambda uow: uow.accounts.user(user_id))
    if user is None:
        raise AuthenticationFailed(FAILED)
    ctx.hasher.verify(user.password_hash, password)
    if ctx.hasher.needs_rehash(user.password_hash):
        rehash = ctx.hasher.hash(password)
        ctx.run(lambda uow: uow.accounts.set_password_hash(user_id, rehash))


def _check_code(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    factor = Factor(stored.code_factor) if stored.code_factor else None
    try:
        code = totp.parse_code(payload.get("code"), CODE_DIGITS)
    except InvalidInput:
        raise AuthenticationFailed(FAILED) from None
    if factor is None:
        raise AuthenticationFailed(FAILED)
    digest = code_hash(ctx, stored.flow.id, factor, code)
    if not ctx.read(
        lambda uow: uow.flows.consume_code(
            stored.flow.id, factor=factor.value, code_hash=digest, now=ctx.now()
        )
    ):
        raise AuthenticationFailed(FAILED)


def _check_totp(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    try:
        code = totp.parse_code(payload.get("code"))
    except InvalidInput:
        raise AuthenticationFailed(FAILED) from None
    apps = ctx.read(
        lambda uow: [
            a for a in uow.authenticators.of_user(user_id) if a.kind is AuthenticatorKind.TOTP
        ]
    )
    for app in apps:
        seed = _seed(ctx, app)
        try:
            step = totp.verify_totp(seed, code, now=ctx.now(), after_step=app.last_step).step
        except AuthenticationFailed:
            continue
        # Accept the step once, across processes; a racing twin of this request loses here.
        if _accept_step(ctx, app.id, step):
            return
    raise AuthenticationFailed(FAILED)


def _accept_step(ctx: AppContext, authenticator_id: str, step: int) -> bool:
    return bool(
        ctx.read(lambda uow: uow.authenticators.accept_totp_step(authenticator_id, step, ctx.now()))
    )


def _seed(ctx: AppContext, app: Authenticator) -> bytes:
    invariant(app.secret_ciphertext is not None, "an active TOTP or OCRA app has its seed")
    assert app.secret_ciphertext is not None
    return ctx.keyring.decrypt(
        app.secret_ciphertext, table="authenticators", column="secret", row_id=app.id
    )


def _check_ocra(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    """A code from one of the user's OCRA apps over the question of this flow's transaction."""
    flow = stored.flow
    # An OCRA code proves a transaction, not who is signing in: at any other point it is
    # worth nothing, whatever a policy file says.
    if flow.point is not AccessPoint.PAYMENT_CONFIRMATION:
        raise AuthenticationFailed(FAILED)
    apps = ctx.read(
        lambda uow: [
            a for a in uow.authenticators.of_user(user_id) if a.kind is AuthenticatorKind.OCRA
        ]
    )
    for app in apps:
        suite = parse_payment_suite(app.ocra_suite)
        try:
            code = totp.parse_code(payload.get("code"), suite.digits)
        except InvalidInput:
            raise AuthenticationFailed(FAILED) from None
        # The question comes from the flow's own binding, never from the client (dynamic
        # linking, PSD2 RTS Art. 5): a code made for another amount or payee matches nothing.
        question = ocra_codes.flow_question(flow.binding, suite)
        try:
            verified = verify_ocra(
                suite,
                _seed(ctx, app),
                code,
                expected_question=question,
                now=ctx.now(),
                drift_steps=ocra_codes.DRIFT_STEPS,
                step_last_used=app.last_step,
            )
        except AuthenticationFailed:
            continue
        invariant(verified.time_step is not None, "an app suite has a time step")
        # Accept the step once, across processes; a racing twin of this request loses here.
        if verified.time_step is not None and _accept_step(ctx, app.id, verified.time_step):
            return
    raise AuthenticationFailed(FAILED)


def _check_security_question(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    hashes = ctx.read(lambda uow: uow.authenticators.security_answers(user_id))
    questions.verify_answers(ctx, hashes, payload.get("answers"))


def _check_recovery_code(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    from zeropay.services import enrollment

    digest = enrollment.recovery_code_hash(ctx, user_id, payload.get("code"))
    if digest is None or not ctx.read(
        lambda uow: uow.authenticators.use_recovery_code(user_id, digest, ctx.now())
    ):
        raise AuthenticationFailed(FAILED)


def _check_approval(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    if stored.approval_state != "approved" or stored.approved_by is None:
        raise AuthenticationFailed(FAILED)


def _check_device_key(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    """The DPoP proof on this request was signed by a device bound to this user; to confirm a
    payment, the device key also signs the canonical transaction data (dynamic linking)."""
    proof = requester.proof
    device = ctx.read(lambda uow: uow.devices.by_jkt(proof.jkt)) if proof else None
    if device is None or device.user_id != user_id or device.status != "active":
        raise AuthenticationFailed(FAILED)
    if stored.flow.point is not AccessPoint.PAYMENT_CONFIRMATION:
        return
    bound = bound_transaction(stored.flow.binding)
    expected = canonical(bound)
    signature = payload.get("signature")
    signed = _signed_data(payload.get("signed"))
    try:
        verify_transaction_signature(device.public_jwk, signed or expected, signature)
    except ProofInvalid:
        raise AuthenticationFailed(FAILED) from None
    if signed is not None and signed != expected:
        said = parse_canonical(signed)
        if said is not None and same_terms(said, bound):
            raise AuthenticationFailed(FAILED)  # this payment under an earlier nonce: stale
        # The device really signed a transaction, and not this one: what it was shown is not
        # what the server holds (malware, or a page that lies). Not a wrong guess: the flow ends.
        raise TransactionMismatch(FAILED)


def _check_pin(
    ctx: AppContext,
    stored: StoredFlow,
    user_id: str,
    payload: Mapping[str, object],
    requester: Requester,
) -> None:
    """The PIN of the device this request's DPoP proof comes from: a PIN counts only on the
    device it was set on, so a copy of a software device key still lacks it, and a PIN seen
    over a shoulder is worth nothing without the device."""
    pin = payload.get("pin")
    proof = requester.proof
    device = ctx.read(lambda uow: uow.devices.by_jkt(proof.jkt)) if proof else None
    held = ctx.read(lambda uow: fallbacks.pin_of_device(uow, user_id, device)) if device else None
    if held is None or not is_pin_shaped(pin):
        ctx.hasher.burn(pin if isinstance(pin, str) else "")  # as slow as a real check
        raise AuthenticationFailed(FAILED)
    assert isinstance(pin, str)
    ctx.hasher.verify(fallbacks.pin_hash(ctx, held), pin)


def _signed_data(raw: object) -> bytes | None:
    """What the client says its device signed (optional; base64url of the canonical bytes)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > bounds.SIGNED_TRANSACTION_LENGTH_MAX:
        raise AuthenticationFailed(FAILED)
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, binascii.Error):
        raise AuthenticationFailed(FAILED) from None


_CHECKS = {
    Factor.PASSWORD: _check_password,
    Factor.EMAIL_OTP: _check_code,
    Factor.SMS_OTP: _check_code,
    Factor.TOTP: _check_totp,
    Factor.OCRA: _check_ocra,
    Factor.SECURITY_QUESTION: _check_security_question,
    Factor.RECOVERY_CODE: _check_recovery_code,
    Factor.BOUND_DEVICE_APPROVAL: _check_approval,
    Factor.DEVICE_KEY: _check_device_key,
    Factor.PIN: _check_pin,
}


def _check_passkey(
    ctx: AppContext, stored: StoredFlow, payload: Mapping[str, object], requester: Requester
) -> Checked:
    flow = stored.flow
    credential = passkeys.parse_credential(payload.get("credential"))
    challenge = stored.challenge
    # The challenge answers one ceremony: consumed before the answer is even checked.
    if challenge is None or not ctx.read(
        lambda uow: uow.flows.consume_challenge(flow.id, challenge)
    ):
        raise AuthenticationFailed(FAILED)
    rp = ctx.relying_party
    if flow.point is AccessPoint.DEVICE_REGISTRATION:
        if flow.user_id is None:
            raise AuthenticationFailed(FAILED)
        made = lockouts.guarded(
            ctx,
            user_id=flow.user_id,
            factor=Factor.PASSKEY.value,
            check=lambda: passkeys.verify_registration(
                rp, credential, expected_challenge=challenge
            ),
        )
        return Checked(new_passkey=made)
    credential_id = passkeys.credential_id_of(credential)
    known = ctx.read(lambda uow: uow.authenticators.by_credential_id(credential_id))
    if known is None or (flow.user_id is not None and known.user_id != flow.user_id):
        raise AuthenticationFailed(FAILED)
    if flow.user_id is None and flow.binding.get(ADDRESSED):
        raise AuthenticationFailed(FAILED)  # a flow for an unknown address signs no one in
    jkt = requester.proof.jkt if requester.proof else None
    device = ctx.read(lambda uow: uow.devices.by_jkt(jkt)) if jkt else None
    if flow.point in _FROM_BOUND_DEVICE and (
        device is None or device.user_id != known.user_id or device.status != "active"
    ):
        raise AuthenticationFailed(FAILED)  # a passkey logs in or pays only from a bound device
    invariant(known.public_key is not None, "an active passkey has its public key")
    assert known.public_key is not None
    public_key = known.public_key

    def check() -> Checked:
        if flow.point is AccessPoint.PAYMENT_CONFIRMATION:
            _refuse_other_transaction(rp, credential, challenge, public_key, flow.binding)
        assertion = passkeys.verify_assertion(
            rp, credential, expected_challenge=challenge, public_key=public_key
        )
        clone = sign_count_is_clone_signal(known.sign_count, assertion.sign_count)
        if clone:
            ctx.run(lambda uow: _record_clone(ctx, uow, known, assertion.sign_count))
            raise AuthenticationFailed(FAILED, clone_signal=True)  # the risk engine hears it
        return Checked(user_id=known.user_id, passkey_id=known.id, sign_count=assertion.sign_count)

    return lockouts.guarded(ctx, user_id=known.user_id, factor=Factor.PASSKEY.value, check=check)


PREVIOUS_NONCES = "previous_nonces"  # a confirmation flow's earlier ceremonies, newest last


def earlier_challenges(binding: Mapping[str, str]) -> list[bytes]:
    """The passkey challenges of a confirmation flow's earlier ceremonies."""
    txn = bound_transaction(binding)
    return [
        digest(replace(txn, nonce=base64.urlsafe_b64decode(n)))
        for n in binding.get(PREVIOUS_NONCES, "").split()
    ]


# "Passkey with user verification on a bound device": a recovery's passkey step too.
_FROM_BOUND_DEVICE = frozenset(
    {AccessPoint.LOGIN, AccessPoint.PAYMENT_CONFIRMATION, AccessPoint.RECOVERY}
)


def _refuse_other_transaction(
    rp: RelyingParty,
    credential: dict[str, Any],
    challenge: bytes,
    public_key: bytes,
    binding: Mapping[str, str],
) -> None:
    """A payment's passkey challenge is the digest of its transaction. An assertion that is
    genuine but signs another challenge confirms another transaction: the flow ends. One made
    for an earlier ceremony of this flow (this payment, an earlier nonce) is only stale."""
    signed = passkeys.challenge_of(credential)
    if signed is None or hmac.compare_digest(signed, challenge):
        return
    if any(hmac.compare_digest(signed, d) for d in earlier_challenges(binding)):
        return  # the verification below refuses it as an ordinary failure
    try:
        passkeys.verify_assertion(rp, credential, expected_challenge=signed, public_key=public_key)
    except AuthenticationFailed:
        return  # not even a valid assertion: an ordinary failure
    raise TransactionMismatch(FAILED)


def _record_clone(ctx: AppContext, uow: UnitOfWork, known: Authenticator, received: int) -> None:
    """A counter that did not increase: two copies of this passkey may exist. Recorded for the
    risk engine and the audit; the assertion is refused."""
    uow.authenticators.record_passkey_use(
        known.id, sign_count=received, clone_signal=True, now=ctx.now()
    )
    audit.record(
        ctx,
        uow,
        "passkey.clone_signal",
        actor=known.user_id,
        subject=known.id,
        stored=known.sign_count,
        received=received,
    )
