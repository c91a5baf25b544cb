"""One TOTP code, sent twice at once to two worker processes of the real server, is accepted once.

The server runs as in production: ``zeropay serve`` with two worker processes on PostgreSQL, the
shipped default authentication policy, mail over SMTP to a server this test runs, WebAuthn for
``localhost`` at the server's origin, and every request signed with a DPoP proof at real time.
Each pair of submissions travels over two kept-alive connections that the kernel handed to
different workers (read from /proc: which worker holds the accepted socket), so the replay
record the two processes share is what refuses the second code (RFC 6238 §5.2).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from support.dpop_client import DeviceKey
from support.mfa import CODE, SmtpInbox
from support.servers import free_port, scratch_database, zeropay_server
from support.webauthn_soft import SoftAuthenticator

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
PAIRS_PER_USER = 5  # two users: each login flow start counts against a per-account limit of 20/min
USERS = ("ana@example.com", "bob@example.com")
MAIL_WAIT_S = 20  # the job loop sends mail every 5 s
CONNECTION_TRIES = 40


@dataclass
class Server:
    url: str
    port: int
    pid: int
    inbox: SmtpInbox

    def workers(self) -> set[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid), "-f", "spawn_main"], capture_output=True, text=True
        ).stdout
        return {int(p) for p in out.split()}

    def worker_of(self, client_port: int) -> int | None:
        """The worker process holding the server side of the connection from ``client_port``."""
        local, remote = f":{self.port:04X}", f":{client_port:04X}"
        inodes = set()
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(path).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if f[1].endswith(local) and f[2].endswith(remote) and f[3] == "01":
                    inodes.add(f"socket:[{f[9]}]")
        for pid in self.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
                except OSError:
                    continue
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    inbox = SmtpInbox()
    inbox.start()
    port = free_port()
    url = f"http://localhost:{port}"
    try:
        with scratch_database("zp_e2e_totp") as database_url:
            env = {
                **os.environ,
                "ZEROPAY_DATABASE_URL": database_url,
                "ZEROPAY_VAULT_DEV_FILE": str(tmp_path_factory.mktemp("keys") / "vault-dev.json"),
                "ZEROPAY_ARGON2_TIME_COST": "1",
                "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
                "ZEROPAY_LOG_LEVEL": "warning",
                "ZEROPAY_RP_ID": "localhost",
                "ZEROPAY_RP_ORIGINS": url,
                "ZEROPAY_SMTP_HOST": "127.0.0.1",
                "ZEROPAY_SMTP_PORT": str(inbox.port),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prom")),
            }
            for unset in ("ZEROPAY_POLICY_PROFILE", "ZEROPAY_AUTH_POLICY", "ZEROPAY_JOBS"):
                env.pop(unset, None)  # the shipped defaults, mail job included
            with zeropay_server(env, host="127.0.0.1", port=port, url=url, workers=2) as proc:
                yield Server(url=url, port=port, pid=proc.pid, inbox=inbox)
    finally:
        inbox.stop()


@dataclass
class Phone:
    """A payer's phone talking to the real server: its DPoP key (proofs at real time), its
    platform authenticator for the server's origin, its session token."""

    server: Server
    email: str
    key: DeviceKey = field(default_factory=DeviceKey)
    token: str | None = None
    apps: list[pyotp.TOTP] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authenticator = SoftAuthenticator(rp_id="localhost", origin=self.server.url)

    def call(
        self, http: httpx.Client, method: str, path: str, json: Any = None, *, session: bool = True
    ) -> httpx.Response:
        token = self.token if session else None
        headers = {"DPoP": self.key.proof(method, self.server.url + path, access_token=token)}
        if token is not None:
            headers["Authorization"] = f"DPoP {token}"
        return http.request(method, self.server.url + path, json=json, headers=headers)

    def step(self, http: httpx.Client, flow_id: str, factor: str, **payload: Any) -> httpx.Response:
        return self.call(
            http,
            "POST",
            f"/v1/auth/flows/{flow_id}/steps",
            {"factor": factor, **payload},
            session=False,
        )


def _mail_code(server: Server, email: str, seen: int) -> tuple[str, int]:
    """The code in the first message to ``email`` after the ``seen`` first ones (polled)."""
    deadline = time.monotonic() + MAIL_WAIT_S
    while time.monotonic() < deadline:
        bodies = server.inbox.bodies_to(email)
        for i in range(seen, len(bodies)):
            found = CODE.search(bodies[i][1])
            if found:
                return found.group(1) + found.group(2), i + 1
        time.sleep(0.2)
    raise AssertionError(f"no code reached {email} within {MAIL_WAIT_S} s")


