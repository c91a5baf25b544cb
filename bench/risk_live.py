"""``python -m bench --only risk-live`` (part of ``make bench``): the latency of one live risk
decision -- ``services.risk.assess`` in its own transaction, database included -- on SQLite and
on PostgreSQL, in this process on one thread (no HTTP). Not pinned to a CPU: PostgreSQL's
backend works in turn with this thread, and on a shared two-CPU machine where other benchmarks
pin themselves to a CPU, a pin of ours could only put us in their queue.

1. For each backend a fresh database (SQLite: a file in a temporary directory; PostgreSQL: a
   scratch database on the server, dropped afterwards), migrated, and the application container
   built by ``bootstrap.build`` with the risk engine on and the job loop off.
2. Events: ``risk simulate`` traffic (seed 1; 80 users x 30 days, ``--quick`` 40 x 7), each
   parsed with ``parse_event`` and given a fresh ``rsk_`` id. Their ``country``, ``lat`` and
   ``lon`` are dropped, as a live request carries none: GeoIP (the shipped database, as
   ``assess`` does) fills them inside the timed transaction. The first third warms the
   database up (records exist and have history), untimed.
3. Live decision, timed with ``perf_counter_ns`` around the whole ``ctx.run`` (BEGIN to COMMIT,
   what a request pays): GeoIP, lock the event's user, device, IP and payee records (insert
   missing ones, SELECT ... FOR UPDATE), load the JSON documents, ``decide``, ``learn_attempt``
   (and ``learn_outcome`` for an allow, ``allowed_passes=True`` as a committed payment does),
   save the documents, insert the assessment, and for a non-allow decision append an audit entry
   (encrypted, hash-chained). A challenge is then settled in a transaction of its own, as its
   flow would settle it (passed when the simulated actor holds the factors asked for); that is
   timed apart (``settle``) and not in the decision's figure.
4. Baseline, same run, same backend, same events: a transaction with the same statements and no
   engine -- lock the same records, save their documents back unchanged (the adapter's own
   ``orjson`` load and dump included), insert an assessment row with the decision the live pass
   made, and the same audit entry for a non-allow decision. Live minus baseline is the engine's
   share: GeoIP, ``load_*``/``dump_*`` between the documents and the engine's records,
   ``decide`` and ``learn``. And a floor: a transaction with one one-row UPDATE (the event's
   user record set to itself, a precompiled text statement), what BEGIN, a write and COMMIT
   cost on this backend whatever the statements are (on PostgreSQL, the WAL flush at COMMIT).
   Live, baseline and floor alternate event by event, so load on the shared machine falls on
   all three alike.
5. In memory, the same events over ``MemoryRiskState`` (warm-up then timed, as above):
   ``decide`` alone, ``decide`` + ``learn``, and ``dump_*`` + ``load_*`` of the event's records.

Every transaction is timed twice: wall time (``perf_counter_ns``) and this thread's CPU time
(``thread_time_ns``). The CPU time is what this process spent (SQLAlchemy, the driver's client
side, the engine); wall minus CPU is waiting, for the database server, the disk at COMMIT, and
for a CPU when the machine is busy. The CPU figures move little with other work on the machine;
the wall figures do, so the load average is recorded.

Reported per backend: decisions per second of timed time (one thread, one after another),
p50/p99/max wall ms and mean CPU ms of the live decision, the baseline and the floor, decisions
by action, settle latency, and this process's peak RSS after the backend (it only grows: SQLite
runs first). Compared with the target p99 <= 2 ms per live decision; a miss is printed, never
asserted. Results are merged into ``var/bench.json`` under ``"risk_live"`` (``--quick``:
var/bench-quick.json).
"""

from __future__ import annotations

import os
import platform
import resource
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bench.results import merge
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql.database import run_in_transaction
from zeropay.adapters.sql.migrate import migrate
from zeropay.bootstrap import Container, build, risk_setup
from zeropay.config import Settings
from zeropay.domain.factors import Factor
from zeropay.domain.risk.engine import Action, RiskDecision, decide, learn, passed
from zeropay.domain.risk.events import RiskEvent, parse_event, parse_holds
from zeropay.domain.risk.state import (
    MemoryRiskState,
    RiskView,
    dump_device,
    dump_ip,
    dump_payee,
    dump_user,
    load_device,
    load_ip,
    load_payee,
    load_user,
)
from zeropay.services.context import AppContext, RiskSetup, UnitOfWork
from zeropay.services.risk import Assessed, Settled, assess, record_keys, settle
from zeropay.services.risk import record as record_decision
from zeropay.services.risk_replay import located
from zeropay.services.risk_simulation import generate

