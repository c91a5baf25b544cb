"""``python -m bench --only auth`` (part of ``make bench``): logins per second per core and the
cost of DPoP, measured through HTTP against the real server.

One server worker (``zeropay serve --workers 1``) pinned with ``taskset`` to one CPU, so the
login figures are per core; the load generator (spawned client processes, several threads each)
and PostgreSQL run on the other CPUs, and the client's CPU time is reported so it can be seen not
to be the bottleneck. "Per core" is logins per second of the server process's own CPU time
(from /proc), which stays meaningful when other work shares the machine; PostgreSQL's CPU and
what else ran ("other") are reported beside it. The database is a fresh PostgreSQL database,
dropped afterwards. SQLite is not measured here: seeding through real mail takes ~50 s a backend.

1. Seeding, through the API: each user signs up (password + the emailed code, read from an
   aiosmtpd server in this process; the server's job loop sends mail every 5 s, 50 at a time),
   then either binds a device (device registration: email code + a software passkey made on the
   device, origin ``http://localhost:PORT``, RP ID ``localhost``) or enrolls TOTP (pyotp).
2. Passkey logins: start flow + passkey-options + passkey step, each request with a fresh DPoP
   proof of the bound device's key.
3. Password + TOTP logins: start flow + password step (argon2id at the production parameters)
   + totp step. A TOTP code is accepted once per 30 s step and user, so each user logs in at most
   once per step: there are more TOTP users than logins fit in one step, and a client thread
   that finds all its users used in the current step waits for the next (reported as
   ``totp_starved_s``; it should stay 0).
4. DPoP over HTTP: the server restarted with a policy that does not *require* DPoP, so a
   DPoP-bound session and a bearer session live in the same process; ``GET /v1/me`` with each,
   alternated: latency at concurrency 1, then throughput and server CPU per request.
5. In process: ``device_keys.verify_proof`` (signature + claims + jti insert) next to the session
   lookup every authenticated request does anyway, and argon2id verification alone.

The shipped login policy limits flow starts to 60 per IP and 20 per account per minute; the
benchmark runs the shipped default policy with only those two limits raised (the counters are
still incremented on every flow start) and spreads its client threads over loopback addresses.
Results are merged into ``var/bench.json`` under ``"auth"`` (``--quick``: var/bench-quick.json).
"""

from __future__ import annotations

import hashlib
import multiprocessing
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
import pyotp
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bench.results import merge
from bench.serving import free_port, percentile, wait_ready

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' software passkey and DPoP device key
from support.dpop_client import DeviceKey  # noqa: E402
from support.webauthn_soft import SoftAuthenticator, SoftCredential  # noqa: E402

KEY = "auth"
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent
PASSWORD = "a long bench passphrase"
TOTP_STEP_S = 30
KEYCLOAK_PASSWORD_LOGINS_PER_S_PER_VCPU = 15  # Keycloak's published sizing guide
ARGON2_PRODUCTION = (3, 65536)  # time_cost, memory KiB; parallelism is 1 in the server
ARGON2_OWASP_FLOOR = (2, 19456)  # the cheaper setting, measured alone for comparison
CODE = re.compile(r"code is (\d{4}) (\d{4})")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    passkey_users: int  # users with a bound device and its passkey
    totp_users: int  # users with TOTP; at least logins/s x (warm-up + window) of one step
    client_procs: int
    threads_per_proc: int
    seed_concurrency: int
    passkey_warmup_s: float
    passkey_s: float
    totp_warmup_s: float
    totp_s: float
    dpop_pairs: int  # GET /v1/me at concurrency 1: this many bound and as many bearer
    dpop_window_s: float  # each of the four alternating throughput windows
    micro_n: int  # in-process iterations per measured function
    argon2_n: int


FULL = Plan(
    passkey_users=16,
    totp_users=150,
    client_procs=2,
    threads_per_proc=4,
    seed_concurrency=64,
    passkey_warmup_s=2,
    passkey_s=15,
    totp_warmup_s=1,
    totp_s=20,
    dpop_pairs=1000,
    dpop_window_s=5,
    micro_n=2000,
    argon2_n=20,
)
QUICK = Plan(
    passkey_users=4,
    totp_users=8,
    client_procs=2,
    threads_per_proc=2,
    seed_concurrency=16,
    passkey_warmup_s=0.5,
    passkey_s=2,
    totp_warmup_s=0,
    totp_s=1,
    dpop_pairs=50,
    dpop_window_s=1,
    micro_n=100,
    argon2_n=3,
)


def _log(message: str) -> None:
    print(f"[bench auth {time.strftime('%H:%M:%S')}] {message}", flush=True)


_pct = percentile


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# ---- processes and CPU ---------------------------------------------------------------------------


