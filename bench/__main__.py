"""``python -m bench`` (``make bench``): the payments core measured through HTTP.

For SQLite and for PostgreSQL: start ``zeropay serve --workers 2`` on a fresh database, seed
payers and one merchant, pre-create the payments (outside the timed window), warm up through
httpx, then confirm them with wrk (C, two threads) at a fixed concurrency for a fixed time.
Reported: confirmed payments per second, p50/p99 latency, errors, and the peak RSS (VmHWM) of
each worker process. Then pgbench TPC-B on the same PostgreSQL server in the same run gives a
yardstick: the ratio of confirmed payments per second to pgbench transactions per second.

wrk, the server workers and PostgreSQL all share the machine's cores (wrk takes little of them),
so the figures are a floor for the server, not its ceiling. Needs ``wrk`` (``make bench``
installs the Debian package when it is missing). Results are merged into ``var/bench.json``
under ``"payments_core"``. ``--quick`` runs a tiny version to check the harness works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bench.serving import check, free_port, gather_limited, wait_ready

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")  # a --quick run never overwrites the real figures
KEY = "payments_core"
WORKERS = 2
PASSWORD = "a long passphrase"
PRICE_MINOR = 100  # USD 1.00
TOPUP_MINOR = 60_000  # under the USD 700 single top-up cap and monthly spend limit


@dataclass(frozen=True)
class Plan:
    payers: int
    payments_pg: int
    payments_sqlite: int
    concurrency: int
    seed_concurrency: int
    pgbench_scale: int
    pgbench_clients: int
    pgbench_threads: int
    pgbench_seconds: int
    warmup: int  # confirmations before the timed window: connection pools, caches, first imports
    seconds: int  # the timed window; the payments seeded must outlast it (checked after)


FULL = Plan(
    payers=20,
    payments_pg=10000,
    payments_sqlite=10000,
    concurrency=32,
    seed_concurrency=16,
    pgbench_scale=10,
    pgbench_clients=8,
    pgbench_threads=2,
    pgbench_seconds=20,
    warmup=64,
    seconds=10,
)
QUICK = Plan(
    payers=4,
    payments_pg=1000,
    payments_sqlite=1000,
    concurrency=8,
    seed_concurrency=8,
    pgbench_scale=1,
    pgbench_clients=4,
    pgbench_threads=2,
    pgbench_seconds=3,
    warmup=8,
    seconds=1,
)

# The timed load comes from wrk (Debian package `wrk`, C): a Python client would spend as much
# CPU as the server on this 2-core machine and the figures would measure the client.
WRK_SCRIPT = """
local jobs = {}
for line in io.lines(os.getenv("ZP_BENCH_JOBS")) do
  local pid, token = line:match("(%S+) (%S+)")
  jobs[#jobs + 1] = {pid, token}
end
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) step = tonumber(os.getenv("ZP_BENCH_THREADS")); n = tid end
request = function()
  local job = jobs[(n % #jobs) + 1]
  n = n + step
  return wrk.format("POST", "/v1/checkout/" .. job[1] .. "/confirm",
                    {["Authorization"] = "Bearer " .. job[2]}, "")
end
"""
WRK_THREADS = 2


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- processes ----------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, found by scanning /proc (psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _worker_pids(server_pid: int) -> list[int]:
    """uvicorn's worker processes: spawned children running ``multiprocessing.spawn``, not the
    resource tracker that multiprocessing also starts."""
    kids = _children(server_pid)
    workers = [p for p in kids if "spawn_main" in _cmdline(p)]
    return workers or [p for p in kids if "resource_tracker" not in _cmdline(p)]


class Server:
    def __init__(self, database_url: str, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "prom").mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_POLICY_PROFILE": "core",
            # Payments are measured, not sign-in (bench/auth.py does that): a password alone
            # signs the load's payers in with bearer sessions.
            "ZEROPAY_AUTH_POLICY": str(ROOT / "tests" / "policies" / "password-only.toml"),
            # The payments core alone: its load (every payer paying one merchant many times a
            # second) is what the risk engine exists to challenge. The live decision's own cost
            # is measured by bench/risk_live.py.
            "ZEROPAY_RISK": "off",
            # Likewise SCA exemptions: past the low-value limits every payment would wait for a
            # confirmation flow. bench/confirm.py measures confirmation with SCA on.
            "ZEROPAY_SCA_PROFILE": "off",
            "ZEROPAY_VAULT_DEV_FILE": str(workdir / "vault-dev.json"),
            "ZEROPAY_ARGON2_TIME_COST": "1",
            "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
            "ZEROPAY_LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom"),  # never the shared var/prometheus
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "server.log"

    def zeropay(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "zeropay"), *args], env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"zeropay {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        self.zeropay("migrate")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "zeropay"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(WORKERS),
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert self.proc is not None
        wait_ready(self.proc, self.url, self.log)

    def rss(self) -> dict[str, Any]:
        assert self.proc is not None
        workers = _worker_pids(self.proc.pid)
        return {
            "supervisor_mb": _peak_rss_mb(self.proc.pid),
            "workers_mb": [_peak_rss_mb(p) for p in workers],
        }

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


# ---- load ---------------------------------------------------------------------------------------


async def _seed(
    http: httpx.AsyncClient, merchant_key: str, plan: Plan, payments: int, tag: str
) -> list[tuple[str, dict[str, str]]]:
    async def payer(i: int) -> dict[str, str]:
        body = {"email": f"payer{i}-{tag}@bench.example", "password": PASSWORD}
        check(await http.post("/v1/users", json=body), 201)
        token = check(await http.post("/v1/sessions", json=body), 201)["token"]
        headers = {"Authorization": f"Bearer {token}"}
        check(
            await http.post(
                "/v1/wallet/topups",
                headers=headers,
                json={"amount": TOPUP_MINOR, "currency": "USD"},
            ),
            201,
        )
        return headers

    payers = await gather_limited(plan.seed_concurrency, [payer(i) for i in range(plan.payers)])
    per_payer = -(-payments // plan.payers)
    assert per_payer * PRICE_MINOR <= TOPUP_MINOR, "payers cannot afford the plan"
    merchant = {"Authorization": f"Bearer {merchant_key}"}

    async def payment(i: int) -> str:
        body = {"amount": PRICE_MINOR, "currency": "USD", "description": f"bench {i}"}
        return str(check(await http.post("/v1/payments", headers=merchant, json=body), 201)["id"])

    ids = await gather_limited(plan.seed_concurrency, [payment(i) for i in range(payments)])
    return [(pid, payers[i % plan.payers]) for i, pid in enumerate(ids)]


async def _confirm_all(
    http: httpx.AsyncClient, jobs: list[tuple[str, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], Counter[str]]:
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    queue = iter(jobs)

    async def worker() -> None:
        for payment_id, headers in queue:  # the iterator is shared: each job is taken once
            started = time.perf_counter()
            try:
                r = await http.post(f"/v1/checkout/{payment_id}/confirm", headers=headers)
                ok = r.status_code == 200 and r.json().get("status") == "succeeded"
                outcome = "ok" if ok else f"{r.status_code} {r.json().get('code', '?')}"
            except (httpx.HTTPError, ValueError) as exc:
                outcome = type(exc).__name__
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, outcomes


def _confirmed_count(server: Server) -> int:
    out = server.zeropay("ledger", "verify")
    match = re.search(r"(\d+) transfers", out)
    return int(match.group(1)) if match else 0


def _ms(value: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", value))
    unit = re.search(r"[a-z]+$", value)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit.group(0) if unit else "s"]
    return round(number * scale, 2)


def _wrk(
    url: str, jobs: list[tuple[str, dict[str, str]]], plan: Plan, workdir: Path
) -> dict[str, Any]:
    jobs_file = workdir / "jobs.txt"
    jobs_file.write_text("".join(f"{pid} {h['Authorization'].split()[1]}\n" for pid, h in jobs))
    script = workdir / "confirm.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "ZP_BENCH_JOBS": str(jobs_file), "ZP_BENCH_THREADS": str(WRK_THREADS)}
    out = subprocess.run(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{plan.concurrency}",
            f"-d{plan.seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    maximum = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if total is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    return {
        "requests": int(total.group(1)),
        "seconds": _ms(total.group(2) + total.group(3)) / 1000,
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "max_ms": _ms(maximum.group(1)) if maximum else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(x) for x in socket.groups()) if socket else 0,
    }


def measure(backend: str, database_url: str, workdir: Path, plan: Plan) -> dict[str, Any]:
    payments = plan.payments_pg if backend == "postgresql" else plan.payments_sqlite
    server = Server(database_url, workdir)
    _log(f"{backend}: migrating and starting the server ({WORKERS} workers)")
    server.start()
    try:
        merchant_key = json.loads(server.zeropay("merchant", "create", "Bench Shop"))["api_key"]
        warmup_failures: Counter[str] = Counter()

        async def run() -> tuple[float, list[float], Counter[str]]:
            limits = httpx.Limits(
                max_connections=max(plan.concurrency, plan.seed_concurrency),
                max_keepalive_connections=plan.concurrency,
            )
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
                seeded_at = time.perf_counter()
                jobs = await _seed(
                    http, merchant_key, plan, payments + plan.warmup, uuid.uuid4().hex[:6]
                )
                _log(
                    f"{backend}: seeded {plan.payers} payers and {len(jobs)} payments in "
                    f"{time.perf_counter() - seeded_at:.1f}s; {plan.warmup} warm-up, then "
                    f"{payments} timed at concurrency {plan.concurrency}"
                )
                _, _, warm = await _confirm_all(http, jobs[: plan.warmup], plan.concurrency)
                warmup_failures.update(k for k in warm.elements() if k != "ok")
                return jobs[plan.warmup :]

        timed_jobs = asyncio.run(run())
        before = _confirmed_count(server)
        load = _wrk(server.url, timed_jobs, plan, workdir)
        confirmed = _confirmed_count(server) - before
        rss = server.rss()
        verify = subprocess.run(
            [str(BIN / "zeropay"), "ledger", "verify"],
            env=server.env,
            capture_output=True,
            text=True,
        )
    finally:
        server.stop()
    if load["requests"] >= len(timed_jobs):
        raise RuntimeError("the timed window outran the seeded payments; seed more")
    return {
        "backend": backend,
        "payments": payments,
        "confirmed": confirmed,
        "errors": load["non_2xx"] + load["socket_errors"],
        "error_kinds": {"non_2xx": load["non_2xx"], "socket": load["socket_errors"]},
        "warmup_confirmations": plan.warmup,
        "warmup_errors": sum(warmup_failures.values()),
        "seconds": load["seconds"],
        "payments_per_s": round(confirmed / load["seconds"], 1),
        "latency_ms_p50": load["p50_ms"],
        "latency_ms_p99": load["p99_ms"],
        "latency_ms_max": load["max_ms"],
        "load_generator": f"wrk -t{WRK_THREADS} -c{plan.concurrency} -d{plan.seconds}s",
        "concurrency": plan.concurrency,
        "server_workers": WORKERS,
        "worker_peak_rss_mb": rss["workers_mb"],
        "supervisor_peak_rss_mb": rss["supervisor_mb"],
        "ledger_verify_ok": verify.returncode == 0,
    }


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _pg_admin() -> URL:
    raw = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or DEFAULT_PG
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1))


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def pgbench(url: URL, plan: Plan) -> dict[str, Any]:
    target = _libpq(url)
    _log(f"pgbench: initialising scale {plan.pgbench_scale}")
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(plan.pgbench_scale), target],
        check=True,
        capture_output=True,
    )
    _log(
        f"pgbench: TPC-B -c {plan.pgbench_clients} -j {plan.pgbench_threads} "
        f"-T {plan.pgbench_seconds}"
    )
    done = subprocess.run(
        [
            "pgbench",
            "-c",
            str(plan.pgbench_clients),
            "-j",
            str(plan.pgbench_threads),
            "-T",
            str(plan.pgbench_seconds),
            target,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{done.stdout}")
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return {
        "tps": round(float(match.group(1)), 1),
        "latency_ms_avg": float(latency.group(1)) if latency else None,
        "scale": plan.pgbench_scale,
        "clients": plan.pgbench_clients,
        "threads": plan.pgbench_threads,
        "seconds": plan.pgbench_seconds,
    }


def _server_version(admin: Any) -> str:
    with admin.connect() as c:
        return str(c.execute(text("SHOW server_version")).scalar_one())


# ---- main ---------------------------------------------------------------------------------------


def _table(
    results: list[dict[str, Any]],
    tpcb: dict[str, Any] | None,
    ratio: float | None,
    load_before: list[float],
) -> str:
    head = (
        f"{'backend':<11}{'payments':>9}{'confirmed/s':>13}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}  worker peak RSS MB   ledger"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        rss = ", ".join(f"{m}" for m in r["worker_peak_rss_mb"])
        lines.append(
            f"{r['backend']:<11}{r['payments']:>9}{r['payments_per_s']:>13}"
            f"{r['latency_ms_p50']:>9}{r['latency_ms_p99']:>9}{r['errors']:>8}  "
            f"{rss:<19} {'ok' if r['ledger_verify_ok'] else 'FAILED'}"
        )
    if tpcb is not None:
        lines.append(
            f"pgbench TPC-B (same server, -s {tpcb['scale']} -c {tpcb['clients']} "
            f"-j {tpcb['threads']} -T {tpcb['seconds']}): {tpcb['tps']} tps"
        )
        lines.append(f"ratio confirmed payments/s (PostgreSQL) / pgbench tps = {ratio}")
    lines.append(
        f"note: wrk, {WORKERS} server workers and PostgreSQL share "
        f"{os.cpu_count()} CPU cores on this machine; load average at start "
        f"{load_before[0]}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="ZeroPay payments benchmark"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the harness")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON file (default {OUT}; {QUICK_OUT} with --quick)",
    )
    parser.add_argument(
        "--only",
        choices=["payments", "auth", "risk", "risk-live", "confirm", "vault"],
        default=None,
        help="run one benchmark (default: payments, then auth, risk, risk-live, confirm, vault)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    args.out = args.out or (QUICK_OUT if args.quick else OUT)
    if args.only == "auth":
        from bench import auth

        return auth.run(quick=args.quick, out=args.out)
    if args.only == "risk":
        from bench import risk

        return risk.run(quick=args.quick, out=args.out)
    if args.only == "risk-live":
        from bench import risk_live

        return risk_live.run(quick=args.quick, out=args.out)
    if args.only == "confirm":
        from bench import confirm

        return confirm.run(quick=args.quick, out=args.out)
    if args.only == "vault":
        from bench import vault

        return vault.run(quick=args.quick, out=args.out)
    if shutil.which("pgbench") is None:
        print("pgbench is not installed", file=sys.stderr)
        return 2

    admin_url = _pg_admin()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    run_id = uuid.uuid4().hex[:8]
    app_db, tpcb_db = f"zp_bench_{run_id}", f"zp_bench_{run_id}_tpcb"
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: list[dict[str, Any]] = []
    try:
        pg_version = _server_version(admin)
        with tempfile.TemporaryDirectory(prefix="zp_bench_") as tmp:
            sqlite_dir = Path(tmp) / "sqlite"
            sqlite_dir.mkdir()
            results.append(
                measure("sqlite", f"sqlite:///{sqlite_dir / 'bench.db'}", sqlite_dir, plan)
            )
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{app_db}"'))
                c.execute(text(f'CREATE DATABASE "{tpcb_db}"'))
            pg_dir = Path(tmp) / "pg"
            pg_dir.mkdir()
            results.append(
                measure("postgresql", _libpq(admin_url.set(database=app_db)), pg_dir, plan)
            )
            tpcb = pgbench(admin_url.set(database=tpcb_db), plan)
    finally:
        with admin.connect() as c:
            for name in (app_db, tpcb_db):
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    pg = results[-1]
    ratio = round(pg["payments_per_s"] / tpcb["tps"], 4) if tpcb["tps"] else None
    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "plan": asdict(plan),
        "results": results,
        "pgbench_tpcb": tpcb,
        "ratio_payments_per_s_to_pgbench_tps": ratio,
        "environment": {
            "cpu_cores": os.cpu_count(),
            "load_average_at_start": load_before,  # other work on the machine skews figures
            "python": platform.python_version(),
            "postgresql": pg_version,
            "load_generator": "wrk (C) on the same machine; seeding and warm-up through httpx",
            "note": "wrk, the server workers and PostgreSQL share the same CPU cores",
        },
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(args.out.read_text()) if args.out.exists() else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[KEY] = record
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(data, indent=2) + "\n")
    tmp_out.replace(args.out)

    print()
    print(_table(results, tpcb, ratio, load_before))
    print(f"written to {args.out} under {KEY!r} ({record['wall_seconds']}s wall)")
    failed = any(r["errors"] or r["warmup_errors"] or not r["ledger_verify_ok"] for r in results)
    if args.only is None:
        from bench import auth

        failed = auth.run(quick=args.quick, out=args.out) != 0 or failed
        from bench import risk

        failed = risk.run(quick=args.quick, out=args.out) != 0 or failed
        from bench import risk_live

        failed = risk_live.run(quick=args.quick, out=args.out) != 0 or failed
        from bench import confirm

        failed = confirm.run(quick=args.quick, out=args.out) != 0 or failed
        from bench import vault

        failed = vault.run(quick=args.quick, out=args.out) != 0 or failed
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
