"""``python -m bench --only confirm`` (part of ``make bench``): payment confirmations per second
and their latency on PostgreSQL, through HTTP against the real server, for the two paths a
payer takes with SCA on, beside pgbench TPC-B from the same run.

1. A fresh PostgreSQL database; ``zeropay serve --workers 2`` with the shipped ``default`` SCA
   exemption profile (low value: at most USD 30 a payment and USD 100 since the last SCA), the
   risk engine off (its load -- every payer paying one merchant many times a second -- is what
   the engine exists to challenge, which would turn exempt payments into SCA ones; its own cost
   is ``bench --only risk-live``), and the tests' password-only policy with payment confirmation
   by passkey or by the bound device key + password (``tests/support/confirming.py``).
2. Seeding, untimed: payers sign up and top up through the API; each gets a device key (P-256)
   bound straight into the database (what the device registration flow writes; that flow is
   ``bench --only auth``'s), then signs in with a DPoP proof of it, so its session is bound to
   the key. The merchant's payments are created through the API before each timed run.
3. Exempt path: ``POST /v1/checkout/{id}/confirm`` of USD 0.50 payments, spread over the payers
   so that none reaches the USD 100 cumulative limit: each timed payment is really exempt, and
   the SCA decisions recorded for them are counted and printed to prove it. The payments are
   created through the service in this process before each run (untimed).
4. Device-signature path: USD 31 payments (above the USD 30 ceiling: SCA every time), each
   confirmed by three requests: confirm (the funds are held, a confirmation flow starts), the
   ``device_key`` step (ES256 over the flow's canonical transaction data, r || s) and the
   ``password`` step, which posts the hold. Timed from the confirm to the last answer. The
   password check is argon2id; it dominates, so the path runs twice: with cheap parameters
   (t=1, m=1 MiB: NOT what production uses) on the same server as the exempt path, then, after
   a restart with the production parameters (t=3, m=64 MiB), with payers who signed up under
   them.
5. pgbench TPC-B on a scratch database of the same server, after the server has stopped:
   ``pgbench -i``, then ``pgbench -T 10 -c 2``.

Every request carries a fresh DPoP proof of the payer's device key (signed by this process) and
the session token. The load comes from this process (httpx, asyncio, a fixed number of
confirmations in flight), on the same machine as the server and PostgreSQL: a Python client
because each request is signed with a fresh proof and the device path signs what the server
answered, which a fixed-script load generator (wrk) cannot do. The client's, the server's and
PostgreSQL's CPU over each timed run are reported so the share of each can be seen. Figures are
printed, never asserted. Results are merged into ``var/bench.json`` under ``"confirm"``
(``--quick``: var/bench-quick.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import URL, Engine, make_url

from bench.results import merge
from bench.serving import check, free_port, gather_limited, log_tail, percentile, wait_ready

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' DPoP device key and confirming payers
from support.confirming import (  # noqa: E402
    bind_device,
    device_key_policy,
    transaction_signature,
)
from support.dpop_client import DeviceKey  # noqa: E402
from zeropay.bootstrap import Container, build  # noqa: E402
from zeropay.config import Settings  # noqa: E402
from zeropay.domain.money import parse_money  # noqa: E402
from zeropay.services import payments  # noqa: E402

KEY = "confirm"
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent
WORKERS = 2
PASSWORD = "a long bench passphrase"
CURRENCY = "USD"
EXEMPT_MINOR = 50  # USD 0.50: under the default profile's USD 30 ceiling
SCA_MINOR = 3100  # USD 31: above it, so every one asks for SCA
CUMULATIVE_MINOR = 10_000  # the default profile's USD 100 since the last SCA
TOPUP_MINOR = 60_000  # one top-up, under the USD 700 monthly spending limit
ARGON2_CHEAP = (1, 1024)  # time_cost, memory KiB: the tests' setting
ARGON2_PRODUCTION = (3, 65536)  # the server's default (adapters/passwords.py)
PGBENCH_CLIENTS = 2
PGBENCH_SECONDS = 10
WAIT_SAMPLE_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    payers: int  # cheap argon2: the exempt path, then the device path
    exempt_payments: int
    device_payments: int
    production_payers: int  # production argon2: the device path again, after a restart
    production_payments: int
    concurrency: int  # confirmations in flight
    production_concurrency: int
    warmup: int  # confirmations of each path before its timed run, untimed

    def __post_init__(self) -> None:
        exempt_each = -(-(self.exempt_payments + self.warmup) // self.payers)
        device_each = -(-(self.device_payments + self.warmup) // self.payers)
        production_each = -(-(self.production_payments + self.warmup) // self.production_payers)
        # Every exempt payment must stay under the cumulative limit, or it would ask for SCA.
        assert exempt_each * EXEMPT_MINOR <= CUMULATIVE_MINOR, "exempt payments would need SCA"
        assert exempt_each * EXEMPT_MINOR + device_each * SCA_MINOR <= TOPUP_MINOR, "too poor"
        assert production_each * SCA_MINOR <= TOPUP_MINOR, "production payers too poor"


FULL = Plan(
    payers=64,
    exempt_payments=1500,
    device_payments=480,
    production_payers=16,
    production_payments=48,
    concurrency=16,
    production_concurrency=8,
    warmup=32,
)
QUICK = Plan(
    payers=8,
    exempt_payments=200,
    device_payments=48,
    production_payers=4,
    production_payments=8,
    concurrency=8,
    production_concurrency=4,
    warmup=8,
)


def _log(message: str) -> None:
    print(f"[bench confirm {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile, rounded to 0.01."""
    found = percentile(values, q)
    return None if found is None else round(found, 2)