def _proc_cpu(pid: int) -> tuple[str, float, float]:
    """(command name, user, system CPU seconds) of a process, all its threads (/proc/PID/stat
    fields 2, 14, 15)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw.rsplit(")", 1)[1].split()
    return name, int(fields[11]) / TICK, int(fields[12]) / TICK


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process (the backends serve the benchmark's server)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, user, system = _proc_cpu(int(entry.name))
            except (OSError, ValueError):
                continue
            if name == "postgres":
                out[int(entry.name)] = user + system
    return out


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(parts[:8])
    idle = parts[3] + parts[4]
    return total - idle, total


def _status_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Probe:
    """CPU over one timed window: the server process (user and system), PostgreSQL's processes,
    and the whole machine (what is left after server, PostgreSQL and client is other work)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server0 = _proc_cpu(pid)
        self.postgres0 = _postgres_cpu()
        self.machine0 = _machine_cpu()

    def done(self, seconds: float) -> dict[str, float]:
        _, user1, system1 = _proc_cpu(self.pid)
        user, system = user1 - self.server0[1], system1 - self.server0[2]
        postgres1 = _postgres_cpu()
        postgres = sum(v - self.postgres0.get(pid, 0.0) for pid, v in postgres1.items())
        busy1, total1 = _machine_cpu()
        busy = (busy1 - self.machine0[0]) / max(1, total1 - self.machine0[1])
        return {
            "server_cpu_s": round(user + system, 3),
            "server_cpu_system_fraction": round(system / max(1e-9, user + system), 3),
            "server_cores_used": round((user + system) / seconds, 3),
            "postgres_cpu_s": round(postgres, 3),
            "postgres_cores_used": round(postgres / seconds, 3),
            "machine_busy_fraction": round(busy, 3),
            "machine_busy_cores": round(busy * (os.cpu_count() or 1), 3),
        }


# ---- mail ---------------------------------------------------------------------------------------


