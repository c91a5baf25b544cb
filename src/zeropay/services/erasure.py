"""Erasing a user (GDPR Art. 17) by crypto-shredding, yielding to anti-money-laundering law.

Every personal field is sealed under the user's own data key (the ``subject`` of
``KeyRing.encrypt``), so erasure destroys one key instead of hunting down copies. ``erase_user``:

1. reads the email address under the personal key and seals it again under the user's separate
   retention key, outside any transaction (the vault may have to write that key first);
2. in one transaction: ends every session, unbinds every device, removes every payment
   instrument as its owner would (number, blind index and device keys wiped, merchant tokens
   revoked), revokes every factor and operator role, marks the user erased (its email index and
   password hash replaced by meaningless values: the index would let anyone holding the index
   key test an address), and keeps the sealed address in ``aml_retention`` for
   ``Durations.aml_retention_days``;
3. after the commit, tells the vault when the retention key is to go (``schedule_retention_end``;
   the ``end_retention`` job destroys it then), and destroys the personal key
   (``destroy_subject``, with the instruments' key): every field sealed under it is unreadable
   from then on. Neither needs the root key, so both are done before the two audit entries that
   do: a vault sealed in between leaves those entries unwritten, never the key alive.

Ledger rows, payments and SCA decisions are left alone: they name only the user id, a
pseudonym once nothing links it to a person. Each step is audited with the operator as actor,
never the erased user (``audit.data_subject``: an entry acted by a user is sealed under that
user's key, so an entry written after step 3 could not be sealed at all).

A run stopped before the commit left nothing behind; a run stopped after it is finished by
running it again: the user is erased already, so step 3 is done again, which is harmless (a key
destroyed already counts 0 versions in the second run's entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zeropay.domain import bounds
from zeropay.domain.errors import InvalidInput, NotFound, invariant
from zeropay.domain.records import User
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork, urlsafe
from zeropay.services.ports import RetainedIdentity

ERASED = "erased"
RETENTION_TABLE, RETENTION_COLUMN = "aml_retention", "email"
# The actor of an erasure the user asked for: never the user (see the module docstring).
SYSTEM_ACTOR = "system"
# Columns erasure fills with meaningless values: still non-empty, no longer about the person.
REPLACED = frozenset({("users", "email_index"), ("users", "password_hash")})
EMAIL_INDEX_BYTES = 32  # as long as a real blind index (HMAC-SHA256)
PASSWORD_STAND_IN_BYTES = 32


@dataclass(frozen=True)
class Erasure:
    user_id: str
    erased_at: datetime
    retained_until: datetime  # the email address is readable under the retention key until then
    erased_now: bool  # False: the user was erased before, and this run finished what was left
    key_versions_destroyed: int  # personal key versions this run destroyed


@dataclass(frozen=True)
class _Scrubbed:
    """What goes in place of the user's secrets: the sealed address and meaningless values."""

    retained_email: bytes
    email_index: bytes
    password_hash: str


def erase_user(ctx: AppContext, user_id: object, *, by: str) -> Erasure:
    """Erase ``user_id`` on behalf of ``by`` (an operator's id or ``cli:NAME``); see the module
    docstring for the steps. Idempotent: erasing an erased user finishes step 3 again."""
    wanted = _parse_user_id(user_id)
    actor = _actor(by, wanted)
    user = ctx.read(lambda uow: uow.accounts.user(wanted))
    if user is None:
        raise NotFound("no such user")
    scrubbed = None if user.status == ERASED else _scrub(ctx, user)
    kept, erased_now = ctx.run(
        lambda uow: _erase(ctx, uow, wanted, scrubbed, actor=actor, by_user=by == wanted)
    )
    # Only after the commit: the keys follow what the database says, never the other way round.
    # Both before the audit entries, which need the root key: a vault sealed in between must
    # not leave an erased user with a live key.
    ctx.keyring.schedule_retention_end(wanted, destroy_after=kept.retained_until)
    destroyed = ctx.keyring.destroy_subject(wanted, now=ctx.now())
    _record(ctx, "user.retention_scheduled", actor, wanted, retained_until=kept.retained_until)
    _record(ctx, "user.personal_key_destroyed", actor, wanted, versions=destroyed)
    return Erasure(wanted, kept.erased_at, kept.retained_until, erased_now, destroyed)


def retained_email(ctx: AppContext, user_id: str) -> str:
    """An erased user's email address, while anti-money-laundering law keeps it (for the
    authorities that may ask); ``KeyDestroyed`` once the retention period has ended."""
    kept = ctx.read(lambda uow: uow.erasure.retained(user_id))
    if kept is None:
        raise NotFound("no identity data is retained for this user")
    return ctx.keyring.decrypt(
        kept.email_ciphertext, table=RETENTION_TABLE, column=RETENTION_COLUMN, row_id=user_id
    ).decode()


def end_retention(ctx: AppContext) -> int:
    """Destroy the retention keys whose period has ended (a job): the email addresses they
    sealed are gone for good, here and in every backup taken from then on. Returns how many
    keys went."""
    destroyed = ctx.keyring.destroy_due(
        now=ctx.now(), limit=bounds.RETENTION_KEYS_DESTROYED_PER_RUN
    )
    if destroyed:
        _record(ctx, "retention.keys_destroyed", SYSTEM_ACTOR, RETENTION_TABLE, keys=destroyed)
    return destroyed


