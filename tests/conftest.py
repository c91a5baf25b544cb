"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL.

Each run migrates one template database per backend and copies it for every test (a file copy
on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so tests never see each other's rows
and runs never collide. The PostgreSQL half runs when ZEROPAY_TEST_POSTGRES_URL names a server;
in CI (ZEROPAY_REQUIRE_POSTGRES=1) its absence is an error, never a skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from zeropay.adapters.clock import FixedClock
from zeropay.adapters.keyring import FileKeyRing
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.migrate import migrate
from zeropay.bootstrap import Container, build
from zeropay.config import Settings

PG_URL = os.environ.get("ZEROPAY_TEST_POSTGRES_URL", "")
RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("ZEROPAY_REQUIRE_POSTGRES") == "1" and not PG_URL:
        raise pytest.UsageError("ZEROPAY_REQUIRE_POSTGRES=1 but ZEROPAY_TEST_POSTGRES_URL is unset")


def _pg_admin_url() -> str:
    url = make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    return url.render_as_string(hide_password=False)


def _pg_url_for(database: str) -> str:
    url = make_url(_pg_admin_url()).set(database=database)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL not configured (set ZEROPAY_TEST_POSTGRES_URL)")
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"zp_tpl_{RUN_ID}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_pg_url_for(name))
    migrate(engine)
    engine.dispose()
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fresh_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of its own for one test; dropped when the test ends."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "zeropay.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    template_name: str = request.getfixturevalue("pg_template")
    name = f"zp_{RUN_ID}_{next(_counter)}"
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return _pg_url_for(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_database_url(backend, request, tmp_path)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 2, 9, 30, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The named policy profile these tests run under: the payments core alone.
    return Settings(
        database_url=database_url,
        key_file=tmp_path / "keys.json",
        policy_profile="core",
        jobs_enabled=False,
        log_level="warning",
    )


@pytest.fixture
def container(settings: Settings, clock: FixedClock) -> Iterator[Container]:
    built = build(
        settings,
        clock=clock,
        keyring=FileKeyRing.ephemeral(),
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    yield built
    built.engine.dispose()
