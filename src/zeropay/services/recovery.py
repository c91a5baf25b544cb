"""Account recovery once the flow's factors have passed: held or ready, completed on the device
that ran it, cooling off, and "this wasn't me".

The recovery flow is an ordinary flow at the ``recovery`` access point (``services.authn``): the
policy's paths, each of two factors at least, asked in order; the risk engine heard at its first
factor. When the last factor passes, ``passed`` records the recovery -- ``held`` for an operator
when the engine found it risky, ``ready`` otherwise -- and grants nothing yet. The device that
ran the flow then calls ``complete``: the password is replaced if it sent one, the device is bound
if it was new, and it gets a session whose methods are the flow's factors (never more assured than
they are). Unless it was made with the passkey of a phone already bound, the recovery starts the
cooling-off period of ``domain.recovery``; every other device and the email address get an alert
with "this wasn't me", which freezes the account, ends every session and undoes what the
recovery brought.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zeropay.domain import bounds
from zeropay.domain import recovery as rules
from zeropay.domain.authenticators import Device
from zeropay.domain.device_classes import DEFAULT as DEFAULT_CLASS
from zeropay.domain.device_classes import DeviceClass, registered_as
from zeropay.domain.errors import (
    Conflict,
    CoolingOff,
    Forbidden,
    NotFound,
    ProofInvalid,
    RateLimited,
    RecoveryLinkInvalid,
    invariant,
)
from zeropay.domain.money import Money
from zeropay.domain.operators import Operator, Permission, parse_reason, require
from zeropay.domain.passwords import check_password_policy
from zeropay.domain.recovery import Recovery, RecoveryState, Restricted
from zeropay.domain.sessions import AuthMethod, Session
from zeropay.services import accounts, audit, mail, notices, onboarding
from zeropay.services.context import AppContext, UnitOfWork, urlsafe
from zeropay.services.fallbacks import DEVICE_CLASS
from zeropay.services.ports import StoredFlow

LINK_PURPOSE = "not_me"
LINK_MAC_PURPOSE = "recovery.link"
LINKS_RESENT_PER_HOUR_MAX = 3
HELD_LISTED_MAX = 100
RECOVERIES_LISTED_MAX = 20

# A recovery flow's binding: why the risk engine wants it held (its reasons, space-separated).
HOLD = "recovery_hold"


def _mac(ctx: AppContext) -> Callable[[bytes], bytes]:
    return lambda message: ctx.keyring.blind_index(message, purpose=LINK_MAC_PURPOSE)


# ---- the flow's factors passed -------------------------------------------------------------------


def passed(ctx: AppContext, uow: UnitOfWork, stored: StoredFlow) -> Recovery:
    """The recovery flow's last factor passed (inside its transaction): record the recovery,
    held when the risk engine wanted an operator to look, ready otherwise. Nothing is granted."""
    flow = stored.flow
    invariant(flow.user_id is not None, "a complete flow knows its user")
    assert flow.user_id is not None
    now = ctx.now()
    jkt = flow.binding.get("jkt", "")
    invariant(bool(jkt), "a recovery flow is bound to a device key")
    known = uow.devices.by_jkt(jkt)
    if known is not None and known.user_id != flow.user_id:
        raise Conflict("this device key is bound to another account", reason="device_bound")
    held_for = tuple(flow.binding.get(HOLD, "").split())
    made = Recovery(
        id=ctx.new_id("rcv"),
        user_id=flow.user_id,
        flow_id=flow.id,
        state=RecoveryState.READY,
        factors=tuple(m.factor for m in flow.done),
        jkt=jkt,
        new_device=known is None or known.status != "active",
        password_replaced=False,
        device_name=flow.binding["device_name"],
        platform=flow.binding["platform"],
        device_class=flow.binding.get(DEVICE_CLASS, DEFAULT_CLASS.value),
        public_jwk=flow.binding["jwk"],
        created_at=flow.issued_at,
        passed_at=now,
        expires_at=now,
        risk_reasons=held_for,
    )
    made = rules.passed(made, held=bool(held_for), now=now)
    uow.recoveries.add(made)
    audit.record(
        ctx,
        uow,
        "recovery.held" if held_for else "recovery.passed",
        actor=made.user_id,
        subject=made.id,
        flow=flow.id,
        factors=list(made.factors),
        new_device=made.new_device,
        reasons=list(held_for),
    )
    if held_for:
        _alert(
            ctx,
            uow,
            made,
            kind="recovery.held",
            subject="ZeroPay: an account recovery is waiting for review",
            what="Someone passed the checks to recover your ZeroPay account from "
            + ("a new device" if made.new_device else "one of your devices")
            + ". We are reviewing it before anything changes.",
        )
    return made


# ---- completing it on the device that ran it -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completed:
    recovery: Recovery
    device: Device
    session: Session
    token: str


def view(ctx: AppContext, flow_id: object, *, jkt: str | None) -> Recovery:
    """The recovery a flow ended in, for the device key that ran it."""
    found = _by_flow(ctx, flow_id)
    _check_device(found, jkt)
    return found


def _by_flow(ctx: AppContext, flow_id: object) -> Recovery:
    if not isinstance(flow_id, str) or len(flow_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such recovery")
    found = ctx.read(lambda uow: uow.recoveries.by_flow(flow_id))
    if found is None:
        raise NotFound("no such recovery")
    return found


def _check_device(found: Recovery, jkt: str | None) -> None:
    """Only the device key that ran the flow sees or completes its recovery: a flow id read off
    a shoulder or a log is worth nothing."""
    if jkt is None:
        raise ProofInvalid(
            "this recovery is bound to a device key: send a DPoP proof", reason="missing"
        )
    if not hmac.compare_digest(found.jkt, jkt):
        raise ProofInvalid("this recovery belongs to another device key", reason="flow_key")


def complete(
    ctx: AppContext,
    flow_id: object,
    *,
    jkt: str | None,
    user_agent: str,
    new_password: object = None,
) -> Completed:
    """Bind the device (when new), replace the password (when one is sent), start the
    cooling-off period, alert everywhere else and sign the device in with the flow's factors."""
    found = _by_flow(ctx, flow_id)
    _check_device(found, jkt)
    password_hash: str | None = None
    if new_password is not None:
        checked = check_password_policy(
            new_password, common=ctx.common_passwords, email=accounts.email_of(ctx, found.user_id)
        )
        password_hash = ctx.hasher.hash(checked)  # slow: before the transaction

    def work(uow: UnitOfWork) -> Completed:
        now = ctx.now()
        current = uow.recoveries.get(found.id, lock=True)
        invariant(current is not None, "recoveries are not deleted while the account lives")
        assert current is not None
        user = uow.accounts.user(current.user_id)
        if user is None or user.status != "active":
            raise Conflict("this account cannot be recovered now", reason="account_not_active")
        device = _device(ctx, uow, current)
        done = rules.complete(
            current,
            device_id=device.id,
            policy=ctx.policy.recovery,
            now=now,
            password_replaced=password_hash is not None,
        )
        uow.recoveries.save(done)
        if password_hash is not None:
            uow.accounts.password_changed(done.user_id, password_hash, now)
        token, session = accounts.issue_session(
            ctx,
            uow,
            user_id=done.user_id,
            # the flow's factors, never more; at the time they passed (a recovery approved a
            # day later is no recent strong sign-in)
            methods=tuple(AuthMethod(f, done.passed_at) for f in done.factors),
            jkt=done.jkt,
            device_id=device.id,
            user_agent=user_agent,
        )
        audit.record(
            ctx,
            uow,
            "recovery.completed",
            actor=done.user_id,
            subject=done.id,
            device=device.id,
            new_device=done.new_device,
            factors=list(done.factors),
            password_replaced=password_hash is not None,
            cooling_until=done.cooling_until.isoformat() if done.cooling_until else None,
        )
        _alert(
            ctx,
            uow,
            done,
            kind="recovery.completed",
            subject="ZeroPay: your account was recovered",
            what=f"Your ZeroPay account was recovered on {device.name} ({device.platform})"
            + (", and the password was changed" if password_hash is not None else "")
            + "."
            + (
                f" That device can only look and make small payments until "
                f"{done.cooling_until:%Y-%m-%d %H:%M} UTC."
                if done.cooling_until
                else ""
            ),
        )
        return Completed(done, device, session, token)

    return ctx.run(work)


