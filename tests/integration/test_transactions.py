"""The transaction runner: what is retried, what is not, and that nothing is half-written."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from zeropay.adapters.sql.database import RetryTransaction, make_engine, run_in_transaction
from zeropay.domain.errors import InfrastructureError, InsufficientFunds


@pytest.fixture
def engine(database_url):
    built = make_engine(database_url)
    yield built
    built.dispose()


def test_a_use_case_asked_to_retry_runs_again_on_fresh_data_and_writes_once(engine):
    calls = []

    def work(connection):
        calls.append(1)
        connection.execute(
            text(
                "INSERT INTO merchants (id, name, created_at) VALUES (:id, 'm', CURRENT_TIMESTAMP)"
            ),
            {"id": f"m{len(calls)}"},
        )
        if len(calls) < 3:
            raise RetryTransaction()
        return len(calls)

    assert run_in_transaction(engine, work) == 3
    with engine.connect() as c:
        assert c.execute(text("SELECT id FROM merchants")).scalars().all() == ["m3"]


def test_a_domain_error_rolls_back_everything_and_is_not_retried(engine):
    calls = []

    def work(connection):
        calls.append(1)
        connection.execute(
            text(
                "INSERT INTO merchants (id, name, created_at) VALUES ('m', 'm', CURRENT_TIMESTAMP)"
            )
        )
        raise InsufficientFunds("no")

    with pytest.raises(InsufficientFunds):
        run_in_transaction(engine, work)
    assert len(calls) == 1
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM merchants")).scalar_one() == 0


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_connection_killed_mid_transaction_is_replaced_and_the_work_runs_again(
    engine, database_url
):
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    calls = []

    def work(connection):
        calls.append(1)
        connection.execute(
            text(
                "INSERT INTO merchants (id, name, created_at) VALUES ('m', 'm', CURRENT_TIMESTAMP)"
            )
        )
        if len(calls) == 1:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as a:
                a.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.execute(text("SELECT 1"))  # fails: the server closed this connection
        return "done"

    assert run_in_transaction(engine, work) == "done"
    assert len(calls) == 2
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM merchants")).scalar_one() == 1
    admin.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_database_that_stays_down_is_a_503_not_a_hang(database_url):
    dead = make_engine(database_url.replace(":5432/", ":1/"))
    with pytest.raises(InfrastructureError):
        run_in_transaction(dead, lambda c: c.execute(text("SELECT 1")))
    dead.dispose()
