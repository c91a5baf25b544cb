"""What every use case is handed: ports, policies and the transaction runner.

Built once in ``bootstrap.py``. Use cases are functions of an open unit of work, so the runner can
run one again when the database reports a serialization failure (the way CockroachDB's
``run_transaction`` does); each commits exactly once.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from zeropay.domain.exemptions import Profile
from zeropay.domain.limits import PolicyProfile
from zeropay.domain.lockout import LockoutPolicy
from zeropay.domain.policy import AuthPolicy
from zeropay.domain.risk.config import RiskConfig
from zeropay.domain.sessions import SessionPolicy
from zeropay.services.ports import (
    Clock,
    KeyRing,
    Mailer,
    PasswordHasher,
    Resolver,
    SmsSender,
    UnitOfWork,
    WebhookSender,
)
from zeropay.services.risk_replay import Locate

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Durations:
    hold_ttl_s: int = 7 * 24 * 3600  # an authorized (manual-capture) payment's hold
    idempotency_keep_s: int = 24 * 3600  # Stripe keeps keys at least 24 hours
    idempotency_lease_s: int = 60  # an in-flight request older than this was abandoned
    review_ttl_s: int = 3 * 24 * 3600  # a payment held for review is released after this
    aml_retention_days: int = 1827  # an erased user's email is kept this long (AML, 5 years)


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who we are to WebAuthn: the RP ID (a registrable domain; ``localhost`` in development)
    and the origins whose pages may run ceremonies for it."""

    rp_id: str = "localhost"
    name: str = "ZeroPay"
    origins: tuple[str, ...] = ("http://localhost:8000",)


@dataclass(frozen=True)
class RiskSetup:
    """The risk engine's rules and where an IP address is (GeoIP); None in ``AppContext.risk``
    turns the live engine off."""

    config: RiskConfig
    locate: Locate | None = None


@dataclass(frozen=True)
class WebhookSetup:
    """How merchant webhooks leave: the sender and the resolver (no sender: deliveries wait, as
    mail waits without a mailer), and the development escape hatch that lets plain http and
    this machine's own addresses through (ZEROPAY_WEBHOOK_ALLOW_LOCAL; never in production)."""

    sender: WebhookSender | None = None
    resolver: Resolver | None = None
    allow_local: bool = False


@dataclass(frozen=True)
class AppContext:
    clock: Clock
    keyring: KeyRing
    hasher: PasswordHasher
    random_bytes: Callable[[int], bytes]
    transact: Callable[[Callable[[UnitOfWork], Any]], Any]
    # Reads, and single self-contained writes, that need no transaction around them.
    read_only: Callable[[Callable[[UnitOfWork], Any]], Any]
    profile: PolicyProfile
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    session_policy: SessionPolicy = field(default_factory=SessionPolicy)
    durations: Durations = field(default_factory=Durations)
    common_passwords: frozenset[str] = field(default=frozenset(), repr=False)
    mailer: Mailer | None = None  # None: messages stay queued in the outbox
    auth_policy: AuthPolicy | None = None  # bootstrap loads it from the policy file
    relying_party: RelyingParty = field(default_factory=RelyingParty)
    sms: SmsSender | None = None
    # The origins clients reach the API at: a DPoP proof's htu names one of them.
    public_origins: tuple[str, ...] = ("http://localhost:8000",)
    risk: RiskSetup | None = None
    webhooks: WebhookSetup = field(default_factory=WebhookSetup)
    # The SCA exemption profile (PSD2 RTS Art. 13-18); None: every payment goes through unless
    # the risk engine asks for SCA (development and the payments-core tests only).
    exemptions: Profile | None = None

    @property
    def policy(self) -> AuthPolicy:
        if self.auth_policy is None:
            raise RuntimeError("no authentication policy was configured")
        return self.auth_policy

    def now(self) -> datetime:
        return self.clock.now()

    def new_id(self, prefix: str) -> str:
        """A prefixed id: 48 bits of milliseconds then 80 random bits, Crockford base32 (ULID)."""
        millis = int(self.now().timestamp() * 1000)
        raw = millis.to_bytes(6, "big") + self.random_bytes(10)
        return f"{prefix}_{_crockford(raw)}"

    def read(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run ``work`` without a surrounding transaction: each statement stands alone. Only
        for reads and for at most one write that is correct on its own."""
        result: T = self.read_only(work)
        return result

    def run(
        self,
        work: Callable[[UnitOfWork], T],
        on_commit: Callable[[UnitOfWork, T], None] | None = None,
    ) -> T:
        """Run ``work`` in one transaction. ``on_commit`` runs last inside the same transaction,
        with the result (the idempotency store writes the response there)."""
        if on_commit is None:
            result: T = self.transact(work)
            return result

        def with_hook(uow: UnitOfWork) -> T:
            out = work(uow)
            on_commit(uow, out)
            return out

        hooked: T = self.transact(with_hook)
        return hooked


_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _crockford(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    for _ in range((len(raw) * 8 + 4) // 5):
        out.append(_B32[n & 31])
        n >>= 5
    return "".join(reversed(out)).lower()


def urlsafe(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
