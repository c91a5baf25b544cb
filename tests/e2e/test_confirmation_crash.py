"""Crash safety of payment confirmation: the server is killed with SIGKILL -- the supervisor and
both workers at once, no shutdown of any kind -- while 200 confirmations are in flight, some
exempt and some SCA ones between the steps of their confirmation flow. After a restart:

- ``zeropay ledger verify`` passes, and so does the audit log's hash chain;
- every hold still pending belongs to a payment that is waiting on it (requires_action with
  its confirmation flow active and unexpired, authorized, or in review), and every payment in
  requires_action has exactly that hold: no hold is left without its flow, no flow without
  its hold;
- every succeeded payment has its money moved once and exactly one ``payment.succeeded`` event
  in the outbox, and no other payment has one; every confirmation the client was told had
  succeeded is succeeded;
- the restarted server carries on: a payment stuck in requires_action answers with its running
  flow (no second hold), which its payer then completes, and a new payment goes through;
- delivered to a real receiver until nothing is due, every event in the outbox arrived at least
  once under one stable id (same body, valid signature), and after de-duplication by id there
  is exactly one ``payment.succeeded`` per succeeded payment and none for any other.

The server runs as in production (``zeropay serve --workers 2`` on PostgreSQL, SCA exemptions
on with the shipped default profile), with the risk engine off: 200 confirmations from 20 payers
within seconds is the burst it exists to challenge, and what is under test here is what a crash
leaves behind. Its job loop is off too, and webhooks are delivered after the restart by the
delivery worker in this process: a delivery a killed server had leased would wait out its
60-second lease (``bounds.WEBHOOK_LEASE_S``) before another worker may take it, longer than this
test should run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from support.confirming import bind_device, device_key_policy, transaction_signature
from support.dpop_client import DeviceKey
from support.servers import BIN, free_port, scratch_database, wait_ready
from support.webhook_receiver import Receiver
from zeropay.bootstrap import Container, build
from zeropay.config import Settings
from zeropay.services import audit, webhooks

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PASSWORD = "a long passphrase"
PAYERS = 20
EXEMPT = 100  # USD 1.00 each: 5 a payer, far under the USD 100 cumulative limit
SCA = 100  # USD 31.00 each: above the USD 30 ceiling, so each asks for SCA
EXEMPT_MINOR, SCA_MINOR = 100, 3100
TOPUP_MINOR = 50_000
SEED_THREADS = 8
KILL_AFTER_FINISHED = 60  # of the 200: the rest are in flight, queued or not yet sent
KILL_DEADLINE_S = 30
GROUP_GONE_WAIT_S = 10
DELIVERY_ROUNDS_MAX = 40  # each makes at most bounds.WEBHOOK_DELIVERY_BATCH attempts
HELD = ("requires_action", "authorized", "in_review")


# ---- the server ---------------------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (a zombie waiting to be reaped has
    already let go of its sockets and database connections)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class Server:
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [str(BIN / "zeropay"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        # Its own process group: the supervisor and its spawned workers are killed together.
        self.proc = subprocess.Popen(
            [*command, "--workers", "2"], env=self.env, start_new_session=True
        )
        wait_ready(self.url)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + GROUP_GONE_WAIT_S
        while _group_alive(self.proc.pid):
            assert time.monotonic() < deadline, "a process of the killed server lives on"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the supervisor stops its workers
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _zeropay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "zeropay", *args], env=env, capture_output=True, text=True)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[Server, Container, Engine]]:
    with scratch_database("zp_crash") as database_url:
        port = free_port()
        env = {
            **os.environ,
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_AUTH_POLICY": str(device_key_policy(tmp_path)),
            "ZEROPAY_SCA_PROFILE": "default",
            "ZEROPAY_RISK": "off",
            "ZEROPAY_JOBS": "off",
            "ZEROPAY_WEBHOOK_ALLOW_LOCAL": "1",  # the receiver is on this machine, over http
            "ZEROPAY_PUBLIC_ORIGINS": f"http://127.0.0.1:{port}",
            "ZEROPAY_VAULT_DEV_FILE": str(tmp_path / "vault-dev.json"),
            "ZEROPAY_ARGON2_TIME_COST": "1",
            "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
            "ZEROPAY_LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        }
        migrated = _zeropay(env, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        server = Server(env, port)
        container = build(Settings.from_env(env))
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            yield server, container, engine
        finally:
            server.stop()
            engine.dispose()
            container.engine.dispose()


# ---- payers and their confirmations ------------------------------------------------------------


@dataclass
class Payer:
    email: str
    key: DeviceKey = field(default_factory=DeviceKey)
    token: str = ""

    def post(self, http: httpx.Client, path: str, body: Any = None) -> httpx.Response:
        """A request from the payer's device: a fresh DPoP proof, and the session if any."""
        url = f"{http.base_url}".rstrip("/") + path
        headers = {"DPoP": self.key.proof("POST", url, access_token=self.token or None)}
        if self.token:
            headers["Authorization"] = f"DPoP {self.token}"
        return http.post(path, json=body, headers=headers)


