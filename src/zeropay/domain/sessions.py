"""Sessions: who is signed in, how, and until when (after Ory Kratos' session model).

A session keeps the list of authentication methods used, each with its time; the assurance level
is derived from that list and never stored twice. The MFA issue adds factors to the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from zeropay.domain.errors import NotAuthenticated, invariant


class FactorCategory(StrEnum):
    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    INHERENCE = "inherence"


# The factor vocabulary and the category each one proves.
FACTOR_CATEGORIES: dict[str, frozenset[FactorCategory]] = {
    "password": frozenset({FactorCategory.KNOWLEDGE}),
}


@dataclass(frozen=True, slots=True)
class AuthMethod:
    factor: str
    at: datetime


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout_s: int = 300  # PSD2 RTS Art. 4(3)(d): 5 minutes of inactivity
    absolute_timeout_s: int = 12 * 3600  # NIST 800-63B rev 3 AAL2 reauthentication
    # Touching last_seen_at on every request would be a write per request; within this window it is
    # skipped. The idle timeout is then enforced with at most this much slack.
    touch_interval_s: int = 10

    def __post_init__(self) -> None:
        invariant(0 < self.idle_timeout_s <= self.absolute_timeout_s, "idle within absolute")
        invariant(0 <= self.touch_interval_s < self.idle_timeout_s, "touch within idle")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # absolute end
    idle_timeout_s: int
    methods: tuple[AuthMethod, ...] = field(default_factory=tuple)
    revoked_at: datetime | None = None

    def categories(self) -> frozenset[FactorCategory]:
        out: set[FactorCategory] = set()
        for m in self.methods:
            out |= FACTOR_CATEGORIES.get(m.factor, frozenset())
        return frozenset(out)

    @property
    def aal(self) -> int:
        """NIST assurance level derived from the methods: 2 needs two different categories."""
        return 2 if len(self.categories()) >= 2 else 1

    def idle_expires_at(self) -> datetime:
        return self.last_seen_at + timedelta(seconds=self.idle_timeout_s)


def new_session(
    *, session_id: str, user_id: str, factor: str, now: datetime, policy: SessionPolicy
) -> Session:
    return Session(
        id=session_id,
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=policy.absolute_timeout_s),
        idle_timeout_s=policy.idle_timeout_s,
        methods=(AuthMethod(factor, now),),
    )


def verify_session_active(session: Session, now: datetime) -> Session:
    if session.revoked_at is not None:
        raise NotAuthenticated("the session has ended", reason="revoked")
    if now >= session.expires_at:
        raise NotAuthenticated("the session has expired", reason="expired")
    if now >= session.idle_expires_at():
        raise NotAuthenticated("the session expired after inactivity", reason="idle")
    return session


def needs_touch(session: Session, now: datetime, policy: SessionPolicy) -> bool:
    return (now - session.last_seen_at).total_seconds() >= policy.touch_interval_s
