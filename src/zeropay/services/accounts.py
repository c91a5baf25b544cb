"""Payer accounts: registration, password login with lockout, sessions."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from zeropay.domain import bounds
from zeropay.domain.errors import (
    AuthenticationFailed,
    EmailTaken,
    FactorLocked,
    InvalidInput,
    NotAuthenticated,
    NotFound,
)
from zeropay.domain.lockout import (
    FactorState,
    LockoutEvent,
    check_usable,
    register_failure,
    register_success,
)
from zeropay.domain.passwords import check_password_policy
from zeropay.domain.records import Notification
from zeropay.domain.sessions import Session, needs_touch, new_session, verify_session_active
from zeropay.services import audit, mail
from zeropay.services.context import AppContext, UnitOfWork, urlsafe

SESSION_TOKEN_BYTES = 32  # 256 bits; OWASP ASVS asks for at least 128
PASSWORD_FACTOR = "password"  # noqa: S105 - the factor's name, not a password


def parse_email(raw: object) -> str:
    """A normalised address: NFKC, trimmed, lower-cased. We check its shape, not deliverability
    (the MFA issue verifies the address by sending a code to it)."""
    if not isinstance(raw, str):
        raise InvalidInput("email must be a string", field="email")
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    local, _, domain = email.rpartition("@")
    if (
        not local
        or "." not in domain
        or len(email) > bounds.EMAIL_LENGTH_MAX
        or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in email)
        or domain.startswith(".")
        or domain.endswith(".")
    ):
        raise InvalidInput("that is not an email address", field="email", reason="invalid_email")
    return email


def email_index(ctx: AppContext, email: str) -> bytes:
    return ctx.keyring.blind_index(email.encode(), purpose="user.email")


def hash_token(token: str) -> bytes:
    """Session tokens carry 256 random bits, so a fast hash is enough to make a stolen table
    useless; it also makes lookups constant work."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Registered:
    user_id: str
    email: str
    created_at: datetime


def register(ctx: AppContext, *, email: object, password: object) -> Registered:
    address = parse_email(email)
    checked = check_password_policy(password, common=ctx.common_passwords, email=address)
    password_hash = ctx.hasher.hash(checked)  # slow: outside the transaction
    user_id = ctx.new_id("usr")
    index = email_index(ctx, address)
    ciphertext = ctx.keyring.encrypt(
        address.encode(), table="users", column="email", row_id=user_id
    )

    def work(uow: UnitOfWork) -> Registered:
        now = ctx.now()
        if not uow.accounts.add_user(
            user_id=user_id,
            email_index=index,
            email_ciphertext=ciphertext,
            password_hash=password_hash,
            now=now,
        ):
            raise EmailTaken("an account with this email already exists")
        audit.record(ctx, uow, "user.registered", actor=user_id, subject=user_id)
        return Registered(user_id=user_id, email=address, created_at=now)

    return ctx.run(work)


@dataclass(frozen=True)
class LoggedIn:
    token: str
    session: Session


def login(
    ctx: AppContext, *, email: object, password: object, user_agent: str | None = None
) -> LoggedIn:
    """Password login. Every failure, whatever its cause, answers ``AuthenticationFailed`` with
    the same message and about the same time (PSD2 RTS Art. 4(3)(a); no account enumeration)."""
    failed = AuthenticationFailed("the email or password is wrong, or sign-in is locked for now")
    try:
        address = parse_email(email)
    except InvalidInput:
        ctx.hasher.burn("")
        raise failed from None
    if not isinstance(password, str) or len(password) > 4096:
        ctx.hasher.burn("")
        raise failed
    index = email_index(ctx, address)
    user = ctx.read(lambda uow: uow.accounts.user_by_email_index(index))
    if user is None or user.status != "active":
        ctx.hasher.burn(password)
        raise failed
    # Count the attempt as a failure *before* checking the password, in one locked step, so that
    # a burst of parallel guesses cannot all be checked before the fifth one locks the factor.
    reserved = ctx.run(lambda uow: _reserve_attempt(ctx, uow, user.id))
    if reserved is None:
        ctx.hasher.burn(password)
        raise failed
    try:
        ctx.hasher.verify(user.password_hash, password)
    except AuthenticationFailed:
        ctx.run(lambda uow: _report_failure(ctx, uow, user.id, reserved))
        raise failed from None
    rehash = ctx.hasher.hash(password) if ctx.hasher.needs_rehash(user.password_hash) else None
    token = urlsafe(ctx.random_bytes(SESSION_TOKEN_BYTES))

    def succeed(uow: UnitOfWork) -> LoggedIn:
        now = ctx.now()
        current = uow.accounts.factor_state(user.id, PASSWORD_FACTOR, lock=True)
        if current.locked_permanently:
            raise failed  # another attempt's failure made the lock permanent meanwhile
        uow.accounts.save_factor_state(user.id, PASSWORD_FACTOR, register_success(current), now)
        if rehash is not None:
            uow.accounts.set_password_hash(user.id, rehash)
        session = new_session(
            session_id=ctx.new_id("ses"),
            user_id=user.id,
            factor=PASSWORD_FACTOR,
            now=now,
            policy=ctx.session_policy,
        )
        uow.sessions.add(
            session,
            token_hash=hash_token(token),
            user_agent=(user_agent or "")[: bounds.USER_AGENT_LENGTH_MAX],
        )
        audit.record(
            ctx, uow, "login.succeeded", actor=user.id, subject=session.id, factor=PASSWORD_FACTOR
        )
        return LoggedIn(token=token, session=session)

    return ctx.run(succeed)