@dataclass
class Job:
    payer: Payer
    payment_id: str
    sca: bool
    seen: str = "no answer yet"  # the last answer the client had
    lost: str | None = None  # the error that ended it, when the server died under it


def _seed(server: Server, container: Container, http: httpx.Client) -> tuple[str, list[Payer]]:
    made = _zeropay(server.env, "merchant", "create", "Crash Shop")
    assert made.returncode == 0, made.stderr
    merchant_key = json.loads(made.stdout)["api_key"]

    def payer(i: int) -> Payer:
        made = Payer(f"payer{i}@example.com")
        body = {"email": made.email, "password": PASSWORD}
        r = made.post(http, "/v1/users", body)
        assert r.status_code == 201, r.text
        bind_device(container, user_id=r.json()["id"], key=made.key, now=datetime.now(UTC))
        r = made.post(http, "/v1/sessions", body)
        assert r.status_code == 201, r.text
        made.token = r.json()["token"]
        r = made.post(http, "/v1/wallet/topups", {"amount": TOPUP_MINOR, "currency": "USD"})
        assert r.status_code == 201, r.text
        return made

    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        return merchant_key, list(pool.map(payer, range(PAYERS)))


def _payment(http: httpx.Client, merchant_key: str, amount_minor: int) -> str:
    r = http.post(
        "/v1/payments",
        headers={"Authorization": f"Bearer {merchant_key}"},
        json={"amount": amount_minor, "currency": "USD", "description": "crash"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _confirm(http: httpx.Client, job: Job) -> None:
    """The payer's side of one confirmation: confirm; when SCA is asked, sign the transaction
    with the device key, then give the password. Stops at the first refusal or lost answer."""
    r = job.payer.post(http, f"/v1/checkout/{job.payment_id}/confirm")
    body = r.json() if r.status_code == 200 else {}
    job.seen = str(body.get("status") or f"confirm {r.status_code}")
    if job.seen != "requires_action":
        return
    flow = body["next_action"]["flow"]
    steps = f"/v1/auth/flows/{flow['id']}/steps"
    signature = transaction_signature(job.payer.key, flow["transaction"]["canonical"])
    r = job.payer.post(http, steps, {"factor": "device_key", "signature": signature})
    job.seen = "device_key passed" if r.status_code == 200 else f"device_key {r.status_code}"
    if r.status_code != 200:
        return
    r = job.payer.post(http, steps, {"factor": "password", "password": PASSWORD})
    paid = r.json().get("payment") if r.status_code == 200 else None
    job.seen = str(paid["status"]) if paid else f"password {r.status_code}"


def _run_and_kill(server: Server, jobs: list[Job]) -> dict[str, int]:
    """Every confirmation at once, one thread each; SIGKILL the server once some have finished.
    What the jobs were doing at the kill."""
    go, kill_now = threading.Event(), threading.Event()
    finished = Counter[str]()
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=len(jobs), max_keepalive_connections=len(jobs))
    with httpx.Client(base_url=server.url, timeout=30, limits=limits) as http:

        def one(job: Job) -> None:
            go.wait()
            try:
                _confirm(http, job)
            except httpx.HTTPError as exc:
                job.lost = type(exc).__name__
            finally:
                with lock:
                    finished["all"] += 1
                    if finished["all"] >= KILL_AFTER_FINISHED:
                        kill_now.set()

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(one, job) for job in jobs]
            go.set()
            kill_now.wait(KILL_DEADLINE_S)
            with lock:
                at_kill = Counter(
                    f"{'sca' if j.sca else 'exempt'}: {j.seen}"
                    for j in jobs
                    if j.lost is None and j.seen != "succeeded"
                )
                at_kill["finished"] = finished["all"]
            server.kill()
        for future in futures:
            future.result()  # anything but a lost answer is a failure of its own
    return dict(at_kill)


