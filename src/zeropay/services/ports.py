"""Ports: the small interfaces through which use cases reach time, randomness and I/O.

Adapters implement them; ``bootstrap.py`` chooses which. Nothing here knows about SQL or HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from zeropay.domain.audit import AuditRecord
from zeropay.domain.authenticators import Authenticator, Device
from zeropay.domain.consents import Consent, SignalGroup
from zeropay.domain.exemptions import Counters
from zeropay.domain.flows import Flow
from zeropay.domain.fraud import ClosedPeriod, FraudReport, PeriodKind, Totals
from zeropay.domain.instruments import Charge, DeviceKey, Grant, Instrument
from zeropay.domain.ledger import Account, AccountKind, BalanceChange, Transfer
from zeropay.domain.lockout import FactorState
from zeropay.domain.money import Money
from zeropay.domain.onboarding import Step, StepState
from zeropay.domain.operators import Role
from zeropay.domain.payments import Payment
from zeropay.domain.records import ApiKey, Notification, Refund, User
from zeropay.domain.recovery import Recovery, RecoveryState
from zeropay.domain.risk.engine import RiskDecision
from zeropay.domain.sessions import AuthMethod, Session
from zeropay.domain.webhooks import (
    Attempt,
    ClaimedDelivery,
    Delivery,
    Endpoint,
    FanoutCursor,
    OutboxEvent,
    Outcome,
    SecretPeriod,
    SeqGap,
    StoredSecret,
    WebhookUrl,
)


class SmsSender(Protocol):
    """Sends a text message. SMS is a restricted channel (NIST 800-63B §5.1.3.3): the policy never
    lets it be a user's only second factor by default."""

    def send(self, *, to: str, body: str) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class KeyRing(Protocol):
    """Field encryption and blind indexes under keys that come from the unsealed vault.

    ``encrypt`` binds each ciphertext to where it lives (table, column, row) through AES-GCM
    associated data, so a ciphertext copied into another row or column fails to decrypt. The id
    of the data key travels inside the ciphertext, so old key versions stay readable after
    rotation. Personal data names its ``subject`` (the user it belongs to): it is then encrypted
    under that user's own data key, which ``destroy_subject`` crypto-shreds. ``retained=True``
    picks the subject's separate AML retention key instead (kept after erasure until the
    retention period ends). Every method raises ``VaultSealed`` while the vault is sealed and
    ``KeyDestroyed`` for a destroyed key.
    """

    def encrypt(
        self,
        plaintext: bytes,
        *,
        table: str,
        column: str,
        row_id: str,
        subject: str | None = None,
        retained: bool = False,
    ) -> bytes: ...

    def decrypt(
        self,
        ciphertext: bytes,
        *,
        table: str,
        column: str,
        row_id: str,
        subject: str | None = None,
    ) -> bytes:
        """``subject``: whose data the row says it is; a ciphertext under another user's key
        then fails (a row moved to another owner). Instruments' numbers are refused here:
        only the funding adapter's revealer opens them."""
        ...

    def blind_index(self, value: bytes, *, purpose: str) -> bytes:
        """A keyed HMAC-SHA256 of ``value``: equal inputs give equal outputs, nothing else leaks."""
        ...

    def destroy_subject(self, subject: str, *, now: datetime) -> int:
        """Crypto-shred: destroy every version of the subject's personal data key (not its
        retention key). Returns how many key versions were destroyed."""
        ...

    def schedule_retention_end(self, subject: str, *, destroy_after: datetime) -> None:
        """When the subject's AML retention key is to be destroyed (``destroy_due`` does it)."""
        ...

    def destroy_due(self, *, now: datetime, limit: int) -> int:
        """Destroy retention keys whose period has ended; returns how many."""
        ...


class Mailer(Protocol):
    def send(self, *, to: str, subject: str, body: str) -> None:
        """Hand one plain-text message to the mail server; ``InfrastructureError`` if it fails."""
        ...


class PasswordHasher(Protocol):
    def hash(self, secret: str) -> str: ...

    def verify(self, encoded: str, secret: str) -> None:
        """Return when ``secret`` matches ``encoded``; raise ``AuthenticationFailed`` otherwise."""
        ...

    def needs_rehash(self, encoded: str) -> bool: ...

    def burn(self, secret: str) -> None:
        """Spend the time of one verification without a stored hash (unknown account)."""
        ...


