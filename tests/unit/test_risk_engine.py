"""The risk engine on hand-made histories: each signal fires when it should and only then, the
factors of a challenge are ones the attacker lacks, and only what got through is learned."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zeropay
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.factors import Factor
from zeropay.domain.risk.config import RiskConfig, parse_risk_config
from zeropay.domain.risk.engine import (
    Action,
    RiskDecision,
    decide,
    device_trust,
    distance_km,
    learn,
    passed,
)
from zeropay.domain.risk.events import EventInvalid, RiskEvent, parse_event, parse_holds
from zeropay.domain.risk.state import WINDOW_EVENTS_MAX, MemoryRiskState

SHIPPED = Path(zeropay.__file__).parent / "policies" / "risk.toml"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
SEOUL = {"country": "KR", "lat": 37.57, "lon": 126.98}
PARIS = {"country": "FR", "lat": 48.86, "lon": 2.35}
HONEST = ["passkey", "device_key", "password", "email_otp"]


def _doc() -> dict[str, Any]:
    return tomllib.loads(SHIPPED.read_text(encoding="utf-8"))


CONFIG = parse_risk_config(_doc())


class World:
    """A replay in miniature: events go through decide, then learn with what the actor held."""

    def __init__(self, config: RiskConfig = CONFIG) -> None:
        self.config = config
        self.state = MemoryRiskState()
        self.n = 0

    def event(self, at_s: float, kind: str, user: str = "u1", **fields: Any) -> RiskEvent:
        self.n += 1
        ts = datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raw = {"id": f"e{self.n}", "ts": ts, "type": kind, "user": user, **fields}
        raw.setdefault("device", "phone-1")
        raw.setdefault("ip", "211.36.1.2")
        if kind == "payment":
            raw.setdefault("amount", 12_500)
            raw.setdefault("currency", "KRW")
            raw.setdefault("payee", "m-cafe")
            raw.setdefault("mcc", "5814")
        return parse_event(raw)

    def view(self, e: RiskEvent) -> Any:
        return self.state.view(e.user, e.device, e.ip, e.payee)

    def decide(self, e: RiskEvent) -> RiskDecision:
        return decide(e, self.view(e), self.config)

    def run(self, e: RiskEvent, holds: list[str] | None = None) -> RiskDecision:
        view = self.view(e)
        decision = decide(e, view, self.config)
        got = passed(decision, parse_holds(HONEST if holds is None else holds))
        learn(e, decision, got_through=got, view=view, config=self.config)
        return decision

    def habits(self, user: str = "u1", days: int = 12, device: str = "phone-1") -> float:
        """A passkey login and two ordinary payments a day, mornings in Seoul; the time after."""
        at = START
        for day in range(days):
            at = START + day * 86400
            self.run(self.event(at, "login", user, device=device, first_factor="passkey", **SEOUL))
            for k, payee in enumerate(("m-cafe", "m-taxi")):
                pay = self.event(
                    at + 600 * (k + 1),
                    "payment",
                    user,
                    device=device,
                    payee=payee,
                    amount=9_000 + 1_000 * (day % 5),
                    **SEOUL,
                )
                assert self.run(pay).action is Action.ALLOW
        return at + 3600


# ---- honest use stays silent ---------------------------------------------------------------------


def test_a_users_first_passkey_login_is_allowed_and_trusts_the_device():
    w = World()
    d = w.run(w.event(START, "login", first_factor="passkey", **SEOUL))
    assert (d.action, d.score, d.reasons, d.factors) == (Action.ALLOW, 0, (), ())
    assert device_trust(w.state.users["u1"], "phone-1", START, CONFIG) > 0


def test_everyday_payments_from_the_trusted_phone_are_allowed_silently():
    w = World()
    after = w.habits()
    d = w.decide(w.event(after, "payment", payee="m-cafe", amount=11_000, **SEOUL))
    assert d.action is Action.ALLOW and d.score < CONFIG.thresholds.challenge


def test_a_plausible_flight_is_not_impossible_travel_but_an_hour_to_paris_is():
    w = World()
    after = w.habits()
    quick = w.decide(w.event(after + 3600, "payment", **PARIS))
    assert "impossible_travel" in quick.reasons and "new_country" in quick.reasons
    flown = w.decide(w.event(after + 13 * 3600, "payment", **PARIS))
    assert "impossible_travel" not in flown.reasons
    assert flown.action is Action.ALLOW  # a traveller on the trusted phone pays as usual


def test_the_decision_records_the_config_version_and_never_changes_the_state():
    w = World()
    w.habits(days=3)
    e = w.event(START + 5 * 86400, "payment", device="stranger", payee="m-new", **PARIS)
    view = w.view(e)
    before = copy.deepcopy(view)
    d = decide(e, view, CONFIG)
    assert view == before
    assert d.config_version == CONFIG.version == _doc()["version"]


# ---- attacks -------------------------------------------------------------------------------------


def test_a_password_alone_never_signs_in():
    w = World()
    after = w.habits(days=2)
    own = w.decide(w.event(after, "login", first_factor="password", **SEOUL))
    assert own.action is Action.CHALLENGE and own.factors == (Factor.PASSKEY,)
    assert "second_factor_required" in own.reasons
    other = w.decide(w.event(after, "login", device="laptop-9", first_factor="password", **SEOUL))
    assert other.action is Action.CHALLENGE
    assert other.factors == (Factor.BOUND_DEVICE_APPROVAL,)  # what a password thief lacks


def test_a_failed_first_factor_is_blocked_and_counted():
    w = World()
    after = w.habits(days=2)
    for k in range(3):
        d = w.run(w.event(after + k, "login", first_factor="password", first_factor_ok=False))
        assert d.action is Action.BLOCK and d.reasons[0] == "first_factor_failed"
    d = w.decide(w.event(after + 10, "login", first_factor="password"))
    assert "failed_attempts" in d.reasons


def test_a_payment_from_a_device_never_seen_asks_for_an_approval_from_the_users_phone():
    w = World()
    after = w.habits(days=3)
    theft = w.event(after, "payment", device="thief-laptop", ip="45.1.1.1", payee="m-new")
    d = w.run(theft, holds=[])
    assert d.action is Action.CHALLENGE and d.factors == (Factor.BOUND_DEVICE_APPROVAL,)
    assert "new_device" in d.reasons
    # The challenge failed: the device is seen, not trusted, and the next try is asked again.
    again = w.decide(w.event(after + 60, "payment", device="thief-laptop", ip="45.1.1.1"))
    assert "untrusted_device" in again.reasons and again.action is not Action.ALLOW
    assert device_trust(w.state.users["u1"], "thief-laptop", after + 60, CONFIG) == 0


def test_a_passed_challenge_trusts_the_device_and_a_review_or_block_grants_nothing():
    w = World()
    after = w.habits(days=3)
    new_phone = w.event(after, "device_registration", device="phone-2", **SEOUL)
    d = w.run(new_phone, holds=["email_otp", "passkey", "bound_device_approval"])
    assert d.action is Action.CHALLENGE
    assert set(d.factors) == {Factor.EMAIL_OTP, Factor.PASSKEY, Factor.BOUND_DEVICE_APPROVAL}
    assert w.state.users["u1"].devices["phone-2"].trusted
    assert passed(d, parse_holds(["email_otp", "passkey"])) is False  # every factor, or none
    for action in (Action.REVIEW, Action.BLOCK):
        held = RiskDecision(action, 80, (), (), "v")
        assert passed(held, parse_holds([f.value for f in Factor])) is False


def test_an_attackers_events_never_move_where_the_user_is():
    w = World()
    after = w.habits(days=3)
    w.run(
        w.event(after, "login", device="evil", first_factor="password", **PARIS), holds=["password"]
    )
    # The user, still in Seoul, is not "travelling impossibly" because of the attacker.
    d = w.decide(w.event(after + 600, "payment", **SEOUL))
    assert "impossible_travel" not in d.reasons and d.action is Action.ALLOW


def test_credential_stuffing_from_one_ip_raises_every_login_from_it():
    w = World()
    for k in range(10):
        w.run(
            w.event(
                START + k,
                "login",
                user=f"v{k}",
                device=f"bot-{k}",
                ip="45.9.9.9",
                first_factor="password",
                first_factor_ok=False,
            )
        )
    d = w.decide(
        w.event(
            START + 20, "login", user="v99", device="bot-x", ip="45.9.9.9", first_factor="password"
        )
    )
    assert "velocity_ip" in d.reasons and d.action is not Action.ALLOW
    other = w.decide(
        w.event(
            START + 20, "login", user="v98", device="p", ip="211.36.1.9", first_factor="passkey"
        )
    )
    assert "velocity_ip" not in other.reasons


def test_card_testing_many_payees_from_one_device_is_velocity_device():
    w = World()
    w.habits(user="u1", days=2, device="shared-pc")
    at = START + 3 * 86400
    reasons: set[str] = set()
    for k in range(9):
        d = w.run(
            w.event(
                at + 30 * k, "payment", device="shared-pc", payee=f"shop-{k}", amount=100, **SEOUL
            )
        )
        reasons.update(d.reasons)
    assert "velocity_device" in reasons and "velocity_user" in reasons


def test_cash_out_to_gift_cards_up_to_the_cap_stacks_signals():
    w = World()
    after = w.habits(days=3)
    last = None
    for k in range(4):
        last = w.run(
            w.event(
                after + 300 * k, "payment", payee=f"gift-{k}", mcc="6540", amount=120_000, **SEOUL
            )
        )
    assert last is not None
    assert {"cashout_mcc", "cashout_velocity", "monthly_cap"} <= set(last.reasons)
    assert last.action is not Action.ALLOW


def test_many_accounts_on_one_device_is_shared_device():
    w = World()
    for k in range(4):
        w.run(w.event(START + k, "login", user=f"acct-{k}", device="farm", first_factor="passkey"))
    d = w.decide(w.event(START + 10, "login", user="acct-9", device="farm", first_factor="passkey"))
    assert "shared_device" in d.reasons


def test_an_amount_far_above_the_users_own_is_unusual():
    w = World()
    after = w.habits(days=12)
    big = w.decide(w.event(after, "payment", amount=600_000, **SEOUL))
    assert "unusual_amount" in big.reasons
    usual = w.decide(w.event(after, "payment", amount=12_000, **SEOUL))
    assert "unusual_amount" not in usual.reasons


def test_a_payment_with_no_trusted_device_anywhere_is_held_not_challenged():
    w = World()
    w.run(w.event(START, "login", device="d1", first_factor="password"), holds=["password"])
    d = w.decide(w.event(START + 60, "payment", device="d1"))
    assert d.action is Action.REVIEW and "no_factor_an_attacker_lacks" in d.reasons


@pytest.mark.parametrize(
    ("listing", "field", "value"),
    [
        ("blocked_devices", "device", "bad-dev"),
        ("blocked_ips", "ip", "6.6.6.6"),
        ("blocked_payees", "payee", "m-mule"),
    ],
)
def test_anything_on_a_block_list_is_blocked(listing, field, value):
    doc = _doc()
    doc["lists"][listing] = [value]
    w = World(parse_risk_config(doc))
    after = w.habits(days=2)
    d = w.decide(w.event(after, "payment", **{field: value}, **SEOUL))
    assert d.action is Action.BLOCK and d.score == 100


def test_a_risky_recovery_is_held_for_an_operator():
    w = World()
    after = w.habits(days=2)
    d = w.decide(w.event(after + 1800, "recovery", device="evil", ip="45.1.1.1", **PARIS))
    assert d.action is Action.REVIEW or d.action is Action.BLOCK, d
    calm = w.decide(w.event(after, "recovery", **SEOUL))
    assert calm.action is Action.CHALLENGE
    assert calm.factors == (Factor.SECURITY_QUESTION, Factor.PASSKEY)


def test_score_is_capped_and_reasons_come_heaviest_first():
    doc = _doc()
    doc["lists"]["blocked_ips"] = ["6.6.6.6"]
    w = World(parse_risk_config(doc))
    w.habits(days=2)
    d = w.decide(w.event(START + 2 * 86400 + 1200, "payment", device="x", ip="6.6.6.6", **PARIS))
    assert d.score == 100
    weights = [CONFIG.weights.get(r, 0) for r in d.reasons]
    assert weights == sorted(weights, reverse=True) and d.reasons[0] == "blocked_ip"


def test_device_trust_halves_with_each_half_life_without_a_check():
    w = World()
    at = w.habits(days=31)  # old enough that age adds nothing more
    user = w.state.users["u1"]
    half = CONFIG.limit("device_trust_half_life_s")
    fresh = device_trust(user, "phone-1", at, CONFIG)
    later = device_trust(user, "phone-1", at + half, CONFIG)
    assert fresh > 0 and abs(later - fresh / 2) <= 1
    assert device_trust(user, "never-seen", at, CONFIG) == 0


def test_flooding_new_device_ids_never_evicts_the_trusted_phone():
    w = World()
    after = w.habits(days=1)
    for k in range(3 * WINDOW_EVENTS_MAX):
        w.run(w.event(after + k, "payment", device=f"junk-{k}"), holds=[])
    assert w.state.users["u1"].devices["phone-1"].trusted


def test_distance_is_the_great_circle():
    assert distance_km(37.57, 126.98, 48.86, 2.35) == pytest.approx(8_960, rel=0.01)
    assert distance_km(1.0, 2.0, 1.0, 2.0) == 0


# ---- input and configuration ---------------------------------------------------------------------


BASE_EVENT = {"id": "e1", "ts": "2026-03-02T08:15:02Z", "type": "login", "user": "u1"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": None}, "missing_id"),
        ({"ts": None}, "invalid_ts"),
        ({"ts": "2026-03-02 08:15"}, "invalid_ts"),
        ({"ts": "2026-03-02T08:15:02+09:00"}, "invalid_ts"),
        ({"type": "refund"}, "invalid_type"),
        ({"user": 7}, "invalid_user"),
        ({"lat": 91.0, "lon": 0.0}, "invalid_lat"),
        ({"lat": 1.0}, "invalid_coordinates"),
        ({"lat": True, "lon": 1.0}, "invalid_lat"),
        ({"country": "KOR"}, "invalid_country"),
        ({"first_factor": "sms"}, "invalid_first_factor"),
        ({"first_factor": "password", "first_factor_ok": "yes"}, "invalid_first_factor_ok"),
        ({"type": "payment"}, "missing_amount"),
        ({"type": "payment", "amount": 1.5, "currency": "KRW"}, "invalid_amount"),
        ({"type": "payment", "amount": -1, "currency": "KRW"}, "invalid_amount"),
        ({"type": "payment", "amount": 100}, "invalid_currency"),
        ({"type": "payment", "amount": 100, "currency": "KRW", "mcc": "58"}, "invalid_mcc"),
    ],
)
def test_a_malformed_event_names_what_is_wrong(change, reason):
    raw = {**BASE_EVENT, **change}
    raw = {k: v for k, v in raw.items() if not (k == "id" and v is None)}
    with pytest.raises(EventInvalid) as caught:
        parse_event(raw)
    assert caught.value.details["reason"] == reason


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id",
    "ts",
    "type",
    "user",
    "device",
    "ip",
    "country",
    "lat",
    "lon",
    "user_agent",
    "first_factor",
    "first_factor_ok",
    "amount",
    "currency",
    "payee",
    "mcc",
    "holds",
]


@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=len(FIELDS)), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_json_object_is_parsed_or_refused_with_a_code_and_never_crashes(fields, valid_base):
    raw = {**(BASE_EVENT if valid_base else {}), **fields}
    try:
        parse_event(raw)
        parse_holds(raw.get("holds"))
    except EventInvalid as exc:
        assert isinstance(exc.details["reason"], str) and exc.details["reason"]


def test_unknown_fields_are_ignored_and_holds_are_checked():
    event = parse_event({**BASE_EVENT, "label": {"attack": True}, "extra": [1]})
    assert event.id == "e1" and event.at_s == datetime(2026, 3, 2, 8, 15, 2, tzinfo=UTC).timestamp()
    for bad in (["fingerprint"], [{"factor": "passkey"}], [["passkey"]], "passkey", [7]):
        with pytest.raises(EventInvalid):
            parse_holds(bad)
    assert parse_holds(["passkey", "passkey"]) == {Factor.PASSKEY}
    assert parse_holds(None) == frozenset()


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d.pop("version"),
        lambda d: d["thresholds"].update(review=95),  # above block
        lambda d: d["weights"].update(telepathy=10),
        lambda d: d["weights"].update(new_device=-1),
        lambda d: d["windows"].update(short_s=7200),  # longer than long_s
        lambda d: d["limits"].pop("amount_z_max"),
        lambda d: d["monthly_cap_minor"].update(won=1),
        lambda d: d["cashout"].update(mcc="6540"),
    ],
)
def test_a_broken_risk_config_is_refused_with_a_configuration_error(breakage):
    doc = _doc()
    breakage(doc)
    with pytest.raises(ConfigurationError):
        parse_risk_config(doc)
