"""Consecutive-failure lockout around any factor check (PSD2 RTS Art. 4(3)(b), 4(4)).

A check runs in three steps. First, in one locked transaction, the attempt is counted as a
failure *before* the secret is checked, so a burst of parallel guesses cannot all be checked
before the fifth one locks the factor. Then the (possibly slow) check runs outside any
transaction. Finally success resets the count, or the failure's consequences are recorded:
audit, and at each lock an alert in the inbox and by email.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from zeropay.domain.errors import AuthenticationFailed, FactorLocked
from zeropay.domain.lockout import (
    FactorState,
    LockoutEvent,
    check_usable,
    register_failure,
    register_success,
)
from zeropay.services import audit, notices
from zeropay.services.context import AppContext, UnitOfWork

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reservation:
    after: FactorState
    events: list[LockoutEvent]


def guarded(ctx: AppContext, *, user_id: str, factor: str, check: Callable[[], T]) -> T:
    """Run ``check`` under the factor's lockout. ``check`` raises ``AuthenticationFailed`` on a
    wrong secret; a locked factor raises ``FactorLocked`` without running it."""
    try:
        reserved = ctx.run(lambda uow: _reserve(ctx, uow, user_id, factor))
    except FactorLocked:
        # Audited in a transaction of its own: the one that found the lock is rolled back by the
        # refusal, and a right secret tried against a locked factor is worth a line in the log.
        ctx.run(
            lambda uow: audit.record(
                ctx, uow, "factor.refused_locked", actor=user_id, subject=user_id, factor=factor
            )
        )
        raise
    try:
        result = check()
    except AuthenticationFailed:
        ctx.run(lambda uow: _report_failure(ctx, uow, user_id, factor, reserved))
        raise
    ctx.run(lambda uow: _succeed(ctx, uow, user_id, factor))
    return result


def _reserve(ctx: AppContext, uow: UnitOfWork, user_id: str, factor: str) -> Reservation:
    now = ctx.now()
    state = uow.accounts.lock_factor_state(user_id, factor, now)
    check_usable(state, now)  # raises FactorLocked; ``guarded`` audits it
    after, events = register_failure(state, now, ctx.lockout)
    uow.accounts.save_factor_state(user_id, factor, after, now)
    return Reservation(after, events)


def _succeed(ctx: AppContext, uow: UnitOfWork, user_id: str, factor: str) -> None:
    now = ctx.now()
    current = uow.accounts.lock_factor_state(user_id, factor, now)
    if current.locked_permanently:
        # Another attempt's failure made the lock permanent while this one was being checked.
        raise FactorLocked("this factor is locked until the account is recovered", permanent=True)
    uow.accounts.save_factor_state(user_id, factor, register_success(current), now)


_ALERTS = {
    LockoutEvent.LOCKED: (
        "ZeroPay: a sign-in method is locked for now",
        "Your {factor} was locked after 5 failed sign-in attempts. It unlocks at {until}. "
        "If this wasn't you, change your password when it unlocks.",
    ),
    LockoutEvent.FINAL_WARNING: (
        "ZeroPay: one more lock will be permanent",
        "Warning: one more lock and your {factor} will stay locked until you recover your account.",
    ),
    LockoutEvent.LOCKED_PERMANENTLY: (
        "ZeroPay: a sign-in method is locked",
        "Your {factor} is locked until you recover your account. "
        "Your other sign-in methods still work.",
    ),
}

_FACTOR_NAMES = {
    "password": "password",
    "totp": "authenticator app code",
    "email_otp": "email code",
    "sms_otp": "text message code",
    "passkey": "passkey",
    "security_question": "security answers",
    "recovery_code": "recovery codes",
    "pin": "device PIN",
}


def _report_failure(
    ctx: AppContext, uow: UnitOfWork, user_id: str, factor: str, reserved: Reservation
) -> None:
    after = reserved.after
    audit.record(
        ctx,
        uow,
        "factor.failed",
        actor=user_id,
        subject=user_id,
        factor=factor,
        failures=after.failures,
        locks=after.locks,
    )
    until = after.locked_until.isoformat() if after.locked_until else ""
    name = _FACTOR_NAMES.get(factor, factor)
    for event in reserved.events:
        subject, text = _ALERTS[event]
        notices.alert(
            ctx,
            uow,
            user_id=user_id,
            kind=event.value,
            subject=subject,
            body=text.format(until=until, factor=name),
        )
        audit.record(
            ctx, uow, event.value, actor="system", subject=user_id, factor=factor, locks=after.locks
        )