def _ok(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json() if r.content else {}


def _set_up(server: Server, email: str) -> Phone:
    """Sign up, bind the phone (email code + passkey), sign in with two factors on it."""
    phone = Phone(server, email)
    with httpx.Client(timeout=30) as http:
        flow = _ok(
            phone.call(
                http, "POST", "/v1/users", {"email": email, "password": PASSWORD}, session=False
            ),
            201,
        )["flow"]
        code, seen = _mail_code(server, email, 0)
        phone.token = _ok(phone.step(http, flow["id"], "email_otp", code=code), 201)["token"]
        flow = _ok(
            phone.call(
                http,
                "POST",
                "/v1/auth/flows",
                {
                    "point": "device_registration",
                    "email": email,
                    "device": {"name": "Pixel 9", "platform": "android"},
                },
                session=False,
            ),
            201,
        )
        _ok(
            phone.call(
                http,
                "POST",
                f"/v1/auth/flows/{flow['id']}/codes",
                {"factor": "email_otp"},
                session=False,
            ),
            202,
        )
        code, _ = _mail_code(server, email, seen)
        _ok(phone.step(http, flow["id"], "email_otp", code=code), 200)
        options = _ok(
            phone.call(http, "POST", f"/v1/auth/flows/{flow['id']}/passkey-options", session=False),
            200,
        )["publicKey"]
        credential = phone.authenticator.create(options)
        done = _ok(phone.step(http, flow["id"], "passkey", credential=credential), 201)
        assert done["session"]["device_bound"], done
        phone.token = done["token"]
    return phone


def _new_app(phone: Phone, http: httpx.Client) -> tuple[pyotp.TOTP, int]:
    """Enroll and confirm an authenticator app; the step its confirmation used up."""
    made = _ok(phone.call(http, "POST", "/v1/me/factors/totp", {}), 201)
    app = pyotp.TOTP(made["secret"])
    step = int(time.time()) // 30
    _ok(
        phone.call(
            http,
            "POST",
            f"/v1/me/factors/totp/{made['id']}/confirm",
            {"code": app.generate_otp(step)},
        ),
        204,
    )
    phone.apps.append(app)
    return app, step


def _password_done(phone: Phone, http: httpx.Client) -> str:
    flow = _ok(
        phone.call(
            http, "POST", "/v1/auth/flows", {"point": "login", "email": phone.email}, session=False
        ),
        201,
    )
    after = _ok(phone.step(http, flow["id"], "password", password=PASSWORD), 200)
    assert "totp" in after["flow"]["next"], after
    return str(flow["id"])


def _pinned(server: Server) -> tuple[httpx.Client, int]:
    """A client whose one kept-alive connection is served by a known worker."""
    http = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=1))
    r = http.get(server.url + "/readyz")
    assert r.status_code == 200, r.text
    port = r.extensions["network_stream"].get_extra_info("client_addr")[1]
    pid = server.worker_of(port)
    assert pid is not None, "the worker serving a connection could not be found in /proc"
    return http, pid


def _two_workers(server: Server) -> tuple[tuple[httpx.Client, int], tuple[httpx.Client, int]]:
    first = _pinned(server)
    for _ in range(CONNECTION_TRIES):
        second = _pinned(server)
        if second[1] != first[1]:
            return first, second
        second[0].close()
    first[0].close()
    raise AssertionError(f"{CONNECTION_TRIES} connections all went to worker {first[1]}")


def _at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(go, calls))


def test_one_totp_code_sent_to_two_workers_at_once_is_accepted_exactly_once(server):
    started = time.monotonic()
    assert len(server.workers()) == 2
    with ThreadPoolExecutor(max_workers=len(USERS)) as pool:
        phones = list(pool.map(lambda e: _set_up(server, e), USERS))
    outcomes: list[tuple[int, int, tuple[int, int]]] = []
    with httpx.Client(timeout=30) as http:
        for phone in phones:
            for _ in range(PAIRS_PER_USER):
                app, used = _new_app(phone, http)
                flows = [_password_done(phone, http), _password_done(phone, http)]
                code = app.generate_otp(used + 1)  # the next step: within ±1 of the server's
                (a, pid_a), (b, pid_b) = _two_workers(server)
                try:
                    answers = _at_once(
                        [
                            partial(phone.step, a, flows[0], "totp", code=code),
                            partial(phone.step, b, flows[1], "totp", code=code),
                        ]
                    )
                    ports = [
                        r.extensions["network_stream"].get_extra_info("client_addr")[1]
                        for r in answers
                    ]
                    served = (server.worker_of(ports[0]), server.worker_of(ports[1]))
                finally:
                    a.close()
                    b.close()
                assert served == (pid_a, pid_b)  # still the connections pinned above
                statuses = sorted(r.status_code for r in answers)
                assert statuses == [201, 401], [r.text for r in answers]
                loser = next(r for r in answers if r.status_code == 401)
                assert loser.json()["code"] == "authentication_failed", loser.text
                outcomes.append((statuses[0], statuses[1], served))
    assert len(outcomes) == len(USERS) * PAIRS_PER_USER
    assert all(pa != pb for _, _, (pa, pb) in outcomes)
    # Every pair was split across the two workers, and each time exactly one code was accepted.
    assert {p for _, _, pair in outcomes for p in pair} == server.workers()
    assert time.monotonic() - started < 60
