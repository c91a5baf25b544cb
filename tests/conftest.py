"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL.

Each run migrates one template database per backend and copies it for every test (a file copy
on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so tests never see each other's rows
and runs never collide. The PostgreSQL half always runs, against ZEROPAY_TEST_POSTGRES_URL or
the local server (`make test` starts it when it is down); an unreachable server fails those
tests, it never skips them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from support.mfa import Mfa, SmtpInbox
from zeropay.adapters.clock import FixedClock
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.migrate import migrate
from zeropay.api.app import create_app
from zeropay.bootstrap import Container, build
from zeropay.config import Settings
from zeropay.services import merchants

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or LOCAL_PG
RUN_ID = uuid.uuid4().hex[:8]
_counter = itertools.count()


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


PASSWORD_ONLY_POLICY = Path(__file__).parent / "policies" / "password-only.toml"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The named policy profile these tests run under: the payments core alone, and an
    # authentication policy where a password signs in (the MFA tests use the shipped default).
    # The live risk engine is off here, so these tests see the rules they are about; the
    # risk tests (tests/integration/test_risk_live.py) turn it on.
    # SCA exemptions are off too (every payment goes through unless the risk engine asks);
    # the SCA tests (the ``sca`` fixture) turn the shipped profiles on.
    return Settings(
        risk_enabled=False,
        sca_profile="off",
        database_url=database_url,
        vault_dev_file=tmp_path / "vault-dev.json",
        policy_profile="core",
        jobs_enabled=False,
        log_level="warning",
        auth_policy_file=PASSWORD_ONLY_POLICY,
    )


@pytest.fixture
def container(settings: Settings, clock: FixedClock) -> Iterator[Container]:
    built = build(
        settings,
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    yield built
    built.engine.dispose()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url="http://localhost") as c:
        yield c


class Api:
    """A few calls every HTTP test needs, spelled once."""

    def __init__(self, client: TestClient, container: Container) -> None:
        self.client = client
        self.container = container

    def payer(self, email: str = "ana@example.com", *, usd: int = 0) -> dict[str, str]:
        r = self.client.post("/v1/users", json={"email": email, "password": "a long passphrase"})
        assert r.status_code == 201, r.text
        r = self.client.post("/v1/sessions", json={"email": email, "password": "a long passphrase"})
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        if usd:
            r = self.client.post(
                "/v1/wallet/topups", headers=headers, json={"amount": usd, "currency": "USD"}
            )
            assert r.status_code == 201, r.text
        return headers

    def merchant(self, name: str = "Corner Cafe") -> dict[str, str]:
        _, key = merchants.create_merchant(self.container.ctx, name=name)
        return {"Authorization": f"Bearer {key.secret}"}

    def payment(self, merchant: dict[str, str], amount: int = 450, **extra: Any) -> dict[str, Any]:
        body = {"amount": amount, "currency": "USD", "description": "Flat white", **extra}
        r = self.client.post("/v1/payments", headers=merchant, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def balance(self, payer: dict[str, str], currency: str = "USD") -> int:
        r = self.client.get("/v1/wallet", headers=payer)
        assert r.status_code == 200, r.text
        for b in r.json()["balances"]:
            if b["currency"] == currency:
                return int(b["available"])
        return 0


@pytest.fixture
def api(client: TestClient, container: Container) -> Api:
    return Api(client, container)


# ---- authentication under the shipped default policy --------------------------------------------


@pytest.fixture
def smtp_inbox() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox()
    inbox.start()
    yield inbox
    inbox.stop()


@pytest.fixture
def mfa_settings(settings: Settings, smtp_inbox: SmtpInbox, tmp_path: Path) -> Settings:
    """The shipped default authentication policy, mail over real SMTP, texts to a dev sink."""
    return replace(
        settings,
        auth_policy_file=None,
        smtp_host="127.0.0.1",
        smtp_port=smtp_inbox.port,
        dev_sms_file=tmp_path / "sms.jsonl",
        public_origins=("http://localhost",),  # the test client's base URL
    )


def _built(configured: Settings, clock: FixedClock) -> Container:
    return build(
        configured,
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )


@pytest.fixture
def mfa_container(mfa_settings: Settings, clock: FixedClock) -> Iterator[Container]:
    built = _built(mfa_settings, clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def mfa(mfa_container: Container, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    with TestClient(create_app(mfa_container), base_url="http://localhost") as c:
        yield Mfa(c, mfa_container, smtp_inbox)


# The requests of the risk tests reach the app through a proxy at this address, which passes on
# each device's own address in X-Forwarded-For (the way a load balancer would).
PROXY = "10.0.0.1"


@pytest.fixture
def risky(mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    """``mfa`` with the live risk engine on (the shipped rules and GeoIP)."""
    built = _built(
        replace(mfa_settings, risk_enabled=True, trusted_proxies=(ip_network(PROXY),)), clock
    )
    with TestClient(create_app(built), base_url="http://localhost", client=(PROXY, 50000)) as c:
        yield Mfa(c, built, smtp_inbox)
    built.engine.dispose()


def _sca_app(
    mfa_settings: Settings, clock: FixedClock, inbox: SmtpInbox, name: str
) -> Iterator[Mfa]:
    built = _built(replace(mfa_settings, sca_profile=name), clock)
    with TestClient(create_app(built), base_url="http://localhost") as c:
        yield Mfa(c, built, inbox)
    built.engine.dispose()


@pytest.fixture
def psd2(mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    """``mfa`` with the shipped ``psd2`` SCA exemptions (low value by count: 5 since the last
    SCA); the risk engine stays off, so every decision is the exemptions' own."""
    yield from _sca_app(mfa_settings, clock, smtp_inbox, "psd2")


@pytest.fixture
def cumulative(mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    """``mfa`` with the shipped ``default`` SCA exemptions (low value by cumulative amount:
    EUR 100 since the last SCA); the risk engine stays off."""
    yield from _sca_app(mfa_settings, clock, smtp_inbox, "default")


@pytest.fixture
def api_for() -> Iterator[Any]:
    """An ``Api`` over an app built from another container (other settings, same database)."""
    clients: list[TestClient] = []

    def make(other: Container) -> Api:
        client = TestClient(create_app(other), base_url="http://localhost")
        clients.append(client)
        return Api(client, other)

    yield make
    for client in clients:
        client.close()