KEY = "risk_live"
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")
T = TypeVar("T")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SEED = 1
TARGET_DECISION_P99_MS = 2.0
BACKENDS = ("sqlite", "postgresql")
BASELINE_WARMUP = 50  # baseline and floor transactions at the end of the warm-up, untimed
# The floor: one write and its COMMIT. Setting a column to itself still writes the row (a new
# row version on PostgreSQL, the page on SQLite).
FLOOR_SQL = text(
    "UPDATE risk_records SET updated_at = updated_at WHERE kind = 'user' AND subject = :subject"
)


@dataclass(frozen=True)
class Plan:
    users: int
    days: int
    warmup_fraction: float  # of the events, decided untimed first so records have history


FULL = Plan(users=80, days=30, warmup_fraction=1 / 3)
QUICK = Plan(users=40, days=7, warmup_fraction=1 / 3)


@dataclass(frozen=True, slots=True)
class Sample:
    """One simulated event as the live path would see it, and what it holds if challenged."""

    event: RiskEvent  # no place yet: GeoIP fills it inside the timed transaction
    holds: frozenset[Factor]


def _log(message: str) -> None:
    print(f"[bench risk-live {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _percentiles_ms(samples_ns: list[int]) -> dict[str, Any]:
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa: E731
    return {
        "count": len(ordered),
        "per_s": round(len(ordered) / (sum(ordered) / 1e9), 1),
        "p50_ms": round(at(0.50), 4),
        "p99_ms": round(at(0.99), 4),
        "max_ms": round(ordered[-1] / 1e6, 4),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 4),
    }


class Timed:
    """Wall time and this thread's CPU time of each call kept."""

    def __init__(self) -> None:
        self.wall_ns: list[int] = []
        self.cpu_ns: list[int] = []

    def __call__(self, work: Callable[[], T], *, keep: bool) -> T:
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        out = work()
        t1 = time.perf_counter_ns()
        c1 = time.thread_time_ns()
        if keep:
            self.wall_ns.append(t1 - t0)
            self.cpu_ns.append(c1 - c0)
        return out

    def summary(self) -> dict[str, Any]:
        out = _percentiles_ms(self.wall_ns)
        if self.cpu_ns:
            out["cpu_ms_mean"] = round(statistics.fmean(self.cpu_ns) / 1e6, 4)
            cpu = _percentiles_ms(self.cpu_ns)
            out["cpu_ms_p50"], out["cpu_ms_p99"] = cpu["p50_ms"], cpu["p99_ms"]
        return out


def _samples(plan: Plan) -> list[Sample]:
    out = []
    for raw in generate(SEED, users=plan.users, days=plan.days):
        event = parse_event(raw)._replace(country=None, lat=None, lon=None)
        out.append(Sample(event, parse_holds(raw.get("holds"))))
    return out


# ---- one backend --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Made:
    """What the live pass decided for one event: the baseline writes the same rows."""

    event: RiskEvent
    decision: RiskDecision
    state: Settled


class LiveBench:
    def __init__(self, container: Container) -> None:
        self.engine = container.engine
        self.ctx: AppContext = container.ctx
        assert self.ctx.risk is not None, "the container was built with the risk engine off"
        self.setup = self.ctx.risk
        self.live = Timed()
        self.baseline = Timed()
        self.floor = Timed()
        self.settle = Timed()
        self.actions: Counter[str] = Counter()

    def decide(self, sample: Sample, *, timed: bool) -> Made:
        ctx, setup = self.ctx, self.setup
        fresh = sample.event._replace(id=ctx.new_id("rsk"))

        def work(uow: UnitOfWork) -> Assessed:
            event = located(fresh, setup.locate)  # inside, as assess runs in the request's
            return assess(ctx, setup, uow, event, ref=None, allowed_passes=True)

        assessed: Assessed = self.live(lambda: ctx.run(work), keep=timed)
        decision = assessed.decision
        if decision.action is Action.CHALLENGE:
            # Its flow ends a moment later: the challenge passes if the actor holds the factors.
            got_through = passed(decision, sample.holds)
            self.settle(
                lambda: ctx.run(
                    lambda uow: settle(ctx, setup, uow, assessed.id, passed=got_through)
                ),
                keep=timed,
            )
        if timed:
            self.actions[decision.action.value] += 1
        # The state ``assess`` stored with the decision, so the baseline's row is the same.
        state = {
            Action.ALLOW: Settled.PASSED,
            Action.CHALLENGE: Settled.PENDING,
        }.get(decision.action, Settled.SETTLED)
        return Made(assessed.event, decision, state)

    def same_statements(self, made: Made, *, timed: bool) -> None:
        ctx = self.ctx
        event = made.event._replace(id=ctx.new_id("rsk"))

        def work(uow: UnitOfWork) -> None:
            now = ctx.now()
            docs = uow.risk.lock_records(record_keys(event), now)
            uow.risk.save_records(docs, now)
            record_decision(ctx, uow, event, made.decision, ref=None, state=made.state, now=now)

        self.baseline(lambda: ctx.run(work), keep=timed)

    def one_write(self, made: Made, *, timed: bool) -> None:
        subject = {"subject": made.event.user}
        self.floor(
            lambda: run_in_transaction(self.engine, lambda c: c.execute(FLOOR_SQL, subject)),
            keep=timed,
        )


