"""The server as it runs in production: two worker processes on PostgreSQL, hit concurrently."""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from support.servers import BIN, free_port, scratch_database, zeropay_server

PASSWORD_ONLY_POLICY = Path(__file__).parents[1] / "policies" / "password-only.toml"
PAYMENTS = 500
AFFORDABLE = 100
PRICE = 300
SAME_KEY_REQUESTS = 50
CLIENT_THREADS = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with scratch_database("zp_e2e") as database_url:
        env = {
            **os.environ,
            "ZEROPAY_DATABASE_URL": database_url,
            "ZEROPAY_POLICY_PROFILE": "core",  # the payments core alone: no step-up on this path
            # and a password alone signs in with a bearer session: this test is about the ledger
            "ZEROPAY_AUTH_POLICY": str(PASSWORD_ONLY_POLICY),
            # 500 confirmations by one payer at once is the burst the risk engine challenges
            # (tests/integration/test_risk_live.py); here the ledger's own rules are under test.
            "ZEROPAY_RISK": "off",
            # Past the low-value limits each would wait for SCA (tests/attacks and
            # tests/integration/test_sca_exemptions.py test that).
            "ZEROPAY_SCA_PROFILE": "off",
            "ZEROPAY_VAULT_DEV_FILE": str(tmp_path_factory.mktemp("keys") / "vault-dev.json"),
            "ZEROPAY_ARGON2_TIME_COST": "1",
            "ZEROPAY_ARGON2_MEMORY_KIB": "1024",
            "ZEROPAY_LOG_LEVEL": "warning",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prom")),
        }
        with zeropay_server(env, host="127.0.0.1", port=port, url=url, workers=2) as proc:
            yield url, env, proc.pid


def _merchant_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [BIN / "zeropay", "merchant", "create", "Load Shop"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    import json

    return str(json.loads(out.stdout)["api_key"])


def _payer(http: httpx.Client, email: str) -> dict[str, str]:
    body = {"email": email, "password": "a long passphrase"}
    assert http.post("/v1/users", json=body).status_code == 201
    token = http.post("/v1/sessions", json=body).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_500_concurrent_confirmations_against_a_wallet_for_100_succeed_exactly_100(server):
    url, env, _ = server
    key = {"Authorization": f"Bearer {_merchant_key(env)}"}
    with httpx.Client(base_url=url, timeout=60) as http:
        payer = _payer(http, "load@example.com")
        for _ in range(3):
            r = http.post(
                "/v1/wallet/topups",
                headers=payer,
                json={"amount": AFFORDABLE * PRICE // 3, "currency": "USD"},
            )
            assert r.status_code == 201, r.text
        ids = []
        for i in range(PAYMENTS):
            r = http.post(
                "/v1/payments",
                headers=key,
                json={"amount": PRICE, "currency": "USD", "description": f"item {i}"},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])

        def confirm(payment_id: str) -> tuple[int, str]:
            r = http.post(f"/v1/checkout/{payment_id}/confirm", headers=payer)
            body = r.json()
            return r.status_code, body.get("code") or body.get("status")

        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            outcomes = Counter(pool.map(confirm, ids))
        assert outcomes == {
            (200, "succeeded"): AFFORDABLE,
            (402, "insufficient_funds"): PAYMENTS - AFFORDABLE,
        }
        balances = http.get("/v1/wallet", headers=payer).json()["balances"]
        assert [(b["currency"], b["available"]) for b in balances] == [("USD", 0)]
    verify = subprocess.run(
        [BIN / "zeropay", "ledger", "verify"], env=env, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout


def test_the_same_idempotency_key_sent_50_times_at_once_makes_one_transfer(server):
    url, env, _ = server
    with httpx.Client(base_url=url, timeout=60) as http:
        payer = _payer(http, "idem@example.com")
        headers = {**payer, "Idempotency-Key": "one-top-up"}

        def top_up(_: int) -> tuple[int, str]:
            r = http.post(
                "/v1/wallet/topups", headers=headers, json={"amount": 1234, "currency": "USD"}
            )
            return r.status_code, r.json().get("code") or r.json()["id"]

        with ThreadPoolExecutor(max_workers=SAME_KEY_REQUESTS) as pool:
            outcomes = Counter(pool.map(top_up, range(SAME_KEY_REQUESTS)))
        created = {k: v for k, v in outcomes.items() if k[0] == 201}
        assert len(created) == 1, outcomes  # every success names the same transfer
        assert set(outcomes) - set(created) <= {(409, "idempotency_request_in_flight")}
        balances = http.get("/v1/wallet", headers=payer).json()["balances"]
        assert balances[0]["available"] == 1234
        user_id = http.get("/v1/me", headers=payer).json()["id"]
    engine = create_engine(
        env["ZEROPAY_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    )
    with engine.connect() as c:
        count = c.execute(
            text(
                "SELECT count(*) FROM ledger_transfers t JOIN ledger_accounts a "
                "ON a.id = t.credit_account_id WHERE t.code = 'topup' AND a.owner_id = :u"
            ),
            {"u": user_id},
        ).scalar_one()
    engine.dispose()
    assert count == 1


def _workers(supervisor_pid: int) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(supervisor_pid), "-f", "spawn_main"], capture_output=True, text=True
    ).stdout
    return {int(p) for p in out.split()}


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(server):
    url, _, supervisor = server
    before = _workers(supervisor)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, 9)
    after: set[int] = set()
    for _ in range(100):  # bounded: 10 s
        after = _workers(supervisor)
        if len(after) == 2 and victim not in after:
            break
        time.sleep(0.1)
    assert len(after) == 2 and victim not in after
    answers = {httpx.get(f"{url}/readyz", timeout=5).status_code for _ in range(20)}
    assert answers == {200}
