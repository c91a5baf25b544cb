"""Sessions: who is signed in, how, and until when (after Ory Kratos' session model).

A session keeps the list of authentication methods used, each with its time; the assurance level
is derived from that list and never stored twice. A session may be bound to a device key (its
RFC 7638 thumbprint, ``jkt``): every request then carries a DPoP proof made with that key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from zeropay.domain.errors import NotAuthenticated, RecentAuthRequired, invariant
from zeropay.domain.factors import FactorCategory, categories_of, is_strong


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
    jkt: str | None = None  # RFC 7638 thumbprint of the key every request must prove
    device_id: str | None = None  # the bound device the session was opened on, if any

    def categories(self) -> frozenset[FactorCategory]:
        return categories_of(m.factor for m in self.methods)

    @property
    def aal(self) -> int:
        """NIST assurance level derived from the methods: 2 needs two different categories."""
        return 2 if len(self.categories()) >= 2 else 1

    def idle_expires_at(self) -> datetime:
        return self.last_seen_at + timedelta(seconds=self.idle_timeout_s)


def new_session(
    *,
    session_id: str,
    user_id: str,
    methods: tuple[AuthMethod, ...],
    now: datetime,
    policy: SessionPolicy,
    jkt: str | None = None,
    device_id: str | None = None,
) -> Session:
    invariant(bool(methods), "a session records how it was authenticated")
    invariant(device_id is None or jkt is not None, "a device session is bound to its key")
    return Session(
        id=session_id,
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=policy.absolute_timeout_s),
        idle_timeout_s=policy.idle_timeout_s,
        methods=methods,
        jkt=jkt,
        device_id=device_id,
    )


def require_recent_auth(session: Session, now: datetime, age_s_max: int) -> None:
    """A sensitive action (adding or removing a factor or device, changing the email address or
    password) needs a strong authentication -- two categories -- within the last ``age_s_max``
    seconds (OWASP ASVS 3.7.1; NIST 800-63B §6.1.2.1)."""
    cutoff = now - timedelta(seconds=age_s_max)
    recent = [m.factor for m in session.methods if m.at >= cutoff]
    if not is_strong(recent):
        raise RecentAuthRequired(
            "confirm it is you: sign in again with two factors (a step-up flow)",
            age_s_max=age_s_max,
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
