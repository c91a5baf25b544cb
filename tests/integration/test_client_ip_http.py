"""The client's address over HTTP: the per-address limit on ``POST /v1/auth/flows`` (policy
``login_attempts_per_ip_max``, 60 a minute under the shipped default) counts the client a trusted
proxy names in X-Forwarded-For, and a client that forges the header without one cannot leave
its own count by rotating it. Every request goes through the app with a DPoP proof; the test
client's peer address is set as the proxy's or the client's own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import ip_network
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from support.mfa import BASE, Device
from zeropay.adapters.clock import FixedClock
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import Container, build
from zeropay.config import Settings
from zeropay.domain.network import IPNetwork

PER_ADDRESS_MAX = 60  # the shipped default policy's login_attempts_per_ip_max
PROXIES: tuple[IPNetwork, ...] = (ip_network("10.0.0.0/8"),)
PROXY = "10.0.0.5"
CLIENT = "203.0.113.9"
NEIGHBOUR = "203.0.113.10"  # another client behind the same proxy
ATTACKER = "198.51.100.7"


@pytest.fixture
def app_at(settings: Settings, clock: FixedClock) -> Iterator[Callable[..., Any]]:
    """``app_at(peer, trusted=...)``: a context giving a visitor ``Device`` whose requests
    arrive from ``peer``, and its container; the shipped default policy, ``trusted`` proxies."""
    containers: list[Container] = []

    @contextmanager
    def make(peer: str, *, trusted: tuple[IPNetwork, ...]) -> Iterator[tuple[Device, Container]]:
        configured = replace(
            settings,
            auth_policy_file=None,
            public_origins=("http://localhost",),  # the test client's base URL
            trusted_proxies=trusted,
        )
        built = build(
            configured,
            clock=clock,
            hasher=Argon2PasswordHasher.cheap_for_tests(),
        )
        containers.append(built)
        app = create_app(built)
        with TestClient(app, base_url=BASE, client=(peer, 41234)) as client:
            yield Device(client, built.ctx.now, "Visitor", "linux"), built

    yield make
    for built in containers:
        built.engine.dispose()


def _start(visitor: Device, i: int, forwarded_for: str) -> Any:
    """A login flow for a fresh address each time (the per-account limit stays out of it)."""
    return visitor.call(
        "POST",
        "/v1/auth/flows",
        {"point": "login", "email": f"spray{i}@example.com"},
        token="",
        headers={"X-Forwarded-For": forwarded_for},
    )


def _counted(container: Container) -> set[str]:
    """The addresses the per-address limit has counted."""
    with container.engine.connect() as c:
        rows = c.execute(text("SELECT key FROM rate_counters WHERE key LIKE 'flow:ip:%'"))
        return {str(r[0]).removeprefix("flow:ip:") for r in rows}


def test_the_per_address_flow_limit_counts_the_client_a_trusted_proxy_names(
    app_at: Callable[..., Any],
) -> None:
    with app_at(PROXY, trusted=PROXIES) as (visitor, container):
        for i in range(PER_ADDRESS_MAX):
            # The left-most entries are the client's to write: rotating them changes nothing.
            r = _start(visitor, i, f"192.0.2.{i}, {CLIENT}")
            assert r.status_code == 201, (i, r.text)
        r = _start(visitor, PER_ADDRESS_MAX, f"192.0.2.200, {CLIENT}")
        assert (r.status_code, r.json()["code"]) == (429, "rate_limited"), r.text
        # The proxy's own address is not what is counted: its other clients still get through.
        r = _start(visitor, PER_ADDRESS_MAX + 1, NEIGHBOUR)
        assert r.status_code == 201, r.text
        assert _counted(container) == {CLIENT, NEIGHBOUR}


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        (ATTACKER, PROXIES),  # proxies are configured, but the attacker is not one of them
        ("127.0.0.1", ()),  # nothing configured: not even loopback is trusted
    ],
    ids=["untrusted-peer", "no-proxies-configured"],
)
def test_a_client_forging_x_forwarded_for_without_a_trusted_proxy_cannot_escape_the_limit(
    app_at: Callable[..., Any], peer: str, trusted: tuple[IPNetwork, ...]
) -> None:
    with app_at(peer, trusted=trusted) as (visitor, container):
        for i in range(PER_ADDRESS_MAX):
            r = _start(visitor, i, f"203.0.113.{i}, {PROXY}")  # a new "client" every time
            assert r.status_code == 201, (i, r.text)
        r = _start(visitor, PER_ADDRESS_MAX, "203.0.113.250")
        assert (r.status_code, r.json()["code"]) == (429, "rate_limited"), r.text
        assert _counted(container) == {peer}
