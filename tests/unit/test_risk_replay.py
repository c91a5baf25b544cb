"""``zeropay risk replay``: the live engine over a file, deterministic, deciding before it looks at
what the actor held, and loud about every line it cannot use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from zeropay.adapters.geoip import CountryGeoIP
from zeropay.bootstrap import load_risk_config
from zeropay.cli import main
from zeropay.domain.errors import ConfigurationError
from zeropay.domain.risk.events import parse_event
from zeropay.services.risk_replay import Place, Replayer, located

CONFIG = load_risk_config()


def _events() -> list[dict[str, Any]]:
    """A user's ordinary morning, then a stranger with the password from another country."""
    out: list[dict[str, Any]] = []
    for day in range(3):
        ts = f"2026-03-0{day + 2}T08:1"
        out.append(
            {
                "id": f"l{day}",
                "ts": ts + "0:00Z",
                "type": "login",
                "user": "u1",
                "device": "phone",
                "ip": "211.36.1.2",
                "country": "KR",
                "lat": 37.57,
                "lon": 126.98,
                "first_factor": "passkey",
                "first_factor_ok": True,
                "holds": ["passkey", "device_key", "password"],
            }
        )
        out.append(
            {
                "id": f"p{day}",
                "ts": ts + "5:00Z",
                "type": "payment",
                "user": "u1",
                "device": "phone",
                "ip": "211.36.1.2",
                "amount": 12500,
                "currency": "KRW",
                "payee": "m17",
                "mcc": "5814",
                "holds": ["passkey", "device_key"],
            }
        )
    out.append(
        {
            "id": "a1",
            "ts": "2026-03-04T09:00:00Z",
            "type": "login",
            "user": "u1",
            "device": "evil",
            "ip": "81.2.69.160",
            "first_factor": "password",
            "first_factor_ok": True,
            "holds": ["password"],
        }
    )
    out.append(
        {
            "id": "a2",
            "ts": "2026-03-04T09:01:00Z",
            "type": "payment",
            "user": "u1",
            "device": "evil",
            "ip": "81.2.69.160",
            "amount": 60000,
            "currency": "KRW",
            "payee": "gift",
            "mcc": "6540",
            "holds": ["password"],
        }
    )
    return out


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _replay(tmp_path: Path, rows: list[Any], *extra: str) -> tuple[int, list[dict[str, Any]]]:
    source = _write(tmp_path / "events.jsonl", rows)
    out = tmp_path / "decisions.jsonl"
    code = main(["risk", "replay", str(source), "-o", str(out), *extra])
    return code, [json.loads(line) for line in out.read_text().splitlines()]


def test_replay_writes_one_decision_per_event_with_the_documented_keys(tmp_path):
    code, decisions = _replay(tmp_path, _events())
    assert code == 0
    assert [d["id"] for d in decisions] == [e["id"] for e in _events()]
    for d in decisions:
        assert list(d) == ["id", "action", "score", "reasons", "factors", "config_version"]
        assert isinstance(d["score"], int) and 0 <= d["score"] <= 100
        assert d["config_version"] == CONFIG.version
        assert (d["factors"] != []) == (d["action"] == "challenge")
    by_id = {d["id"]: d for d in decisions}
    assert by_id["p2"]["action"] == "allow"
    assert by_id["a1"]["action"] != "allow" and by_id["a2"]["action"] != "allow"


def test_the_same_input_gives_byte_identical_output(tmp_path):
    first = tmp_path / "one"
    second = tmp_path / "two"
    first.mkdir()
    second.mkdir()
    _replay(first, _events())
    _replay(second, _events())
    assert (first / "decisions.jsonl").read_bytes() == (second / "decisions.jsonl").read_bytes()


def test_an_events_holds_never_change_its_own_decision_only_later_ones(tmp_path):
    # A password login from a new laptop at home: challenged; what the person held decides
    # whether the laptop is trusted for the payment that follows -- and nothing before that.
    seoul = {"ip": "211.36.1.3", "country": "KR", "lat": 37.57, "lon": 126.98}
    events = _events()[:-2] + [
        {
            "id": "n1",
            "ts": "2026-03-04T09:00:00Z",
            "type": "login",
            "user": "u1",
            "device": "laptop",
            "first_factor": "password",
            **seoul,
        },
        {
            "id": "n2",
            "ts": "2026-03-04T09:01:00Z",
            "type": "payment",
            "user": "u1",
            "device": "laptop",
            "amount": 12500,
            "currency": "KRW",
            "payee": "m17",
            **seoul,
        },
    ]
    rich = [dict(e) for e in events]
    poor = [dict(e) for e in events]
    rich[-2]["holds"] = ["password", "bound_device_approval"]
    poor[-2]["holds"] = ["password"]
    (tmp_path / "r").mkdir()
    (tmp_path / "p").mkdir()
    _, with_rich = _replay(tmp_path / "r", rich)
    _, with_poor = _replay(tmp_path / "p", poor)
    assert with_rich[:-1] == with_poor[:-1]  # up to and including the event itself
    assert with_rich[-2]["factors"] == ["bound_device_approval"]
    assert with_rich[-1]["action"] == "allow"  # the approval made the laptop trusted
    assert with_poor[-1]["action"] == "challenge"  # a failed challenge grants nothing
    assert "untrusted_device" in with_poor[-1]["reasons"]


def test_bad_lines_are_reported_with_their_number_and_skipped_and_the_exit_is_2(tmp_path, capsys):
    events = _events()
    rows: list[Any] = [
        events[0],
        "{not json",
        events[1],
        {"id": "x", "type": "login"},
        ["a", "list"],
        {**events[2], "ts": "2026-03-01T00:00:00Z"},
        "",
        events[3],
    ]
    code, decisions = _replay(tmp_path, rows)
    assert code == 2
    assert [d["id"] for d in decisions] == ["l0", "p0", events[3]["id"]]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "line 2: invalid_json",
        "line 4: missing_ts",
        "line 5: not_an_object",
        "line 6: out_of_order",
    ]


