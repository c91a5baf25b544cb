"""``python -m bench --only risk`` (part of ``make bench``): the risk engine's replay throughput
and the latency of one decision, in this process on one core.

1. Events: ``risk simulate`` traffic (seed 1; 400 users x 30 days, ``--quick`` 60 x 10), serialised
   once to JSON lines in memory, so the disk is not measured.
2. Replay: ``Replayer.run`` over the lines -- parse, GeoIP (the shipped database), decide, learn,
   encode -- with the process pinned to one CPU; events per second, best of three passes over a
   fresh state and a cold GeoIP cache each. Wall-clock time counts whatever else ran on that CPU
   meanwhile, so the process's own CPU time is reported too: on a shared machine it is the one to
   compare between runs. Baseline in the same run: the same lines only parsed and re-encoded with
   orjson (the floor any replay pays), and ``parse_event`` added to that.
3. One decision: ``decide`` and ``decide`` + ``learn`` timed per event (perf_counter_ns) over a
   second pass of the same traffic on a warm state, p50/p99/max. The live path adds its database
   reads and writes to this; it is the engine's share.
4. Memory: peak RSS of the process and the Python heap the replay state holds (tracemalloc).

Results are merged into ``var/bench.json`` under ``"risk"`` (``--quick``: var/bench-quick.json).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from bench.results import merge
from zeropay.adapters.geoip import CountryGeoIP
from zeropay.bootstrap import load_risk_config
from zeropay.domain.risk.engine import decide, learn, passed
from zeropay.domain.risk.events import parse_event, parse_holds
from zeropay.services.risk_replay import Replayer, encode, located
from zeropay.services.risk_simulation import generate

KEY = "risk"
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")
SEED = 1
TARGET_EVENTS_PER_S = 20_000
TARGET_DECISION_P99_MS = 2.0


def _rate(lines: list[bytes], work: Any) -> float:
    """Events per second of ``work(lines)``, best of three (the machine is shared)."""
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        work(lines)
        best = max(best, len(lines) / (time.perf_counter() - started))
    return best


def _rates(lines: list[bytes], work: Any) -> tuple[float, float]:
    """Events per second of ``work(lines)`` by wall clock and by this process's CPU time, each the
    best of three passes."""
    wall = cpu = 0.0
    for _ in range(3):
        started, started_cpu = time.perf_counter(), time.process_time()
        work(lines)
        wall = max(wall, len(lines) / (time.perf_counter() - started))
        cpu = max(cpu, len(lines) / (time.process_time() - started_cpu))
    return wall, cpu


def _floor(lines: list[bytes]) -> None:
    for line in lines:
        orjson.dumps(orjson.loads(line))


def _floor_and_parse(lines: list[bytes]) -> None:
    for line in lines:
        raw = orjson.loads(line)
        parse_event(raw)
        orjson.dumps(raw)


def _percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa: E731
    return {
        "p50_ms": round(at(0.50), 4),
        "p99_ms": round(at(0.99), 4),
        "max_ms": round(ordered[-1] / 1e6, 4),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 4),
    }


def run(*, quick: bool, out: Path | None = None) -> int:
    out = out or (QUICK_OUT if quick else OUT)
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    config = load_risk_config()
    locate = CountryGeoIP()
    users, days = (60, 10) if quick else (400, 30)
    print(f"[bench risk] generating seed {SEED}: {users} users x {days} days", flush=True)
    started = time.perf_counter()
    events = generate(SEED, users=users, days=days)
    print(
        f"[bench risk] simulated {len(events)} events in {time.perf_counter() - started:.2f} s",
        flush=True,
    )
    lines = [orjson.dumps(e) for e in events]

    def replay(batch: list[bytes]) -> None:
        locate.cache_clear()  # each pass starts cold, as one ``zeropay risk replay`` process does
        replayer = Replayer(config, locate=locate)
        for result in replayer.run(batch):
            if result.decision is not None:
                encode(result.decision)

    print(f"[bench risk] replay of {len(lines)} events on CPU {cpu}", flush=True)
    floor = _rate(lines, _floor)
    floor_parse = _rate(lines, _floor_and_parse)
    replay_rate, replay_cpu_rate = _rates(lines, replay)

    # One decision on a warm state: the first pass teaches, the second is timed.
    replayer = Replayer(config, locate=locate)
    for _ in replayer.run(lines):
        pass
    decide_ns: list[int] = []
    both_ns: list[int] = []
    state = replayer.state
    clock = time.perf_counter_ns
    shift = days * 86400.0  # the same traffic a month later, so windows and habits still apply
    for line in lines:
        raw = orjson.loads(line)
        event = located(parse_event(raw), locate)
        event = event._replace(at_s=event.at_s + shift)
        holds = parse_holds(raw.get("holds"))
        view = state.view(event.user, event.device, event.ip, event.payee)
        t0 = clock()
        decision = decide(event, view, config)
        t1 = clock()
        learn(event, decision, got_through=passed(decision, holds), view=view, config=config)
        t2 = clock()
        decide_ns.append(t1 - t0)
        both_ns.append(t2 - t0)

    tracemalloc.start()
    replayer = Replayer(config, locate=locate)
    for _ in replayer.run(lines):
        pass
    state_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    record: dict[str, Any] = {
        "events": len(lines),
        "users": users,
        "days": days,
        "config_version": config.version,
        "replay_events_per_s": round(replay_rate),
        "replay_events_per_cpu_s": round(replay_cpu_rate),
        "baseline_orjson_roundtrip_events_per_s": round(floor),
        "baseline_roundtrip_and_parse_events_per_s": round(floor_parse),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "decide": _percentiles_ms(decide_ns),
        "decide_and_learn": _percentiles_ms(both_ns),
        "target_decision_p99_ms": TARGET_DECISION_P99_MS,
        "state_mb": round(state_bytes / 2**20, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "environment": {
            "python": platform.python_version(),
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(_table(record))
    merge(out, KEY, record)
    print(f"written to {out} under {KEY!r}")
    return 0


def _table(r: dict[str, Any]) -> str:
    d, b = r["decide"], r["decide_and_learn"]
    floor = r["baseline_orjson_roundtrip_events_per_s"]
    floor_parse = r["baseline_roundtrip_and_parse_events_per_s"]
    return "\n".join(
        [
            f"risk engine, one core, {r['events']} simulated events "
            f"({r['users']} users x {r['days']} days)",
            f"  replay                      {r['replay_events_per_s']:>9} events/s   "
            f"(target >= {r['target_events_per_s']})",
            f"  replay, by CPU time         {r['replay_events_per_cpu_s']:>9} events/s",
            f"  baseline: orjson round trip {floor:>9} events/s",
            f"  baseline: + parse_event     {floor_parse:>9} events/s",
            f"  one decision (decide)       p50 {d['p50_ms']:.4f} ms  p99 {d['p99_ms']:.4f} ms  "
            f"max {d['max_ms']:.3f} ms  (target p99 <= {r['target_decision_p99_ms']} ms)",
            f"  decide + learn              p50 {b['p50_ms']:.4f} ms  p99 {b['p99_ms']:.4f} ms  "
            f"max {b['max_ms']:.3f} ms",
            f"  replay state {r['state_mb']} MB of Python heap; peak RSS {r['peak_rss_mb']} MB",
            f"  load average {r['environment']['load_average']}",
        ]
    )