# ---- storage: what the use cases need from a unit of work -------------------------------------
#
# One Protocol per kind of record. The SQL adapter implements them over one connection; the
# checks in ``zeropay.adapters.sql.uow`` make mypy prove it does.


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """An idempotency key as stored: who claimed it for what, and the answer once there is one."""

    fingerprint: bytes
    status: str  # in_flight | completed
    response_status: int | None
    response_body: str | None
    locked_until: datetime | None


class LedgerStore(Protocol):
    def account(self, account_id: str) -> Account: ...
    def accounts_of(self, owner_id: str) -> list[Account]: ...
    def find_accounts(self, *wanted: tuple[AccountKind, str, str]) -> list[Account | None]: ...
    def open_account(
        self, kind: AccountKind, owner_id: str, currency_code: str, now: datetime
    ) -> Account: ...
    def transfer(self, transfer_id: str) -> Transfer | None: ...
    def resolution_of(self, hold_id: str) -> Transfer | None: ...
    def apply(self, transfer: Transfer, change: BalanceChange, *, debit_limited: bool) -> None: ...
    def history(
        self, account_ids: Sequence[str], *, limit: int, before_seq: int | None = None
    ) -> list[tuple[int, Transfer]]: ...
    def expired_holds(self, now: datetime, *, limit: int) -> list[Transfer]: ...
    def all_accounts(self) -> Iterator[Account]: ...
    def all_transfers(self) -> Iterator[Transfer]: ...


class PaymentStore(Protocol):
    def add(self, p: Payment) -> None: ...
    def get(self, payment_id: str, *, lock: bool = False) -> Payment | None: ...
    def save(self, before: Payment, after: Payment) -> None: ...
    def list_for_merchant(
        self, merchant_id: str, *, limit: int, starting_after: Payment | None
    ) -> list[Payment]: ...
    def add_refund(self, refund: Refund) -> None: ...
    def paid_since(
        self, payer_id: str, currency_code: str, since: datetime, *, other_than: str
    ) -> int: ...
    def refunds_of(self, payment_id: str) -> list[Refund]: ...


class SpendStore(Protocol):
    def spent(self, user_id: str, currency_code: str, period: str) -> int: ...
    def add(
        self, user_id: str, currency_code: str, period: str, amount_minor: int, *, limit: int
    ) -> bool: ...
    def give_back(
        self, user_id: str, currency_code: str, period: str, amount_minor: int
    ) -> None: ...


class AccountStore(Protocol):
    def add_user(
        self,
        *,
        user_id: str,
        email_index: bytes,
        email_ciphertext: bytes,
        password_hash: str,
        now: datetime,
    ) -> bool: ...
    def user_by_email_index(self, email_index: bytes) -> User | None: ...
    def user(self, user_id: str) -> User | None: ...
    def set_password_hash(self, user_id: str, password_hash: str) -> None: ...
    def password_changed(self, user_id: str, password_hash: str, now: datetime) -> None: ...
    def set_status(self, user_id: str, status: str, *, was: str) -> bool: ...
    def mark_email_verified(self, user_id: str, now: datetime) -> None: ...
    def lock_factor_state(self, user_id: str, factor: str, now: datetime) -> FactorState: ...
    def save_factor_state(
        self, user_id: str, factor: str, state: FactorState, now: datetime
    ) -> None: ...
    def notify(
        self, *, notification_id: str, user_id: str, kind: str, body: str, now: datetime
    ) -> None: ...
    def notifications(self, user_id: str, *, limit: int) -> list[Notification]: ...


@dataclass(frozen=True, slots=True)
class RetainedIdentity:
    """What anti-money-laundering record keeping keeps of an erased user: the email address,
    sealed under the user's retention key, until ``retained_until``."""

    user_id: str
    email_ciphertext: bytes
    erased_at: datetime
    retained_until: datetime


