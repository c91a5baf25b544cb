"""The risk engine's synthetic scenarios (``services.risk_simulation``) and its scorer
(``services.risk_scoring``): the generator's promises about its events, and each of the
scorer's definitions on small hand-written events."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zeropay.domain.limits import MONTHLY_MAX_MAJOR, PAYMENT_MAX_MAJOR
from zeropay.services.risk_scoring import (
    AttackScenarioResult,
    HonestScenarioResult,
    Report,
    score,
    targets_met,
)
from zeropay.services.risk_simulation import SCENARIOS, generate

FACTORS = {
    "password",
    "totp",
    "passkey",
    "device_key",
    "email_otp",
    "sms_otp",
    "security_question",
    "recovery_code",
    "bound_device_approval",
}
VICTIMS_ONLY = {"passkey", "device_key", "bound_device_approval"}
COMMON_KEYS = {"id", "ts", "type", "user", "device", "ip", "holds", "label"}
OPTIONAL_KEYS = {"country", "lat", "lon", "user_agent"}
LOGIN_KEYS = {"first_factor", "first_factor_ok"}
PAYMENT_KEYS = {"amount", "currency", "payee", "mcc"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
START = datetime(2026, 3, 2, tzinfo=UTC)
KST = timedelta(hours=9)


@dataclass(frozen=True)
class Run:
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def month() -> Run:
    """The default simulation (400 users, 30 days), made once for the module. How fast it is made
    is measured by ``python -m bench --only risk``, never asserted here."""
    return Run(generate(1, users=400, days=30))


def lines(events: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(event, ensure_ascii=False) for event in events)


def at(event: dict[str, Any]) -> datetime:
    return datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def payments(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == "payment"]


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371 * math.asin(math.sqrt(h))


# -- the generator --------------------------------------------------------------------------------


def test_the_same_seed_and_arguments_give_byte_identical_json_lines():
    assert lines(generate(7, users=80, days=14)) == lines(generate(7, users=80, days=14))


def test_another_seed_gives_other_events():
    assert lines(generate(7, users=80, days=14)) != lines(generate(8, users=80, days=14))


def test_events_are_in_time_order_inside_the_simulated_days(month):
    stamps = [event["ts"] for event in month.events]
    assert all(TS.match(stamp) for stamp in stamps)
    assert stamps == sorted(stamps)
    first, last = at(month.events[0]), at(month.events[-1])
    assert first >= START and last < START + timedelta(days=30)


def test_ids_are_unique_and_numbered_in_time_order(month):
    ids = [event["id"] for event in month.events]
    assert len(set(ids)) == len(ids)
    assert ids == [f"e{number}" for number in range(1, len(ids) + 1)]


def test_every_event_follows_the_schema(month):
    for event in month.events:
        keys = set(event)
        allowed = COMMON_KEYS | OPTIONAL_KEYS
        allowed |= LOGIN_KEYS if event["type"] == "login" else set()
        allowed |= PAYMENT_KEYS if event["type"] == "payment" else set()
        assert COMMON_KEYS <= keys <= allowed, event
        assert event["type"] in {"login", "payment", "device_registration", "recovery"}
        for key in ("id", "user", "device", "ip"):
            assert isinstance(event[key], str) and event[key], event
        ipaddress.IPv4Address(event["ip"])
        if "country" in event:
            assert re.fullmatch(r"[A-Z]{2}", event["country"]), event
        if "lat" in event or "lon" in event:
            assert isinstance(event["lat"], float) and -90 <= event["lat"] <= 90, event
            assert isinstance(event["lon"], float) and -180 <= event["lon"] <= 180, event
        if "user_agent" in event:
            assert isinstance(event["user_agent"], str) and event["user_agent"], event
        if event["type"] == "login":
            assert event["first_factor"] in {"password", "passkey"}, event
            assert isinstance(event["first_factor_ok"], bool), event
        if event["type"] == "payment":
            assert keys >= PAYMENT_KEYS, event
            assert type(event["amount"]) is int and event["amount"] > 0, event
            assert event["currency"] in {"KRW", "USD", "EUR"}, event
            assert re.fullmatch(r"\d{4}", event["mcc"]), event
        holds = event["holds"]
        assert isinstance(holds, list) and set(holds) <= FACTORS and len(set(holds)) == len(holds)
        assert event["label"] == {
            "scenario": event["label"]["scenario"],
            "attack": SCENARIOS[event["label"]["scenario"]],
        }


def test_country_and_coordinates_are_on_at_least_90_percent_of_events(month):
    located = [event for event in month.events if {"country", "lat", "lon"} <= set(event)]
    assert len(located) >= 0.9 * len(month.events)


def test_attackers_never_hold_the_victims_passkey_device_key_or_device_approval(month):
    attacks = [event for event in month.events if event["label"]["attack"]]
    assert attacks
    assert not [event for event in attacks if VICTIMS_ONLY & set(event["holds"])]


def test_honest_users_on_a_bound_phone_hold_a_passkey_and_the_device_key(month):
    honest_payments = [p for p in payments(month.events) if not p["label"]["attack"]]
    assert all({"passkey", "device_key", "password"} <= set(p["holds"]) for p in honest_payments)


def test_every_scenario_is_present_with_at_least_30_payments_per_attack(month):
    per_scenario = Counter(event["label"]["scenario"] for event in month.events)
    assert set(per_scenario) == set(SCENARIOS)
    attack_payments = Counter(p["label"]["scenario"] for p in payments(month.events))
    assert all(attack_payments[name] >= 30 for name, attack in SCENARIOS.items() if attack)


def test_honest_traffic_is_at_least_85_percent_of_payments(month):
    all_payments = payments(month.events)
    honest = [p for p in all_payments if not p["label"]["attack"]]
    assert len(honest) >= 0.85 * len(all_payments)


def test_payments_stay_within_the_platforms_limits(month):
    spent: Counter[tuple[str, str, str]] = Counter()
    for payment in payments(month.events):
        code, amount = payment["currency"], payment["amount"]
        if code == "KRW":
            assert 100 <= amount <= PAYMENT_MAX_MAJOR["KRW"], payment
        else:
            assert 100 <= amount <= 5_000, payment
        spent[(payment["user"], code, (at(payment) + KST).strftime("%Y-%m"))] += amount
    caps = {"KRW": MONTHLY_MAX_MAJOR["KRW"], "USD": 100 * MONTHLY_MAX_MAJOR["USD"]}
    caps["EUR"] = 100 * MONTHLY_MAX_MAJOR["EUR"]
    assert all(total <= caps[code] for (_, code, _), total in spent.items())


def test_cash_out_spends_the_victims_month_up_to_its_limit(month):
    spent: Counter[str] = Counter()
    victims = {p["user"] for p in payments(month.events) if p["label"]["scenario"] == "cash_out"}
    for payment in payments(month.events):
        if payment["user"] in victims and payment["currency"] == "KRW":
            spent[payment["user"]] += payment["amount"]
    cap = MONTHLY_MAX_MAJOR["KRW"]
    assert victims and all(spent[user] > cap - PAYMENT_MAX_MAJOR["KRW"] for user in victims)
    cash_out = [p for p in payments(month.events) if p["label"]["scenario"] == "cash_out"]
    assert {p["mcc"] for p in cash_out} <= {"6540", "6051", "5816", "5947", "7994"}


def test_honest_users_never_travel_faster_than_an_airliner(month):
    last: dict[str, tuple[datetime, tuple[float, float]]] = {}
    travelled_far = 0
    for event in month.events:
        if event["label"]["attack"] or "lat" not in event:
            continue
        here = (event["lat"], event["lon"])
        if event["user"] in last:
            then, there = last[event["user"]]
            distance_km = km(there, here)
            if distance_km > 300:
                travelled_far += 1
                hours = (at(event) - then).total_seconds() / 3600
                assert distance_km / hours < 1000, event
        last[event["user"]] = (at(event), here)
    assert travelled_far > 0  # the travellers did fly


def test_travellers_pay_abroad_on_the_phone_they_use_at_home(month):
    abroad = [
        p
        for p in payments(month.events)
        if p["label"]["scenario"] == "traveller" and p.get("country", "KR") != "KR"
    ]
    assert {p.get("country") for p in abroad} >= {"JP", "FR", "US"}
    home_devices = defaultdict(set)
    for p in payments(month.events):
        if p["label"]["scenario"] == "commuter":
            home_devices[p["user"]].add(p["device"])
    assert all(p["device"] in home_devices[p["user"]] for p in abroad)


def test_a_new_phone_is_registered_with_email_passkey_and_the_old_phones_approval(month):
    registrations = [
        e
        for e in month.events
        if e["type"] == "device_registration" and e["label"]["scenario"] == "new_phone"
    ]
    assert registrations
    for registration in registrations:
        holds = set(registration["holds"])
        assert {"email_otp", "passkey", "bound_device_approval"} <= holds
        assert "device_key" not in holds  # not bound until registered
    registered = {(e["user"], e["device"]) for e in registrations}
    new_phone_payments = [
        p for p in payments(month.events) if p["label"]["scenario"] == "new_phone"
    ]
    assert all((p["user"], p["device"]) in registered for p in new_phone_payments)


def test_attackers_register_devices_with_password_and_email_only(month):
    registrations = [e for e in month.events if e["type"] in {"device_registration", "recovery"}]
    attacks = [e for e in registrations if e["label"]["attack"]]
    assert attacks and all(e["holds"] == ["password", "email_otp"] for e in attacks)


def test_carrier_nat_addresses_are_shared_by_many_users(month):
    users_by_ip = defaultdict(set)
    for event in month.events:
        if event["label"]["scenario"] == "carrier_nat":
            users_by_ip[event["ip"]].add(event["user"])
    assert users_by_ip and all(ip.startswith("211.234.") for ip in users_by_ip)
    assert all(len(users) >= 5 for users in users_by_ip.values())


def test_session_theft_pays_from_a_device_never_seen_for_the_user_and_without_a_login(month):
    seen = defaultdict(set)
    stolen = [e for e in month.events if e["label"]["scenario"] == "session_theft"]
    assert stolen and all(e["type"] == "payment" and e["holds"] == [] for e in stolen)
    for event in month.events:
        if event["label"]["scenario"] == "session_theft":
            assert event["device"] not in seen[event["user"]], event
        elif not event["label"]["attack"]:
            seen[event["user"]].add(event["device"])
    devices = {e["device"] for e in stolen}
    assert not [e for e in month.events if e["type"] == "login" and e["device"] in devices]


def test_credential_stuffing_mostly_fails_from_few_addresses(month):
    logins = [
        e
        for e in month.events
        if e["label"]["scenario"] == "credential_stuffing" and e["type"] == "login"
    ]
    failed = [e for e in logins if not e["first_factor_ok"]]
    assert len(failed) >= 0.7 * len(logins)
    assert len(logins) >= 10 * len({e["ip"] for e in logins})
    assert all(e["first_factor"] == "password" for e in logins)


def test_card_testing_is_many_tiny_payments_to_many_payees_across_accounts(month):
    tests = [p for p in payments(month.events) if p["label"]["scenario"] == "card_testing"]
    assert all(p["amount"] <= (1_500 if p["currency"] == "KRW" else 199) for p in tests)
    by_device = defaultdict(list)
    for payment in tests:
        by_device[payment["device"]].append(payment)
    for run in by_device.values():
        assert len({p["payee"] for p in run}) >= 10
        assert len({p["user"] for p in run}) >= 2
        assert at(run[-1]) - at(run[0]) < timedelta(minutes=30)


def test_attack_events_are_interleaved_with_the_victims_own_life(month):
    victims = {e["user"] for e in month.events if e["label"]["attack"]}
    after_attack = set()
    attacked = set()
    for event in month.events:
        if event["label"]["attack"]:
            attacked.add(event["user"])
        elif event["user"] in attacked:
            after_attack.add(event["user"])
    assert len(after_attack) >= 0.8 * len(victims & {e["user"] for e in payments(month.events)})


# -- the scorer -----------------------------------------------------------------------------------


def event(event_id, kind="payment", scenario="commuter", attack=False, holds=(), **fields):
    return {
        "id": event_id,
        "ts": "2026-03-02T08:15:02Z",
        "type": kind,
        "user": "u1",
        "device": "d1",
        "ip": "211.36.1.2",
        **fields,
        "holds": list(holds),
        "label": {"scenario": scenario, "attack": attack},
    }


def decision(event_id, action="allow", factors=()):
    return {
        "id": event_id,
        "action": action,
        "score": 0,
        "reasons": [],
        "factors": list(factors),
        "config_version": "test",
    }


def attack_payment(event_id, holds=("password", "email_otp")):
    return event(event_id, scenario="account_takeover", attack=True, holds=holds)


def test_a_challenge_the_attacker_can_answer_does_not_stop_the_payment():
    events = [attack_payment("e1"), attack_payment("e2"), attack_payment("e3")]
    decisions = [
        decision("e1", "challenge", ["email_otp"]),  # held: answered
        decision("e2", "challenge", ["passkey"]),  # not held: stopped
        decision("e3", "challenge", ["email_otp", "passkey"]),  # one not held: stopped
    ]
    report = score(events, decisions)
    assert report.attack_scenarios == (AttackScenarioResult("account_takeover", 3, 2),)


def test_review_and_block_stop_an_attack_payment_and_allow_does_not():
    events = [attack_payment(f"e{n}") for n in range(1, 4)]
    decisions = [decision("e1", "review"), decision("e2", "block"), decision("e3", "allow")]
    report = score(events, decisions)
    assert (report.attack_payments, report.attack_stopped) == (3, 2)
    assert report.attack_stopped_share == pytest.approx(2 / 3)


def test_an_attacker_holding_nothing_is_stopped_by_any_named_factor():
    events = [event("e1", scenario="session_theft", attack=True, holds=())]
    report = score(events, [decision("e1", "challenge", ["email_otp"])])
    assert report.attack_stopped == 1


def test_honest_friction_counts_a_review_as_blocked():
    events = [event(f"e{n}", holds=("passkey", "device_key")) for n in range(1, 5)]
    decisions = [
        decision("e1"),
        decision("e2", "challenge", ["passkey"]),
        decision("e3", "review"),
        decision("e4", "block"),
    ]
    report = score(events, decisions)
    assert report.honest_scenarios == (HonestScenarioResult("commuter", 4, 1, 2),)
    assert report.honest_challenged_share == 0.25
    assert report.honest_blocked_share == 0.5


def test_friction_on_honest_passkey_logins_counts_challenges_reviews_and_blocks_only():
    def login(event_id, first_factor, **label):
        return event(event_id, "login", first_factor=first_factor, first_factor_ok=True, **label)

    events = [
        login("e1", "passkey"),
        login("e2", "passkey"),
        login("e3", "passkey"),
        login("e4", "passkey"),
        login("e5", "password"),  # not a passkey login
        login("e6", "passkey", scenario="account_takeover", attack=True),  # not honest
    ]
    decisions = [
        decision("e1"),
        decision("e2", "challenge", ["totp"]),
        decision("e3", "block"),
        decision("e4", "review"),
        decision("e5", "challenge", ["totp"]),
        decision("e6", "challenge", ["totp"]),
    ]
    report = score(events, decisions)
    assert (report.honest_passkey_logins, report.honest_passkey_logins_challenged) == (4, 3)
    assert report.honest_payments == 0 and report.honest_challenged_share is None


def test_a_correct_password_allowed_alone_is_counted_whoever_typed_it():
    def login(event_id, first_factor, ok, **label):
        return event(event_id, "login", first_factor=first_factor, first_factor_ok=ok, **label)

    events = [
        login("e1", "password", True),  # counted
        login("e2", "password", True, scenario="credential_stuffing", attack=True),  # counted
        login("e3", "password", False),  # a wrong password signs no one in anyway
        login("e4", "password", True),  # stepped up
        login("e5", "passkey", True),
    ]
    decisions = [
        decision("e1"),
        decision("e2"),
        decision("e3"),
        decision("e4", "challenge", ["totp"]),
        decision("e5"),
    ]
    report = score(events, decisions)
    assert report.password_only_logins_allowed == 2
    assert targets_met(report)["password_only_logins_allowed"] is False


def test_an_event_without_a_decision_is_refused_by_its_id():
    with pytest.raises(ValueError, match="'e2'"):
        score([event("e1"), event("e2")], [decision("e1")])


def test_a_decision_without_an_event_is_refused_by_its_id():
    with pytest.raises(ValueError, match="'e9'"):
        score([event("e1")], [decision("e1"), decision("e9")])


def test_an_unknown_action_is_refused_by_its_id():
    with pytest.raises(ValueError, match="'e1'.*'deny'"):
        score([event("e1")], [decision("e1", "deny")])


def test_two_decisions_for_one_event_are_refused():
    with pytest.raises(ValueError, match="'e1'"):
        score([event("e1")], [decision("e1"), decision("e1", "block")])


def test_an_event_without_a_label_is_refused():
    unlabelled = event("e1")
    del unlabelled["label"]
    with pytest.raises(ValueError, match="'e1'"):
        score([unlabelled], [decision("e1")])


def test_decisions_are_joined_by_id_not_by_position():
    events = [attack_payment("e1"), event("e2")]
    report = score(events, [decision("e2"), decision("e1", "block")])
    assert (report.attack_stopped, report.honest_blocked) == (1, 0)


def report_with(
    *, stopped=(1000, 90), challenged=20, blocked=1, passkey_challenged=3, password_only=0
) -> Report:
    """A report at every bound: 1,000 and 100 attack payments, 1,000 honest payments and 100
    honest passkey logins."""
    return Report(
        attack_scenarios=(
            AttackScenarioResult("account_takeover", 1000, stopped[0]),
            AttackScenarioResult("cash_out", 100, stopped[1]),
        ),
        honest_scenarios=(HonestScenarioResult("commuter", 1000, challenged, blocked),),
        honest_passkey_logins=100,
        honest_passkey_logins_challenged=passkey_challenged,
        password_only_logins_allowed=password_only,
    )


@pytest.mark.parametrize("stopped", [(1000, 90), (945, 100)])
def test_targets_are_met_at_their_bounds(stopped):
    assert all(targets_met(report_with(stopped=stopped)).values())


@pytest.mark.parametrize(
    ("changed", "missed"),
    [
        ({"stopped": (944, 100)}, "attack_stopped"),
        ({"stopped": (1000, 89)}, "attack_stopped_every_scenario"),
        ({"challenged": 21}, "honest_challenged"),
        ({"blocked": 2}, "honest_blocked"),
        ({"passkey_challenged": 4}, "honest_passkey_logins_challenged"),
        ({"password_only": 1}, "password_only_logins_allowed"),
    ],
)
def test_each_target_is_missed_just_past_its_bound(changed, missed):
    met = targets_met(report_with(**changed))
    assert {key for key, ok in met.items() if not ok} == {missed}


def test_a_target_nothing_measured_is_not_met():
    met = targets_met(score([], []))
    assert met == {
        "attack_stopped": False,
        "attack_stopped_every_scenario": False,
        "honest_challenged": False,
        "honest_blocked": False,
        "honest_passkey_logins_challenged": False,
        "password_only_logins_allowed": True,
    }


def test_the_table_and_the_dict_show_every_scenario_and_target():
    report = score([attack_payment("e1"), event("e2")], [decision("e1", "block"), decision("e2")])
    table = report.table()
    assert "account_takeover" in table and "commuter" in table and "100.00%" in table
    assert "password-only logins allowed" in table
    as_dict = json.loads(json.dumps(report.as_dict()))
    assert as_dict["attack_scenarios"] == [
        {"scenario": "account_takeover", "payments": 1, "stopped": 1, "share": 1.0}
    ]
    assert as_dict["honest_blocked_share"] == 0.0
    assert as_dict["targets_met"] == targets_met(report)


def perfect_decision(e: dict[str, Any]) -> dict[str, Any]:
    """A clairvoyant engine: blocks every attack, steps up every password, allows the rest."""
    if e["label"]["attack"]:
        return decision(e["id"], "block")
    if e["type"] == "login" and e["first_factor"] == "password":
        return decision(e["id"], "challenge", ["email_otp"])
    return decision(e["id"])


def test_the_generated_month_scores_perfectly_under_a_clairvoyant_engine(month):
    report = score(month.events, [perfect_decision(e) for e in month.events])
    assert all(targets_met(report).values())
    assert {r.scenario for r in report.attack_scenarios + report.honest_scenarios} == set(SCENARIOS)


def test_the_generated_month_fails_an_engine_that_allows_everything(month):
    report = score(month.events, [decision(e["id"]) for e in month.events])
    met = targets_met(report)
    assert report.attack_stopped == 0 and report.password_only_logins_allowed > 0
    assert not met["attack_stopped"] and not met["password_only_logins_allowed"]
    assert met["honest_challenged"] and met["honest_blocked"]
