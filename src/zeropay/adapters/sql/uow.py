"""The SQL unit of work: the repositories over one connection in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from zeropay.adapters.sql.auth_records import (
    AuthenticatorRepository,
    DeviceRepository,
    FlowRepository,
    ReplayRepository,
)
from zeropay.adapters.sql.consent_records import ConsentRepository
from zeropay.adapters.sql.database import run_in_transaction
from zeropay.adapters.sql.erasure_records import ErasureRepository
from zeropay.adapters.sql.event_records import PaymentEventRepository
from zeropay.adapters.sql.fraud_records import FraudRepository
from zeropay.adapters.sql.instrument_records import InstrumentRepository
from zeropay.adapters.sql.onboarding_records import OnboardingRepository
from zeropay.adapters.sql.operator_records import OperatorRepository
from zeropay.adapters.sql.privacy_records import PrivacyRepository
from zeropay.adapters.sql.records import (
    AuditRepository,
    IdempotencyRepository,
    JobRepository,
    OutboxRepository,
)
from zeropay.adapters.sql.recovery_records import RecoveryRepository
from zeropay.adapters.sql.repositories import (
    AccountRepository,
    LedgerRepository,
    MerchantRepository,
    PaymentRepository,
    SessionRepository,
    SpendRepository,
)
from zeropay.adapters.sql.risk_records import RiskRepository
from zeropay.adapters.sql.sca_records import ScaRepository
from zeropay.adapters.sql.webhook_records import WebhookRepository
from zeropay.services.ports import UnitOfWork

T = TypeVar("T")


class SqlUnitOfWork:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.ledger = LedgerRepository(connection)
        self.privacy = PrivacyRepository(connection)
        self.payments = PaymentRepository(connection)
        self.spend = SpendRepository(connection)
        self.accounts = AccountRepository(connection)
        self.sessions = SessionRepository(connection)
        self.merchants = MerchantRepository(connection)
        self.idempotency = IdempotencyRepository(connection)
        self.audit = AuditRepository(connection)
        self.jobs = JobRepository(connection)
        self.outbox = OutboxRepository(connection)
        self.flows = FlowRepository(connection)
        self.devices = DeviceRepository(connection)
        self.authenticators = AuthenticatorRepository(connection)
        self.replay = ReplayRepository(connection)
        self.risk = RiskRepository(connection)
        self.consents = ConsentRepository(connection)
        self.payment_events = PaymentEventRepository(connection)
        self.operators = OperatorRepository(connection)
        self.webhooks = WebhookRepository(connection)
        self.sca = ScaRepository(connection)
        self.fraud = FraudRepository(connection)
        self.instruments = InstrumentRepository(connection)
        self.erasure = ErasureRepository(connection)
        self.onboarding = OnboardingRepository(connection)
        self.recoveries = RecoveryRepository(connection)


def _conforms(uow: SqlUnitOfWork) -> UnitOfWork:
    """Never called: mypy checks here that the SQL unit of work provides every store's methods
    with the signatures the use cases rely on."""
    return uow


def transactor(engine: Engine) -> Callable[[Callable[[Any], T]], T]:
    def transact(work: Callable[[Any], T]) -> T:
        return run_in_transaction(engine, lambda connection: work(SqlUnitOfWork(connection)))

    return transact


def reader(engine: Engine) -> Callable[[Callable[[Any], T]], T]:
    """Run work that reads, or writes one self-contained statement, without BEGIN and COMMIT:
    on PostgreSQL each statement commits on its own (two round trips fewer per use case). On
    SQLite, where a transaction costs no round trip, it is an ordinary transaction."""
    if engine.dialect.name == "sqlite":
        return transactor(engine)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def read(work: Callable[[Any], T]) -> T:
        return run_in_transaction(autocommit, lambda connection: work(SqlUnitOfWork(connection)))

    return read