# ---- CPU ----------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, float]:
    """(command name, parent pid, user + system CPU seconds) from /proc/PID/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw.rsplit(")", 1)[1].split()
    return name, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _server_and_postgres_cpu_s(server_pid: int, database: str) -> tuple[float, float]:
    """CPU seconds of the server (the supervisor and its worker processes) and of the
    PostgreSQL backends connected to ``database`` (their titles name it): not the other
    databases the same PostgreSQL server may be busy with, nor its shared background processes
    (WAL writer, checkpointer)."""
    server = postgres = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            name, ppid, cpu = _stat(pid)
        except (OSError, ValueError, IndexError):
            continue
        if server_pid in (pid, ppid):
            server += cpu
        elif name == "postgres" and f" {database} " in _cmdline(pid):
            postgres += cpu
    return server, postgres


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- the server ---------------------------------------------------------------------------------


class Server:
    def __init__(
        self, database_url: str, workdir: Path, policy: Path, argon2: tuple[int, int]
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = database_url.rsplit("/", 1)[1]
        self.argon2 = argon2
        (workdir / "prom").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_POLICY_PROFILE": "default",
            "ZEROPAY_AUTH_POLICY": str(policy),
            "ZEROPAY_SCA_PROFILE": "default",
            "ZEROPAY_RISK": "off",
            "ZEROPAY_VAULT_DEV_FILE": str(workdir / "vault-dev.json"),
            "ZEROPAY_ARGON2_TIME_COST": str(argon2[0]),
            "ZEROPAY_ARGON2_MEMORY_KIB": str(argon2[1]),
            "ZEROPAY_PUBLIC_ORIGINS": self.url,  # what the proofs' htu name
            "ZEROPAY_LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom"),  # never the shared var/prometheus
        }
        self.log = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def zeropay(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "zeropay"), *args], env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"zeropay {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        command = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "zeropay"), *command, "--workers", str(WORKERS)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_ready(self.proc, self.url, self.log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


# ---- payers -------------------------------------------------------------------------------------


@dataclass
class Payer:
    email: str
    key: DeviceKey = field(default_factory=DeviceKey)
    token: str = ""

    def headers(self, method: str, url: str) -> dict[str, str]:
        """A fresh DPoP proof for this request, with the session when there is one."""
        out = {"DPoP": self.key.proof(method, url, access_token=self.token or None)}
        if self.token:
            out["Authorization"] = f"DPoP {self.token}"
        return out


async def _seed_payers(
    http: httpx.AsyncClient, server: Server, container: Container, count: int, tag: str
) -> list[Payer]:
    """Sign up, bind a device key, sign in with it (a DPoP-bound session), top up."""

    async def one(i: int) -> Payer:
        payer = Payer(email=f"payer{i}-{tag}@bench.example")
        body = {"email": payer.email, "password": PASSWORD}
        url = f"{server.url}/v1/users"
        made = check(await http.post(url, json=body, headers=payer.headers("POST", url)), 201)
        bind_device(container, user_id=made["id"], key=payer.key, now=datetime.now(UTC))
        url = f"{server.url}/v1/sessions"
        signed_in = await http.post(url, json=body, headers=payer.headers("POST", url))
        payer.token = check(signed_in, 201)["token"]
        url = f"{server.url}/v1/wallet/topups"
        topup = {"amount": TOPUP_MINOR, "currency": CURRENCY}
        check(await http.post(url, json=topup, headers=payer.headers("POST", url)), 201)
        return payer

    return await gather_limited(8, [one(i) for i in range(count)])


def _payments(container: Container, merchant_id: str, count: int, amount_minor: int) -> list[str]:
    """The merchant's payment requests, made through the service in this process: untimed, and
    through HTTP on a busy machine they would take as long as the runs themselves."""
    amount = parse_money(amount_minor, CURRENCY)

    def one(i: int) -> str:
        made = payments.create(
            container.ctx,
            merchant_id=merchant_id,
            amount=amount,
            description=f"bench {i}",
            reference=None,
        )
        return made.id

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(count)))


# ---- the load -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run: what each confirmation came to and how long it took."""

    latencies_ms: list[float] = field(default_factory=list)
    steps_ms: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    confirmed_ids: list[str] = field(default_factory=list)

    def step(self, name: str, ms: float) -> None:
        self.steps_ms.setdefault(name, []).append(ms)


