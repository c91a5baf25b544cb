"""Consents and the risk engine, on hand-made histories with a fixed clock: a withheld signal
group is neither scored nor learned, the decision says so, fewer signals may ask for a factor
more often, and withholding never holds or blocks anyone by itself. Replay runs the same rules
from the ``withheld`` field of each line."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import zeropay
from zeropay.domain.consents import (
    SIGNAL_GROUPS,
    ConsentsInvalid,
    SignalGroup,
    parse_changes,
)
from zeropay.domain.risk.config import SIGNALS, RiskConfig, parse_risk_config
from zeropay.domain.risk.engine import Action, RiskDecision, decide, forget, learn, passed
from zeropay.domain.risk.events import (
    EventInvalid,
    RiskEvent,
    event_as_input,
    parse_event,
    parse_holds,
    withholding,
)
from zeropay.domain.risk.state import MemoryRiskState
from zeropay.services.risk_replay import Place, Replayer

SHIPPED = Path(zeropay.__file__).parent / "policies" / "risk.toml"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()  # the fixed clock
SEOUL = {"country": "KR", "lat": 37.57, "lon": 126.98}
PARIS = {"country": "FR", "lat": 48.86, "lon": 2.35}
HONEST = ["passkey", "device_key", "password", "email_otp"]
LOCATION = frozenset({SignalGroup.LOCATION})
BEHAVIOUR = frozenset({SignalGroup.BEHAVIOUR})
BOTH = LOCATION | BEHAVIOUR


def _doc() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text(encoding="utf-8"))


CONFIG = parse_risk_config(_doc())


class World:
    """Events through decide, then learn with what the actor held, as a replay does."""

    def __init__(self, config: RiskConfig = CONFIG) -> None:
        self.config = config
        self.state = MemoryRiskState()
        self.n = 0

    def event(self, at_s: float, kind: str, **fields: Any) -> RiskEvent:
        self.n += 1
        ts = datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raw = {"id": f"e{self.n}", "ts": ts, "type": kind, "user": "u1", **fields}
        raw.setdefault("device", "phone-1")
        raw.setdefault("ip", "211.36.1.2")
        if kind == "payment":
            raw.setdefault("amount", 12_500)
            raw.setdefault("currency", "KRW")
            raw.setdefault("payee", "m-cafe")
            raw.setdefault("mcc", "5814")
        return parse_event(raw)

    def decide(self, e: RiskEvent) -> RiskDecision:
        return decide(e, self.state.view(e.user, e.device, e.ip, e.payee), self.config)

    def run(self, e: RiskEvent) -> RiskDecision:
        view = self.state.view(e.user, e.device, e.ip, e.payee)
        decision = decide(e, view, self.config)
        learn(
            e,
            decision,
            got_through=passed(decision, parse_holds(HONEST)),
            view=view,
            config=self.config,
        )
        return decision

    def habits(self, days: int = 12) -> float:
        """A passkey login and two ordinary payments a day, mornings in Seoul; the time after."""
        at = START
        for day in range(days):
            at = START + day * 86400
            self.run(self.event(at, "login", first_factor="passkey", **SEOUL))
            for k, payee in enumerate(("m-cafe", "m-taxi")):
                pay = self.event(
                    at + 600 * (k + 1),
                    "payment",
                    payee=payee,
                    amount=9_000 + 1_000 * (day % 5),
                    **SEOUL,
                )
                assert self.run(pay).action is Action.ALLOW
        return at + 3600


def test_every_signal_of_the_engine_is_in_exactly_one_group():
    groups = list(SIGNAL_GROUPS.values())
    assert set().union(*groups) == set(SIGNALS)
    assert sum(len(g) for g in groups) == len(SIGNALS)


# ---- location ------------------------------------------------------------------------------------


def test_impossible_travel_fires_with_consent_and_not_without_and_the_reason_says_why():
    w = World()
    after = w.habits()
    given = w.decide(w.event(after + 3600, "payment", **PARIS))
    assert {"impossible_travel", "new_country"} <= set(given.reasons)
    withheld = w.decide(w.event(after + 3600, "payment", withheld=["location"], **PARIS))
    assert not {"impossible_travel", "new_country"} & set(withheld.reasons)
    assert withheld.reasons[-1] == "signals_withheld:location"
    assert withheld.action is Action.ALLOW  # the trusted phone: no block, no challenge here


def test_a_withheld_location_is_dropped_from_the_event_and_never_learned():
    w = World()
    w.run(w.event(START, "login", first_factor="passkey", **SEOUL))
    e = w.event(START + 600, "payment", withheld=["location"], **PARIS)
    assert (e.country, e.lat, e.lon) == (None, None, None)
    w.run(e)
    user = w.state.users["u1"]
    assert user.countries == {"KR"} and (user.last_lat, user.last_lon) == (37.57, 126.98)
    line = event_as_input(e)
    assert line["withheld"] == ["location"] and not {"country", "lat", "lon"} & set(line)
    assert parse_event(line) == e  # what the live path stores reads back as the same event


def test_withholding_an_event_drops_its_place_and_keeps_the_rest():
    e = World().event(START, "payment", **PARIS)
    held = withholding(e, LOCATION)
    assert held.withheld == LOCATION and (held.country, held.lat, held.lon) == (None,) * 3
    assert held._replace(country="FR", lat=48.86, lon=2.35, withheld=frozenset()) == e
    assert withholding(e, frozenset()) is e
    assert withholding(e, BEHAVIOUR).country == "FR"


# ---- behaviour -----------------------------------------------------------------------------------


def test_an_unusual_amount_fires_with_consent_and_not_without():
    w = World()
    after = w.habits()
    given = w.decide(w.event(after, "payment", amount=400_000, **SEOUL))
    assert "unusual_amount" in given.reasons
    withheld = w.decide(w.event(after, "payment", amount=400_000, withheld=["behaviour"], **SEOUL))
    assert "unusual_amount" not in withheld.reasons
    assert "signals_withheld:behaviour" in withheld.reasons


def test_with_behaviour_withheld_no_hour_amount_or_payee_is_learned():
    w = World()
    w.run(w.event(START, "login", first_factor="passkey", withheld=["behaviour"], **SEOUL))
    for n in range(3):
        pay = w.event(START + 600 * (n + 1), "payment", payee=f"m-{n}", withheld=["behaviour"])
        assert w.run(pay).action is Action.ALLOW
    user = w.state.users["u1"]
    assert user.hours_total == 0 and sum(user.hours) == 0
    assert user.amounts == {} and user.payees == {}
    # What protects the account is still counted: the payments' velocity, the month's spending.
    assert len(user.payments) == 3 and user.month_spent_minor == {"KRW": 37_500}
    assert user.countries == {"KR"}  # the location was not withheld


def test_forget_drops_what_was_learned_in_the_withheld_groups_only():
    w = World()
    w.habits(days=3)
    user = w.state.users["u1"]
    forget(user, LOCATION)
    assert user.countries == set() and user.last_lat is None and user.hours_total > 0
    forget(user, BEHAVIOUR)
    assert user.hours_total == 0 and user.amounts == {} and user.payees == {}
    assert user.devices["phone-1"].trusted  # the device the user trusts stays trusted


# ---- fewer signals, more factors, never locked out -----------------------------------------------


def _borderline(w: World, after: float, **fields: Any) -> RiskDecision:
    """Three failed passwords in the hour (15) and a gift card (15): 30, below the challenge."""
    for n in range(3):
        w.run(
            w.event(
                after + n * 60,
                "login",
                first_factor="password",
                first_factor_ok=False,
                **fields,
                **SEOUL,
            )
        )
    return w.decide(w.event(after + 600, "payment", mcc="5947", **fields, **SEOUL))


def test_the_withheld_points_turn_a_borderline_payment_into_a_challenge():
    w = World()
    given = _borderline(w, w.habits())
    assert given.action is Action.ALLOW and given.score == 30
    w = World()
    withheld = _borderline(w, w.habits(), withheld=["location"])
    assert withheld.score == 30 + CONFIG.withheld[SignalGroup.LOCATION]
    assert withheld.action is Action.CHALLENGE
    assert withheld.reasons == ("cashout_mcc", "failed_attempts", "signals_withheld:location")
    assert withheld.factors  # the passkey on the user's trusted phone


def test_withholding_alone_never_holds_or_blocks_even_with_the_heaviest_points():
    doc = _doc()
    doc["withheld"] = {"location": 100, "behaviour": 100}
    w = World(parse_risk_config(doc))
    w.run(w.event(START, "login", first_factor="passkey", **SEOUL))
    d = w.decide(w.event(START + 600, "payment", withheld=["location", "behaviour"]))
    assert d.score == CONFIG.thresholds.review - 1
    assert d.action is Action.CHALLENGE
    assert d.reasons == ("signals_withheld:location", "signals_withheld:behaviour")


def test_a_payer_with_nothing_to_ask_for_is_not_held_for_the_withheld_points_alone():
    doc = _doc()
    doc["withheld"] = {"location": 100, "behaviour": 100}
    w = World(parse_risk_config(doc))
    # A first payment from a device that never passed a check: no factor an attacker lacks.
    e = w.event(START, "payment", device="old-phone", withheld=["location"])
    d = w.decide(e)
    assert d.action is Action.ALLOW and d.factors == ()
    assert d.reasons == ("signals_withheld:location",)
    # The same payment with a signal of its own that asks is still held, as without consents.
    doc["weights"]["cashout_mcc"] = CONFIG.thresholds.challenge
    w = World(parse_risk_config(doc))
    held = w.decide(
        w.event(START, "payment", device="old-phone", mcc="5947", withheld=["location"])
    )
    assert held.action is Action.REVIEW and "no_factor_an_attacker_lacks" in held.reasons


def test_a_score_the_signals_make_is_not_raised_into_a_hold_by_withholding():
    w = World()
    w.habits(days=3)
    e = w.event(START + 4 * 86400, "payment", device="laptop", mcc="5947", withheld=["location"])
    d = w.decide(e)
    assert {"new_device", "cashout_mcc"} <= set(d.reasons)  # 45 + 15 = 60: a challenge
    assert d.score < CONFIG.thresholds.review and d.action is Action.CHALLENGE


def test_security_signals_still_fire_with_everything_withheld():
    w = World()
    w.habits(days=3)
    e = w.event(
        START + 4 * 86400,
        "payment",
        device="stranger",
        passkey_clone=True,
        withheld=["location", "behaviour"],
    )
    d = w.decide(e)
    assert {"new_device", "clone_signal"} <= set(d.reasons)
    assert d.action is Action.BLOCK  # the signals' own score, not the withheld points


# ---- the config and the input --------------------------------------------------------------------


def test_the_withheld_table_is_required_and_checked():
    from zeropay.domain.errors import ConfigurationError

    doc = _doc()
    del doc["withheld"]
    with pytest.raises(ConfigurationError, match="withheld"):
        parse_risk_config(doc)
    doc["withheld"] = {"location": 10, "behaviour": 10, "hobbies": 5}
    with pytest.raises(ConfigurationError, match="hobbies"):
        parse_risk_config(doc)
    doc["withheld"] = {"location": 101, "behaviour": 10}
    with pytest.raises(ConfigurationError, match="withheld.location"):
        parse_risk_config(doc)


@pytest.mark.parametrize("bad", [["places"], "location", [1], ["location"] * 3, {"a": 1}])
def test_an_event_with_a_bad_withheld_list_is_refused_with_a_stable_code(bad):
    raw = {"id": "e1", "ts": "2026-03-02T08:00:00Z", "type": "login", "user": "u1"}
    with pytest.raises(EventInvalid) as caught:
        parse_event({**raw, "withheld": bad})
    assert caught.value.details["reason"] == "invalid_withheld"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([], "not_an_object"),
        ("location", "not_an_object"),
        ({}, "empty"),
        ({"places": False}, "unknown_group"),
        ({"location": "false"}, "not_a_boolean"),
        ({"location": 0}, "not_a_boolean"),
        ({"behaviour": None}, "not_a_boolean"),
    ],
)
def test_a_consent_change_that_is_not_groups_to_booleans_is_refused(body, reason):
    with pytest.raises(ConsentsInvalid) as caught:
        parse_changes(body)
    assert caught.value.code == "consents_invalid" and caught.value.details["reason"] == reason


def test_a_consent_change_names_one_or_both_groups():
    assert parse_changes({"location": False}) == {SignalGroup.LOCATION: False}
    assert parse_changes({"location": True, "behaviour": False}) == {
        SignalGroup.LOCATION: True,
        SignalGroup.BEHAVIOUR: False,
    }


# ---- replay --------------------------------------------------------------------------------------


def test_replay_runs_the_same_rules_from_the_withheld_field_and_never_locates_it():
    looked_up: list[str] = []

    def locate(ip: str) -> Place:
        looked_up.append(ip)
        return Place("FR", 48.86, 2.35)

    lines = [
        {
            "id": "a",
            "ts": "2026-03-02T08:00:00Z",
            "type": "login",
            "user": "u1",
            "device": "phone",
            "ip": "211.36.1.2",
            "first_factor": "passkey",
            **SEOUL,
        },
        {
            "id": "b",
            "ts": "2026-03-02T08:30:00Z",
            "type": "payment",
            "user": "u1",
            "device": "phone",
            "ip": "81.2.69.160",
            "amount": 900,
            "currency": "USD",
            "payee": "m-shop",
            "withheld": ["location"],
            "holds": HONEST,
        },
        {
            "id": "c",
            "ts": "2026-03-02T08:40:00Z",
            "type": "payment",
            "user": "u1",
            "device": "phone",
            "ip": "81.2.69.160",
            "amount": 900,
            "currency": "USD",
            "payee": "m-shop",
            "holds": HONEST,
        },
    ]
    replayer = Replayer(CONFIG, locate=locate)
    out = [r.decision for r in replayer.run(orjson.dumps(x) for x in lines)]
    assert out[1] is not None and "impossible_travel" not in out[1]["reasons"]
    assert "signals_withheld:location" in out[1]["reasons"]
    assert looked_up == ["81.2.69.160"]  # line c only: line b is never located
    assert out[2] is not None and "impossible_travel" in out[2]["reasons"]