def _device(ctx: AppContext, uow: UnitOfWork, recovery: Recovery) -> Device:
    """The device the recovery completes on: the bound one that ran it, or a new one bound now
    with the reduced limits of a new device for as long as it cools off."""
    now = ctx.now()
    known = uow.devices.by_jkt(recovery.jkt)
    if known is not None:
        if known.user_id != recovery.user_id or known.status != "active":
            # a key binds one device, once: a removed device's key starts no new one
            raise Conflict("this device key cannot be bound again", reason="device_bound")
        return known
    if len(uow.devices.of_user(recovery.user_id)) >= bounds.DEVICES_PER_USER_MAX:
        raise Conflict("too many devices; remove one first", reason="too_many_devices")
    reduced_s = max(ctx.policy.new_device_reduced_s, ctx.policy.recovery.cooling_off_s)
    device = Device(
        id=ctx.new_id("dev"),
        user_id=recovery.user_id,
        name=recovery.device_name,
        platform=recovery.platform,
        # no passkey is made in a recovery: a phone that said "platform" holds a key store at
        # most until it enrolls one; an older phone keeps its weaker class
        device_class=registered_as(DeviceClass(recovery.device_class), made_passkey=False),
        jkt=recovery.jkt,
        public_jwk=recovery.public_jwk,
        status="active",
        created_at=now,
        last_seen_at=now,
        reduced_until=now + timedelta(seconds=reduced_s),
    )
    uow.devices.add(device)
    audit.record(
        ctx, uow, "device.bound", actor=recovery.user_id, subject=device.id, by_recovery=recovery.id
    )
    onboarding.record_enrollment(ctx, uow, recovery.user_id)
    return device