class ErasureStore(Protocol):
    def lock_user(self, user_id: str) -> User | None:
        """The user, its row locked until the commit: two erasures of one user queue."""
        ...

    def mark_erased(self, user_id: str, *, email_index: bytes, password_hash: str) -> None:
        """Status ``erased``, with a meaningless email index and password hash in place of the
        real ones (the index would let anyone holding the index key test an address)."""
        ...

    def retain(self, identity: RetainedIdentity) -> None: ...
    def retained(self, user_id: str) -> RetainedIdentity | None: ...


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext read for its owner's privacy view, with what ``KeyRing.decrypt`` needs."""

    ciphertext: bytes
    table: str
    column: str  # the column name the writer passed to ``encrypt``
    row_id: str
    subject: str | None


HIDDEN = "held, not shown"  # a secret's place in a privacy view: never read out of its row


@dataclass(frozen=True, slots=True)
class InventoriedField:
    """One entry of the data inventory (``adapters.sql.inventory``), as a user is told it."""

    table: str
    column: str
    name: str
    purpose: str
    basis: str
    retention: str
    setting: str | None
    encrypted: bool
    shown: bool  # False: a secret, always ``HIDDEN``


@dataclass(frozen=True, slots=True)
class HeldRows:
    """One inventoried table's rows that belong to one user: each row has one value per field,
    in order: None, a plain value, a ``Sealed`` ciphertext, or ``HIDDEN``."""

    table: str
    fields: tuple[InventoriedField, ...]
    rows: tuple[tuple[object, ...], ...]
    truncated: bool  # more rows than were asked for


class PrivacyStore(Protocol):
    def held(self, user_id: str, *, rows_max: int) -> list[HeldRows]:
        """Every inventoried table's rows for this user, at most ``rows_max`` each."""
        ...


class SessionStore(Protocol):
    def add(self, session: Session, *, token_hash: bytes, user_agent: str | None) -> None: ...
    def by_token_hash(self, token_hash: bytes) -> Session | None: ...
    def get(self, session_id: str) -> Session | None: ...
    def touch(self, session_id: str, now: datetime) -> None: ...
    def revoke(self, session_id: str, now: datetime) -> bool: ...
    def revoke_all(self, user_id: str, now: datetime, *, keep: str | None = None) -> int: ...
    def revoke_device(self, device_id: str, now: datetime) -> int: ...
    def add_methods(self, session_id: str, methods: tuple[AuthMethod, ...]) -> None: ...
    def of_user(
        self, user_id: str, now: datetime, *, limit: int
    ) -> list[tuple[Session, str | None]]: ...


@dataclass(frozen=True, slots=True)
class StoredFlow:
    """A flow with the secrets in play for its current step."""

    flow: Flow
    challenge: bytes | None = None  # WebAuthn challenge
    code_hash: bytes | None = None  # keyed hash of the email or SMS code sent
    code_factor: str | None = None
    code_expires_at: datetime | None = None
    code_sends: int = 0
    approval_code: str | None = None
    approved_by: str | None = None
    approval_state: str | None = None


class FlowStore(Protocol):
    def add(self, stored: StoredFlow, now: datetime) -> None: ...
    def get(self, flow_id: str, *, lock: bool = False) -> StoredFlow | None: ...
    def save(self, stored: StoredFlow, now: datetime) -> None: ...
    def consume_code(
        self, flow_id: str, *, factor: str, code_hash: bytes, now: datetime
    ) -> bool: ...
    def consume_challenge(self, flow_id: str, challenge: bytes) -> bool: ...
    def claim_step(self, flow_id: str, now: datetime, until: datetime) -> bool: ...
    def release_step(self, flow_id: str, until: datetime) -> None: ...
    def awaiting_approval(self, user_id: str, now: datetime, *, limit: int) -> list[StoredFlow]: ...
    def purge_expired(self, before: datetime, *, limit: int) -> int: ...


