"""The vault as production runs it: ``zeropay serve --workers 2`` on PostgreSQL, started sealed,
with a peer secret, driven by key custodians and an operator through the ``zeropay`` CLI.

``vault init`` writes each share sealed to a custodian's X25519 key (made with ``openssl genpkey
-algorithm X25519``) and ``vault custodian-add`` gives each custodian a credential. A custodian
runs ``vault unseal --url --share-file --private-key --token-file`` from an environment that has
neither the database nor the peer secret: the share goes to ``POST /v1/vault/unseal`` on
whichever worker takes the connection, which keeps it in memory and leaves it for the other
worker in the database, sealed to that worker's key and MAC'd under the peer secret. Both
workers then serve; a CLI command that needs the keys, run where the peer secret is, is sent them
by a worker; ``vault seal`` reaches every worker, and a second quorum unseals them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from support.servers import BIN, free_port, scratch_database, sealed_vault_env, zeropay_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SHARES = 5
THRESHOLD = 3
PEER_SECRET = "e2e peer secret: shared by the servers and the CLI"
REQUESTS = 24  # each on a connection of its own, so the kernel deals them to both workers
POLL_TRIES = 100  # x 0.1 s: a worker syncs every second
# A key custodian's machine: no database URL, no peer secret, no other ZeroPay setting.
CUSTODIAN_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": os.environ.get("HOME", "/tmp"),
    "LANG": "C.UTF-8",
}


@dataclass
class Cluster:
    url: str
    env: dict[str, str]
    supervisor: int
    shares: dict[int, Path]  # share index -> its sealed file
    keys: dict[int, Path]  # share index -> its custodian's private key
    tokens: dict[int, Path]  # share index -> its custodian's credential (a file, 0600)
    init_output: str
    unseal_outputs: list[dict[str, Any]]
    waiting: list[Any]  # vault_share_drops when two of the three shares were in
    waiting_peers: dict[str, int]  # peer id -> pid, then
    received_seen: list[int]  # shares_received answered then, each on a new connection

    def zeropay(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "zeropay", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def unseal(
        self, index: int, key: int | None = None, *, token: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Custodian ``index`` sends their share from its file, opened with their private key,
        to the server with their credential, from the custodian's own environment."""
        return self.zeropay(
            "vault",
            "unseal",
            "--url",
            self.url,
            "--share-file",
            str(self.shares[index]),
            "--private-key",
            str(self.keys[key or index]),
            "--token-file",
            str(token or self.tokens[index]),
            env=CUSTODIAN_ENV,
        )

    def received(self, count: int = 12) -> list[int]:
        """``shares_received`` as the public status answers it, each time on a new connection."""
        return [
            int(httpx.get(f"{self.url}/v1/vault/status", timeout=10).json()["shares_received"])
            for _ in range(count)
        ]

    def workers(self) -> set[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.supervisor), "-f", "spawn_main"],
            capture_output=True,
            text=True,
        ).stdout
        return {int(p) for p in out.split()}

    def query(self, sql: str) -> list[Any]:
        """Rows of ``sql`` on the server's database, read the way anyone with access reads it."""
        engine = create_engine(
            self.env["ZEROPAY_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
        )
        try:
            with engine.connect() as c:
                return list(c.execute(text(sql)).all())
        finally:
            engine.dispose()

    def peers(self) -> dict[int, bool]:
        """pid -> sealed, for each process the vault has seen in the last few seconds."""
        rows = self.query(
            "SELECT pid, sealed FROM vault_peers WHERE seen_at > now() - interval '5 seconds'"
        )
        return {r.pid: bool(r.sealed) for r in rows}

    def wait_workers(self, *, sealed: bool) -> dict[int, bool]:
        """Poll until both workers report ``sealed`` (bounded); what was seen last."""
        seen: dict[int, bool] = {}
        for _ in range(POLL_TRIES):
            seen = self.peers()
            workers = self.workers()
            if len(workers) == 2 and all(seen.get(pid) is sealed for pid in workers):
                break
            time.sleep(0.1)
        return seen


def _x25519_pair(folder: Path, name: str) -> tuple[Path, Path]:
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "X25519", "-out", str(private)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
        check=True,
        capture_output=True,
    )
    return private, public