async def _post(
    http: httpx.AsyncClient, base: str, payer: Payer, path: str, body: Any = None
) -> tuple[httpx.Response, float]:
    url = base + path
    started = time.perf_counter()
    r = await http.post(url, json=body, headers=payer.headers("POST", url))
    return r, (time.perf_counter() - started) * 1000


def _problem(r: httpx.Response) -> str:
    try:
        return f"{r.status_code} {r.json().get('code') or r.json().get('status', '?')}"
    except ValueError:
        return f"{r.status_code} ?"


async def _exempt(
    http: httpx.AsyncClient, base: str, payer: Payer, payment_id: str, run: Run
) -> None:
    r, ms = await _post(http, base, payer, f"/v1/checkout/{payment_id}/confirm")
    body = r.json() if r.status_code == 200 else {}
    if body.get("status") != "succeeded":
        run.outcomes[_problem(r)] += 1
        return
    run.latencies_ms.append(ms)
    run.outcomes[f"succeeded ({(body.get('authentication') or {}).get('exemption')})"] += 1
    run.confirmed_ids.append(payment_id)


async def _device_signed(
    http: httpx.AsyncClient, base: str, payer: Payer, payment_id: str, run: Run
) -> None:
    r, confirm_ms = await _post(http, base, payer, f"/v1/checkout/{payment_id}/confirm")
    body = r.json() if r.status_code == 200 else {}
    if body.get("status") != "requires_action":
        run.outcomes[f"confirm: {_problem(r)}"] += 1
        return
    flow = body["next_action"]["flow"]
    steps = f"/v1/auth/flows/{flow['id']}/steps"
    signature = transaction_signature(payer.key, flow["transaction"]["canonical"])
    r, key_ms = await _post(
        http, base, payer, steps, {"factor": "device_key", "signature": signature}
    )
    if r.status_code != 200 or r.json()["flow"]["next"] != ["password"]:
        run.outcomes[f"device_key: {_problem(r)}"] += 1
        return
    r, password_ms = await _post(
        http, base, payer, steps, {"factor": "password", "password": PASSWORD}
    )
    paid = r.json().get("payment") if r.status_code == 200 else None
    if not paid or paid.get("status") != "succeeded":
        run.outcomes[f"password: {_problem(r)}"] += 1
        return
    run.latencies_ms.append(confirm_ms + key_ms + password_ms)
    run.step("confirm", confirm_ms)
    run.step("device_key", key_ms)
    run.step("password", password_ms)
    run.outcomes["succeeded (sca)"] += 1
    run.confirmed_ids.append(payment_id)


