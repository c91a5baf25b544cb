"""``make bench``: confirmed payments per second through HTTP (server with 2 workers) on SQLite
and PostgreSQL, p50/p99 latency, peak RSS per worker, and pgbench TPC-B on the same PostgreSQL
in the same run. Figures go to stdout and to var/bench.json under "payments_core"."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

PG = os.environ.get("ZEROPAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent
PAYMENTS = 2000
CONCURRENCY = 32
PRICE = 100
PAYERS = 20


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def run_server(label: str, database_url: str, workdir: Path) -> dict[str, object]:
    env = {**os.environ, "ZEROPAY_DATABASE_URL": database_url, "ZEROPAY_POLICY_PROFILE": "core",
           "ZEROPAY_KEY_FILE": str(workdir / "keys.json"), "ZEROPAY_LOG_LEVEL": "warning",
           "ZEROPAY_ARGON2_TIME_COST": "1", "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
           "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prom")}
    (workdir / "prom").mkdir(exist_ok=True)
    subprocess.run([BIN / "zeropay", "migrate"], env=env, check=True, capture_output=True)
    key = json.loads(subprocess.run([BIN / "zeropay", "merchant", "create", "Bench"], env=env,
                                    check=True, capture_output=True, text=True).stdout)["api_key"]
    proc = subprocess.Popen([BIN / "zeropay", "serve", "--host", "127.0.0.1", "--port", "8765",
                             "--workers", "2"], env=env)
    url = "http://127.0.0.1:8765"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        merchant = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, timeout=60) as http:
            payers = []
            for i in range(PAYERS):
                body = {"email": f"p{i}@bench.example", "password": "a long passphrase"}
                http.post("/v1/users", json=body)
                token = http.post("/v1/sessions", json=body).json()["token"]
                h = {"Authorization": f"Bearer {token}"}
                http.post("/v1/wallet/topups", headers=h, json={"amount": 60000, "currency": "USD"})
                payers.append(h)
            jobs = []
            for i in range(PAYMENTS):
                r = http.post("/v1/payments", headers=merchant,
                              json={"amount": PRICE, "currency": "USD", "description": "bench"})
                jobs.append((r.json()["id"], payers[i % PAYERS]))
            latencies: list[float] = []
            errors = 0

            def confirm(job: tuple[str, dict[str, str]]) -> None:
                nonlocal errors
                started = time.perf_counter()
                r = http.post(f"/v1/checkout/{job[0]}/confirm", headers=job[1])
                latencies.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    errors += 1

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
                list(pool.map(confirm, jobs))
            elapsed = time.perf_counter() - started
        rss = [round(_rss_mb(p), 1) for p in _children(proc.pid)]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    q = statistics.quantiles(latencies, n=100)
    return {"backend": label, "payments_per_s": round((PAYMENTS - errors) / elapsed, 1),
            "latency_ms_p50": round(q[49], 2), "latency_ms_p99": round(q[98], 2),
            "errors": errors, "worker_rss_mb_peak": rss, "concurrency": CONCURRENCY,
            "payments": PAYMENTS}


def pgbench_tps(dbname: str) -> float:
    base = PG.rsplit("/", 1)[0]
    subprocess.run(["pgbench", "-q", "-i", "-s", "10", f"{base}/{dbname}"], check=True,
                   capture_output=True)
    out = subprocess.run(["pgbench", "-c", "8", "-j", "2", "-T", "15", f"{base}/{dbname}"],
                         check=True, capture_output=True, text=True).stdout
    match = re.search(r"tps = ([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def main() -> int:
    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_dir = Path(tmp) / "sqlite"
        sqlite_dir.mkdir()
        results.append(run_server("sqlite", f"sqlite:///{sqlite_dir}/bench.db", sqlite_dir))
        name = f"zp_bench_{uuid.uuid4().hex[:8]}"
        pg_dir = Path(tmp) / "pg"
        pg_dir.mkdir()
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
            c.execute(text(f'CREATE DATABASE "{name}_tpcb"'))
        try:
            results.append(run_server("postgresql", f"{PG.rsplit('/', 1)[0]}/{name}", pg_dir))
            tps = pgbench_tps(f"{name}_tpcb")
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}_tpcb" WITH (FORCE)'))
    results[1]["pgbench_tpcb_tps"] = tps
    results[1]["ratio_to_pgbench"] = round(float(results[1]["payments_per_s"]) / tps, 3)
    print("backend     payments/s  p50 ms  p99 ms  errors  worker peak RSS MB")
    for r in results:
        print(f"{r['backend']:<11} {r['payments_per_s']:>10} {r['latency_ms_p50']:>7} "
              f"{r['latency_ms_p99']:>7} {r['errors']:>7}  {r['worker_rss_mb_peak']}")
    print(f"pgbench TPC-B (same PostgreSQL, -c 8 -j 2 -T 15): {tps:.1f} tps; "
          f"ratio payments/pgbench = {results[1]['ratio_to_pgbench']}")
    print("note: the load generator shares the machine's 2 cores with the server and database")
    out = Path("var/bench.json")
    out.parent.mkdir(exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["payments_core"] = {"results": results, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                              time.gmtime())}
    out.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