class Inbox:
    """A real SMTP server (aiosmtpd) that keeps the codes it receives, per recipient."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self._codes: dict[str, list[str]] = {}
        self._cond = threading.Condition()
        self.messages = 0
        self.last_at = time.monotonic()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content)
        payload = message.get_payload(decode=True)
        found = CODE.search(payload.decode() if isinstance(payload, bytes) else "")
        with self._cond:
            self.messages += 1
            self.last_at = time.monotonic()
            if found:
                for rcpt in envelope.rcpt_tos:
                    self._codes.setdefault(rcpt.lower(), []).append(found.group(1) + found.group(2))
                self._cond.notify_all()
        return "250 OK"

    def code(self, address: str, nth: int, timeout: float = 120) -> str:
        """The ``nth`` code mailed to ``address`` (1-based), waiting for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._codes.get(address, [])) < nth:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no code {nth} for {address} after {timeout}s")
                self._cond.wait(left)
            return self._codes[address][nth - 1]

    def wait_quiet(self, quiet_s: float, timeout: float = 120) -> None:
        """Until no mail came for ``quiet_s``: the server's outbox is empty, its job loop idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.last_at + quiet_s - time.monotonic()
            if left <= 0:
                return
            time.sleep(left)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


# ---- the server ---------------------------------------------------------------------------------


def _policy(*, require_dpop: bool) -> str:
    """The shipped policy with the two per-minute flow limits raised; for the DPoP comparison also
    DPoP not required and a password-only login path (so a bearer session can exist)."""
    shipped = (ROOT / "src/zeropay/policies/default.toml").read_text()
    out = re.sub(
        r"(?m)^login_attempts_per_ip_max = \d+", "login_attempts_per_ip_max = 100000", shipped
    )
    out = re.sub(
        r"(?m)^login_attempts_per_account_max = \d+", "login_attempts_per_account_max = 1000", out
    )
    out = re.sub(r'(?m)^version = "([^"]*)"', r'version = "\1+bench"', out)
    assert "max = 100000" in out and "max = 1000 " in out, "the shipped policy changed"
    if not require_dpop:
        out = out.replace("require_dpop = true", "require_dpop = false")
        out = out.replace("[points.login]\n", "[points.login]\nsingle_factor_allowed = true\n", 1)
        out = out.replace(
            'paths = [\n  ["passkey"],\n  ["password", "totp"],',
            'paths = [\n  ["password"],\n  ["passkey"],\n  ["password", "totp"],',
            1,
        )
        assert "require_dpop = false" in out and '["password"],' in out, "policy edit failed"
    return out


class AuthServer:
    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        policy: Path,
        smtp_port: int,
        cpu: int | None,
        argon2: tuple[int, int] = ARGON2_PRODUCTION,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.origin = f"http://localhost:{self.port}"
        self.cpu = cpu
        self.argon2 = argon2
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_POLICY_PROFILE": "default",
            "ZEROPAY_VAULT_DEV_FILE": str(workdir / "vault-dev.json"),
            "ZEROPAY_ARGON2_TIME_COST": str(argon2[0]),
            "ZEROPAY_ARGON2_MEMORY_KIB": str(argon2[1]),
            "ZEROPAY_AUTH_POLICY": str(policy),
            "ZEROPAY_SMTP_HOST": "127.0.0.1",
            "ZEROPAY_SMTP_PORT": str(smtp_port),
            "ZEROPAY_RP_ID": "localhost",
            "ZEROPAY_RP_ORIGINS": self.origin,
            "ZEROPAY_PUBLIC_ORIGINS": self.url,  # what the load addresses and signs
            "ZEROPAY_LOG_LEVEL": "warning",
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
        command = [
            str(BIN / "zeropay"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        if self.cpu is not None and shutil.which("taskset"):
            command = ["taskset", "-c", str(self.cpu), *command]  # every thread, from the start
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        if self.cpu is not None and not shutil.which("taskset"):
            os.sched_setaffinity(self.proc.pid, {self.cpu})
        assert self.proc is not None
        wait_ready(self.proc, self.url, self.log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid  # with --workers 1 the serving process is the worker itself

    def memory(self) -> dict[str, float | None]:
        return {
            "peak_rss_mb": _status_mb(self.pid, "VmHWM"),
            "rss_mb": _status_mb(self.pid, "VmRSS"),
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


# ---- a device talking to the server -------------------------------------------------------------


def _pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _load_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


class Caller:
    """Requests from one device: a fresh DPoP proof of its key on each, a session if it has one."""

    def __init__(self, http: httpx.Client, base: str, key: DeviceKey) -> None:
        self.http, self.base, self.key = http, base, key

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        proof: bool = True,
    ) -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"{'DPoP' if proof else 'Bearer'} {token}"
        if proof:
            headers["DPoP"] = self.key.proof(method, self.base + path, access_token=token)
        return self.http.request(method, path, json=body, headers=headers)

    def expect(self, status: int, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.call(method, path, body, **kw)
        if r.status_code != status:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None


def _device_key(state: dict[str, Any]) -> DeviceKey:
    key = DeviceKey()
    key.private_key = _load_key(state["key"])
    return key


def _authenticator(state: dict[str, Any], origin: str) -> SoftAuthenticator:
    auth = SoftAuthenticator(rp_id="localhost", origin=origin)
    c = state["cred"]
    auth._credentials = [
        SoftCredential(
            credential_id=c["id"],
            private_key=_load_key(c["key"]),
            user_handle=c["user"],
            sign_count=c["count"],
        )
    ]
    return auth


def _seed_user(
    http: httpx.Client, server: AuthServer, inbox: Inbox, email: str, kind: str
) -> dict[str, Any]:
    """Sign up, prove the address, then bind this device with a passkey or enroll TOTP."""
    key = DeviceKey()
    c = Caller(http, server.url, key)
    flow = c.expect(201, "POST", "/v1/users", {"email": email, "password": PASSWORD})["flow"]
    done = c.expect(
        201,
        "POST",
        f"/v1/auth/flows/{flow['id']}/steps",
        {"factor": "email_otp", "code": inbox.code(email, 1)},
    )
    token = done["token"]
    state: dict[str, Any] = {
        "email": email,
        "key": _pem(key.private_key),
        "cred": None,
        "totp": None,
        "step": 0,
    }
    if kind == "passkey":
        auth = SoftAuthenticator(rp_id="localhost", origin=server.origin)
        flow = c.expect(
            201,
            "POST",
            "/v1/auth/flows",
            {
                "point": "device_registration",
                "email": email,
                "device": {"name": "Bench phone", "platform": "android"},
            },
        )
        path = f"/v1/auth/flows/{flow['id']}"
        c.expect(202, "POST", f"{path}/codes", {"factor": "email_otp"})
        c.expect(
            200, "POST", f"{path}/steps", {"factor": "email_otp", "code": inbox.code(email, 2)}
        )
        options = c.expect(200, "POST", f"{path}/passkey-options")["publicKey"]
        credential = auth.create(options)
        c.expect(201, "POST", f"{path}/steps", {"factor": "passkey", "credential": credential})
        cred = auth._credentials[0]
        state["cred"] = {
            "id": cred.credential_id,
            "key": _pem(cred.private_key),
            "user": cred.user_handle,
            "count": cred.sign_count,
        }
    else:
        made = c.expect(201, "POST", "/v1/me/factors/totp", {}, token=token)
        app = pyotp.TOTP(made["secret"])
        now = time.time()
        c.expect(
            204,
            "POST",
            f"/v1/me/factors/totp/{made['id']}/confirm",
            {"code": app.at(now)},
            token=token,
        )
        state["totp"] = made["secret"]
        state["step"] = int(now) // TOTP_STEP_S  # this step is used: the next login needs a later
    return state


def seed(server: AuthServer, inbox: Inbox, plan: Plan, tag: str) -> dict[str, list[dict[str, Any]]]:
    kinds = ["passkey"] * plan.passkey_users + ["totp"] * plan.totp_users
    limits = httpx.Limits(
        max_connections=plan.seed_concurrency, max_keepalive_connections=plan.seed_concurrency
    )
    with (
        httpx.Client(base_url=server.url, timeout=180, limits=limits) as http,
        ThreadPoolExecutor(plan.seed_concurrency) as pool,
    ):
        futures = [
            pool.submit(_seed_user, http, server, inbox, f"u{i}-{tag}@bench.example", k)
            for i, k in enumerate(kinds)
        ]
        states = [f.result() for f in futures]
    return {
        "passkey": [s for s, k in zip(states, kinds, strict=True) if k == "passkey"],
        "totp": [s for s, k in zip(states, kinds, strict=True) if k == "totp"],
    }


# ---- load: spawned client processes -------------------------------------------------------------


def _passkey_login(c: Caller, auth: SoftAuthenticator, state: dict[str, Any]) -> str:
    r = c.call("POST", "/v1/auth/flows", {"point": "login", "email": state["email"]})
    if r.status_code != 201:
        return f"start {r.status_code}"
    path = f"/v1/auth/flows/{r.json()['id']}"
    r = c.call("POST", f"{path}/passkey-options")
    if r.status_code != 200:
        return f"passkey-options {r.status_code}"
    credential = auth.get(r.json()["publicKey"])
    r = c.call("POST", f"{path}/steps", {"factor": "passkey", "credential": credential})
    ok = r.status_code == 201 and r.json().get("token_type") == "DPoP"
    return "ok" if ok else f"passkey {r.status_code}"


def _totp_login(c: Caller, app: pyotp.TOTP, state: dict[str, Any], now: float) -> str:
    r = c.call("POST", "/v1/auth/flows", {"point": "login", "email": state["email"]})
    if r.status_code != 201:
        return f"start {r.status_code}"
    path = f"/v1/auth/flows/{r.json()['id']}/steps"
    r = c.call("POST", path, {"factor": "password", "password": PASSWORD})
    if r.status_code != 200 or "totp" not in r.json()["flow"]["next"]:
        return f"password {r.status_code}"
    r = c.call("POST", path, {"factor": "totp", "code": app.at(now)})
    return "ok" if r.status_code == 201 else f"totp {r.status_code}"


def _client_thread(
    job: dict[str, Any],
    index: int,
    users: list[dict[str, Any]],
    end_at: float,
    out: list[tuple[float, float, str]],
    starved: list[float],
) -> None:
    """Run logins (or requests) back to back until ``end_at``; the first ones warm up."""
    local = f"127.0.{10 + job['proc']}.{2 + index}"  # spread over loopback addresses
    transport = httpx.HTTPTransport(local_address=local)
    mode = job["mode"]
    with httpx.Client(base_url=job["url"], timeout=60, transport=transport) as http:
        if mode in {"passkey", "totp"}:
            callers = [(Caller(http, job["url"], _device_key(s)), s) for s in users]
            extra: list[Any] = [
                _authenticator(s, job["origin"]) if mode == "passkey" else pyotp.TOTP(s["totp"])
                for s in users
            ]
        else:
            session = job["sessions"][index]
            key = DeviceKey()
            if session["key"] is not None:
                key.private_key = _load_key(session["key"])
        i = 0
        while True:
            now = time.time()
            if now >= end_at:
                break
            if mode == "passkey":
                c, state = callers[i % len(callers)]
                started = time.perf_counter()
                outcome = _passkey_login(c, extra[i % len(callers)], state)
            elif mode == "totp":
                step = int(now) // TOTP_STEP_S
                ready = [j for j in range(len(callers)) if callers[j][1]["step"] < step]
                if not ready:  # every user of this thread logged in during this step
                    wait = (step + 1) * TOTP_STEP_S - now + 0.05
                    starved.append(min(wait, max(0.0, end_at - now)))
                    time.sleep(wait)
                    continue
                j = ready[0]
                c, state = callers[j]
                state["step"] = step
                started = time.perf_counter()
                outcome = _totp_login(c, extra[j], state, now)
            else:
                proof = mode == "me_bound"
                token = session["token"]
                # The proof is made before the clock starts: the latency is the server's.
                headers = {"Authorization": f"{'DPoP' if proof else 'Bearer'} {token}"}
                if proof:
                    headers["DPoP"] = key.proof("GET", job["url"] + "/v1/me", access_token=token)
                started = time.perf_counter()
                r = http.get("/v1/me", headers=headers)
                outcome = "ok" if r.status_code == 200 else f"me {r.status_code}"
            elapsed = time.perf_counter() - started
            out.append((time.time(), elapsed * 1000, outcome))
            i += 1
        if mode == "passkey":
            for (_, state), auth in zip(callers, extra, strict=True):
                state["cred"]["count"] = auth._credentials[0].sign_count


def load_worker(job: dict[str, Any], ready: Any, go: Any, start_at: Any, queue: Any) -> None:
    """One client process: ``threads`` threads, each with its own users, connection and source
    address. Counts only what completes inside [start_at, start_at + seconds]."""
    if job["cpus"]:
        os.sched_setaffinity(0, set(job["cpus"]))
    threads_n = job["threads"]
    users = job["users"]
    shares = [users[t::threads_n] for t in range(threads_n)]
    results: list[list[tuple[float, float, str]]] = [[] for _ in range(threads_n)]
    starved: list[float] = []
    ready.put(job["proc"])
    go.wait()
    t0 = start_at.value
    t1 = t0 + job["seconds"]
    threads = [
        threading.Thread(target=_client_thread, args=(job, t, shares[t], t1, results[t], starved))
        for t in range(threads_n)
    ]
    for t in threads:
        t.start()
    time.sleep(max(0.0, t0 - time.time()))
    cpu0 = _own_cpu_s()
    time.sleep(max(0.0, t1 - time.time()))
    cpu1 = _own_cpu_s()
    for t in threads:
        t.join()
    inside = [r for rs in results for r in rs if t0 <= r[0] <= t1]
    warmup = sum(1 for rs in results for r in rs if r[0] < t0)
    queue.put(
        {
            "proc": job["proc"],
            "results": inside,
            "warmup": warmup,
            "warmup_errors": sum(1 for rs in results for r in rs if r[0] < t0 and r[2] != "ok"),
            "cpu_s": cpu1 - cpu0,
            "starved_s": sum(starved),
            "users": users,
        }
    )


def run_load(
    server: AuthServer,
    plan: Plan,
    mode: str,
    *,
    users: list[dict[str, Any]],
    sessions: list[dict[str, Any]] | None,
    warmup_s: float,
    seconds: float,
    client_cpus: list[int],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    mp = multiprocessing.get_context("spawn")
    ready, queue = mp.Queue(), mp.Queue()
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    threads_total = plan.client_procs * plan.threads_per_proc
    procs = []
    for p in range(plan.client_procs):
        job = {
            "proc": p,
            "mode": mode,
            "url": server.url,
            "origin": server.origin,
            "threads": plan.threads_per_proc,
            "seconds": seconds,
            "cpus": client_cpus,
            "users": users[p :: plan.client_procs],
            "sessions": (sessions or [])[
                p * plan.threads_per_proc : (p + 1) * plan.threads_per_proc
            ],
        }
        procs.append(mp.Process(target=load_worker, args=(job, ready, go, start_at, queue)))
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    start_at.value = time.time() + warmup_s
    go.set()
    time.sleep(max(0.0, start_at.value - time.time()))
    probe = Probe(server.pid)
    time.sleep(max(0.0, start_at.value + seconds - time.time()))
    cpu = probe.done(seconds)
    reports = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    reports.sort(key=lambda r: r["proc"])
    results = [r for rep in reports for r in rep["results"]]
    latencies = [r[1] for r in results if r[2] == "ok"]
    errors: dict[str, int] = {}
    for r in results:
        if r[2] != "ok":
            errors[r[2]] = errors.get(r[2], 0) + 1
    ok = len(latencies)
    client_cpu = sum(rep["cpu_s"] for rep in reports)
    summary = {
        "mode": mode,
        "seconds": seconds,
        "concurrency": threads_total,
        "completed_ok": ok,
        "per_s": round(ok / seconds, 2),
        "per_server_cpu_s": round(ok / cpu["server_cpu_s"], 2) if cpu["server_cpu_s"] else None,
        "server_cpu_ms_each": round(cpu["server_cpu_s"] / ok * 1000, 2) if ok else None,
        "per_server_and_postgres_cpu_s": round(
            ok / (cpu["server_cpu_s"] + cpu["postgres_cpu_s"]), 2
        )
        if cpu["server_cpu_s"]
        else None,
        "latency_ms_p50": _r(_pct(latencies, 50), 2),
        "latency_ms_p99": _r(_pct(latencies, 99), 2),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "warmup_done": sum(rep["warmup"] for rep in reports),
        "warmup_errors": sum(rep["warmup_errors"] for rep in reports),
        **cpu,
        "client_cpu_s": round(client_cpu, 3),
        "client_cores_used": round(client_cpu / seconds, 3),
        "totp_starved_s": round(sum(rep["starved_s"] for rep in reports), 2),
    }
    summary["other_cores_used"] = round(
        cpu["machine_busy_cores"]
        - cpu["server_cores_used"]
        - cpu["postgres_cores_used"]
        - summary["client_cores_used"],
        3,
    )
    return summary, [u for rep in reports for u in rep["users"]]


# ---- DPoP ---------------------------------------------------------------------------------------


def _sessions(
    server: AuthServer, users: list[dict[str, Any]], n: int, bound: bool
) -> list[dict[str, Any]]:
    """``n`` sessions by password login (the DPoP policy allows it): bound to a fresh device key
    when ``bound``, else bearer."""
    out = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i in range(n):
            key = DeviceKey()
            c = Caller(http, server.url, key)
            body = {"email": users[i % len(users)]["email"], "password": PASSWORD}
            done = c.expect(201, "POST", "/v1/sessions", body, proof=bound)
            assert done["token_type"] == ("DPoP" if bound else "Bearer"), done
            out.append({"token": done["token"], "key": _pem(key.private_key) if bound else None})
    return out


def dpop_latency(
    server: AuthServer, bound: dict[str, Any], bearer: dict[str, Any], pairs: int
) -> dict[str, Any]:
    """GET /v1/me at concurrency 1, bound and bearer alternated; proofs made before the clock."""
    key = DeviceKey()
    key.private_key = _load_key(bound["key"])
    url = server.url + "/v1/me"
    times: dict[str, list[float]] = {"bound": [], "bearer": []}
    errors = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(pairs + 50):
            for kind in ("bound", "bearer") if i % 2 else ("bearer", "bound"):
                if kind == "bound":
                    headers = {
                        "Authorization": f"DPoP {bound['token']}",
                        "DPoP": key.proof("GET", url, access_token=bound["token"]),
                    }
                else:
                    headers = {"Authorization": f"Bearer {bearer['token']}"}
                started = time.perf_counter()
                r = http.get("/v1/me", headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                errors += r.status_code != 200
                if i >= 50:  # the first 50 pairs warm up
                    times[kind].append(elapsed)
    out: dict[str, Any] = {"pairs": pairs, "errors": errors}
    for kind, values in times.items():
        out[f"{kind}_ms_p50"] = _r(_pct(values, 50), 3)
        out[f"{kind}_ms_p99"] = _r(_pct(values, 99), 3)
    out["extra_us_p50"] = _r((out["bound_ms_p50"] - out["bearer_ms_p50"]) * 1000, 0)
    out["extra_us_p99"] = _r((out["bound_ms_p99"] - out["bearer_ms_p99"]) * 1000, 0)
    return out


def _timed_us(fn: Any, items: list[Any]) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter_ns()
        fn(item)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def _stats_us(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_us": _r(_pct(values, 50)),
        "p99_us": _r(_pct(values, 99)),
        "mean_us": _r(sum(values) / len(values)) if values else None,
    }


def dpop_micro(env: dict[str, str], base_url: str, bound: dict[str, Any], n: int) -> dict[str, Any]:
    """In this process, on the same database: ``verify_proof`` and its parts, next to the session
    lookup (``accounts.authenticate``) that every authenticated request does with or without a
    proof."""
    from zeropay.bootstrap import build
    from zeropay.config import Settings
    from zeropay.domain.dpop import access_token_hash, verify_dpop_claims
    from zeropay.services import accounts, device_keys

    container = build(Settings.from_env(env))
    ctx = container.ctx
    try:
        token = bound["token"]
        key = DeviceKey()
        key.private_key = _load_key(bound["key"])
        url = base_url + "/v1/me"
        ath = access_token_hash(token)
        window = ctx.policy.dpop_iat_window_s
        for _ in range(50):  # warm the pool, the caches, the first imports
            accounts.authenticate(ctx, token)
        lookup = _timed_us(lambda _: accounts.authenticate(ctx, token), list(range(n)))

        proofs = [key.proof("GET", url, access_token=token) for _ in range(n)]
        for p in proofs[:50]:  # warm up
            device_keys._signature_checked(p)
        signature = _timed_us(device_keys._signature_checked, proofs)
        checked = [device_keys._signature_checked(p) for p in proofs]

        def claims(item: tuple[Any, Any, str]) -> None:
            _, payload, jkt = item
            verify_dpop_claims(
                device_keys._claims(payload, jkt),
                expected_method="GET",
                expected_urls=[url],
                expected_jkt=jkt,
                expected_ath=ath,
                now=ctx.now(),
                window_s=window,
            )

        claim = _timed_us(claims, checked)
        jkt = checked[0][2]
        expires = ctx.now().replace(microsecond=0)

        def insert(_: int) -> None:
            jti = uuid.uuid4().hex
            assert ctx.read(
                lambda uow: uow.replay.first_use(jkt, jti, expires + timedelta(seconds=120))
            )

        jti = _timed_us(insert, list(range(n)))
        fresh = [key.proof("GET", url, access_token=token) for _ in range(n)]
        full = _timed_us(
            lambda p: device_keys.verify_proof(
                ctx, p, method="GET", path="/v1/me", expected_jkt=jkt, expected_ath=ath
            ),
            fresh,
        )
    finally:
        container.engine.dispose()
    return {
        "n": n,
        "session_lookup_baseline": _stats_us(lookup),
        "signature_es256": _stats_us(signature),
        "claims": _stats_us(claim),
        "jti_insert": _stats_us(jti),
        "verify_proof_total": _stats_us(full),
    }


def argon2_alone(n: int, threads: int = 4) -> dict[str, Any]:
    """argon2id verification alone, on the server's core: the ceiling a password login meets.
    Also ``threads`` verifications at once on that one core, as the server's thread pool runs
    them (each pass over 64 MiB evicts the others' memory from the caches)."""
    from argon2 import PasswordHasher, Type

    out: dict[str, Any] = {}
    for label, (t, m) in (("production", ARGON2_PRODUCTION), ("owasp_floor", ARGON2_OWASP_FLOOR)):
        hasher = PasswordHasher(
            time_cost=t, memory_cost=m, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
        )
        encoded = hasher.hash(PASSWORD)
        times = _timed_us(lambda _, h=hasher, e=encoded: h.verify(e, PASSWORD), list(range(n)))
        p50 = _pct(times, 50) or 0
        out[label] = {
            "time_cost": t,
            "memory_kib": m,
            "parallelism": 1,
            "verify_ms_p50": _r(p50 / 1000, 2),
            "verifications_per_s_per_core": _r(1e6 / p50, 1) if p50 else None,
        }
        if label != "production":
            continue
        each = max(1, n // threads)

        def work(h: Any = hasher, e: str = encoded, k: int = each) -> None:
            for _ in range(k):
                h.verify(e, PASSWORD)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        cpu0 = _own_cpu_s()
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        per = (_own_cpu_s() - cpu0) / (each * threads)
        out[f"production_{threads}_threads_one_core"] = {
            "time_cost": t,
            "memory_kib": m,
            "parallelism": 1,
            "threads": threads,
            "verify_cpu_ms": _r(per * 1000, 2),
            "verifications_per_s_per_core": _r(1 / per, 1) if per else None,
        }
    return out


# ---- PostgreSQL ---------------------------------------------------------------------------------


def _pg_admin() -> URL:
    raw = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or DEFAULT_PG
    return make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1))


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# ---- main ---------------------------------------------------------------------------------------