def _parse_user_id(raw: object) -> str:
    if (
        not isinstance(raw, str)
        or not raw.startswith(audit.USER_ID_PREFIX)
        or len(raw) > bounds.ID_LENGTH_MAX
    ):
        raise NotFound("no such user")
    return raw


def _actor(by: str, user_id: str) -> str:
    """Who the audit log names for each step: never the user being erased, whose key is about
    to go; an erasure the user asked for is the system's."""
    if not by or len(by) > bounds.ID_LENGTH_MAX * 2:
        raise InvalidInput("name who erases the user", field="by")
    return SYSTEM_ACTOR if by == user_id else by


def _scrub(ctx: AppContext, user: User) -> _Scrubbed:
    """Outside the transaction: the address moves from the personal key to the retention key
    (the vault may write a user's first retention key, in a transaction of its own), and the
    password hash gives way to the hash of random bytes nobody knows (slow on purpose)."""
    address = ctx.keyring.decrypt(
        user.email_ciphertext, table="users", column="email", row_id=user.id
    )
    return _Scrubbed(
        retained_email=ctx.keyring.encrypt(
            address,
            table=RETENTION_TABLE,
            column=RETENTION_COLUMN,
            row_id=user.id,
            subject=user.id,
            retained=True,
        ),
        email_index=ctx.random_bytes(EMAIL_INDEX_BYTES),
        password_hash=ctx.hasher.hash(urlsafe(ctx.random_bytes(PASSWORD_STAND_IN_BYTES))),
    )


def _erase(
    ctx: AppContext,
    uow: UnitOfWork,
    user_id: str,
    scrubbed: _Scrubbed | None,
    *,
    actor: str,
    by_user: bool,
) -> tuple[RetainedIdentity, bool]:
    user = uow.erasure.lock_user(user_id)
    invariant(user is not None, "a user row is never deleted, only erased")
    assert user is not None
    if user.status == ERASED:  # an earlier run committed (perhaps one racing this one)
        kept = uow.erasure.retained(user_id)
        invariant(kept is not None, "a user is marked erased with its retained identity")
        assert kept is not None
        return kept, False
    invariant(scrubbed is not None, "a user not erased when read was scrubbed for erasure")
    assert scrubbed is not None
    now = ctx.now()
    ended = uow.sessions.revoke_all(user_id, now)
    audit.record(ctx, uow, "user.sessions_ended", actor=actor, subject=user_id, sessions=ended)
    unbound = sum(uow.devices.remove(d.id, now) for d in uow.devices.of_user(user_id))
    audit.record(ctx, uow, "user.devices_unbound", actor=actor, subject=user_id, devices=unbound)
    # As the owner would remove each (services.instruments.remove): its merchant tokens then
    # answer like unknown ones, and no number or blind index outlives the erasure.
    removed = sum(uow.instruments.remove(i.id, now) for i in uow.instruments.of_user(user_id))
    audit.record(
        ctx, uow, "user.instruments_removed", actor=actor, subject=user_id, instruments=removed
    )
    _revoke_factors(ctx, uow, user_id, now, actor=actor)
    # The user's consents to the risk engine's signals go with the account (their history stays
    # in the audit log, sealed under the user's key that erasure destroys).
    uow.consents.remove_all(user_id)
    kept = RetainedIdentity(
        user_id=user_id,
        email_ciphertext=scrubbed.retained_email,
        erased_at=now,
        retained_until=now + timedelta(days=ctx.durations.aml_retention_days),
    )
    uow.erasure.retain(kept)
    uow.erasure.mark_erased(
        user_id, email_index=scrubbed.email_index, password_hash=scrubbed.password_hash
    )
    audit.record(
        ctx,
        uow,
        "user.erased",
        actor=actor,
        subject=user_id,
        retained_until=kept.retained_until,
        requested_by_user=by_user,
    )
    return kept, True


def _revoke_factors(
    ctx: AppContext, uow: UnitOfWork, user_id: str, now: datetime, *, actor: str
) -> None:
    authenticators = sum(
        uow.authenticators.remove(a.id, now)
        for a in uow.authenticators.of_user(user_id, pending=True)
    )
    codes = uow.authenticators.replace_recovery_codes(user_id, [], now)
    answers = uow.authenticators.set_security_answers(user_id, [], now)
    held = uow.operators.roles_of(user_id)
    roles = sorted(r.value for r in held if uow.operators.revoke(user_id, r))
    audit.record(
        ctx,
        uow,
        "user.factors_revoked",
        actor=actor,
        subject=user_id,
        authenticators=authenticators,
        recovery_codes=codes,
        security_answers=answers,
        operator_roles=roles,
    )


def _record(ctx: AppContext, event: str, actor: str, subject: str, **data: Any) -> None:
    ctx.run(lambda uow: audit.record(ctx, uow, event, actor=actor, subject=subject, **data))
