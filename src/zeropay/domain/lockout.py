"""Consecutive-failure lockout of one authentication factor (PSD2 RTS Art. 4(3)(b), 4(4)).

Five consecutive failures lock the factor; each lock lasts twice as long as the one before;
after ``locks_max`` locks the factor stays locked until the account is recovered. The user is
alerted at every lock, and told explicitly when the next lock will be the permanent one.
Only the failing factor is locked, never the account's other factors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from zeropay.domain.errors import FactorLocked, invariant


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    failures_max: int = 5  # PSD2 RTS Art. 4(3)(b)
    lock_base_s: int = 60
    locks_max: int = 5  # the locks_max-th lock is permanent

    def __post_init__(self) -> None:
        invariant(1 <= self.failures_max <= 100, "failures_max within NIST 800-63B's 100")
        invariant(self.lock_base_s > 0, "lock_base_s must be positive")
        invariant(self.locks_max >= 2, "at least one temporary lock before a permanent one")

    def lock_duration(self, lock_number: int) -> timedelta:
        """The n-th lock (1-based) lasts base * 2^(n-1)."""
        return timedelta(seconds=self.lock_base_s * 2 ** (lock_number - 1))


@dataclass(frozen=True, slots=True)
class FactorState:
    failures: int = 0
    locks: int = 0
    locked_until: datetime | None = None
    locked_permanently: bool = False


class LockoutEvent(StrEnum):
    LOCKED = "factor.locked"
    FINAL_WARNING = "factor.final_warning"  # the next lock will be permanent
    LOCKED_PERMANENTLY = "factor.locked_permanently"


def check_usable(state: FactorState, now: datetime) -> None:
    if state.locked_permanently:
        raise FactorLocked("this factor is locked until the account is recovered", permanent=True)
    if state.locked_until is not None and now < state.locked_until:
        raise FactorLocked(
            "this factor is locked for now", permanent=False, until=state.locked_until.isoformat()
        )


def register_failure(
    state: FactorState, now: datetime, policy: LockoutPolicy
) -> tuple[FactorState, list[LockoutEvent]]:
    failures = state.failures + 1
    if failures < policy.failures_max:
        return replace(state, failures=failures), []
    locks = state.locks + 1
    if locks >= policy.locks_max:
        return (
            FactorState(failures=0, locks=locks, locked_until=None, locked_permanently=True),
            [LockoutEvent.LOCKED_PERMANENTLY],
        )
    events = [LockoutEvent.LOCKED]
    if locks == policy.locks_max - 1:
        events.append(LockoutEvent.FINAL_WARNING)
    locked = FactorState(failures=0, locks=locks, locked_until=now + policy.lock_duration(locks))
    return locked, events


def register_success(state: FactorState) -> FactorState:
    """A success proves the rightful user holds the factor: the count and the back-off restart."""
    invariant(not state.locked_permanently, "a permanently locked factor cannot succeed")
    return FactorState()
