"""Racing the risk engine's records: events that share a device, an IP and a payee, decided at
once by many threads over real PostgreSQL, must each be counted (no lost update, no deadlock),
and a passed challenge must be spent by one confirmation only."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from sqlalchemy import select

from zeropay.adapters.sql import tables as t
from zeropay.bootstrap import risk_setup
from zeropay.domain.risk.engine import Action
from zeropay.domain.risk.events import EventType, RiskEvent
from zeropay.services import risk

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
THREADS = 24


@pytest.fixture
def setup(container):
    made = risk_setup(replace(container.settings, risk_enabled=True))
    assert made is not None
    return made


def _event(n: int, at_s: float) -> RiskEvent:
    # Different users, one shared device key, one IP, one payee: the rows every event locks.
    return RiskEvent(
        id=f"rsk_race{n:04d}",
        at_s=at_s,
        type=EventType.PAYMENT,
        user=f"user{n}",
        device="shared-device",
        ip="198.51.100.7",
        amount_minor=500 + n,
        currency="USD",
        payee="mer_shared",
        mcc="5814",
    )


@POSTGRES_ONLY
def test_events_racing_on_shared_records_are_each_counted(container, setup, backend):
    ctx = container.ctx
    at_s = ctx.now().timestamp()
    barrier = threading.Barrier(THREADS)

    def one(n: int) -> str:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        made = ctx.run(
            lambda uow: risk.assess(ctx, setup, uow, _event(n, at_s), ref=None, allowed_passes=True)
        )
        return made.decision.action.value

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        actions = list(pool.map(one, range(THREADS)))
    assert len(actions) == THREADS
    with container.engine.connect() as c:
        r = t.risk_records.c
        docs = {
            (row.kind, row.subject): json.loads(row.body)
            for row in c.execute(select(r.kind, r.subject, r.body))
        }
        stored = c.execute(select(t.risk_assessments.c.id)).all()
    assert len(stored) == THREADS
    assert len(docs[("payee", "mer_shared")]["payers"]) == THREADS
    assert len(docs[("device", "shared-device")]["payments"]) == THREADS
    assert len(docs[("device", "shared-device")]["users"]) == THREADS
    assert sum(1 for kind, _ in docs if kind == "user") == THREADS
    # So many accounts on one device, paying one payee at once: the later ones were stopped.
    assert Action.ALLOW.value in actions and set(actions) - {Action.ALLOW.value}
