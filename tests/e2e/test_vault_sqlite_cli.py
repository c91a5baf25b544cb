"""A key transfer on SQLite: ``zeropay serve`` on a SQLite file, unsealed by two custodians
through ``vault unseal --url``, and ``zeropay vault rotate`` run beside it with the peer secret,
which waits for the server to send it the key. SQLite hands datetimes back without their zone:
the transfer's expiry compared with an aware "now" crashed the command before."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
from sqlalchemy import create_engine, text

from support.servers import BIN, free_port, sealed_vault_env, zeropay_server

pytestmark = pytest.mark.slow

PEER_SECRET = "e2e peer secret: shared by the server and the CLI"
CUSTODIAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def test_vault_rotate_is_sent_the_key_by_an_unsealed_sqlite_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    database = tmp_path_factory.mktemp("sqlite") / "zeropay.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = sealed_vault_env(f"sqlite:///{database}", peer_secret=PEER_SECRET)

    def zeropay(
        *args: str, environment: dict[str, str] = env, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "zeropay", *args],
            env=environment,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with zeropay_server(env, host="127.0.0.1", port=port, url=url):
        init = zeropay("vault", "init", "--shares", "3", "--threshold", "2")
        assert init.returncode == 0, init.stderr
        shares = init.stdout.split()
        answers = []
        for name, share in zip(("ana", "ben"), shares, strict=False):
            added = zeropay("vault", "custodian-add", name)
            assert added.returncode == 0, added.stderr
            done = zeropay(
                "vault",
                "unseal",
                "--url",
                url,
                stdin=share + "\n",
                environment={**CUSTODIAN_ENV, "ZEROPAY_CUSTODIAN_TOKEN": added.stdout.strip()},
            )
            assert done.returncode == 0, done.stdout + done.stderr
            answers.append(json.loads(done.stdout)["sealed"])
        assert answers == [True, False]

        rotated = zeropay("vault", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "key version 2" in rotated.stdout
        engine = create_engine(f"sqlite:///{database}")
        try:
            with engine.connect() as c:
                assert c.execute(text("SELECT generation FROM vault_meta")).scalar_one() == 2
                actors = c.execute(
                    text("SELECT actor FROM audit_log WHERE event = 'vault.unsealed' ORDER BY seq")
                ).scalars()
                # The server, by the custodian who completed the quorum; the command, by it.
                assert [a.split(":")[0] for a in actors] == ["custodian", "peer"]
        finally:
            engine.dispose()
        # The server follows the rotation and serves new data under it.
        r = httpx.post(
            f"{url}/v1/users",
            json={"email": "after.rotation@example.com", "password": "a long passphrase"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