# ---- alerts with "this wasn't me" ---------------------------------------------------------------


def link_for(ctx: AppContext, recovery: Recovery) -> str:
    """A one-click "this wasn't me" link: signed for this recovery and account, valid for
    ``link_ttl_s`` (10 minutes at most), once. It can only freeze the account."""
    expires = ctx.now() + timedelta(seconds=ctx.policy.recovery.link_ttl_s)
    token = rules.make_link(
        purpose=LINK_PURPOSE,
        recovery_id=recovery.id,
        user_id=recovery.user_id,
        nonce=ctx.random_bytes(rules.LINK_NONCE_BYTES),
        expires_at=expires,
        mac=_mac(ctx),
    )
    return f"{ctx.public_origins[0]}/recovery/not-me?t={token}"


def _alert(
    ctx: AppContext, uow: UnitOfWork, recovery: Recovery, *, kind: str, subject: str, what: str
) -> None:
    """Tell every device (the in-app inbox, with "this wasn't me" beside it) and the email
    address (with a link that works once, for ten minutes)."""
    minutes = ctx.policy.recovery.link_ttl_s // 60
    uow.accounts.notify(
        notification_id=ctx.new_id("ntf"),
        user_id=recovery.user_id,
        kind=kind,
        body=f"{what} If this wasn't you, choose \"This wasn't me\" in Security "
        f"(recovery {recovery.id}): the account is frozen and every session ends.",
        now=ctx.now(),
    )
    mail.queue(
        ctx,
        uow,
        user_id=recovery.user_id,
        subject=subject,
        body=f"{what}\n\nIf this wasn't you, open this link within {minutes} minutes to freeze "
        f"your account and end every session:\n{link_for(ctx, recovery)}\n\nThe link can only "
        'freeze the account; it signs no one in. Later, use "This wasn\'t me" in the app on '
        "one of your devices.",
    )