def measure(
    backend: str, database_url: str, workdir: Path, plan: Plan, samples: list[Sample]
) -> dict[str, Any]:
    settings = Settings(
        database_url=database_url,
        vault_dev_file=workdir / "vault-dev.json",
        risk_enabled=True,
        jobs_enabled=False,
        log_level="warning",
    )
    container = build(settings, hasher=Argon2PasswordHasher.cheap_for_tests())
    try:
        migrate(container.engine)
        bench = LiveBench(container)
        warm = int(len(samples) * plan.warmup_fraction)
        _log(f"{backend}: warm-up, {warm} decisions untimed")
        for number, sample in enumerate(samples[:warm]):
            made = bench.decide(sample, timed=False)
            if number >= warm - BASELINE_WARMUP:  # its statements are the live ones: warm already
                bench.same_statements(made, timed=False)
                bench.one_write(made, timed=False)
        timed = samples[warm:]
        _log(f"{backend}: {len(timed)} live decisions, each followed by its baseline and floor")
        for sample in timed:
            made = bench.decide(sample, timed=True)
            bench.same_statements(made, timed=True)
            bench.one_write(made, timed=True)
    finally:
        container.engine.dispose()
    live = bench.live.summary()
    baseline = bench.baseline.summary()
    return {
        "backend": backend,
        "live": live,
        "baseline": baseline,
        "floor_one_row_write": bench.floor.summary(),
        "engine_share_ms_p50": round(live["p50_ms"] - baseline["p50_ms"], 4),
        "engine_share_cpu_ms_mean": round(live["cpu_ms_mean"] - baseline["cpu_ms_mean"], 4),
        "settle": bench.settle.summary(),
        "actions": dict(sorted(bench.actions.items())),
        "target_met": live["p99_ms"] <= TARGET_DECISION_P99_MS,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


# ---- in memory ----------------------------------------------------------------------------------


Convert = tuple[Callable[[Any], dict[str, object]], Callable[[dict[str, Any]], Any], Any]


def _records(view: RiskView) -> list[Convert]:
    """(dump, load, record) for each record the event touches, as ``assess`` converts them."""
    out: list[Convert] = [(dump_user, load_user, view.user)]
    if view.device is not None:
        out.append((dump_device, load_device, view.device))
    if view.ip is not None:
        out.append((dump_ip, load_ip, view.ip))
    if view.payee is not None:
        out.append((dump_payee, load_payee, view.payee))
    return out


def in_memory(setup: RiskSetup, plan: Plan, samples: list[Sample]) -> dict[str, Any]:
    """``decide``, ``decide`` + ``learn`` and the records' ``dump_*`` + ``load_*``, no database;
    ``learn`` with the outcome the live path settles (allow passes, a challenge passes when the
    factors are held, a review or block teaches the attempt only)."""
    config, locate = setup.config, setup.locate
    state = MemoryRiskState()
    warm = int(len(samples) * plan.warmup_fraction)
    decide_ns: list[int] = []
    both_ns: list[int] = []
    convert_ns: list[int] = []
    clock = time.perf_counter_ns
    for number, sample in enumerate(samples):
        event = located(sample.event, locate)
        view = state.view(event.user, event.device, event.ip, event.payee)
        t0 = clock()
        decision = decide(event, view, config)
        t1 = clock()
        learn(
            event,
            decision,
            got_through=passed(decision, sample.holds),
            view=view,
            config=config,
        )
        t2 = clock()
        if number < warm:
            continue
        decide_ns.append(t1 - t0)
        both_ns.append(t2 - t0)
        # The documents as the database hands them back (orjson, which the baseline pays too);
        # timed: the engine's records to documents and back, what ``assess`` adds to that.
        records = _records(view)
        docs = [orjson.loads(orjson.dumps(dump(record))) for dump, _, record in records]
        t3 = clock()
        for (dump, load, record), doc in zip(records, docs, strict=True):
            load(doc)
            dump(record)
        convert_ns.append(clock() - t3)
    return {
        "decide": _percentiles_ms(decide_ns),
        "decide_and_learn": _percentiles_ms(both_ns),
        "dump_and_load_records": _percentiles_ms(convert_ns),
    }


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _pg_admin() -> URL:
    raw = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or DEFAULT_PG
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1))