async def _drive(
    server: Server,
    jobs: list[tuple[Payer, str]],
    concurrency: int,
    path: Any,
) -> tuple[Run, float]:
    """Run every job with ``concurrency`` in flight; the run and its wall seconds."""
    run = Run()
    queue = iter(jobs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def worker() -> None:
            for payer, payment_id in queue:  # the iterator is shared: each job is taken once
                try:
                    await path(http, server.url, payer, payment_id, run)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    run.outcomes[type(exc).__name__] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return run, time.perf_counter() - started


def _jobs(payers: list[Payer], payment_ids: list[str]) -> list[tuple[Payer, str]]:
    """Consecutive jobs go to different payers: one payer's confirmations rarely overlap."""
    return [(payers[i % len(payers)], pid) for i, pid in enumerate(payment_ids)]


class WaitSampler:
    """What the database's busy backends were doing during a timed run, sampled from
    ``pg_stat_activity`` every ``WAIT_SAMPLE_S``: running, or waiting -- on what, in a statement
    on which table. It tells a run held back by one hot row (every transaction queued on the
    same lock) from one held back by CPU or by the disk at COMMIT."""

    QUERY = text(
        "SELECT wait_event_type, wait_event, query FROM pg_stat_activity "
        "WHERE datname = :db AND state = 'active' AND pid <> pg_backend_pid()"
    )
    TABLE = re.compile(r"\b(?:FROM|UPDATE|INTO)\s+\"?(\w+)", re.IGNORECASE)

    def __init__(self, engine: Engine, database: str) -> None:
        self.engine = engine
        self.database = database
        self.seen: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _what(self, wait_type: str | None, wait: str | None, query: str) -> str:
        if wait_type is None:
            return "running"
        table = self.TABLE.search(query or "")
        return f"{wait_type}:{wait}" + (f" ({table.group(1)})" if table else "")

    def _run(self) -> None:
        with self.engine.connect() as c:
            while not self._stop.wait(WAIT_SAMPLE_S):
                rows = c.execute(self.QUERY, {"db": self.database}).all()
                c.rollback()  # pg_stat_activity is a snapshot per transaction: a fresh one
                self.samples += 1
                self.seen.update(self._what(*row) for row in rows)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        busy = sum(self.seen.values())
        return {
            "samples": self.samples,
            "busy_backends_mean": round(busy / self.samples, 2) if self.samples else None,
            "share": {k: round(v / busy, 3) for k, v in self.seen.most_common(4)} if busy else {},
        }


def measure_path(
    server: Server,
    container: Container,
    app: Engine,
    merchant_id: str,
    payers: list[Payer],
    *,
    name: str,
    amount_minor: int,
    count: int,
    warmup: int,
    concurrency: int,
    path: Any,
) -> tuple[dict[str, Any], list[str]]:
    ids = _payments(container, merchant_id, warmup + count, amount_minor)
    warm_ids, timed_ids = ids[:warmup], ids[warmup:]
    _log(f"{name}: {warmup} warm-up, then {count} timed at concurrency {concurrency}")
    warm, _ = asyncio.run(_drive(server, _jobs(payers, warm_ids), concurrency, path))
    cpu0 = _own_cpu_s()
    server0, postgres0 = _server_and_postgres_cpu_s(server.pid, server.database)
    with WaitSampler(app, server.database) as waits:
        run, seconds = asyncio.run(_drive(server, _jobs(payers, timed_ids), concurrency, path))
    client_s = _own_cpu_s() - cpu0
    server1, postgres1 = _server_and_postgres_cpu_s(server.pid, server.database)
    done = len(run.confirmed_ids)
    errors = count - done
    result = {
        "path": name,
        "payments": count,
        "confirmed": done,
        "errors": errors,
        "outcomes": dict(run.outcomes),
        "warmup_errors": warmup - len(warm.confirmed_ids),
        "seconds": round(seconds, 2),
        "confirmed_per_s": round(done / seconds, 1),
        "latency_ms_p50": _pct(run.latencies_ms, 50),
        "latency_ms_p99": _pct(run.latencies_ms, 99),
        "latency_ms_max": _pct(run.latencies_ms, 100),
        "steps_ms_p50": {k: _pct(v, 50) for k, v in run.steps_ms.items()},
        "steps_ms_p99": {k: _pct(v, 99) for k, v in run.steps_ms.items()},
        "concurrency": concurrency,
        "server_cpu_ms_per_confirmation": round((server1 - server0) / done * 1000, 2)
        if done
        else None,
        "postgres_cpu_ms_per_confirmation": round((postgres1 - postgres0) / done * 1000, 2)
        if done
        else None,
        "client_cores_used": round(client_s / seconds, 2),
        "server_cores_used": round((server1 - server0) / seconds, 2),
        "postgres_cores_used": round((postgres1 - postgres0) / seconds, 2),
        "argon2id": {"time_cost": server.argon2[0], "memory_kib": server.argon2[1]},
        "database_backends": waits.summary(),
    }
    return result, timed_ids


def sca_outcomes(engine: Engine, payment_ids: list[str]) -> dict[str, int]:
    """How SCA was decided for these payments, as the server recorded it: exemption (or
    ``sca_required``) and outcome."""
    query = text(
        "SELECT coalesce(exemption, 'sca_required') AS exemption, outcome, count(*) "
        "FROM sca_decisions WHERE payment_id IN :ids GROUP BY 1, 2 ORDER BY 1, 2"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as c:
        rows = c.execute(query, {"ids": payment_ids}).all()
    return {f"{exemption}/{outcome}": int(n) for exemption, outcome, n in rows}


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _pg_admin() -> URL:
    raw = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or DEFAULT_PG
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1))


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def pgbench(target: str) -> dict[str, Any]:
    """TPC-B (pgbench's built-in script) at its default scale: ``pgbench -i`` then
    ``pgbench -T 10 -c 2``."""
    _log(f"pgbench: -i, then TPC-B -T {PGBENCH_SECONDS} -c {PGBENCH_CLIENTS}")
    subprocess.run(["pgbench", "-i", "-q", target], check=True, capture_output=True)
    done = subprocess.run(
        ["pgbench", "-T", str(PGBENCH_SECONDS), "-c", str(PGBENCH_CLIENTS), target],
        check=True,
        capture_output=True,
        text=True,
    )
    tps = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
    if tps is None:
        raise RuntimeError(f"no tps in pgbench output:\n{done.stdout}")
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return {
        "tps": round(float(tps.group(1)), 1),
        "latency_ms_avg": float(latency.group(1)) if latency else None,
        "command": f"pgbench -T {PGBENCH_SECONDS} -c {PGBENCH_CLIENTS} (after pgbench -i)",
    }