def _reserve_attempt(
    ctx: AppContext, uow: UnitOfWork, user_id: str
) -> tuple[FactorState, list[LockoutEvent]] | None:
    """None when the factor is locked; else the state and events if this attempt fails."""
    now = ctx.now()
    state = uow.accounts.factor_state(user_id, PASSWORD_FACTOR, lock=True)
    try:
        check_usable(state, now)
    except FactorLocked:
        audit.record(ctx, uow, "login.refused_locked", actor=user_id, subject=user_id)
        return None
    after, events = register_failure(state, now, ctx.lockout)
    uow.accounts.save_factor_state(user_id, PASSWORD_FACTOR, after, now)
    return after, events


_SUBJECTS = {
    LockoutEvent.LOCKED: "ZeroPay: your password is locked for now",
    LockoutEvent.FINAL_WARNING: "ZeroPay: one more lock will be permanent",
    LockoutEvent.LOCKED_PERMANENTLY: "ZeroPay: your password is locked",
}

_ALERTS = {
    LockoutEvent.LOCKED: "Your password was locked after 5 failed sign-in attempts. "
    "It unlocks at {until}. If this wasn't you, change your password when it unlocks.",
    LockoutEvent.FINAL_WARNING: "Warning: one more lock and your password will stay locked "
    "until you recover your account.",
    LockoutEvent.LOCKED_PERMANENTLY: "Your password is locked until you recover your account. "
    "Your other sign-in methods still work.",
}


def _report_failure(
    ctx: AppContext,
    uow: UnitOfWork,
    user_id: str,
    reserved: tuple[FactorState, list[LockoutEvent]],
) -> None:
    now = ctx.now()
    after, events = reserved
    audit.record(
        ctx,
        uow,
        "login.failed",
        actor=user_id,
        subject=user_id,
        failures=after.failures,
        locks=after.locks,
    )
    until = after.locked_until.isoformat() if after.locked_until else ""
    for lockout_event in events:
        body = _ALERTS[lockout_event].format(until=until)
        uow.accounts.notify(
            notification_id=ctx.new_id("ntf"),
            user_id=user_id,
            kind=lockout_event.value,
            body=body,
            now=now,
        )
        mail.queue(ctx, uow, user_id=user_id, subject=_SUBJECTS[lockout_event], body=body)
        audit.record(
            ctx,
            uow,
            lockout_event.value,
            actor="system",
            subject=user_id,
            factor=PASSWORD_FACTOR,
            locks=after.locks,
        )


def authenticate(ctx: AppContext, token: str) -> Session:
    """The active session a bearer token names, touching its idle clock."""
    if not token or len(token) > 256:
        raise NotAuthenticated("a session token is required", reason="missing")
    token_hash = hash_token(token)

    def work(uow: UnitOfWork) -> Session:
        now = ctx.now()
        session = uow.sessions.by_token_hash(token_hash)
        if session is None:
            raise NotAuthenticated("the session token is not valid", reason="unknown")
        verify_session_active(session, now)
        if needs_touch(session, now, ctx.session_policy):
            uow.sessions.touch(session.id, now)  # one statement, correct on its own
        return session

    return ctx.read(work)


def logout(ctx: AppContext, session: Session) -> None:
    def work(uow: UnitOfWork) -> None:
        uow.sessions.revoke(session.id, ctx.now())
        audit.record(ctx, uow, "session.ended", actor=session.user_id, subject=session.id)

    ctx.run(work)


def list_sessions(ctx: AppContext, session: Session) -> list[tuple[Session, str | None]]:
    return ctx.run(
        lambda uow: uow.sessions.of_user(
            session.user_id, ctx.now(), limit=bounds.SESSIONS_LISTED_MAX
        )
    )


def revoke_session(ctx: AppContext, session: Session, session_id: str) -> None:
    def work(uow: UnitOfWork) -> None:
        owned = {
            s.id
            for s, _ in uow.sessions.of_user(
                session.user_id, ctx.now(), limit=bounds.SESSIONS_LISTED_MAX
            )
        }
        if session_id not in owned:
            raise NotFound("no such session", session_id=session_id[:40])
        uow.sessions.revoke(session_id, ctx.now())
        audit.record(ctx, uow, "session.revoked", actor=session.user_id, subject=session_id)

    ctx.run(work)


def email_of(ctx: AppContext, user_id: str) -> str:
    user = ctx.run(lambda uow: uow.accounts.user(user_id))
    if user is None:
        raise NotFound("no such user")
    return ctx.keyring.decrypt(
        user.email_ciphertext, table="users", column="email", row_id=user_id
    ).decode()


def notifications(
    ctx: AppContext, user_id: str, *, limit: int = bounds.NOTIFICATIONS_LISTED_MAX
) -> list[Notification]:
    return ctx.run(lambda uow: uow.accounts.notifications(user_id, limit=limit))
