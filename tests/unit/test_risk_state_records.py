"""The live path keeps each risk record as a JSON document between events: a record written out
and read back must decide exactly as the one that never left memory."""

from __future__ import annotations

import json

from zeropay.bootstrap import load_risk_config
from zeropay.domain.risk.engine import Action, decide
from zeropay.domain.risk.events import parse_event
from zeropay.domain.risk.state import (
    MemoryRiskState,
    dump_device,
    dump_ip,
    dump_payee,
    dump_user,
    load_device,
    load_ip,
    load_payee,
    load_user,
)
from zeropay.services.risk_replay import Replayer
from zeropay.services.risk_simulation import generate

CONFIG = load_risk_config()


def _through_json(state: MemoryRiskState) -> MemoryRiskState:
    """Every record written as JSON text and read back, as the database would keep it."""

    def again(dump, load, records):  # type: ignore[no-untyped-def]
        return {k: load(json.loads(json.dumps(dump(v)))) for k, v in records.items()}

    return MemoryRiskState(
        users=again(dump_user, load_user, state.users),
        devices=again(dump_device, load_device, state.devices),
        ips=again(dump_ip, load_ip, state.ips),
        payees=again(dump_payee, load_payee, state.payees),
    )


def test_records_that_went_through_json_decide_the_rest_of_a_month_identically():
    lines = [json.dumps(e) for e in generate(7, users=60, days=20)]
    half = len(lines) // 2
    straight = Replayer(CONFIG)
    expected = [r.decision for r in straight.run(lines)]

    resumed = Replayer(CONFIG)
    first = [r.decision for r in resumed.run(lines[:half])]
    resumed.state = _through_json(resumed.state)
    rest = [r.decision for r in resumed.run(lines[half:])]

    assert first + rest == expected
    assert any(d and d["action"] != "allow" for d in rest)  # the second half is not trivial


def test_a_dumped_record_dumps_again_to_the_same_document():
    replayer = Replayer(CONFIG)
    for _ in replayer.run(json.dumps(e) for e in generate(11, users=30, days=10)):
        pass
    for user in replayer.state.users.values():
        assert dump_user(load_user(dump_user(user))) == dump_user(user)
    for device in replayer.state.devices.values():
        assert dump_device(load_device(dump_device(device))) == dump_device(device)


def test_a_record_missing_newer_keys_still_loads():
    assert dump_user(load_user({})) == dump_user(load_user(dump_user(load_user({}))))
    assert load_ip({}).failures.maxlen == load_ip(dump_ip(load_ip({}))).failures.maxlen
    assert list(load_payee({}).payers) == []


def test_a_passkey_whose_counter_went_back_raises_the_score():
    base = {
        "id": "e1",
        "ts": "2026-03-02T08:15:02Z",
        "type": "login",
        "user": "u1",
        "device": "d1",
        "first_factor": "passkey",
    }
    state = MemoryRiskState()
    view = state.view("u1", "d1", None, None)
    calm = decide(parse_event(base), view, CONFIG)
    cloned = decide(parse_event(base | {"passkey_clone": True}), view, CONFIG)
    assert "clone_signal" in cloned.reasons and "clone_signal" not in calm.reasons
    assert calm.action is Action.ALLOW and cloned.action is not Action.ALLOW
    assert cloned.score - calm.score == CONFIG.weights["clone_signal"]
