"""The vault as production runs it: ``zeropay serve --workers 2`` on PostgreSQL, started sealed,
with a peer secret, driven by key custodians through the ``zeropay`` CLI.

``vault init`` writes each share sealed to a custodian's X25519 key (made with ``openssl genpkey
-algorithm X25519``); each custodian runs ``vault unseal --share-file --private-key`` in a process
of their own, which hands the share to every sealed worker through the database. Then both
workers serve; a CLI command that needs the keys is sent them by a worker; ``vault seal`` reaches
every worker, and a second quorum unseals them again.
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

from support.servers import BIN, free_port, scratch_database, zeropay_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PASSWORD_ONLY_POLICY = Path(__file__).parents[1] / "policies" / "password-only.toml"
SHARES = 5
THRESHOLD = 3
PEER_SECRET = "e2e peer secret: shared by the servers and the CLI"
REQUESTS = 24  # each on a connection of its own, so the kernel deals them to both workers
POLL_TRIES = 100  # x 0.1 s: a worker syncs every second


@dataclass
class Cluster:
    url: str
    env: dict[str, str]
    supervisor: int
    shares: dict[int, Path]  # share index -> its sealed file
    keys: dict[int, Path]  # share index -> its custodian's private key
    init_output: str
    unseal_outputs: list[dict[str, Any]]

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

    def unseal(self, index: int, key: int | None = None) -> subprocess.CompletedProcess[str]:
        """Custodian ``index`` submits their share from its file, with their private key."""
        return self.zeropay(
            "vault",
            "unseal",
            "--share-file",
            str(self.shares[index]),
            "--private-key",
            str(self.keys[key or index]),
            "--by",
            f"custodian-{index}",
        )

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
            **os.environ,
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_POLICY_PROFILE": "core",
            "ZEROPAY_AUTH_POLICY": str(PASSWORD_ONLY_POLICY),
            "ZEROPAY_RISK": "off",
            "ZEROPAY_SCA_PROFILE": "off",
            "ZEROPAY_VAULT_PEER_SECRET": PEER_SECRET,
            "ZEROPAY_ARGON2_TIME_COST": "1",
            "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
            "ZEROPAY_LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prom")),
        }
        env.pop("ZEROPAY_VAULT_DEV_FILE", None)  # production: no development vault
        with zeropay_server(env, host="127.0.0.1", port=port, url=url, workers=2) as proc:
            cluster = Cluster(url, env, proc.pid, {}, {}, "", [])
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
            # The workers announce themselves once the vault exists (their next sync).
            seen = cluster.wait_workers(sealed=True)
            assert [seen.get(pid) for pid in cluster.workers()] == [True, True], seen
            for index in (1, 3, 5):
                done = cluster.unseal(index)
                assert done.returncode == 0, done.stderr
                cluster.unseal_outputs.append(json.loads(done.stdout))
            yield cluster


def test_three_custodians_unseal_both_workers_from_their_sealed_share_files_with_the_cli(
    cluster: Cluster,
) -> None:
    # Each share went to a file sealed to its custodian's key: no share text is in it.
    assert sorted(p.name for p in cluster.shares[1].parent.iterdir()) == [
        f"share-{i}.sealed.json" for i in range(1, SHARES + 1)
    ]
    for path in cluster.shares.values():
        assert "zeropay-share-v1" not in path.read_text()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "zeropay-share-v1" not in cluster.init_output
    # Each unseal reached both sealed workers and its own process, and the quorum is 3.
    assert [o["threshold"] for o in cluster.unseal_outputs] == [THRESHOLD] * 3
    assert [o["processes"] for o in cluster.unseal_outputs] == [3] * 3, cluster.unseal_outputs
    assert [o["shares_received"] for o in cluster.unseal_outputs[:2]] == [1, 2]
    seen = cluster.wait_workers(sealed=False)
    workers = cluster.workers()
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
    done = cluster.unseal(2, key=4)
    assert done.returncode != 0
    assert "zeropay-share-v1" not in done.stdout + done.stderr
    without_secret = {k: v for k, v in cluster.env.items() if k != "ZEROPAY_VAULT_PEER_SECRET"}
    refused = cluster.zeropay(
        "vault",
        "unseal",
        "--share-file",
        str(cluster.shares[2]),
        "--private-key",
        str(cluster.keys[2]),
        env=without_secret,
    )
    assert refused.returncode == 2 and "ZEROPAY_VAULT_PEER_SECRET" in refused.stderr


def test_cli_commands_that_need_the_keys_are_sent_them_by_an_unsealed_worker(
    cluster: Cluster,
) -> None:
    cluster.wait_workers(sealed=False)
    assert set(_sign_ups(cluster.url, "before.rotation", 6)) == {(201, None)}
    rotated = cluster.zeropay("vault", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "key version 2" in rotated.stdout
    rewrapped = cluster.zeropay("vault", "rewrap", "--batch", "7")
    assert rewrapped.returncode == 0, rewrapped.stderr
    report = json.loads(rewrapped.stdout)
    assert report["rewrapped"] > 0 and report["changed"] == 0, report
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