# ---- main ---------------------------------------------------------------------------------------


def _label(r: dict[str, Any]) -> str:
    if r["path"] == "exempt":
        return "exempt (low value)"
    cost = (
        "cheap"
        if (r["argon2id"]["time_cost"], r["argon2id"]["memory_kib"]) == ARGON2_CHEAP
        else "production"
    )
    return f"device key + password, {cost} argon2"


def _table(record: dict[str, Any]) -> str:
    env = record["environment"]
    lines = [
        f"payment confirmations, PostgreSQL {env['postgresql']}, real HTTP through zeropay "
        f"serve --workers {WORKERS} (SCA profile default, risk engine off); load from this "
        "process (httpx, asyncio), a fresh DPoP proof on every request"
    ]
    head = (
        f"{'path':<38}{'payments':>9}{'confirmed/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>7}  CPU ms per confirmation: server, PostgreSQL"
    )
    lines += [head, "-" * len(head)]
    for r in record["results"]:
        lines.append(
            f"{_label(r):<38}{r['payments']:>9}{r['confirmed_per_s']:>12}"
            f"{r['latency_ms_p50']!s:>9}{r['latency_ms_p99']!s:>9}{r['errors']:>7}  "
            f"{r['server_cpu_ms_per_confirmation']}, {r['postgres_cpu_ms_per_confirmation']}"
        )
    lines.append(
        "argon2id: cheap = t=1 m=1024 KiB, the tests' setting, NOT production; production = "
        "t=3 m=65536 KiB, the server's default. The device path is three requests (confirm, "
        "device_key step, password step), timed together; per request p50 / p99 ms:"
    )
    for r in record["results"]:
        if r["steps_ms_p50"]:
            steps = ", ".join(
                f"{k} {v} / {r['steps_ms_p99'][k]}" for k, v in r["steps_ms_p50"].items()
            )
            lines.append(f"  {_label(r)}: {steps}")
    lines.append("what the busy PostgreSQL backends of the run were doing (sampled every 0.1 s):")
    for r in record["results"]:
        b = r["database_backends"]
        share = ", ".join(f"{k} {round(v * 100)}%" for k, v in b["share"].items())
        lines.append(f"  {_label(r)}: mean {b['busy_backends_mean']} busy; {share}")
    lines.append("SCA decisions the server recorded for the timed payments:")
    for name, counts in record["sca_decisions"].items():
        lines.append(f"  {name}: {counts}")
    tpcb = record["pgbench_tpcb"]
    lines.append(
        f"pgbench TPC-B, same PostgreSQL server, same run ({tpcb['command']}): {tpcb['tps']} tps;"
        f" confirmed/s per pgbench tps: exempt {record['ratio_exempt_to_pgbench_tps']}, "
        f"device with cheap argon2 {record['ratio_device_to_pgbench_tps']}"
    )
    lines.append(
        f"ledger verify after the runs: {'ok' if record['ledger_verify_ok'] else 'FAILED'}"
    )
    lines.append(
        f"note: the client, {WORKERS} server workers and PostgreSQL share {env['cpu_cores']} CPU "
        f"cores; load average at start {env['load_average_at_start']} (other work on the "
        "machine lowers every figure)"
    )
    return "\n".join(lines)