def _sign_ups(url: str, prefix: str, count: int = REQUESTS) -> list[tuple[int, str | None]]:
    """Sign-ups, each over a new connection: (status, problem code) of each."""
    out = []
    for i in range(count):
        r = httpx.post(
            f"{url}/v1/users",
            json={"email": f"{prefix}{i}@example.com", "password": "a long passphrase"},
            timeout=10,
        )
        out.append((r.status_code, r.json().get("code") if r.status_code >= 400 else None))
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys_dir = tmp_path_factory.mktemp("custodians")
    shares_dir = tmp_path_factory.mktemp("shares") / "out"
    pairs = {i: _x25519_pair(keys_dir, f"custodian-{i}") for i in range(1, SHARES + 1)}
    with scratch_database("zp_e2e_vault") as database_url:
        env = {
            **sealed_vault_env(database_url, peer_secret=PEER_SECRET),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prom")),
        }
        with zeropay_server(env, host="127.0.0.1", port=port, url=url, workers=2) as proc:
            cluster = Cluster(url, env, proc.pid, {}, {}, {}, "", [], [], {}, [])
            # Not even initialized: sealed, like any production start.
            assert set(_sign_ups(url, "too.early", 4)) == {(503, "vault_sealed")}
            init = cluster.zeropay(
                "vault",
                "init",
                "--shares",
                str(SHARES),
                "--threshold",
                str(THRESHOLD),
                "--out-dir",
                str(shares_dir),
                *(
                    arg
                    for i in range(1, SHARES + 1)
                    for arg in ("--custodian-key", str(pairs[i][1]))
                ),
            )
            assert init.returncode == 0, init.stderr
            cluster.init_output = init.stdout + init.stderr
            cluster.shares = {i: shares_dir / f"share-{i}.sealed.json" for i in pairs}
            cluster.keys = {i: pairs[i][0] for i in pairs}
            for i in pairs:
                added = cluster.zeropay("vault", "custodian-add", f"custodian-{i}")
                assert added.returncode == 0, added.stderr
                cluster.tokens[i] = _secret_file(keys_dir / f"custodian-{i}.token", added.stdout)
            # The workers announce themselves once the vault exists (their next sync).
            seen = cluster.wait_workers(sealed=True)
            assert [seen.get(pid) for pid in cluster.workers()] == [True, True], seen
            for index in (1, 3, 5):
                if index == 5:  # two of three in: what waits, and what the workers count
                    cluster.waiting = cluster.query(
                        "SELECT peer_id, share_index, sealed_share, seal_epoch, mac "
                        "FROM vault_share_drops"
                    )
                    cluster.waiting_peers = {
                        r.id: r.pid for r in cluster.query("SELECT id, pid FROM vault_peers")
                    }
                    cluster.received_seen = cluster.received()
                done = cluster.unseal(index)
                assert done.returncode == 0, done.stderr
                cluster.unseal_outputs.append(json.loads(done.stdout))
            yield cluster


def _secret_file(path: Path, content: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content.strip() + "\n")
    return path