# ---- what the database holds after the restart --------------------------------------------------


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(text(sql), params).all())


def _hold_id(payment_id: str, hold_seq: int) -> str:
    return f"{payment_id}:hold" if hold_seq <= 1 else f"{payment_id}:hold.{hold_seq}"


def _check_holds_and_flows(engine: Engine) -> None:
    payments = {
        row.id: row
        for row in _rows(engine, "SELECT id, status, hold_seq, amount_minor FROM payments")
    }
    open_holds = _rows(
        engine,
        "SELECT t.id, t.reference FROM ledger_transfers t WHERE t.kind = 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.pending_id = t.id)",
    )
    # The confirmations still waiting on their payer: one flow per payment, active, unexpired,
    # bound to the payment's current hold and terms.
    flows: dict[str, Any] = {}
    for row in _rows(
        engine,
        "SELECT d.payment_id, f.id, f.state, f.expires_at > now() AS unexpired, f.binding "
        "FROM sca_decisions d JOIN auth_flows f ON f.id = d.flow_id "
        "WHERE d.outcome = 'challenged'",
    ):
        payment = payments[row.payment_id]
        binding = json.loads(row.binding)
        assert payment.id not in flows, f"{payment.id} has two open confirmations"
        assert (row.state, row.unexpired) == ("active", True), (payment.id, row.state)
        assert payment.status == "requires_action", (payment.id, payment.status)
        assert binding["payment_id"] == payment.id
        assert binding["hold_seq"] == str(payment.hold_seq)
        assert int(binding["amount_minor"]) == payment.amount_minor
        flows[payment.id] = row
    held_by: dict[str, list[str]] = {}
    for hold in open_holds:
        payment = payments[hold.reference]
        held_by.setdefault(payment.id, []).append(hold.id)
        assert payment.status in HELD, (hold.id, payment.status)
        assert hold.id == _hold_id(payment.id, payment.hold_seq), (hold.id, payment.hold_seq)
        if payment.status == "requires_action":
            assert payment.id in flows, f"the hold of {payment.id} has no confirmation flow"
    for payment in payments.values():
        if payment.status in HELD:
            assert len(held_by.get(payment.id, [])) == 1, (payment.id, payment.status)
        else:
            assert payment.id not in held_by, (payment.id, payment.status)
    moved = Counter(
        row.reference
        for row in _rows(
            engine,
            "SELECT reference FROM ledger_transfers WHERE code = 'payment' "
            "AND kind IN ('posted', 'post_pending')",
        )
    )
    for payment in payments.values():
        expected = 1 if payment.status == "succeeded" else 0
        assert moved[payment.id] == expected, (payment.id, payment.status, moved[payment.id])


def _check_outbox(engine: Engine) -> None:
    succeeded_events = Counter(
        row.payment_id
        for row in _rows(
            engine, "SELECT payment_id FROM payment_events WHERE type = 'payment.succeeded'"
        )
    )
    for row in _rows(engine, "SELECT id, status FROM payments"):
        expected = 1 if row.status == "succeeded" else 0
        assert succeeded_events[row.id] == expected, (row.id, row.status)


# ---- webhooks -----------------------------------------------------------------------------------


def _deliver_until_idle(container: Container, engine: Engine) -> None:
    """The delivery worker (fan-out, then due attempts) until nothing is left to do."""
    for _ in range(DELIVERY_ROUNDS_MAX):
        done = webhooks.run_once(container.ctx, owner="crash-test")
        pending = _rows(
            engine, "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending'"
        )
        if not any(done.values()) and pending[0].n == 0:
            return
    raise AssertionError(f"deliveries still pending after {DELIVERY_ROUNDS_MAX} rounds")


