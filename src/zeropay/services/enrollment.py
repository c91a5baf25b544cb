"""Managing one's own factors and devices: enroll, confirm, list, remove; change the password.

Adding or removing a factor or device and changing the password are sensitive: each needs a
strong authentication within the last ``recent_auth_s`` seconds (a step-up flow), lands in the
audit log and alerts the user in the inbox and by email (NIST 800-63B §6.1.2.2).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.authenticators import (
    Authenticator,
    AuthenticatorKind,
    Device,
    parse_label,
)
from zeropay.domain.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
)
from zeropay.domain.ocra import parse_payment_suite
from zeropay.domain.ocra import verify as verify_ocra
from zeropay.domain.passwords import check_password_policy
from zeropay.domain.recovery import Restricted
from zeropay.domain.sessions import Session, require_recent_auth
from zeropay.services import (
    audit,
    notices,
    ocra_codes,
    onboarding,
    passkeys,
    questions,
    recovery,
    totp,
)
from zeropay.services.accounts import email_of
from zeropay.services.context import AppContext, UnitOfWork

RECOVERY_CODE_BYTES = 10  # 80 bits each; NIST 800-63B asks at least 64 for saved codes
SMS_CODE_DIGITS = 8


def _sensitive(ctx: AppContext, session: Session, restricted: Restricted | None = None) -> None:
    """A recent strong sign-in; and for what a recovery's cooling-off period holds back, a
    session that is not cooling off (``domain.recovery``)."""
    require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
    if restricted is not None:
        recovery.check(ctx, session, restricted)


def _count_ok(uow: UnitOfWork, user_id: str) -> None:
    if len(uow.authenticators.of_user(user_id, pending=True)) >= bounds.AUTHENTICATORS_PER_USER_MAX:
        raise Conflict("too many authenticators; remove one first", reason="too_many")


def _added(ctx: AppContext, uow: UnitOfWork, session: Session, what: str, subject: str) -> None:
    audit.record(ctx, uow, "factor.added", actor=session.user_id, subject=subject, kind=what)
    notices.alert(
        ctx,
        uow,
        user_id=session.user_id,
        kind="factor.added",
        subject="ZeroPay: a sign-in method was added",
        body=f"A sign-in method ({what}) was added to your account. "
        "If this wasn't you, remove it and change your password.",
    )


def _removed(
    ctx: AppContext, uow: UnitOfWork, session: Session, what: str, subject: str, kind: str
) -> None:
    audit.record(ctx, uow, "factor.removed", actor=session.user_id, subject=subject, kind=kind)
    notices.alert(
        ctx,
        uow,
        user_id=session.user_id,
        kind="factor.removed",
        subject="ZeroPay: a sign-in method was removed",
        body=f"A sign-in method ({what}) was removed from your account. "
        "If this wasn't you, change your password and review your devices.",
    )


# ---- TOTP ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrollment:
    authenticator_id: str
    uri: str
    secret: str  # base32, for typing into an app by hand
    qr_svg: str


def enroll_totp(ctx: AppContext, session: Session, *, label: object = None) -> TotpEnrollment:
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    name = parse_label(label, field="label", default="Authenticator app")
    seed = totp.new_seed(ctx.random_bytes(totp.SEED_BYTES))
    authenticator_id = ctx.new_id("auth")
    ciphertext = ctx.keyring.encrypt(
        seed,
        table="authenticators",
        column="secret",
        row_id=authenticator_id,
        subject=session.user_id,
    )
    account = email_of(ctx, session.user_id)

    def work(uow: UnitOfWork) -> None:
        _count_ok(uow, session.user_id)
        now = ctx.now()
        uow.authenticators.add(
            Authenticator(
                id=authenticator_id,
                user_id=session.user_id,
                kind=AuthenticatorKind.TOTP,
                label=name,
                status="pending",
                created_at=now,
                secret_ciphertext=ciphertext,
                pending_expires_at=now + timedelta(minutes=15),
            )
        )

    ctx.run(work)
    uri = totp.provisioning_uri(seed, account=account)
    return TotpEnrollment(authenticator_id, uri, totp.seed_base32(seed), totp.qr_svg(uri))


def confirm_totp(ctx: AppContext, session: Session, authenticator_id: object, code: object) -> None:
    """The first code from the app proves it holds the seed; that step is then used up."""
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    pending = _pending(ctx, session, authenticator_id, AuthenticatorKind.TOTP)
    checked = totp.parse_code(code)
    assert pending.secret_ciphertext is not None
    seed = ctx.keyring.decrypt(
        pending.secret_ciphertext, table="authenticators", column="secret", row_id=pending.id
    )
    step = totp.verify_totp(seed, checked, now=ctx.now(), after_step=None).step

    def work(uow: UnitOfWork) -> None:
        if not uow.authenticators.activate(pending.id, ctx.now(), last_step=step):
            raise Conflict("this authenticator was confirmed already", reason="not_pending")
        _added(ctx, uow, session, "authenticator app", pending.id)
        onboarding.record_enrollment(ctx, uow, session.user_id)

    ctx.run(work)


def _pending(
    ctx: AppContext, session: Session, authenticator_id: object, kind: AuthenticatorKind
) -> Authenticator:
    if not isinstance(authenticator_id, str) or len(authenticator_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such authenticator")
    found = ctx.read(lambda uow: uow.authenticators.get(authenticator_id))
    now = ctx.now()
    if (
        found is None
        or found.user_id != session.user_id
        or found.kind is not kind
        or found.status != "pending"
        or (found.pending_expires_at is not None and now >= found.pending_expires_at)
    ):
        raise NotFound("no such pending authenticator; start the enrollment again")
    return found


# ---- OCRA (payment confirmation codes) ----------------------------------------------------------


@dataclass(frozen=True)
class OcraEnrollment:
    authenticator_id: str
    suite: str
    seed: bytes  # shown once, as base32 and hex, for the app to keep
    test_question: str  # the app's first code answers it


def enroll_ocra(
    ctx: AppContext, session: Session, *, label: object = None, suite: object = None
) -> OcraEnrollment:
    """A pending OCRA app for confirming payments from a phone without a secure key store. The
    seed is made here and shown once; the first code, over ``test_question``, activates it."""
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    name = parse_label(label, field="label", default="Confirmation code app")
    parsed = ocra_codes.parse_app_suite(suite)
    seed = ctx.random_bytes(ocra_codes.SEED_BYTES)
    question = ocra_codes.new_test_question(ctx.random_bytes, parsed)
    authenticator_id = ctx.new_id("auth")
    ciphertext = ctx.keyring.encrypt(
        seed,
        table="authenticators",
        column="secret",
        row_id=authenticator_id,
        subject=session.user_id,
    )

    def work(uow: UnitOfWork) -> None:
        _count_ok(uow, session.user_id)
        now = ctx.now()
        uow.authenticators.add(
            Authenticator(
                id=authenticator_id,
                user_id=session.user_id,
                kind=AuthenticatorKind.OCRA,
                label=name,
                status="pending",
                created_at=now,
                secret_ciphertext=ciphertext,
                # Not a secret: it is shown with the seed, and only the seed makes its code.
                pending_secret=question.encode("ascii"),
                pending_expires_at=now + timedelta(seconds=ocra_codes.ENROLLMENT_TTL_S),
                ocra_suite=parsed.text,
            )
        )

    ctx.run(work)
    return OcraEnrollment(authenticator_id, parsed.text, seed, question)


def confirm_ocra(ctx: AppContext, session: Session, authenticator_id: object, code: object) -> None:
    """The app's code over the test question at the current time step (one step of drift)
    proves it holds the seed and computes this suite; the app is then active."""
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    pending = _pending(ctx, session, authenticator_id, AuthenticatorKind.OCRA)
    assert pending.secret_ciphertext is not None and pending.pending_secret is not None
    suite = parse_payment_suite(pending.ocra_suite)
    try:
        checked = totp.parse_code(code, suite.digits)
    except InvalidInput:
        raise AuthenticationFailed("the factor was not accepted") from None
    seed = ctx.keyring.decrypt(
        pending.secret_ciphertext, table="authenticators", column="secret", row_id=pending.id
    )
    verify_ocra(
        suite,
        seed,
        checked,
        expected_question=pending.pending_secret.decode("ascii"),
        now=ctx.now(),
        drift_steps=ocra_codes.DRIFT_STEPS,
    )

    def work(uow: UnitOfWork) -> None:
        # The test code is spent by the activation itself (pending to active, once), and it
        # answers no transaction, so no time step is recorded: a payment in the same minute
        # still goes through.
        if not uow.authenticators.activate(pending.id, ctx.now()):
            raise Conflict("this app was confirmed already", reason="not_pending")
        _added(ctx, uow, session, "confirmation code app", pending.id)
        onboarding.record_enrollment(ctx, uow, session.user_id)

    ctx.run(work)


# ---- passkeys -----------------------------------------------------------------------------------


def passkey_options(ctx: AppContext, session: Session) -> tuple[str, dict[str, Any]]:
    """Creation options for a passkey on the device this session runs on."""
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    challenge = ctx.random_bytes(passkeys.CHALLENGE_BYTES)
    authenticator_id = ctx.new_id("auth")

    def work(uow: UnitOfWork) -> list[bytes]:
        _count_ok(uow, session.user_id)
        now = ctx.now()
        uow.authenticators.add(
            Authenticator(
                id=authenticator_id,
                user_id=session.user_id,
                kind=AuthenticatorKind.PASSKEY,
                label="Passkey",
                status="pending",
                created_at=now,
                device_id=session.device_id,
                pending_secret=challenge,
                pending_expires_at=now + timedelta(minutes=5),
            )
        )
        return [
            a.credential_id
            for a in uow.authenticators.of_user(session.user_id)
            if a.credential_id is not None
        ]

    exclude = ctx.run(work)
    options = passkeys.registration_options(
        ctx.relying_party,
        challenge=challenge,
        user_id=session.user_id,
        user_name=email_of(ctx, session.user_id),
        exclude=exclude,
    )
    return authenticator_id, options


def confirm_passkey(
    ctx: AppContext,
    session: Session,
    authenticator_id: object,
    credential: object,
    *,
    label: object = None,
) -> str:
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    pending = _pending(ctx, session, authenticator_id, AuthenticatorKind.PASSKEY)
    name = parse_label(label, field="label", default=pending.label)
    assert pending.pending_secret is not None
    made = passkeys.verify_registration(
        ctx.relying_party,
        passkeys.parse_credential(credential),
        expected_challenge=pending.pending_secret,
    )

    def work(uow: UnitOfWork) -> str:
        if not uow.authenticators.activate(
            pending.id,
            ctx.now(),
            credential_id=made.credential_id,
            public_key=made.public_key,
            sign_count=made.sign_count,
            label=name,
        ):
            raise Conflict("this passkey is registered already", reason="not_pending")
        _added(ctx, uow, session, f"passkey '{name}'", pending.id)
        onboarding.record_enrollment(ctx, uow, session.user_id)
        return pending.id

    return ctx.run(work)


# ---- SMS -----------------------------------------------------------------------------------------


def parse_phone(raw: object) -> str:
    """E.164: a plus sign and 8 to 15 digits (spaces and dashes are dropped)."""
    if not isinstance(raw, str) or len(raw) > bounds.PHONE_LENGTH_MAX:
        raise InvalidInput("phone is an E.164 number like +821012345678", field="phone")
    number = raw.replace(" ", "").replace("-", "")
    if not (
        number.startswith("+")
        and number[1:].isascii()
        and number[1:].isdigit()
        and 8 <= len(number) - 1 <= 15
    ):
        raise InvalidInput("phone is an E.164 number like +821012345678", field="phone")
    return number


def _sms_hash(ctx: AppContext, authenticator_id: str, code: str) -> bytes:
    return ctx.keyring.blind_index(f"{authenticator_id}:{code}".encode(), purpose="sms.enroll")


def enroll_sms(ctx: AppContext, session: Session, phone: object) -> str:
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    number = parse_phone(phone)
    if ctx.sms is None:
        raise Conflict("text messages are not configured here", reason="sms_unavailable")
    authenticator_id = ctx.new_id("auth")
    code = str(int.from_bytes(ctx.random_bytes(8), "big") % 10**SMS_CODE_DIGITS).zfill(
        SMS_CODE_DIGITS
    )
    ciphertext = ctx.keyring.encrypt(
        number.encode(),
        table="authenticators",
        column="secret",
        row_id=authenticator_id,
        subject=session.user_id,
    )

    def work(uow: UnitOfWork) -> None:
        _count_ok(uow, session.user_id)
        now = ctx.now()
        uow.authenticators.add(
            Authenticator(
                id=authenticator_id,
                user_id=session.user_id,
                kind=AuthenticatorKind.SMS,
                label=f"Phone ending {number[-2:]}",
                status="pending",
                created_at=now,
                secret_ciphertext=ciphertext,
                pending_secret=_sms_hash(ctx, authenticator_id, code),
                pending_expires_at=now + timedelta(seconds=ctx.policy.code_ttl_s),
            )
        )

    ctx.run(work)
    ctx.sms.send(to=number, body=f"Your ZeroPay code to add this phone is {code}.")
    return authenticator_id


def confirm_sms(ctx: AppContext, session: Session, authenticator_id: object, code: object) -> None:
    _sensitive(ctx, session, Restricted.ADD_FACTOR)
    pending = _pending(ctx, session, authenticator_id, AuthenticatorKind.SMS)
    try:
        checked = totp.parse_code(code, SMS_CODE_DIGITS)
    except InvalidInput:
        raise AuthenticationFailed("the factor was not accepted") from None
    if pending.pending_secret != _sms_hash(ctx, pending.id, checked):
        raise AuthenticationFailed("the factor was not accepted")

    def work(uow: UnitOfWork) -> None:
        if not uow.authenticators.activate(pending.id, ctx.now()):
            raise Conflict("this phone was confirmed already", reason="not_pending")
        _added(ctx, uow, session, "phone for text messages", pending.id)

    ctx.run(work)


# ---- recovery codes and security questions -------------------------------------------------------


def _format_code(raw: bytes) -> str:
    text = base64.b32encode(raw).decode().rstrip("=").lower()  # 16 characters
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def recovery_code_hash(ctx: AppContext, user_id: str, raw: object) -> bytes | None:
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    normal = raw.replace("-", "").replace(" ", "").lower()
    return ctx.keyring.blind_index(f"{user_id}:{normal}".encode(), purpose="recovery.code")


def new_recovery_codes(ctx: AppContext, session: Session) -> list[str]:
    """Ten fresh codes, shown once; the old ones stop working."""
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)
    codes = [
        _format_code(ctx.random_bytes(RECOVERY_CODE_BYTES)) for _ in range(bounds.RECOVERY_CODES)
    ]
    hashes = [recovery_code_hash(ctx, session.user_id, c) for c in codes]

    def work(uow: UnitOfWork) -> None:
        uow.authenticators.replace_recovery_codes(
            session.user_id, [h for h in hashes if h is not None], ctx.now()
        )
        _added(ctx, uow, session, "recovery codes", session.user_id)

    ctx.run(work)
    return codes


def set_security_answers(ctx: AppContext, session: Session, answers: object) -> None:
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)
    parsed = questions.parse_answers(answers)
    hashed = {q: ctx.hasher.hash(a) for q, a in parsed.items()}  # slow: outside the transaction
    sealed = questions.seal_choices(ctx, session.user_id, hashed)

    def work(uow: UnitOfWork) -> None:
        uow.authenticators.set_security_answers(session.user_id, sealed, ctx.now())
        _added(ctx, uow, session, "security questions", session.user_id)

    ctx.run(work)


def remove_recovery_codes(ctx: AppContext, session: Session) -> None:
    """Every recovery code stops working; 404 when there were none."""
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)

    def work(uow: UnitOfWork) -> None:
        if not uow.authenticators.replace_recovery_codes(session.user_id, [], ctx.now()):
            raise NotFound("there are no recovery codes to remove")
        _removed(ctx, uow, session, "recovery codes", session.user_id, "recovery_code")

    ctx.run(work)


def remove_security_answers(ctx: AppContext, session: Session) -> None:
    """The security answers are deleted; 404 when there were none."""
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)

    def work(uow: UnitOfWork) -> None:
        if not uow.authenticators.set_security_answers(session.user_id, [], ctx.now()):
            raise NotFound("there are no security answers to remove")
        _removed(ctx, uow, session, "security questions", session.user_id, "security_question")

    ctx.run(work)


# ---- listing and removing ------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorSummary:
    authenticators: list[Authenticator]
    devices: list[Device]
    email_verified: bool
    recovery_codes_left: int
    security_questions: list[str]


def summary(ctx: AppContext, session: Session) -> FactorSummary:
    def work(uow: UnitOfWork) -> FactorSummary:
        user = uow.accounts.user(session.user_id)
        return FactorSummary(
            authenticators=uow.authenticators.of_user(session.user_id),
            devices=uow.devices.of_user(session.user_id),
            email_verified=bool(user and user.email_verified_at),
            recovery_codes_left=uow.authenticators.recovery_codes_left(session.user_id),
            security_questions=sorted(
                questions.open_choices(ctx, uow.authenticators.security_answers(session.user_id))
            ),
        )

    return ctx.read(work)


def remove_authenticator(ctx: AppContext, session: Session, authenticator_id: object) -> None:
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)
    if not isinstance(authenticator_id, str) or len(authenticator_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such authenticator")

    def work(uow: UnitOfWork) -> None:
        found = uow.authenticators.get(authenticator_id, lock=True)
        if found is None or found.user_id != session.user_id:
            raise NotFound("no such authenticator")
        if not uow.authenticators.remove(found.id, ctx.now()):
            raise NotFound("no such authenticator")
        _removed(ctx, uow, session, found.label, found.id, found.kind.value)

    ctx.run(work)


def remove_device(ctx: AppContext, session: Session, device_id: object) -> None:
    """Unbind a device: its sessions end and its passkeys stop working."""
    _sensitive(ctx, session, Restricted.REMOVE_FACTOR)
    if not isinstance(device_id, str) or len(device_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such device")

    def work(uow: UnitOfWork) -> None:
        now = ctx.now()
        device = uow.devices.get(device_id)
        if (
            device is None
            or device.user_id != session.user_id
            or not uow.devices.remove(device_id, now)
        ):
            raise NotFound("no such device")
        for a in uow.authenticators.of_user(session.user_id, pending=True):
            if a.device_id == device_id:
                uow.authenticators.remove(a.id, now)
        ended = uow.sessions.revoke_device(device_id, now)
        audit.record(
            ctx,
            uow,
            "device.removed",
            actor=session.user_id,
            subject=device_id,
            sessions_ended=ended,
        )
        notices.alert(
            ctx,
            uow,
            user_id=session.user_id,
            kind="device.removed",
            subject="ZeroPay: a device was removed",
            body=f"The device {device.name} was removed from your account and signed out.",
        )

    ctx.run(work)


def change_password(
    ctx: AppContext, session: Session, *, new_password: object, end_other_sessions: bool = True
) -> int:
    """A new password after a recent strong login; other sessions end unless asked not to
    (OWASP ASVS 3.3.3). Returns how many sessions ended."""
    _sensitive(ctx, session, Restricted.CHANGE_PASSWORD)
    address = email_of(ctx, session.user_id)
    checked = check_password_policy(new_password, common=ctx.common_passwords, email=address)
    password_hash = ctx.hasher.hash(checked)

    def work(uow: UnitOfWork) -> int:
        now = ctx.now()
        uow.accounts.password_changed(session.user_id, password_hash, now)
        ended = (
            uow.sessions.revoke_all(session.user_id, now, keep=session.id)
            if end_other_sessions
            else 0
        )
        audit.record(
            ctx,
            uow,
            "password.changed",
            actor=session.user_id,
            subject=session.user_id,
            sessions_ended=ended,
        )
        notices.alert(
            ctx,
            uow,
            user_id=session.user_id,
            kind="password.changed",
            subject="ZeroPay: your password was changed",
            body="Your password was changed. If this wasn't you, recover your account now.",
        )
        return ended

    return ctx.run(work)


def authenticator_json(a: Authenticator) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind.value,
        "label": a.label,
        "status": a.status,
        "device_id": a.device_id,
        "created_at": a.created_at.isoformat(),
        "last_used_at": a.last_used_at.isoformat() if a.last_used_at else None,
        "clone_signals": a.clone_signals if a.kind is AuthenticatorKind.PASSKEY else None,
        "suite": a.ocra_suite if a.kind is AuthenticatorKind.OCRA else None,  # never the seed
    }


def device_json(d: Device, *, current_device_id: str | None = None) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": d.name,
        "platform": d.platform,
        "jkt": d.jkt,
        "first_seen_at": d.created_at.isoformat(),
        "last_seen_at": d.last_seen_at.isoformat(),
        "reduced_until": d.reduced_until.isoformat() if d.reduced_until else None,
        "device_class": d.device_class.value,
        "current": d.id == current_device_id,
    }