def test_three_custodians_unseal_both_workers_from_their_sealed_share_files_with_the_cli(
    cluster: Cluster,
) -> None:
    # The custodians held neither the database nor the peer secret.
    assert not any(name.startswith("ZEROPAY_") for name in CUSTODIAN_ENV)
    # Each share went to a file sealed to its custodian's key: no share text is in it.
    assert sorted(p.name for p in cluster.shares[1].parent.iterdir()) == [
        f"share-{i}.sealed.json" for i in range(1, SHARES + 1)
    ]
    for path in [*cluster.shares.values(), *cluster.tokens.values()]:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    for path in cluster.shares.values():
        assert "zeropay-share-v1" not in path.read_text()
    assert "zeropay-share-v1" not in cluster.init_output
    # Each share was taken by the worker that got the connection and counted by the other.
    assert [o["threshold"] for o in cluster.unseal_outputs] == [THRESHOLD] * 3
    assert [o["processes"] for o in cluster.unseal_outputs] == [2] * 3, cluster.unseal_outputs
    assert [o["shares_received"] for o in cluster.unseal_outputs[:2]] == [1, 2]
    assert [o["sealed"] for o in cluster.unseal_outputs] == [True, True, False]
    assert set(cluster.received_seen) == {2}, cluster.received_seen
    # What waited in the database for the quorum: each share once, for the worker that did not
    # take it, MAC'd under the peer secret with the seal epoch.
    workers = cluster.workers()
    waiting = sorted(cluster.waiting, key=lambda w: w.share_index)
    assert [w.share_index for w in waiting] == [1, 3], waiting
    assert {cluster.waiting_peers.get(w.peer_id) for w in waiting} <= workers
    assert {(w.seal_epoch, len(bytes(w.mac))) for w in waiting} == {(0, 32)}
    seen = cluster.wait_workers(sealed=False)
    assert [seen.get(pid) for pid in workers] == [False, False], seen
    assert set(_sign_ups(cluster.url, "after.unseal")) == {(201, None)}
    status = cluster.zeropay("vault", "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["sealed"] is True  # the status command's own process holds no key
    assert (shown["threshold"], shown["shares"], shown["development"]) == (THRESHOLD, SHARES, False)
    unsealed = {p["pid"] for p in shown["processes"] if not p["sealed"]}
    assert workers <= unsealed, shown["processes"]


def test_a_share_file_opened_with_another_custodians_key_is_refused_and_reaches_no_worker(
    cluster: Cluster,
) -> None:
    before = cluster.query("SELECT count(*) AS n FROM vault_share_drops")[0].n
    done = cluster.unseal(2, key=4)
    assert done.returncode != 0
    assert "zeropay-share-v1" not in done.stdout + done.stderr
    assert cluster.query("SELECT count(*) AS n FROM vault_share_drops")[0].n == before


def test_a_custodian_cli_with_a_wrong_credential_exits_non_zero_and_unseals_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.wait_workers(sealed=False)
    assert cluster.zeropay("vault", "seal").returncode == 0
    try:
        seen = cluster.wait_workers(sealed=True)
        assert [seen.get(pid) for pid in cluster.workers()] == [True, True], seen
        real = cluster.tokens[1].read_text().strip()
        wrong = {
            1: "zpc_" + "A" * 43,  # well formed, nobody's
            2: real[:-1] + ("B" if real[-1] != "B" else "C"),  # custodian 1's, one letter off
            3: real.upper(),
        }
        # Three different shares: had any of them counted, the quorum would be met.
        for index, token in wrong.items():
            done = cluster.unseal(index, token=_secret_file(tmp_path / f"{index}.token", token))
            assert done.returncode != 0, done.stdout
            assert json.loads(done.stdout)["code"] == "not_authenticated", done.stdout
        without = cluster.zeropay(
            "vault",
            "unseal",
            "--url",
            cluster.url,
            "--share-file",
            str(cluster.shares[4]),
            "--private-key",
            str(cluster.keys[4]),
            env=CUSTODIAN_ENV,
        )
        assert without.returncode == 2 and "ZEROPAY_CUSTODIAN_TOKEN" in without.stderr
        assert set(cluster.received()) == {0}
        assert set(_sign_ups(cluster.url, "wrong.credential", 8)) == {(503, "vault_sealed")}
        assert cluster.query("SELECT count(*) AS n FROM vault_share_drops")[0].n == 0
    finally:
        for index in (1, 2, 3):
            cluster.unseal(index)
        cluster.wait_workers(sealed=False)


def test_cli_commands_that_need_the_keys_are_sent_them_by_an_unsealed_worker(
    cluster: Cluster,
) -> None:
    cluster.wait_workers(sealed=False)
    assert set(_sign_ups(cluster.url, "before.rotation", 6)) == {(201, None)}
    # Without the peer secret (a custodian's environment with the database added) no worker
    # sends the keys: nothing rotates.
    without_secret = {k: v for k, v in cluster.env.items() if k != "ZEROPAY_VAULT_PEER_SECRET"}
    refused = cluster.zeropay("vault", "rotate", env=without_secret)
    assert refused.returncode != 0 and "ZEROPAY_VAULT_PEER_SECRET" in refused.stderr
    assert cluster.query("SELECT generation FROM vault_meta")[0].generation == 1
    by_peer = (
        "SELECT actor FROM audit_log WHERE event = 'vault.unsealed' AND actor LIKE 'peer:%' "
        "ORDER BY seq"
    )
    sent_before = len(cluster.query(by_peer))
    rotated = cluster.zeropay("vault", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "key version 2" in rotated.stdout
    rewrapped = cluster.zeropay("vault", "rewrap", "--batch", "7")
    assert rewrapped.returncode == 0, rewrapped.stderr
    report = json.loads(rewrapped.stdout)
    assert report["rewrapped"] > 0 and report["changed"] == 0, report
    # Each command was sent the key by a worker, and recorded it.
    senders = [r.actor.removeprefix("peer:") for r in cluster.query(by_peer)]
    assert len(senders) == sent_before + 2, senders
    workers = {r.id: r.pid for r in cluster.query("SELECT id, pid FROM vault_peers")}
    assert {workers.get(s) for s in senders[-2:]} <= cluster.workers(), (senders, workers)
    # Every address is now under a version-2 key: read from the key id each ciphertext names,
    # without any key.
    versions = cluster.query(
        "SELECT k.version, count(*) FROM users u JOIN vault_keys k "
        "ON k.id = substring(u.email_ciphertext from 2 for 16) GROUP BY k.version"
    )
    assert [v.version for v in versions] == [2] and versions[0].count > 0, versions
    assert set(_sign_ups(cluster.url, "after.rotation")) == {(201, None)}


def test_vault_seal_reaches_every_worker_and_a_second_quorum_unseals_them_again(
    cluster: Cluster,
) -> None:
    cluster.wait_workers(sealed=False)
    sealed = cluster.zeropay("vault", "seal")
    assert sealed.returncode == 0, sealed.stderr
    answers: set[tuple[int, str | None]] = set()
    for round_ in range(POLL_TRIES // 2):  # bounded: each worker seals at its next sync
        answers = set(_sign_ups(cluster.url, f"sealing{round_}.", 8))
        if answers == {(503, "vault_sealed")}:
            break
        time.sleep(0.2)
    assert answers == {(503, "vault_sealed")}
    assert set(_sign_ups(cluster.url, "while.sealed")) == {(503, "vault_sealed")}
    seen = cluster.wait_workers(sealed=True)
    assert [seen.get(pid) for pid in cluster.workers()] == [True, True], seen
    # The order cleared every mailbox: nothing sent before it can unseal anyone after it.
    assert cluster.query("SELECT count(*) AS n FROM vault_transfers")[0].n == 0

    for index in (2, 4, 5):
        done = cluster.unseal(index)
        assert done.returncode == 0, done.stderr
    seen = cluster.wait_workers(sealed=False)
    assert [seen.get(pid) for pid in cluster.workers()] == [False, False], seen
    # The very addresses refused while sealed: nothing of them was left behind.
    assert set(_sign_ups(cluster.url, "while.sealed")) == {(201, None)}


def test_after_vault_seal_the_status_shows_no_process_unsealed_not_even_a_cli_that_had_the_keys(
    cluster: Cluster,
) -> None:
    """What a custodian reads after sealing in an emergency. A CLI command that was sent the
    keys (``jobs run`` here) has exited; had it left its process listed as unsealed, the
    status would say some process still holds the keys."""
    cluster.wait_workers(sealed=False)
    jobs = cluster.zeropay("jobs", "run")
    assert jobs.returncode == 0, jobs.stderr
    assert cluster.zeropay("vault", "seal").returncode == 0
    try:
        seen = cluster.wait_workers(sealed=True)
        assert [seen.get(pid) for pid in cluster.workers()] == [True, True], seen
        shown = json.loads(cluster.zeropay("vault", "status", "--json").stdout)
        still = [p for p in shown["processes"] if not p["sealed"]]
        assert still == [], still
    finally:
        for index in (1, 2, 3):
            cluster.unseal(index)
        cluster.wait_workers(sealed=False)