def _signed_by(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


def _check_deliveries(receiver: Receiver, secret: str, engine: Engine) -> None:
    bodies: dict[str, bytes] = {}
    for request in receiver.requests:
        event_id = request.headers["zeropay-event-id"]
        assert _signed_by(secret, request.headers["zeropay-signature"], request.body)
        assert json.loads(request.body)["id"] == event_id
        # A repeat carries the same event under the same id, byte for byte.
        assert bodies.setdefault(event_id, request.body) == request.body, event_id
    outbox = {row.id for row in _rows(engine, "SELECT id FROM payment_events")}
    assert set(bodies) == outbox  # every committed event arrived, and nothing else did
    succeeded = Counter(
        json.loads(body)["data"]["payment"]["id"]
        for body in bodies.values()
        if json.loads(body)["type"] == "payment.succeeded"
    )
    for row in _rows(engine, "SELECT id, status FROM payments"):
        assert succeeded[row.id] == (1 if row.status == "succeeded" else 0), (row.id, row.status)


# ---- the test -----------------------------------------------------------------------------------


def test_a_server_killed_mid_confirmation_leaves_money_holds_flows_and_events_consistent(world):
    server, container, engine = world
    server.start()
    with Receiver() as receiver:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            merchant_key, payers = _seed(server, container, http)
            r = http.post(
                "/v1/webhook-endpoints",
                headers={"Authorization": f"Bearer {merchant_key}"},
                json={"url": receiver.url()},
            )
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]
            # Interleaved, so both kinds are in flight at any moment.
            kinds = [i % 2 == 1 for i in range(EXEMPT + SCA)]
            with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
                ids = pool.map(
                    lambda sca: _payment(http, merchant_key, SCA_MINOR if sca else EXEMPT_MINOR),
                    kinds,
                )
                jobs = [
                    Job(payers[(i // 2) % PAYERS], payment_id, sca)
                    for i, (payment_id, sca) in enumerate(zip(ids, kinds, strict=True))
                ]

        at_kill = _run_and_kill(server, jobs)
        # Until the kill every answer was the expected one: exempt payments went through at
        # once, SCA ones asked for SCA and took both steps.
        expected = {
            False: {"succeeded"},
            True: {"requires_action", "device_key passed", "succeeded"},
        }
        for job in jobs:
            assert job.seen in expected[job.sca] | {"no answer yet"}, job
        # The kill caught confirmations of both kinds unfinished, and SCA ones between steps.
        assert at_kill["finished"] < len(jobs), at_kill
        assert any(k.startswith("exempt: ") for k in at_kill), at_kill
        assert at_kill.get("sca: requires_action", 0) + at_kill.get("sca: device_key passed", 0)
        assert any(j.lost for j in jobs), "no answer was lost to the kill"

        server.start()
        verified = _zeropay(server.env, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout
        assert not audit.verify(container.ctx).breaks  # what `zeropay audit verify` checks
        _check_holds_and_flows(engine)
        _check_outbox(engine)
        db_status = {row.id: row.status for row in _rows(engine, "SELECT id, status FROM payments")}
        for job in jobs:
            if job.seen == "succeeded":  # the client was told: it must have held
                assert db_status[job.payment_id] == "succeeded", job

        with httpx.Client(base_url=server.url, timeout=30) as http:
            # A payment left waiting on its flow (one no answer was being checked for at the
            # kill) answers with that flow, no second hold; and the flow still works.
            waiting = {
                row.payment_id: row.flow_id
                for row in _rows(
                    engine,
                    "SELECT d.payment_id, d.flow_id FROM sca_decisions d "
                    "JOIN auth_flows f ON f.id = d.flow_id WHERE d.outcome = 'challenged' "
                    "AND (f.busy_until IS NULL OR f.busy_until < now())",
                )
            }
            stuck = next(j for j in jobs if j.payment_id in waiting)
            r = stuck.payer.post(http, f"/v1/checkout/{stuck.payment_id}/confirm")
            assert r.status_code == 200 and r.json()["status"] == "requires_action", r.text
            flow = r.json()["next_action"]["flow"]
            assert flow["id"] == waiting[stuck.payment_id]
            steps = f"/v1/auth/flows/{flow['id']}/steps"
            if flow["next"] == ["device_key"]:
                signature = transaction_signature(stuck.payer.key, flow["transaction"]["canonical"])
                r = stuck.payer.post(http, steps, {"factor": "device_key", "signature": signature})
                assert r.status_code == 200, r.text
            r = stuck.payer.post(http, steps, {"factor": "password", "password": PASSWORD})
            assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
            # And the restarted server takes new payments.
            fresh = _payment(http, merchant_key, EXEMPT_MINOR)
            r = payers[0].post(http, f"/v1/checkout/{fresh}/confirm")
            assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        _check_holds_and_flows(engine)
        _check_outbox(engine)

        _deliver_until_idle(container, engine)
        _check_deliveries(receiver, secret, engine)