# ---- main ---------------------------------------------------------------------------------------


def run(*, quick: bool, out: Path | None = None) -> int:
    plan = QUICK if quick else FULL
    out = out or (QUICK_OUT if quick else OUT)
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    own_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # ``--only risk`` pins; we do not
    _log(f"generating seed {SEED}: {plan.users} users x {plan.days} days")
    samples = _samples(plan)
    admin_url = _pg_admin()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    db = f"zp_bench_risklive_{uuid.uuid4().hex[:8]}"
    results: list[dict[str, Any]] = []
    try:
        with admin.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar_one())
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        with tempfile.TemporaryDirectory(prefix="zp_bench_risklive_") as tmp:
            for backend in BACKENDS:
                workdir = Path(tmp) / backend
                workdir.mkdir()
                url = (
                    f"sqlite:///{workdir / 'bench.db'}"
                    if backend == "sqlite"
                    else admin_url.set(database=db).render_as_string(hide_password=False)
                )
                results.append(measure(backend, url, workdir, plan, samples))
        setup = risk_setup(Settings(risk_enabled=True))  # the shipped rules and GeoIP, as above
        assert setup is not None
        _log("in memory: decide, learn, dump and load over the same events")
        memory = in_memory(setup, plan, samples)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        os.sched_setaffinity(0, own_affinity)

    warm = int(len(samples) * plan.warmup_fraction)
    record: dict[str, Any] = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "plan": asdict(plan),
        "seed": SEED,
        "events": len(samples),
        "events_warmup": warm,
        "events_timed": len(samples) - warm,
        "config_version": setup.config.version,
        "geoip": "inside the timed transaction (the events' own place dropped, as live)",
        "results": results,
        "in_memory": memory,
        "target_decision_p99_ms": TARGET_DECISION_P99_MS,
        "environment": {
            "python": platform.python_version(),
            "postgresql": pg_version,
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
            "load_average_at_start": load_before,  # other work on the machine skews figures
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "note": "one thread, not pinned; PostgreSQL and other work share the machine",
        },
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    merge(out, KEY, record)
    print()
    print(_table(record))
    print(f"written to {out} under {KEY!r} ({record['wall_seconds']}s wall)")
    return 0


def _row(label: str, p: dict[str, Any]) -> str:
    cpu = f"{p['cpu_ms_mean']:>9.3f}" if "cpu_ms_mean" in p else ""
    return (
        f"  {label:<40}{p['per_s']:>10}{p['p50_ms']:>9.3f}{p['p99_ms']:>9.3f}"
        f"{p['max_ms']:>9.2f}{cpu}"
    )


def _table(r: dict[str, Any]) -> str:
    head = f"  {'':<40}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu ms':>9}"
    lines = [
        "live risk decision, one thread in process (wall ms; cpu ms: this thread's mean): "
        f"{r['events_timed']} timed events after {r['events_warmup']} warm-up "
        f"({r['plan']['users']} users x {r['plan']['days']} days, seed {r['seed']})",
        head,
    ]
    for b in r["results"]:
        lines.append(f"{b['backend']}")
        lines.append(_row("live decision (assess, one transaction)", b["live"]))
        lines.append(_row("baseline: same statements, no engine", b["baseline"]))
        lines.append(_row("floor: one-row UPDATE and COMMIT", b["floor_one_row_write"]))
        lines.append(
            f"  {'engine share (live - baseline)':<40}{'':>10}"
            f"{b['engine_share_ms_p50']:>9.3f}{'':>9}{'':>9}{b['engine_share_cpu_ms_mean']:>9.3f}"
        )
        if b["settle"]:
            lines.append(_row(f"settle a challenge ({b['settle']['count']})", b["settle"]))
        actions = ", ".join(f"{k} {v}" for k, v in b["actions"].items())
        verdict = "target met" if b["target_met"] else "MISSED"
        lines.append(
            f"  decisions: {actions}; p99 {b['live']['p99_ms']:.3f} ms vs target "
            f"<= {r['target_decision_p99_ms']} ms: {verdict}; peak RSS {b['peak_rss_mb']} MB"
        )
    m = r["in_memory"]
    lines.append("in memory (MemoryRiskState, no database)")
    lines.append(_row("decide", m["decide"]))
    lines.append(_row("decide + learn", m["decide_and_learn"]))
    lines.append(_row("dump_* + load_* of the event's records", m["dump_and_load_records"]))
    env = r["environment"]
    lines.append(
        f"  load average {env['load_average_at_start']} at start, "
        f"{env['load_average_at_end']} at end ({env['cpus']} CPUs, shared)"
    )
    return "\n".join(lines)