def _cpus() -> tuple[int | None, list[int]]:
    """The server's CPU and the clients' CPUs (everything else)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, cpus
    return cpus[0], cpus[1:]


def _table(record: dict[str, Any]) -> str:
    lines = []
    a = record["argon2_alone"]
    prod = record["argon2id"]
    lines.append(
        f"logins, one server worker pinned to one CPU ({record['backend']}); argon2id "
        f"t={prod['time_cost']} m={prod['memory_kib']} KiB p={prod['parallelism']}"
    )
    head = (
        f"{'login (3 requests)':<19}{'logins/s':>9}{'/srv core':>10}{'/srv+pg':>8}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}  {'cores: srv':>10}{'pg':>6}{'client':>7}"
        f"{'other':>7}  peak RSS MB"
    )
    lines += [head, "-" * len(head)]
    for name, r in (
        ("passkey", record["passkey_login"]),
        ("password+TOTP", record["password_totp_login"]),
    ):
        lines.append(
            f"{name:<19}{r['per_s']:>9}{r['per_server_cpu_s']!s:>10}"
            f"{r['per_server_and_postgres_cpu_s']!s:>8}"
            f"{r['latency_ms_p50']!s:>9}{r['latency_ms_p99']!s:>9}{r['errors']:>7}  "
            f"{r['server_cores_used']:>10}{r['postgres_cores_used']:>6}"
            f"{r['client_cores_used']:>7}{r['other_cores_used']:>7}  "
            f"{r['server_memory']['peak_rss_mb']}"
        )
    lines.append(
        f"{'reference: Keycloak':<19}{'':>9}"
        f"{KEYCLOAK_PASSWORD_LOGINS_PER_S_PER_VCPU:>10}  password logins/s per vCPU "
        "(Keycloak's published sizing; not measured here)"
    )
    for label, x in a.items():
        cost = (
            f"{x['verify_ms_p50']} ms p50"
            if "verify_ms_p50" in x
            else f"{x['verify_cpu_ms']} ms CPU each"
        )
        lines.append(
            f"{'argon2id alone':<19}{'':>9}"
            f"{x['verifications_per_s_per_core']!s:>10}  verifications/s, {label} "
            f"t={x['time_cost']} m={x['memory_kib']} KiB ({cost})"
        )
    d = record["dpop_http"]
    lines.append("")
    lines.append("DPoP over HTTP: GET /v1/me, same server, DPoP-bound vs bearer session")
    lat = d["latency_concurrency_1"]
    lines.append(
        f"  concurrency 1: bound p50 {lat['bound_ms_p50']} ms p99 {lat['bound_ms_p99']} ms"
        f" | bearer p50 {lat['bearer_ms_p50']} ms p99 {lat['bearer_ms_p99']} ms"
        f" | extra p50 {lat['extra_us_p50']} us, p99 {lat['extra_us_p99']} us"
    )
    for kind in ("bound", "bearer"):
        t = d["throughput"][kind]
        lines.append(
            f"  {kind:<7} concurrency {t['concurrency']}: {t['per_s']} req/s, server "
            f"{t['server_us_per_request']} us CPU/request (PostgreSQL "
            f"{t['postgres_us_per_request']} us), p50 {t['latency_ms_p50']} ms"
            f" p99 {t['latency_ms_p99']} ms, errors {t['errors']}, client cores "
            f"{t['client_cores_used']}"
        )
    lines.append(f"  extra server CPU per DPoP request: {d['extra_server_us_per_request']} us")
    m = record["dpop_in_process"]
    lines.append("DPoP in process (verify_proof and its parts; baseline: the session lookup)")
    for name in (
        "session_lookup_baseline",
        "signature_es256",
        "claims",
        "jti_insert",
        "verify_proof_total",
    ):
        s = m[name]
        lines.append(f"  {name:<24} p50 {s['p50_us']!s:>8} us  p99 {s['p99_us']!s:>8} us")
    env = record["environment"]
    lines.append(
        f"note: {env['cpu_cores']} CPUs; server pinned to CPU {env['server_cpu']}, "
        f"clients and PostgreSQL on {env['client_cpus']}; load average at start "
        f"{env['load_average_at_start']}; policy: {env['policy']}"
    )
    return "\n".join(lines)


def run(*, quick: bool, out: Path | None = None) -> int:
    plan = QUICK if quick else FULL
    out = out or (QUICK_OUT if quick else OUT)
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    server_cpu, client_cpus = _cpus()
    own_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(client_cpus))  # this process and its clients keep off the server
    admin_url = _pg_admin()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    run_id = uuid.uuid4().hex[:8]
    db = f"zp_bench_auth_{run_id}"
    record: dict[str, Any] = {}
    inbox = Inbox()
    inbox.start()
    try:
        with admin.connect() as conn:
            pg_version = str(conn.execute(text("SHOW server_version")).scalar_one())
            conn.execute(text(f'CREATE DATABASE "{db}"'))
        database_url = _libpq(admin_url.set(database=db))
        with tempfile.TemporaryDirectory(prefix="zp_bench_auth_") as tmp:
            work = Path(tmp)
            login_policy = work / "login-policy.toml"
            login_policy.write_text(_policy(require_dpop=True))
            dpop_policy = work / "dpop-policy.toml"
            dpop_policy.write_text(_policy(require_dpop=False))
            server = AuthServer(
                database_url, work, policy=login_policy, smtp_port=inbox.port, cpu=server_cpu
            )
            server.zeropay("migrate")
            _log(
                f"PostgreSQL: server pinned to CPU {server_cpu}, argon2id "
                f"t={ARGON2_PRODUCTION[0]} m={ARGON2_PRODUCTION[1]} KiB p=1"
            )
            server.start()
            try:
                t = time.monotonic()
                users = seed(server, inbox, plan, run_id)
                seed_s = round(time.monotonic() - t, 1)
                _log(
                    f"seeded {plan.passkey_users} passkey and {plan.totp_users} TOTP users in "
                    f"{seed_s}s ({inbox.messages} mails received)"
                )
                # The alerts the seeding queued (new device, factor added) go out 50 per 5 s:
                # let the outbox drain so mail delivery does not run inside a timed window.
                inbox.wait_quiet(6.0)
                _log(
                    f"outbox drained ({inbox.messages} mails); passkey logins: {plan.passkey_s}s"
                    f" at concurrency "
                    f"{plan.client_procs * plan.threads_per_proc}"
                )
                passkey, users["passkey"] = run_load(
                    server,
                    plan,
                    "passkey",
                    users=users["passkey"],
                    sessions=None,
                    warmup_s=plan.passkey_warmup_s,
                    seconds=plan.passkey_s,
                    client_cpus=client_cpus,
                )
                passkey["server_memory"] = server.memory()
                # argon2id alone on the server's CPU while the server idles, in the time the
                # TOTP users wait for a step after the one their enrollment spent.
                _log("argon2id verification alone, on the server's CPU")
                if server_cpu is not None:
                    os.sched_setaffinity(0, {server_cpu})
                argon = argon2_alone(plan.argon2_n)
                os.sched_setaffinity(0, set(client_cpus))
                latest = max(u["step"] for u in users["totp"])
                wait = (latest + 1) * TOTP_STEP_S - time.time() + 0.1
                if wait > 0:
                    _log(f"waiting {wait:.1f}s for the next TOTP step")
                    time.sleep(wait)
                _log(f"password+TOTP logins: {plan.totp_s}s")
                totp, users["totp"] = run_load(
                    server,
                    plan,
                    "totp",
                    users=users["totp"],
                    sessions=None,
                    warmup_s=plan.totp_warmup_s,
                    seconds=plan.totp_s,
                    client_cpus=client_cpus,
                )
                totp["server_memory"] = server.memory()
            finally:
                server.stop()

            dpop_server = AuthServer(
                database_url, work, policy=dpop_policy, smtp_port=inbox.port, cpu=server_cpu
            )
            # Each session here is opened from a fresh key: the risk engine would (rightly) ask
            # those "new devices" for more. What is measured is DPoP, so the engine is off.
            dpop_server.env["ZEROPAY_RISK"] = "off"
            _log("DPoP: restarting the server with a policy that allows bearer sessions")
            dpop_server.start()
            try:
                n = plan.client_procs * plan.threads_per_proc
                bound = _sessions(dpop_server, users["totp"], n, bound=True)
                bearer = _sessions(dpop_server, users["totp"], n, bound=False)
                _log(f"DPoP: {plan.dpop_pairs} pairs of GET /v1/me at concurrency 1")
                latency = dpop_latency(dpop_server, bound[0], bearer[0], plan.dpop_pairs)
                windows: dict[str, list[dict[str, Any]]] = {"bound": [], "bearer": []}
                for kind in ("bearer", "bound", "bearer", "bound"):
                    summary, _ = run_load(
                        dpop_server,
                        plan,
                        f"me_{kind}",
                        users=[],
                        sessions=bound if kind == "bound" else bearer,
                        warmup_s=0.5,
                        seconds=plan.dpop_window_s,
                        client_cpus=client_cpus,
                    )
                    windows[kind].append(summary)
                dpop_memory = dpop_server.memory()
            finally:
                dpop_server.stop()
            throughput = {}
            for kind, runs in windows.items():
                ok = sum(r["completed_ok"] for r in runs)
                secs = sum(r["seconds"] for r in runs)
                cpu = sum(r["server_cpu_s"] for r in runs)
                throughput[kind] = {
                    "concurrency": runs[0]["concurrency"],
                    "windows": len(runs),
                    "per_s": round(ok / secs, 1),
                    "server_us_per_request": round(cpu / ok * 1e6, 1) if ok else None,
                    "server_cores_used": round(cpu / secs, 3),
                    "postgres_us_per_request": round(
                        sum(r["postgres_cpu_s"] for r in runs) / ok * 1e6, 1
                    )
                    if ok
                    else None,
                    "latency_ms_p50": runs[-1]["latency_ms_p50"],
                    "latency_ms_p99": runs[-1]["latency_ms_p99"],
                    "errors": sum(r["errors"] for r in runs),
                    "client_cores_used": round(sum(r["client_cpu_s"] for r in runs) / secs, 3),
                }
            extra = None
            if (
                throughput["bound"]["server_us_per_request"]
                and throughput["bearer"]["server_us_per_request"]
            ):
                extra = round(
                    throughput["bound"]["server_us_per_request"]
                    - throughput["bearer"]["server_us_per_request"],
                    1,
                )

            # In process, on the server's (now idle) CPU.
            if server_cpu is not None:
                os.sched_setaffinity(0, {server_cpu})
            _log("DPoP in process")
            micro = dpop_micro(dpop_server.env, dpop_server.url, bound[0], plan.micro_n)
            os.sched_setaffinity(0, set(client_cpus))

        record = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": quick,
            "plan": asdict(plan),
            "backend": "postgresql",
            "argon2id": {
                "time_cost": ARGON2_PRODUCTION[0],
                "memory_kib": ARGON2_PRODUCTION[1],
                "parallelism": 1,
                "hash_len": 32,
                "salt_len": 16,
            },
            "seed_seconds": seed_s,
            "passkey_login": passkey,
            "password_totp_login": totp,
            "reference_keycloak_password_logins_per_s_per_vcpu": (
                KEYCLOAK_PASSWORD_LOGINS_PER_S_PER_VCPU
            ),
            "argon2_alone": argon,
            "dpop_http": {
                "endpoint": "GET /v1/me",
                "latency_concurrency_1": latency,
                "throughput": throughput,
                "extra_server_us_per_request": extra,
                "server_memory": dpop_memory,
            },
            "dpop_in_process": micro,
            "environment": {
                "cpu_cores": os.cpu_count(),
                "server_cpu": server_cpu,
                "client_cpus": client_cpus,
                "server_workers": 1,
                "server_threads": 4,
                "load_average_at_start": load_before,
                "python": platform.python_version(),
                "postgresql": pg_version,
                "policy": "shipped default.toml with login_attempts_per_ip_max and "
                "login_attempts_per_account_max raised to 100000 and 1000 a minute "
                "(their maxima); for the DPoP comparison also require_dpop = false "
                "and a password-only login path",
                "load_generator": f"{plan.client_procs} spawned processes x "
                f"{plan.threads_per_proc} threads, httpx, one loopback address "
                "per thread",
                "policy_sha256": hashlib.sha256(_policy(require_dpop=True).encode()).hexdigest(),
            },
            "wall_seconds": round(time.monotonic() - started, 1),
        }
    finally:
        inbox.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        os.sched_setaffinity(0, own_affinity)

    merge(out, KEY, record)
    print()
    print(_table(record))
    print(f"written to {out} under {KEY!r} ({record['wall_seconds']}s wall)")
    failed = (
        passkey["errors"]
        or totp["errors"]
        or passkey["warmup_errors"]
        or totp["warmup_errors"]
        or latency["errors"]
        or any(t["errors"] for t in throughput.values())
    )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m bench.auth", description="ZeroPay authentication benchmark"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the harness")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    return run(quick=args.quick, out=args.out)


if __name__ == "__main__":
    raise SystemExit(main())