def test_ties_in_time_keep_file_order(tmp_path):
    events = _events()
    events[1]["ts"] = events[0]["ts"]
    code, decisions = _replay(tmp_path, events)
    assert code == 0 and [d["id"] for d in decisions][:2] == ["l0", "p0"]


def test_a_missing_events_file_or_a_broken_config_fails_clearly(tmp_path, capsys):
    out = str(tmp_path / "d.jsonl")
    assert main(["risk", "replay", str(tmp_path / "nope.jsonl"), "-o", out]) == 2
    assert "cannot read" in capsys.readouterr().err
    bad = tmp_path / "risk.toml"
    bad.write_text('version = "x"\n[thresholds\n')
    source = _write(tmp_path / "e.jsonl", _events())
    assert main(["risk", "replay", str(source), "-o", out, "--config", str(bad)]) == 1
    assert "configuration_error" in capsys.readouterr().err
    with pytest.raises(ConfigurationError):
        load_risk_config(tmp_path / "absent.toml")


def test_a_config_file_changes_the_decisions_and_their_version(tmp_path):
    text = (Path(__file__).parents[2] / "src/zeropay/policies/risk.toml").read_text()
    text = re.sub(r'(?m)^version = ".*"$', 'version = "strict-1"', text)
    text = text.replace("challenge = 40", "challenge = 5")
    config = _write(tmp_path / "strict.toml", [])
    config.write_text(text)
    events = _events()
    events.insert(6, {**events[5], "id": "p-new", "payee": "m-new"})  # a new payee: 5 points
    _, decisions = _replay(tmp_path, events, "--config", str(config))
    by_id = {d["id"]: d for d in decisions}
    assert by_id["p-new"]["config_version"] == "strict-1"
    assert by_id["p-new"]["action"] == "challenge" and "new_payee" in by_id["p-new"]["reasons"]


# ---- GeoIP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def geoip() -> CountryGeoIP:
    return CountryGeoIP()


def test_geoip_places_an_address_in_its_country_without_the_network(geoip):
    korea = geoip("211.36.1.2")
    assert korea is not None and korea.country == "KR" and korea.lat == pytest.approx(37.57)
    assert geoip("81.2.69.160").country == "GB"  # type: ignore[union-attr]
    assert geoip("10.1.2.3") is None and geoip("not an ip") is None


def test_the_events_own_place_wins_over_geoip():
    seen: list[str] = []

    def locate(ip: str) -> Place:
        seen.append(ip)
        return Place("GB", 51.5, -0.13)

    own = parse_event(
        {
            "id": "e",
            "ts": "2026-03-02T08:00:00Z",
            "type": "login",
            "user": "u",
            "ip": "1.2.3.4",
            "country": "KR",
            "lat": 37.5,
            "lon": 127.0,
        }
    )
    assert located(own, locate) == own and seen == []
    partial = parse_event(
        {
            "id": "e",
            "ts": "2026-03-02T08:00:00Z",
            "type": "login",
            "user": "u",
            "ip": "1.2.3.4",
            "country": "KR",
        }
    )
    filled = located(partial, locate)
    assert (filled.country, filled.lat, filled.lon) == ("KR", 51.5, -0.13)
    bare = parse_event(
        {"id": "e", "ts": "2026-03-02T08:00:00Z", "type": "login", "user": "u", "ip": "1.2.3.4"}
    )
    assert located(bare, locate).country == "GB"


def test_replay_uses_geoip_unless_told_not_to(tmp_path):
    # Seoul by coordinates, then London by IP alone an hour later: impossible, via GeoIP only.
    rows = [
        {
            "id": "a",
            "ts": "2026-03-02T08:00:00Z",
            "type": "login",
            "user": "u",
            "device": "d",
            "ip": "211.36.1.2",
            "lat": 37.57,
            "lon": 126.98,
            "country": "KR",
            "first_factor": "passkey",
            "holds": ["passkey"],
        },
        {
            "id": "b",
            "ts": "2026-03-02T09:00:00Z",
            "type": "payment",
            "user": "u",
            "device": "d",
            "ip": "81.2.69.160",
            "amount": 1000,
            "currency": "KRW",
            "payee": "m",
        },
    ]
    (tmp_path / "g").mkdir()
    (tmp_path / "n").mkdir()
    _, with_geo = _replay(tmp_path / "g", rows)
    _, without = _replay(tmp_path / "n", rows, "--no-geoip")
    assert "impossible_travel" in with_geo[1]["reasons"]
    assert "impossible_travel" not in without[1]["reasons"]


def test_replayer_can_be_driven_line_by_line():
    replayer = Replayer(CONFIG)
    results = list(replayer.run([json.dumps(e) for e in _events()]))
    assert all(r.error is None for r in results) and len(results) == len(_events())


def test_a_live_event_written_as_a_replay_line_reads_back_the_same():
    from zeropay.domain.risk.events import event_as_input, parse_event

    raw = {
        "id": "e9",
        "ts": "2026-03-02T08:15:02.250000Z",
        "type": "payment",
        "user": "u1",
        "device": "d1",
        "ip": "211.36.1.2",
        "country": "KR",
        "lat": 37.57,
        "lon": 126.98,
        "amount": 12500,
        "currency": "KRW",
        "payee": "m17",
        "mcc": "5814",
        "passkey_clone": True,
    }
    event = parse_event(raw)
    assert parse_event(event_as_input(event)) == event
    assert event_as_input(event)["ts"] == raw["ts"]
