"""Operations: health, readiness, metrics, OpenAPI and offline docs, logs, CLI, jobs."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text

from zeropay import cli
from zeropay.bootstrap import Container
from zeropay.services import jobs


def test_health_readiness_and_metrics_answer(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}
    api.client.get("/v1/nothing")
    metrics = api.client.get("/metrics").text
    assert 'zeropay_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics


def test_openapi_lists_the_api_and_the_docs_load_nothing_from_outside(api):
    spec = api.client.get("/openapi.json").json()
    assert {"/v1/payments", "/v1/checkout/{payment_id}/confirm", "/v1/wallet/topups"} <= set(
        spec["paths"]
    )
    page = api.client.get("/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/") for a in assets), assets
    assert "cdn" not in page.lower()
    for asset in assets:
        assert api.client.get(asset).status_code == 200


def test_a_request_id_is_echoed_or_made_up(api):
    assert (
        api.client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
        == "abc-123"
    )
    assert len(api.client.get("/healthz").headers["X-Request-Id"]) == 32


def test_no_secret_reaches_the_logs(container, api_for, capsys):
    verbose = Container(
        replace(container.settings, log_level="debug"), container.engine, container.ctx
    )
    api = api_for(verbose)
    capsys.readouterr()
    payer = api.payer("secretive@example.com", usd=900)
    merchant = api.merchant()
    payment = api.payment(merchant)
    api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    api.client.post(
        "/v1/sessions", json={"email": "secretive@example.com", "password": "wrong1234"}
    )
    logged = capsys.readouterr()
    everything = logged.out + logged.err
    assert '"route": "/v1/sessions"' in everything  # the logs did capture the requests
    for secret in (
        "a long passphrase",
        "wrong1234",
        "secretive@example.com",
        payer["Authorization"].split()[1],
        merchant["Authorization"].split()[1],
    ):
        assert secret not in everything


def run_cli(monkeypatch, settings, *argv):
    monkeypatch.setenv("ZEROPAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPAY_VAULT_DEV_FILE", str(settings.vault_dev_file))
    monkeypatch.setenv("ZEROPAY_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("ZEROPAY_ARGON2_MEMORY_KIB", "1024")
    return cli.main(list(argv))


def test_ledger_verify_passes_then_names_a_corrupted_account(
    api, container, settings, monkeypatch, capsys
):
    api.payer(usd=900)
    assert run_cli(monkeypatch, settings, "ledger", "verify") == 0
    assert "ledger ok" in capsys.readouterr().out
    with container.engine.begin() as c:
        c.execute(
            text(
                "UPDATE ledger_accounts SET debits_posted = debits_posted + 5 "
                "WHERE kind = 'funding'"
            )
        )
    assert run_cli(monkeypatch, settings, "ledger", "verify") == 1
    out = capsys.readouterr().out
    assert "VIOLATION balance_matches_transfers fun_USD_test-funding" in out


def test_audit_verify_and_merchant_create_from_the_cli(api, settings, monkeypatch, capsys):
    assert run_cli(monkeypatch, settings, "merchant", "create", "Kiosk") == 0
    assert '"api_key": "zpk_' in capsys.readouterr().out
    assert run_cli(monkeypatch, settings, "audit", "verify") == 0
    assert "audit log ok: 2 entries" in capsys.readouterr().out


def test_a_bad_setting_stops_the_cli_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setenv("ZEROPAY_SESSION_IDLE_S", "soon")
    assert cli.main(["ledger", "verify"]) == 2
    assert "ZEROPAY_SESSION_IDLE_S must be an integer" in capsys.readouterr().err


def test_a_due_job_runs_in_exactly_one_of_two_processes(container, clock):
    ctx = container.ctx
    jobs.register(ctx)
    first = jobs.run_due(ctx, owner="process-a")
    second = jobs.run_due(ctx, owner="process-b")
    every_5_s = {"send_email", "fan_out_webhooks", "deliver_webhooks"}
    assert {"expire_holds", "purge_idempotency_keys", "purge_replay_records"} <= set(first)
    assert set(first) == {job.name for job in jobs.JOBS}  # every job is due at the start
    assert second == {}
    clock.advance(seconds=6)  # only the 5-second jobs are due again
    assert set(jobs.run_due(ctx, owner="process-b")) == every_5_s
    clock.advance(seconds=25)
    assert set(jobs.run_due(ctx, owner="process-a")) == {"expire_holds", *every_5_s}


def test_a_lease_held_by_a_dead_process_is_taken_over_when_it_runs_out(container, clock):
    ctx = container.ctx
    jobs.register(ctx)
    assert ctx.run(
        lambda uow: uow.jobs.lease(
            "expire_holds", owner="dead", now=clock.now(), lease=timedelta(seconds=120)
        )
    )
    assert "expire_holds" not in jobs.run_due(ctx, owner="alive")
    clock.advance(seconds=121)
    assert "expire_holds" in jobs.run_due(ctx, owner="alive")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_idempotency_keys_are_purged_after_24_hours(api, container, clock):
    payer = api.payer()
    headers = {**payer, "Idempotency-Key": "old"}
    api.client.post("/v1/wallet/topups", headers=headers, json={"amount": 100, "currency": "USD"})
    clock.advance(hours=23)
    assert jobs._purge_idempotency_keys(container.ctx) == 0
    clock.advance(hours=1, seconds=1)
    assert jobs._purge_idempotency_keys(container.ctx) == 1


def test_a_merchant_issues_a_narrow_key_and_a_revoked_key_stops_working(api):
    merchant = api.merchant()
    r = api.client.post(
        "/v1/api-keys", headers=merchant, json={"scopes": ["payments:read"], "label": "reporting"}
    )
    assert r.status_code == 201, r.text
    narrow = {"Authorization": f"Bearer {r.json()['secret']}"}
    assert api.client.get("/v1/payments", headers=narrow).status_code == 200
    r = api.client.post(
        "/v1/payments", headers=narrow, json={"amount": 100, "currency": "USD", "description": "x"}
    )
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    listed = api.client.get("/v1/api-keys", headers=merchant).json()["data"]
    assert len(listed) == 2 and all("secret" not in k for k in listed)
    key_id = r.request.headers["Authorization"].split()[1].split(".")[0].removeprefix("zpk_")
    assert api.client.delete(f"/v1/api-keys/{key_id}", headers=merchant).status_code == 204
    r = api.client.get("/v1/payments", headers=narrow)
    assert (r.status_code, r.json()["reason"]) == (401, "revoked_api_key")
    r = api.client.post("/v1/api-keys", headers=merchant, json={"scopes": ["everything"]})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input")


def test_a_top_up_is_corrected_by_a_reversing_transfer_once(
    api, container, settings, monkeypatch, capsys
):
    payer = {**api.payer(), "Idempotency-Key": "mistake"}
    r = api.client.post("/v1/wallet/topups", headers=payer, json={"amount": 900, "currency": "USD"})
    transfer_id = r.json()["id"]
    assert (
        run_cli(
            monkeypatch, settings, "ledger", "reverse", transfer_id, "--reason", "duplicate funding"
        )
        == 0
    )
    assert api.balance(payer) == 0
    assert (
        run_cli(monkeypatch, settings, "ledger", "reverse", transfer_id, "--reason", "again") == 1
    )
    assert "already reversed" in capsys.readouterr().err
    assert run_cli(monkeypatch, settings, "ledger", "verify") == 0
    history = api.client.get("/v1/wallet/transactions", headers=payer).json()["data"]
    assert [(h["type"], h["direction"]) for h in history] == [
        ("reversal", "debit"),
        ("topup", "credit"),
    ]


def test_a_reversal_that_would_overdraw_the_wallet_is_refused(api, settings, monkeypatch, capsys):
    payer = api.payer()
    r = api.client.post(
        "/v1/wallet/topups",
        headers={**payer, "Idempotency-Key": "spent"},
        json={"amount": 900, "currency": "USD"},
    )
    merchant = api.merchant()
    payment = api.payment(merchant, amount=500)
    assert (
        api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer).status_code == 200
    )
    assert (
        run_cli(
            monkeypatch, settings, "ledger", "reverse", r.json()["id"], "--reason", "chargeback"
        )
        == 1
    )
    assert "insufficient_funds" in capsys.readouterr().err
    assert api.balance(payer) == 400


def test_an_unexpected_failure_is_a_500_problem_that_reveals_nothing(
    container, monkeypatch, api_for
):
    from fastapi.testclient import TestClient

    from zeropay.api.app import create_app
    from zeropay.services import wallet

    payer = api_for(container).payer()

    def broken(*_args, **_kwargs):
        raise RuntimeError("connection string postgresql://admin:hunter2@db")

    monkeypatch.setattr(wallet, "balances", broken)
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        r = client.get("/v1/wallet", headers={**payer, "X-Request-Id": "trace-me"})
    assert (r.status_code, r.json()["code"]) == (500, "internal_error")
    assert "hunter2" not in r.text and r.headers["X-Request-Id"] == "trace-me"
