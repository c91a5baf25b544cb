"""Engines and the unit of work: one transaction per use case, retried when the database asks.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` so a use case that reads and then writes holds
the write lock from its first statement (otherwise two processes can both read and one of them
fails on upgrade). PostgreSQL runs at READ COMMITTED with row locks (``SELECT ... FOR UPDATE``)
on every read-modify-write, and conditional updates that re-check balances; serialization
failures and deadlocks (which SERIALIZABLE or a distributed PostgreSQL may raise) are retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from zeropay.domain import bounds
from zeropay.domain.errors import InfrastructureError

T = TypeVar("T")

RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


class RetryTransaction(Exception):  # noqa: N818 - a signal, not an error a caller sees
    """Raised inside a unit of work to run the whole use case again on fresh data."""


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping (a round trip per transaction): a connection found dead is invalidated and
        # the transaction runs again on a fresh one (see ``_retryable``).
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (pysqlite's own transaction handling defers it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _retryable(exc: BaseException, *, at_commit: bool) -> bool:
    if isinstance(exc, RetryTransaction):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            # A connection lost before COMMIT was sent took its transaction with it: run it
            # again. Lost *during* COMMIT, nobody knows whether it committed, so never retry.
            return not at_commit
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in RETRY_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


# The connection of the transaction this thread is running. One adapter needs it: on SQLite the
# vault must write a user's first key inside that transaction, since a second connection would
# wait for the write lock this very transaction holds (adapters.vault.store).
_OPEN_TRANSACTION: ContextVar[Connection | None] = ContextVar("open_transaction", default=None)


def open_transaction() -> Connection | None:
    return _OPEN_TRANSACTION.get()


def run_in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work`` in one transaction, committing once; run it again on a retryable failure."""
    for attempt in range(1, bounds.TRANSACTION_ATTEMPTS_MAX + 1):
        at_commit = False
        try:
            with engine.begin() as connection:
                token = _OPEN_TRANSACTION.set(connection)
                try:
                    result = work(connection)
                finally:
                    _OPEN_TRANSACTION.reset(token)
                at_commit = True
            return result
        except Exception as exc:
            if (
                not _retryable(exc, at_commit=at_commit)
                or attempt == bounds.TRANSACTION_ATTEMPTS_MAX
            ):
                if isinstance(exc, OperationalError):
                    raise InfrastructureError("the database is unavailable") from exc
                raise
            time.sleep(min(0.002 * 2**attempt, 0.1))
    raise AssertionError("unreachable")