def run(*, quick: bool, out: Path | None = None) -> int:
    plan = QUICK if quick else FULL
    out = out or (QUICK_OUT if quick else OUT)
    if shutil.which("pgbench") is None:
        print("pgbench is not installed", file=sys.stderr)
        return 2
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    admin_url = _pg_admin()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    run_id = uuid.uuid4().hex[:8]
    app_db, tpcb_db = f"zp_bench_confirm_{run_id}", f"zp_bench_confirm_{run_id}_tpcb"
    results: list[dict[str, Any]] = []
    decisions: dict[str, dict[str, int]] = {}  # per run, as the table labels it
    try:
        with admin.connect() as c:
            pg_version = str(c.execute(text("SHOW server_version")).scalar_one())
            c.execute(text(f'CREATE DATABASE "{app_db}"'))
            c.execute(text(f'CREATE DATABASE "{tpcb_db}"'))
        database_url = _libpq(admin_url.set(database=app_db))
        app = create_engine(admin_url.set(database=app_db))
        with tempfile.TemporaryDirectory(prefix="zp_bench_confirm_") as tmp:
            work = Path(tmp)
            policy = device_key_policy(work)
            server = Server(database_url, work, policy, ARGON2_CHEAP)
            server.zeropay("migrate")
            merchant_id = json.loads(server.zeropay("merchant", "create", "Bench Shop"))[
                "merchant_id"
            ]
            container = build(Settings.from_env(server.env))
            _log(f"PostgreSQL {pg_version}: server with {WORKERS} workers, argon2 t=1 m=1024")
            server.start()
            try:
                t = time.monotonic()
                payers = asyncio.run(_seed(server, container, plan.payers, run_id))
                _log(f"seeded {len(payers)} payers in {time.monotonic() - t:.1f}s")
                exempt, ids = measure_path(
                    server,
                    container,
                    app,
                    merchant_id,
                    payers,
                    name="exempt",
                    amount_minor=EXEMPT_MINOR,
                    count=plan.exempt_payments,
                    warmup=plan.warmup,
                    concurrency=plan.concurrency,
                    path=_exempt,
                )
                results.append(exempt)
                decisions[_label(exempt)] = sca_outcomes(app, ids)
                device, ids = measure_path(
                    server,
                    container,
                    app,
                    merchant_id,
                    payers,
                    name="device key + password",
                    amount_minor=SCA_MINOR,
                    count=plan.device_payments,
                    warmup=plan.warmup,
                    concurrency=plan.concurrency,
                    path=_device_signed,
                )
                results.append(device)
                decisions[_label(device)] = sca_outcomes(app, ids)
            finally:
                server.stop()

            production = Server(database_url, work, policy, ARGON2_PRODUCTION)
            _log("restarting the server with production argon2 (t=3 m=65536)")
            production.start()
            try:
                t = time.monotonic()
                payers = asyncio.run(
                    _seed(production, container, plan.production_payers, run_id + "p")
                )
                _log(f"seeded {len(payers)} payers in {time.monotonic() - t:.1f}s")
                device, ids = measure_path(
                    production,
                    container,
                    app,
                    merchant_id,
                    payers,
                    name="device key + password",
                    amount_minor=SCA_MINOR,
                    count=plan.production_payments,
                    warmup=min(plan.warmup, plan.production_payers),
                    concurrency=plan.production_concurrency,
                    path=_device_signed,
                )
                results.append(device)
                decisions[_label(device)] = sca_outcomes(app, ids)
            except Exception:
                print(log_tail(production.log), file=sys.stderr)
                raise
            finally:
                production.stop()
            verify = subprocess.run(
                [str(BIN / "zeropay"), "ledger", "verify"],
                env=server.env,
                capture_output=True,
                text=True,
            )
            container.engine.dispose()
            app.dispose()
        tpcb = pgbench(_libpq(admin_url.set(database=tpcb_db)))
    finally:
        with admin.connect() as c:
            for name in (app_db, tpcb_db):
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def ratio(r: dict[str, Any]) -> float | None:
        return round(r["confirmed_per_s"] / tpcb["tps"], 4) if tpcb["tps"] else None

    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
        "plan": asdict(plan),
        "results": results,
        "sca_decisions": decisions,
        "pgbench_tpcb": tpcb,
        "ratio_exempt_to_pgbench_tps": ratio(results[0]),
        "ratio_device_to_pgbench_tps": ratio(results[1]),
        "ledger_verify_ok": verify.returncode == 0,
        "environment": {
            "cpu_cores": os.cpu_count(),
            "load_average_at_start": load_before,
            "python": platform.python_version(),
            "postgresql": pg_version,
            "server": f"zeropay serve --workers {WORKERS}, ZEROPAY_SCA_PROFILE=default, "
            "ZEROPAY_RISK=off, tests/policies/password-only.toml + device_key path",
            "load_generator": "this process: httpx AsyncClient, asyncio, a fresh DPoP proof "
            "(ES256) per request; real HTTP through the running server",
        },
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    merge(out, KEY, record)
    print()
    print(_table(record))
    print(f"written to {out} under {KEY!r} ({record['wall_seconds']}s wall)")
    failed = not record["ledger_verify_ok"] or any(
        r["errors"] or r["warmup_errors"] for r in results
    )
    return 1 if failed else 0


async def _seed(server: Server, container: Container, count: int, tag: str) -> list[Payer]:
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        return await _seed_payers(http, server, container, count, tag)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.confirm", description="ZeroPay payment confirmation benchmark"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the harness")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    return run(quick=args.quick, out=args.out)


if __name__ == "__main__":
    raise SystemExit(main())
