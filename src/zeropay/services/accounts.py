"""Payer accounts: registration, sessions, the address. Logins run as flows (``authn``)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from zeropay.domain import bounds
from zeropay.domain.errors import EmailTaken, InvalidInput, NotAuthenticated, NotFound
from zeropay.domain.passwords import check_password_policy
from zeropay.domain.records import Notification
from zeropay.domain.sessions import (
    AuthMethod,
    Session,
    needs_touch,
    new_session,
    verify_session_active,
)
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork, urlsafe

SESSION_TOKEN_BYTES = 32  # 256 bits; OWASP ASVS asks for at least 128


def parse_email(raw: object) -> str:
    """A normalised address: NFKC, trimmed, lower-cased. We check its shape, not deliverability
    (the sign-up flow proves the address with an emailed code)."""
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


def register(
    ctx: AppContext,
    *,
    email: object,
    password: object,
    then: Callable[[UnitOfWork, Registered], None] | None = None,
) -> Registered:
    """A new payer. ``then`` runs in the same transaction (the sign-up flow starts there)."""
    address = parse_email(email)
    checked = check_password_policy(password, common=ctx.common_passwords, email=address)
    password_hash = ctx.hasher.hash(checked)  # slow: outside the transaction
    user_id = ctx.new_id("usr")
    index = email_index(ctx, address)
    ciphertext = ctx.keyring.encrypt(
        address.encode(), table="users", column="email", row_id=user_id, subject=user_id
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
        made = Registered(user_id=user_id, email=address, created_at=now)
        if then is not None:
            then(uow, made)
        return made

    return ctx.run(work)


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


def issue_session(
    ctx: AppContext,
    uow: UnitOfWork,
    *,
    user_id: str,
    methods: tuple[AuthMethod, ...],
    jkt: str | None,
    device_id: str | None,
    user_agent: str,
) -> tuple[str, Session]:
    """A new session (its token, shown once, and the session) authenticated by ``methods``:
    what a flow's factors proved, never more. Audited as a login."""
    token = urlsafe(ctx.random_bytes(SESSION_TOKEN_BYTES))
    session = new_session(
        session_id=ctx.new_id("ses"),
        user_id=user_id,
        methods=methods,
        now=ctx.now(),
        policy=ctx.session_policy,
        jkt=jkt,
        device_id=device_id,
    )
    uow.sessions.add(
        session, token_hash=hash_token(token), user_agent=user_agent[: bounds.USER_AGENT_LENGTH_MAX]
    )
    audit.record(
        ctx,
        uow,
        "login.succeeded",
        actor=user_id,
        subject=session.id,
        factors=[m.factor for m in methods],
        device=device_id,
    )
    return token, session


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
