"""The risk engine's records in the database: what the live path keeps, and what it forgets."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql import tables as t
from zeropay.bootstrap import build
from zeropay.domain.risk.events import EventType, RiskEvent
from zeropay.services import jobs, risk

DAY = 86400


@pytest.fixture
def engine_on(settings, clock):
    built = build(
        replace(settings, risk_enabled=True),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    yield built
    built.engine.dispose()


def _assess(container, n: int, **fields) -> None:
    ctx = container.ctx
    event = RiskEvent(
        id=ctx.new_id("rsk"), at_s=ctx.now().timestamp(), type=EventType.LOGIN, **fields
    )
    ctx.run(lambda uow: risk.assess(ctx, ctx.risk, uow, event, ref=f"flw_{n}"))


def _kept(container) -> set[tuple[str, str]]:
    r = t.risk_records.c
    with container.engine.connect() as c:
        return {(row.kind, row.subject) for row in c.execute(select(r.kind, r.subject))}


def test_idle_device_ip_payee_and_unknown_address_records_are_forgotten_users_are_not(
    engine_on, clock
):
    _assess(engine_on, 1, user="usr_a", device="old-device", ip="198.51.100.1")
    _assess(engine_on, 2, user="addr:ffff", ip="198.51.100.2", first_factor_ok=False)
    clock.advance(seconds=29 * DAY)
    _assess(engine_on, 3, user="usr_b", device="new-device", ip="198.51.100.3")
    clock.advance(seconds=2 * DAY)  # 31 days after the first two, 2 after the third
    done = jobs._purge_risk_records(engine_on.ctx)
    assert done == 4  # old-device, two addresses, addr:ffff
    assert _kept(engine_on) == {
        ("user", "usr_a"),  # a user's baseline is kept however long they are away
        ("user", "usr_b"),
        ("device", "new-device"),
        ("ip", "198.51.100.3"),
    }
    # Every decision stays, with its event.
    with engine_on.engine.connect() as c:
        assert len(c.execute(select(t.risk_assessments.c.id)).all()) == 3


def test_the_purge_does_nothing_when_the_engine_is_off(container, clock):
    assert container.ctx.risk is None
    assert jobs._purge_risk_records(container.ctx) == 0
