"""Real servers for the end-to-end tests: a scratch PostgreSQL database, a free port, and a
``zeropay serve`` process that is migrated for, waited for, and always stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

PG_URL = (
    os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
)
BIN = Path(sys.executable).parent
READY_TRIES = 200  # x 0.1 s: a server that is not up in 20 s has failed
PASSWORD_ONLY_POLICY = Path(__file__).parents[1] / "policies" / "password-only.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one module; its URL, dropped afterwards."""
    admin = create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_URL.rpartition('/')[0]}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def sealed_vault_env(database_url: str, *, peer_secret: str) -> dict[str, str]:
    """A server's environment as production has it for the vault: no development vault file
    (it starts sealed) and the peer secret; the payments core with a password-only policy, no
    risk engine or SCA exemptions, and cheap password hashing, so the tests are about the vault."""
    env = {
        **os.environ,
        "ZEROPAY_DATABASE_URL": database_url,
        "ZEROPAY_POLICY_PROFILE": "core",
        "ZEROPAY_AUTH_POLICY": str(PASSWORD_ONLY_POLICY),
        "ZEROPAY_RISK": "off",
        "ZEROPAY_SCA_PROFILE": "off",
        "ZEROPAY_VAULT_PEER_SECRET": peer_secret,
        "ZEROPAY_ARGON2_TIME_COST": "1",
        "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
        "ZEROPAY_LOG_LEVEL": "warning",
    }
    env.pop("ZEROPAY_VAULT_DEV_FILE", None)
    return env


def wait_ready(url: str) -> None:
    for _ in range(READY_TRIES):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not become ready")


@contextmanager
def zeropay_server(
    env: Mapping[str, str], *, host: str, port: int, url: str, workers: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """``zeropay migrate`` then ``zeropay serve`` with ``env``, ready at ``url``; stopped after."""
    subprocess.run([BIN / "zeropay", "migrate"], env=env, check=True, capture_output=True)
    command = [BIN / "zeropay", "serve", "--host", host, "--port", str(port)]
    proc = subprocess.Popen([*command, "--workers", str(workers)], env=env)
    try:
        wait_ready(url)
        yield proc
    finally:
        stop(proc)