# ---- "this wasn't me" ----------------------------------------------------------------------------


def report_by_link(ctx: AppContext, token: object) -> Recovery:
    """Freeze the account of a genuine, unexpired, unused link."""
    link = _verified(ctx, token)
    if link.is_expired(ctx.now()):
        raise RecoveryLinkInvalid(
            "this link has expired; ask for a fresh one", reason="expired", resend=True
        )
    stand_in = _stand_in(ctx)

    def work(uow: UnitOfWork) -> Recovery:
        if not uow.replay.first_use(LINK_MAC_PURPOSE, link.nonce, link.expires_at):
            raise RecoveryLinkInvalid("this link was already used", reason="used")
        return _report(ctx, uow, link.recovery_id, by="link", stand_in=stand_in)

    return ctx.run(work)


def resend_link(ctx: AppContext, token: object) -> None:
    """An expired but genuine link asks for a fresh one, sent to the account's address (never to
    whoever asks): at most a few an hour per recovery."""
    link = _verified(ctx, token)

    def work(uow: UnitOfWork) -> None:
        now = ctx.now()
        window = now.replace(minute=0, second=0, microsecond=0)
        key = f"recovery-link:{link.recovery_id}"
        if uow.replay.hit(key, window, window + timedelta(hours=2)) > LINKS_RESENT_PER_HOUR_MAX:
            raise RateLimited("no more links this hour", retry_after_s=3600)
        current = uow.recoveries.get(link.recovery_id)
        assert current is not None  # _verified found it
        mail.queue(
            ctx,
            uow,
            user_id=current.user_id,
            subject="ZeroPay: your link to freeze the account",
            body="You asked for a fresh link. If someone else recovered your account, open this "
            f"link within {ctx.policy.recovery.link_ttl_s // 60} minutes to freeze it and end "
            f"every session:\n{link_for(ctx, current)}",
        )
        audit.record(ctx, uow, "recovery.link_resent", actor=current.user_id, subject=current.id)

    ctx.run(work)


def _verified(ctx: AppContext, token: object) -> rules.Link:
    def owner(recovery_id: str) -> str | None:
        if len(recovery_id) > bounds.ID_LENGTH_MAX:
            return None
        found = ctx.read(lambda uow: uow.recoveries.get(recovery_id))
        return found.user_id if found is not None else None

    return rules.verify_link(
        token, purpose=LINK_PURPOSE, user_id_of=owner, mac=_mac(ctx), tz=ctx.now().tzinfo
    )