class DeviceStore(Protocol):
    def add(self, device: Device) -> None: ...
    def get(self, device_id: str) -> Device | None: ...
    def by_jkt(self, jkt: str) -> Device | None: ...
    def of_user(self, user_id: str) -> list[Device]: ...
    def touch(self, device_id: str, now: datetime) -> None: ...
    def remove(self, device_id: str, now: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """One chosen security question as stored: which question is only in ``question_ciphertext``
    (sealed to the user's key and bound to the row (user, slot)); the answer is an argon2id hash."""

    user_id: str
    slot: int
    question_ciphertext: bytes
    answer_hash: str


class AuthenticatorStore(Protocol):
    def add(self, authenticator: Authenticator) -> bool: ...
    def get(self, authenticator_id: str, *, lock: bool = False) -> Authenticator | None: ...
    def by_credential_id(self, credential_id: bytes) -> Authenticator | None: ...
    def of_user(self, user_id: str, *, pending: bool = False) -> list[Authenticator]: ...
    def activate(
        self,
        authenticator_id: str,
        now: datetime,
        *,
        credential_id: bytes | None = None,
        public_key: bytes | None = None,
        sign_count: int = 0,
        last_step: int | None = None,
        label: str | None = None,
        device_id: str | None = None,
    ) -> bool: ...
    def remove(self, authenticator_id: str, now: datetime) -> bool: ...
    def accept_totp_step(self, authenticator_id: str, step: int, now: datetime) -> bool: ...
    def record_passkey_use(
        self, authenticator_id: str, *, sign_count: int, clone_signal: bool, now: datetime
    ) -> None: ...
    def replace_recovery_codes(self, user_id: str, hashes: list[bytes], now: datetime) -> int: ...
    def use_recovery_code(self, user_id: str, code_hash: bytes, now: datetime) -> bool: ...
    def recovery_codes_left(self, user_id: str) -> int: ...
    def set_security_answers(
        self, user_id: str, answers: Sequence[StoredAnswer], now: datetime
    ) -> int: ...
    def security_answers(self, user_id: str) -> list[StoredAnswer]: ...


class ReplayStore(Protocol):
    def first_use(self, jkt: str, jti: str, expires_at: datetime) -> bool: ...
    def hit(self, key: str, window_start: datetime, expires_at: datetime) -> int: ...
    def purge(self, now: datetime, *, limit: int) -> int: ...


class MerchantStore(Protocol):
    def add(
        self, merchant_id: str, name: str, now: datetime, *, mcc: str | None = None
    ) -> None: ...
    def name(self, merchant_id: str) -> str | None: ...
    def mcc(self, merchant_id: str) -> str | None:
        """The merchant's ISO 18245 category code, if it declared one."""
        ...

    def add_api_key(self, key: ApiKey) -> None: ...
    def api_key(self, key_id: str) -> ApiKey | None: ...
    def api_keys(self, merchant_id: str) -> list[ApiKey]: ...
    def revoke_api_key(self, key_id: str, now: datetime) -> bool: ...


class IdempotencyStore(Protocol):
    def claim(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: bytes,
        now: datetime,
        keep: timedelta,
        lease: timedelta,
    ) -> StoredRequest | None: ...
    def complete(self, *, scope: str, key: str, status: int, body: str) -> None: ...
    def release(self, *, scope: str, key: str) -> None: ...
    def purge_expired(self, now: datetime, *, limit: int) -> int: ...


class AuditStore(Protocol):
    def append(self, *, at: datetime, event: str, actor: str, subject: str, data: bytes) -> int: ...
    def head(self) -> tuple[int, bytes]: ...
    def records(self) -> Iterator[tuple[AuditRecord, bytes]]: ...


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    id: str
    user_id: str
    subject: str
    body_ciphertext: bytes
    attempts: int


class OutboxStore(Protocol):
    def add(
        self, *, email_id: str, user_id: str, subject: str, body_ciphertext: bytes, now: datetime
    ) -> None: ...
    def due(self, now: datetime, *, limit: int) -> list[QueuedEmail]: ...
    def sent(self, email_id: str, now: datetime) -> None: ...
    def failed(self, email_id: str, *, error: str, retry_at: datetime | None) -> None: ...


class JobStore(Protocol):
    def ensure(self, name: str, interval_s: int, now: datetime) -> None: ...
    def lease(self, name: str, *, owner: str, now: datetime, lease: timedelta) -> bool: ...
    def finish(
        self, name: str, *, owner: str, now: datetime, error: str | None, next_run_at: datetime
    ) -> None: ...


RecordKey = tuple[str, str]  # (kind, subject): ("user", user id), ("device", key thumbprint)...
Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredAssessment:
    """One live risk decision and the event it decided (as a replay line)."""

    id: str
    user_subject: str
    event_type: str
    ref: str | None  # the flow or payment it decided
    decision: RiskDecision
    event: dict[str, object]
    state: str  # settled | pending | passed | failed | used
    created_at: datetime


class RiskStore(Protocol):
    def lock_records(self, keys: Sequence[RecordKey], now: datetime) -> dict[RecordKey, Document]:
        """The records' documents (``{}`` for a new one), each row locked until the commit."""
        ...

    def save_records(self, bodies: dict[RecordKey, Document], now: datetime) -> None: ...
    def read_record(self, key: RecordKey) -> Document | None: ...
    def purge_idle(self, idle_before: datetime, *, limit: int) -> int: ...
    def add_assessment(self, assessment: StoredAssessment) -> None: ...
    def assessment(self, assessment_id: str, *, lock: bool = False) -> StoredAssessment | None: ...
    def set_state(self, assessment_id: str, *, state: str, now: datetime) -> None: ...
    def recent(self, user_subject: str, *, limit: int) -> list[StoredAssessment]: ...


@dataclass(frozen=True, slots=True)
class RoleGrant:
    user_id: str
    role: Role
    granted_at: datetime
    granted_by: str


@dataclass(frozen=True, slots=True)
class HeldForReview:
    """A payment in the operators' queue: who pays whom how much, and the risk decision that
    held it (None when no stored decision names the payment)."""

    payment: Payment
    merchant_name: str
    decision: StoredAssessment | None


class ConsentStore(Protocol):
    """A user's choices per signal group of the risk engine (no row: given)."""

    def of_user(self, user_id: str, *, lock: bool = False) -> dict[SignalGroup, Consent]: ...
    def save(self, user_id: str, consent: Consent) -> None: ...
    def remove_all(self, user_id: str) -> int: ...


class OperatorStore(Protocol):
    def roles_of(self, user_id: str) -> frozenset[Role]: ...
    def grant(self, user_id: str, role: Role, *, granted_by: str, now: datetime) -> bool:
        """False when the user already held the role."""
        ...

    def revoke(self, user_id: str, role: Role) -> bool:
        """False when the user did not hold the role."""
        ...

    def grants(self, *, limit: int) -> list[RoleGrant]: ...
    def in_review(self, *, limit: int, starting_after: Payment | None) -> list[HeldForReview]:
        """Payments in review, oldest first (by creation, then id), after ``starting_after``."""
        ...

    def decisions_about(self, payment_id: str, *, limit: int) -> list[StoredAssessment]:
        """The risk decisions whose ``ref`` is the payment, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class PaymentEventRecord:
    id: str
    merchant_id: str
    payment_id: str
    type: str
    body: str
    created_at: datetime


class PaymentEventStore(Protocol):
    def add(self, event: PaymentEventRecord) -> None: ...
    def of_payment(self, payment_id: str) -> list[PaymentEventRecord]: ...


# ---- merchant webhooks --------------------------------------------------------------------------


class WebhookStore(Protocol):
    """Endpoints and secrets, the fan-out cursor over ``payment_events``, deliveries and their
    attempt log. Every read a merchant makes is scoped by its id."""

    def lock_merchant(self, merchant_id: str) -> bool: ...
    def active_endpoint_count(self, merchant_id: str) -> int: ...
    def add_endpoint(self, endpoint: Endpoint, secret: StoredSecret) -> None: ...
    def endpoint(
        self, merchant_id: str, endpoint_id: str, *, lock: bool = False
    ) -> Endpoint | None: ...
    def endpoints(
        self, merchant_id: str, *, limit: int, starting_after: str | None
    ) -> list[Endpoint]: ...
    def active_endpoints(self, merchant_ids: Collection[str]) -> list[Endpoint]: ...
    def disable_endpoint(self, endpoint_id: str, now: datetime) -> int: ...
    def add_secret(self, endpoint_id: str, secret: StoredSecret) -> None: ...
    def secret_periods(self, endpoint_id: str) -> list[SecretPeriod]: ...
    def set_secret_expiry(self, endpoint_id: str, expiries: Mapping[str, datetime]) -> None: ...
    def purge_expired_secrets(self, endpoint_id: str, now: datetime) -> int: ...
    def lock_fanout(self) -> FanoutCursor: ...
    def save_fanout(self, cursor: FanoutCursor, now: datetime) -> None: ...
    def events_after(self, seq: int, *, limit: int) -> list[OutboxEvent]: ...
    def events_in_gaps(self, gaps: Sequence[SeqGap], *, limit: int) -> list[OutboxEvent]: ...
    def add_deliveries(self, deliveries: Sequence[Delivery]) -> int: ...
    def claim_due(
        self, now: datetime, *, owner: str, until: datetime, limit: int
    ) -> list[ClaimedDelivery]: ...
    def finish_attempt(
        self, attempt: Attempt, outcome: Outcome, *, owner: str, now: datetime
    ) -> bool: ...
    def delivery(self, merchant_id: str, delivery_id: str) -> Delivery | None: ...
    def deliveries_of_endpoint(
        self, endpoint_id: str, *, limit: int, starting_after: Delivery | None
    ) -> list[Delivery]: ...
    def deliveries_of_event(
        self, merchant_id: str, event_id: str, *, limit: int
    ) -> list[Delivery]: ...
    def attempts_of(
        self, delivery_ids: Collection[str], *, limit_each: int
    ) -> dict[str, list[Attempt]]: ...
    def delivery_for(self, event_id: str, endpoint_id: str, *, lock: bool) -> Delivery | None: ...
    def restart_delivery(self, delivery_id: str, now: datetime) -> None: ...
    def events(
        self, merchant_id: str, *, limit: int, starting_after: str | None
    ) -> list[PaymentEventRecord]: ...
    def event(self, merchant_id: str, event_id: str) -> PaymentEventRecord | None: ...


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """What one POST to a receiver came to: its HTTP status, or the class of error that left
    none (``timeout``, ``connect_failed``, ...), and how long it took."""

    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookSender(Protocol):
    def post(
        self, *, url: WebhookUrl, address: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookAnswer:
        """POST ``body`` to ``url`` over a connection to ``address`` (already checked: no
        other lookup is made), following no redirect and reading a bounded answer. A
        receiver's fault is an answer, never an exception."""
        ...


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to now; empty when it does not resolve."""
        ...


@dataclass(frozen=True, slots=True)
class ScaDecisionRecord:
    """One confirmation's SCA decision: the exemption that applied, or why SCA was required."""

    id: str
    payment_id: str
    user_id: str
    exemption: str | None
    reasons: tuple[str, ...]
    profile: str
    flow_id: str | None
    outcome: str  # exempt | challenged | authenticated | failed
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    merchant_id: str
    series_ref: str
    user_id: str
    amount: Money
    first_payment_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TrustedBeneficiary:
    merchant_id: str
    merchant_name: str
    created_at: datetime


class ScaStore(Protocol):
    def lock_counters(self, user_id: str, now: datetime) -> tuple[Counters, datetime | None]: ...
    def read_counters(self, user_id: str) -> tuple[Counters, datetime | None]: ...
    def save_counters(
        self, user_id: str, counters: Counters, *, last_sca_at: datetime | None, now: datetime
    ) -> None: ...
    def add_decision(self, decision: ScaDecisionRecord) -> None: ...
    def set_outcome(self, decision_id: str, outcome: str, now: datetime) -> None: ...
    def decision_of_flow(self, flow_id: str) -> ScaDecisionRecord | None: ...
    def open_decision(self, payment_id: str) -> ScaDecisionRecord | None:
        """The payment's latest decision that started a confirmation still ``challenged``."""
        ...

    def decisions_of(self, user_id: str, *, limit: int) -> list[ScaDecisionRecord]: ...
    def trusted(self, user_id: str) -> list[TrustedBeneficiary]: ...
    def is_trusted(self, user_id: str, merchant_id: str) -> bool: ...
    def add_trusted(
        self, user_id: str, merchant_id: str, session_id: str, now: datetime
    ) -> bool: ...
    def remove_trusted(self, user_id: str, merchant_id: str) -> bool: ...
    def series(self, merchant_id: str, series_ref: str, user_id: str) -> SeriesRecord | None: ...
    def add_series(self, series: SeriesRecord) -> None: ...


class FraudStore(Protocol):
    """Fraud reports and the closed days and quarters of the platform's fraud rate."""

    def add_report(self, report: FraudReport) -> bool:
        """False when the payment already has a report of this kind."""
        ...

    def reports_of(self, payment_id: str) -> list[FraudReport]: ...
    def captured_between(self, start: datetime, end: datetime) -> dict[str, int]:
        """Value captured (payments' money posted to merchants) in [start, end), per currency."""
        ...

    def fraud_between(self, start: datetime, end: datetime) -> dict[str, int]:
        """Value of fraud reported in [start, end) (what each report counted), per currency."""
        ...

    def close(self, period: ClosedPeriod, now: datetime) -> bool:
        """Store a period's figures; False when it was closed already."""
        ...

    def closed(self, kind: PeriodKind, *, since: datetime) -> set[datetime]:
        """The starts of the periods of ``kind`` closed from ``since`` on."""
        ...

    def newest_closed(self, kind: PeriodKind) -> datetime | None: ...
    def day_totals(self, first: datetime, last: datetime) -> Totals:
        """The closed days from ``first`` to ``last`` (inclusive), added up per currency."""
        ...

    def quarters(self, *, since: datetime) -> list[ClosedPeriod]:
        """The closed quarters from ``since`` on, newest first."""
        ...


class OnboardingStore(Protocol):
    """Skip-and-return onboarding: a user's steps that left pending (no row: pending)."""

    def states(self, user_id: str, *, lock: bool = False) -> dict[Step, StepState]: ...
    def save(self, user_id: str, state: StepState) -> None: ...
    def skipped_before(
        self, before: datetime, *, reminders_below: int, limit: int
    ) -> list[tuple[str, StepState]]: ...


class RecoveryStore(Protocol):
    """Account recoveries whose factors passed (``domain.recovery``)."""

    def add(self, recovery: Recovery) -> None: ...
    def get(self, recovery_id: str, *, lock: bool = False) -> Recovery | None: ...
    def by_flow(self, flow_id: str, *, lock: bool = False) -> Recovery | None: ...
    def save(self, recovery: Recovery) -> None: ...
    def of_user(self, user_id: str, *, limit: int) -> list[Recovery]: ...
    def cooling(self, user_id: str, now: datetime) -> list[Recovery]: ...
    def in_state(self, state: RecoveryState, *, limit: int) -> list[Recovery]: ...
    def delete_of_user(self, user_id: str) -> int: ...


class UnitOfWork(Protocol):
    """One open transaction and the stores that read and write inside it."""

    @property
    def ledger(self) -> LedgerStore: ...
    @property
    def privacy(self) -> PrivacyStore: ...
    @property
    def payments(self) -> PaymentStore: ...
    @property
    def spend(self) -> SpendStore: ...
    @property
    def accounts(self) -> AccountStore: ...
    @property
    def sessions(self) -> SessionStore: ...
    @property
    def merchants(self) -> MerchantStore: ...
    @property
    def idempotency(self) -> IdempotencyStore: ...
    @property
    def audit(self) -> AuditStore: ...
    @property
    def jobs(self) -> JobStore: ...
    @property
    def outbox(self) -> OutboxStore: ...
    @property
    def flows(self) -> FlowStore: ...
    @property
    def devices(self) -> DeviceStore: ...
    @property
    def authenticators(self) -> AuthenticatorStore: ...
    @property
    def replay(self) -> ReplayStore: ...
    @property
    def risk(self) -> RiskStore: ...
    @property
    def consents(self) -> ConsentStore: ...
    @property
    def operators(self) -> OperatorStore: ...
    @property
    def payment_events(self) -> PaymentEventStore: ...
    @property
    def webhooks(self) -> WebhookStore: ...
    @property
    def sca(self) -> ScaStore: ...
    @property
    def fraud(self) -> FraudStore: ...
    @property
    def erasure(self) -> ErasureStore: ...
    @property
    def instruments(self) -> InstrumentStore: ...
    @property
    def onboarding(self) -> OnboardingStore: ...
    @property
    def recoveries(self) -> RecoveryStore: ...


class VaultControl(Protocol):
    """What custodians and operators drive on the key vault (adapters.vault.Vault)."""

    @property
    def sealed(self) -> bool: ...

    def status(self) -> Any:
        """A ``VaultStatus`` (initialized, sealed, threshold, key versions, processes)."""
        ...

    def custodian(self, token: str) -> str | None:
        """The name of the custodian holding this credential, or None."""
        ...

    def submit_share(self, text: object, *, submitted_by: str) -> Any:
        """Check a share and send it to every sealed process; an ``UnsealProgress``."""
        ...

    def seal_everywhere(self) -> None: ...


# ---- tokenized payment instruments --------------------------------------------------------------


class InstrumentStore(Protocol):
    """Instruments, merchant grants, device cryptogram keys, charges, and the sandbox carrier's
    monthly totals. Instruments and grants are found by their tokens' hashes, always scoped to
    the owner or the merchant asking; only active ones are found."""

    def lock_owner(self, user_id: str) -> None:
        """Lock the payer's row until the commit: one payer's instrument changes queue."""
        ...

    def active_count(self, user_id: str) -> int: ...
    def by_number_index(self, user_id: str, number_index: bytes) -> Instrument | None: ...
    def add(self, instrument: Instrument, *, token_hash: bytes, number_index: bytes) -> bool:
        """False, adding nothing, when the payer already holds this number."""
        ...

    def of_user(self, user_id: str) -> list[Instrument]: ...
    def find(
        self, user_id: str, *, token_hash: bytes | None, instrument_id: str | None, lock: bool
    ) -> Instrument | None: ...
    def get(self, instrument_id: str) -> Instrument | None: ...
    def remove(self, instrument_id: str, now: datetime) -> bool:
        """Wipe the number and its index, revoke its grants, remove and wipe its device keys."""
        ...

    def add_grant(self, grant: Grant, *, token_hash: bytes) -> None: ...
    def grants_of(self, instrument_id: str) -> list[Grant]: ...
    def grant_by_token_hash(self, token_hash: bytes, *, lock: bool) -> Grant | None: ...
    def revoke_grant(self, instrument_id: str, grant_id: str, now: datetime) -> bool: ...
    def add_device_key(self, key: DeviceKey) -> None: ...
    def remove_device_keys(self, instrument_id: str, device_id: str, now: datetime) -> int: ...
    def device_keys_of(self, instrument_id: str, *, lock: bool) -> list[DeviceKey]:
        """The instrument's active keys whose device is still bound, by id."""
        ...

    def save_key_lockout(self, key_id: str, state: FactorState) -> None: ...
    def advance_counter(self, key_id: str, counter: int, now: datetime) -> bool:
        """Accept ``counter`` for the key only if it is above the last one accepted (one
        conditional UPDATE: of two uses of one counter, one wins)."""
        ...

    def add_charge(self, charge: Charge) -> None: ...
    def charge(self, merchant_id: str, charge_id: str) -> Charge | None: ...
    def add_carrier_spend(
        self, user_id: str, currency_code: str, period: str, amount_minor: int, *, limit: int
    ) -> bool:
        """Count a carrier bill against the payer's month; False, changing nothing, past
        ``limit``."""
        ...


class AuditTrail(Protocol):
    """Appends one event to the audit log inside the caller's transaction (``services.audit``)."""

    def __call__(self, event: str, *, actor: str, subject: str, **data: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class FundingRequest:
    charge_id: str
    instrument: Instrument
    merchant_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class FundingOutcome:
    decline_code: str | None = None  # None: approved, the money may be posted

    @property
    def approved(self) -> bool:
        return self.decline_code is None


class FundingGateway(Protocol):
    """Charges a payment instrument at its funding source (a card network, a carrier). The only
    code that reads a number back out of the vault, through the detokenizer it was built with
    (``adapters.funding``). It runs inside the charge's transaction: what it counts and audits
    commits or rolls back with the charge."""

    def charge(
        self, uow: UnitOfWork, request: FundingRequest, *, now: datetime, audit: AuditTrail
    ) -> FundingOutcome: ...