def report_by_session(ctx: AppContext, session: Session, recovery_id: object) -> Recovery:
    """ "This wasn't me" from the app, on any device signed in to the account."""
    if not isinstance(recovery_id, str) or len(recovery_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such recovery")
    stand_in = _stand_in(ctx)

    def work(uow: UnitOfWork) -> Recovery:
        found = uow.recoveries.get(recovery_id)
        if found is None or found.user_id != session.user_id:
            raise NotFound("no such recovery")
        return _report(ctx, uow, recovery_id, by=session.id, stand_in=stand_in)

    return ctx.run(work)


def _stand_in(ctx: AppContext) -> str:
    """A password hash no one knows the password of (hashed before the transaction: slow)."""
    return ctx.hasher.hash(urlsafe(ctx.random_bytes(32)))


def _report(
    ctx: AppContext, uow: UnitOfWork, recovery_id: str, *, by: str, stand_in: str
) -> Recovery:
    """Freeze the account and undo what the recovery brought: every session ends, the device it
    completed on is removed, every factor added since it began is removed, a password it set no
    longer works, and no flow can start until an operator unfreezes the account."""
    now = ctx.now()
    current = uow.recoveries.get(recovery_id, lock=True)
    invariant(current is not None, "the caller found it")
    assert current is not None
    if current.state is RecoveryState.REPORTED:
        return current  # reported already (another link, or the app): frozen once, told once
    reported = rules.report(current, now)
    uow.recoveries.save(reported)
    user_id = current.user_id
    uow.accounts.set_status(user_id, "frozen", was="active")
    ended = uow.sessions.revoke_all(user_id, now)
    removed = None
    if current.device_id is not None:
        device = uow.devices.get(current.device_id)
        if device is not None and device.status == "active":
            uow.devices.remove(device.id, now)
            removed = device.id
    factors = [
        a.id
        for a in uow.authenticators.of_user(user_id, pending=True)
        if a.created_at >= current.created_at and uow.authenticators.remove(a.id, now)
    ]
    if current.password_replaced:
        uow.accounts.password_changed(user_id, stand_in, now)
    audit.record(
        ctx,
        uow,
        "account.frozen",
        actor=user_id,
        subject=user_id,
        recovery=current.id,
        by=by,
        sessions_ended=ended,
        device_removed=removed,
        factors_removed=factors,
        password_reset=current.password_replaced,
    )
    notices.alert(
        ctx,
        uow,
        user_id=user_id,
        kind="account.frozen",
        subject="ZeroPay: your account is frozen",
        body="You said a recovery of your account wasn't you, so we froze the account: every "
        "session has ended, the device it was recovered on and any sign-in method added since "
        "are removed"
        + (", and the password it set no longer works" if current.password_replaced else "")
        + ". Contact support to check who you are and unfreeze it; then recover the account "
        "with your own factors.",
    )
    return reported


# ---- operators ----------------------------------------------------------------------------------


def held(ctx: AppContext, operator: Operator) -> list[Recovery]:
    def work(uow: UnitOfWork) -> list[Recovery]:
        role = require(uow.operators.roles_of(operator.user_id), Permission.READ_REVIEWS)
        out = uow.recoveries.in_state(RecoveryState.HELD, limit=HELD_LISTED_MAX)
        audit.record(
            ctx,
            uow,
            "operator.viewed",
            actor=operator.user_id,
            subject="recoveries",
            view="held_recoveries",
            role=role.value,
            session=operator.session_id,
        )
        return out

    return ctx.run(work)


def decide(
    ctx: AppContext, operator: Operator, recovery_id: object, *, approve: bool, reason: object
) -> Recovery:
    """Approve (the device that ran it may complete it within a day) or deny a held recovery.
    The user is told either way; an operator never completes it for them."""
    why = parse_reason(reason)
    if not isinstance(recovery_id, str) or len(recovery_id) > bounds.ID_LENGTH_MAX:
        raise NotFound("no such recovery")

    def work(uow: UnitOfWork) -> Recovery:
        role = require(uow.operators.roles_of(operator.user_id), Permission.DECIDE_REVIEWS)
        current = uow.recoveries.get(recovery_id, lock=True)
        if current is None:
            raise NotFound("no such recovery")
        if current.user_id == operator.user_id:
            raise Forbidden("an operator does not decide their own recovery", reason="own_account")
        after = rules.decide(
            current, approve=approve, operator=operator.user_id, reason=why, now=ctx.now()
        )
        uow.recoveries.save(after)
        audit.record(
            ctx,
            uow,
            "recovery.approved" if approve else "recovery.denied",
            actor=operator.user_id,
            subject=after.id,
            user=after.user_id,
            role=role.value,
            reason=why,
        )
        if approve:
            body = (
                "Your account recovery was approved. Finish it within a day on the device you "
                "started it on."
            )
        else:
            body = "Your account recovery was refused after review. Nothing was changed."
        notices.alert(
            ctx,
            uow,
            user_id=after.user_id,
            kind=f"recovery.{after.state.value}",
            subject="ZeroPay: your account recovery was reviewed",
            body=body,
        )
        return after

    return ctx.run(work)


def unfreeze(ctx: AppContext, *, user_id: str, actor: str, reason: object) -> bool:
    """Operators (the CLI) unfreeze an account once they checked who the owner is. The owner then
    recovers it with their own factors; nothing else is restored."""
    why = parse_reason(reason)

    def work(uow: UnitOfWork) -> bool:
        moved = uow.accounts.set_status(user_id, "active", was="frozen")
        if moved:
            audit.record(ctx, uow, "account.unfrozen", actor=actor, subject=user_id, reason=why)
            notices.alert(
                ctx,
                uow,
                user_id=user_id,
                kind="account.unfrozen",
                subject="ZeroPay: your account is unfrozen",
                body="Your account was unfrozen after a check. Sign in, or recover it with your "
                "own factors if the password was changed.",
            )
        return moved

    return ctx.run(work)


# ---- the cooling-off period ----------------------------------------------------------------------


def cooling_for(
    uow: UnitOfWork, user_id: str, device_id: str | None, now: datetime
) -> Recovery | None:
    """The recovery a session of ``user_id`` on ``device_id`` is cooling off under, if any: a
    recovery still cooling off, unless the session is on a device bound before that recovery
    began (and not the one it completed on)."""
    cooling = uow.recoveries.cooling(user_id, now)
    if not cooling:
        return None
    device = uow.devices.get(device_id) if device_id else None
    for recovery in sorted(cooling, key=lambda r: r.cooling_until or now, reverse=True):
        if device is None or not rules.is_trusted_device(
            device.id, device.created_at, device.status == "active", recovery
        ):
            return recovery
    return None


def check(ctx: AppContext, session: Session, action: Restricted) -> None:
    """Refuse ``action`` to a session cooling off after a recovery (``domain.recovery``)."""
    ctx.read(lambda uow: check_in(uow, session, action, ctx.now()))


def check_in(uow: UnitOfWork, session: Session, action: Restricted, now: datetime) -> None:
    """``check`` inside a transaction that is already open."""
    found = cooling_for(uow, session.user_id, session.device_id, now)
    if found is not None:
        raise _refused(found, action)


def check_payment(
    ctx: AppContext,
    uow: UnitOfWork,
    user_id: str,
    device_id: str | None,
    amount: Money,
    *,
    payment_id: str,
) -> None:
    """A cooling-off session pays at most the policy's small ceiling per payment, and at most
    ``total_max_minor`` in all since the recovery (no draining in slices)."""
    found = cooling_for(uow, user_id, device_id, ctx.now())
    if found is None:
        return
    assert found.completed_at is not None  # cooling off: completed
    code = amount.currency.code
    spent = uow.payments.paid_since(user_id, code, found.completed_at, other_than=payment_id)
    ok, ceiling = rules.payment_allowed(
        ctx.policy.recovery, code, amount.amount_minor, spent_minor=spent
    )
    if not ok:
        raise _refused(found, Restricted.PAY, currency=code, limit_minor=ceiling)


def _refused(recovery: Recovery, action: Restricted, **details: Any) -> CoolingOff:
    assert recovery.cooling_until is not None
    return CoolingOff(
        "this device recovered the account recently: until the cooling-off period ends it can "
        "look and make small payments only; use a device you had before, or wait",
        reason="cooling_off",
        action=action.value,
        until=recovery.cooling_until.isoformat(),
        **details,
    )


def recovery_json(r: Recovery, now: datetime) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status(now),
        "factors": list(r.factors),
        "new_device": r.new_device,
        "started_at": r.created_at.isoformat(),
        "complete_by": r.expires_at.isoformat()
        if r.state in (RecoveryState.READY, RecoveryState.APPROVED)
        else None,
        "cooling_until": r.cooling_until.isoformat() if r.cooling_until else None,
        "completed_at": r.completed_at.isoformat() if r.completed_at else None,
        "reported_at": r.reported_at.isoformat() if r.reported_at else None,
    }


def of_user(ctx: AppContext, session: Session) -> list[Recovery]:
    return ctx.read(
        lambda uow: uow.recoveries.of_user(session.user_id, limit=RECOVERIES_LISTED_MAX)
    )
