"""Merchant webhooks end to end, on SQLite and PostgreSQL, delivered over real HTTP to receivers
on 127.0.0.1 (the development escape hatch, ZEROPAY_WEBHOOK_ALLOW_LOCAL, lets them through):
signed so a receiver can verify them across a secret rotation, retried with growing delays,
given up, redelivered under the same event id, and logged attempt by attempt."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from support.webhook_receiver import Receiver
from zeropay import cli
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.bootstrap import build
from zeropay.config import ConfigError, Settings
from zeropay.domain.money import Money, currency
from zeropay.domain.webhooks import ATTEMPTS_MAX, RETRY_MAX_S, verify
from zeropay.services import merchants, payments, webhooks


@pytest.fixture
def hooks(settings, clock, api_for) -> Iterator:
    """The API of an app whose webhooks may go to this machine over plain http."""
    built = build(
        replace(settings, webhook_allow_local=True),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    yield api_for(built)
    built.engine.dispose()


def add_endpoint(api, merchant, url: str) -> dict:
    r = api.client.post("/v1/webhook-endpoints", headers=merchant, json={"url": url})
    assert r.status_code == 201, r.text
    return r.json()


def cancel_a_payment(api, merchant) -> str:
    """A payment made and canceled: one ``payment.canceled`` event. The id of the event."""
    payment = api.payment(merchant)
    r = api.client.post(f"/v1/payments/{payment['id']}/cancel", headers=merchant)
    assert r.status_code == 200, r.text
    events = api.client.get("/v1/events", headers=merchant).json()["data"]
    assert events[0]["payment_id"] == payment["id"], events
    return str(events[0]["id"])


def deliver(api) -> int:
    """One round of the jobs: fan-out, then every due attempt. The attempts made."""
    webhooks.fan_out(api.container.ctx)
    return webhooks.deliver_due(api.container.ctx, owner="test")


def deliveries(api, merchant, endpoint_id: str) -> list[dict]:
    r = api.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=merchant)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def now_s(clock) -> int:
    return int(clock.now().timestamp())


def test_a_delivery_is_signed_so_the_receiver_verifies_it_and_refuses_a_tampered_body(hooks, clock):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        secret = endpoint["secret"]
        assert secret.startswith("whsec_") and endpoint["status"] == "active"
        event_id = cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
    [got] = receiver.requests
    assert got.headers["zeropay-event-id"] == event_id
    assert got.headers["zeropay-event-type"] == "payment.canceled"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    header = got.headers["zeropay-signature"]
    assert verify(header, got.body, [secret.encode()], now=now_s(clock))
    assert not verify(
        header, got.body.replace(b"canceled", b"succeeded"), [secret.encode()], now=now_s(clock)
    )
    assert not verify(header, got.body, [b"whsec_someone_else"], now=now_s(clock))
    # The body is the event exactly as the events API shows it.
    shown = hooks.client.get(f"/v1/events/{event_id}", headers=merchant).json()
    sent = json.loads(got.body)
    assert sent["id"] == shown["id"] == event_id and sent["data"] == shown["data"]
    [delivery] = deliveries(hooks, merchant, endpoint["id"])
    assert delivery["state"] == "delivered" and delivery["event_id"] == event_id
    assert [(a["attempt"], a["status_code"], a["error"]) for a in delivery["log"]] == [
        (1, 200, None)
    ]


def test_during_a_rotation_old_and_new_secret_both_verify_and_afterwards_only_the_new(hooks, clock):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        old = endpoint["secret"].encode()
        r = hooks.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations", headers=merchant, json={}
        )
        assert r.status_code == 201, r.text
        new = r.json()["secret"].encode()
        [previous] = r.json()["previous"]
        assert previous["id"] == endpoint["secret_id"]
        assert previous["expires_at"] == "2026-11-03T09:30:00Z"  # 24 hours by default
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
        clock.advance(hours=24, seconds=1)
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
    during, after = receiver.requests
    header = during.headers["zeropay-signature"]
    assert header.count("v1=") == 2
    assert verify(header, during.body, [old], now=now_s(clock) - 86401)  # not yet switched
    assert verify(header, during.body, [new], now=now_s(clock) - 86401)  # switched
    header = after.headers["zeropay-signature"]
    assert header.count("v1=") == 1
    assert not verify(header, after.body, [old], now=now_s(clock))
    assert verify(header, after.body, [new], now=now_s(clock))
    shown = hooks.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=merchant).text
    assert old.decode() not in shown and new.decode() not in shown  # shown once, never again
    assert shown.count('"expires_at"') == 2


def test_a_rotation_with_no_overlap_stops_the_old_secret_at_once(hooks, clock):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        r = hooks.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations",
            headers=merchant,
            json={"overlap_s": 0},
        )
        assert r.status_code == 201 and r.json()["previous"] == [], r.text
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
    [got] = receiver.requests
    header = got.headers["zeropay-signature"]
    assert not verify(header, got.body, [endpoint["secret"].encode()], now=now_s(clock))
    assert verify(header, got.body, [r.json()["secret"].encode()], now=now_s(clock))


def test_a_receiver_that_fails_then_answers_is_retried_later_and_the_log_shows_both(hooks, clock):
    merchant = hooks.merchant()
    with Receiver(statuses=(500, 204)) as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
        [pending] = deliveries(hooks, merchant, endpoint["id"])
        assert pending["state"] == "pending" and pending["attempts"] == 1
        # First retry after 30 s, plus up to a quarter of jitter.
        assert "2026-11-02T09:30:30Z" <= pending["next_attempt_at"] <= "2026-11-02T09:30:38Z"
        assert deliver(hooks) == 0  # not due yet: nothing is sent
        clock.advance(seconds=38)
        assert deliver(hooks) == 1
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    [done] = deliveries(hooks, merchant, endpoint["id"])
    assert done["state"] == "delivered" and done["next_attempt_at"] is None
    assert [(a["attempt"], a["status_code"], a["at"]) for a in done["log"]] == [
        (2, 204, "2026-11-02T09:30:38Z"),
        (1, 500, "2026-11-02T09:30:00Z"),
    ]


def test_a_delivery_is_given_up_after_the_last_attempt(hooks, clock):
    merchant = hooks.merchant()
    with Receiver(statuses=(503,)) as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        cancel_a_payment(hooks, merchant)
        for _ in range(ATTEMPTS_MAX):
            assert deliver(hooks) == 1
            clock.advance(seconds=RETRY_MAX_S * 1.25 + 1)
        assert deliver(hooks) == 0
    assert len(receiver.requests) == ATTEMPTS_MAX
    [given_up] = deliveries(hooks, merchant, endpoint["id"])
    assert given_up["state"] == "given_up" and given_up["attempts"] == ATTEMPTS_MAX
    assert given_up["next_attempt_at"] is None and given_up["finished_at"] is not None
    assert [a["attempt"] for a in given_up["log"]] == list(range(ATTEMPTS_MAX, 0, -1))


def test_a_redelivery_sends_the_same_event_id_on_a_fresh_schedule(hooks, clock):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        event_id = cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
        clock.advance(minutes=5)
        r = hooks.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/redeliveries",
            headers=merchant,
            json={"event_id": event_id},
        )
        assert r.status_code == 202, r.text
        assert r.json()["state"] == "pending" and r.json()["attempts"] == 0
        assert r.json()["event_type"] == "payment.canceled"
        assert deliver(hooks) == 1
    first, again = receiver.requests
    assert first.headers["zeropay-event-id"] == again.headers["zeropay-event-id"] == event_id
    assert first.body == again.body  # a receiver de-duplicates by the id inside
    assert first.headers["zeropay-signature"] != again.headers["zeropay-signature"]  # new time
    r = hooks.client.get(f"/v1/events/{event_id}/deliveries", headers=merchant)
    [delivery] = r.json()["data"]
    assert delivery["state"] == "delivered"
    assert [a["at"] for a in delivery["log"]] == ["2026-11-02T09:35:00Z", "2026-11-02T09:30:00Z"]


def test_events_from_before_an_endpoint_existed_are_not_sent_to_it_unless_asked(hooks, clock):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        event_id = cancel_a_payment(hooks, merchant)
        clock.advance(seconds=1)
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        assert deliver(hooks) == 0
        assert deliveries(hooks, merchant, endpoint["id"]) == []
        r = hooks.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/redeliveries",
            headers=merchant,
            json={"event_id": event_id},
        )
        assert r.status_code == 202, r.text
        assert deliver(hooks) == 1
    assert [q.headers["zeropay-event-id"] for q in receiver.requests] == [event_id]


def test_a_payment_whose_transaction_rolls_back_makes_no_event_and_no_delivery(hooks):
    merchant = hooks.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        payment = hooks.payment(merchant)
        principal = merchants.authenticate_key(
            hooks.container.ctx, merchant["Authorization"].split()[1]
        )

        def crash(_uow, _result):
            raise RuntimeError("the process died before the commit")

        with pytest.raises(RuntimeError):
            payments.cancel(
                hooks.container.ctx,
                merchant_id=principal.merchant_id,
                payment_id=payment["id"],
                on_commit=crash,
            )
        assert deliver(hooks) == 0
    assert receiver.requests == []
    assert hooks.client.get("/v1/events", headers=merchant).json()["data"] == []
    assert deliveries(hooks, merchant, endpoint["id"]) == []
    shown = hooks.client.get(f"/v1/payments/{payment['id']}", headers=merchant).json()
    assert shown["status"] == "requires_confirmation"


def test_a_disabled_endpoint_is_sent_nothing_more_and_keeps_its_log(hooks, clock):
    merchant = hooks.merchant()
    with Receiver(statuses=(500,)) as receiver:
        endpoint = add_endpoint(hooks, merchant, receiver.url())
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
        r = hooks.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=merchant)
        assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
        cancel_a_payment(hooks, merchant)
        clock.advance(hours=1)
        assert deliver(hooks) == 0
    assert len(receiver.requests) == 1
    [delivery] = deliveries(hooks, merchant, endpoint["id"])
    assert delivery["state"] == "given_up" and len(delivery["log"]) == 1
    shown = hooks.client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=merchant).json()
    assert shown["status"] == "disabled" and shown["secrets"] == []  # nothing left to sign with
    r = hooks.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations", headers=merchant, json={}
    )
    assert r.status_code == 409 and r.json()["code"] == "invalid_state"


def test_endpoints_and_events_are_listed_newest_first_in_pages(hooks, clock):
    merchant = hooks.merchant()
    made = []
    for n in range(3):
        made.append(add_endpoint(hooks, merchant, f"https://hooks{n}.example.com/zp")["id"])
        clock.advance(seconds=1)
    events = [cancel_a_payment(hooks, merchant) for _ in range(3)]
    r = hooks.client.get("/v1/webhook-endpoints?limit=2", headers=merchant).json()
    assert [e["id"] for e in r["data"]] == made[::-1][:2] and r["has_more"]
    r = hooks.client.get(
        f"/v1/webhook-endpoints?limit=2&starting_after={made[1]}", headers=merchant
    ).json()
    assert [e["id"] for e in r["data"]] == made[:1]
    r = hooks.client.get("/v1/events?limit=2", headers=merchant).json()
    assert [e["id"] for e in r["data"]] == events[::-1][:2]
    r = hooks.client.get(f"/v1/events?starting_after={events[1]}", headers=merchant).json()
    assert [e["id"] for e in r["data"]] == events[:1]
    assert r["data"][0]["type"] == "payment.canceled" and r["data"][0]["object"] == "event"


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        ({"url": "http://shop.example.com/hook"}, "webhook_url_refused", "scheme"),
        ({"url": "https://10.0.0.8/hook"}, "webhook_url_refused", "private"),
        ({"url": "https://shop.example.com/a b"}, "webhook_url_refused", "malformed"),
        ({"url": "https://shop.example.com/\nhook"}, "webhook_url_refused", "malformed"),
        ({"url": 17}, "invalid_input", None),
        ({}, "missing_field", None),
        ({"url": "https://shop.example.com/", "events": ["*"]}, "unknown_field", None),
    ],
)
def test_a_bad_endpoint_gets_a_clear_4xx_with_a_stable_code(api, body, code, reason):
    merchant = api.merchant()
    r = api.client.post("/v1/webhook-endpoints", headers=merchant, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json().get("reason") == reason


@pytest.mark.parametrize("overlap", [-1, 604801, 1.5, "3600", True])
def test_an_overlap_out_of_bounds_is_refused(api, overlap):
    merchant = api.merchant()
    endpoint = add_endpoint(api, merchant, "https://shop.example.com/hook")
    r = api.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/secret-rotations",
        headers=merchant,
        json={"overlap_s": overlap},
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_overlap", r.text


def test_endpoints_and_secrets_in_one_overlap_are_bounded(api):
    merchant = api.merchant()
    made = [add_endpoint(api, merchant, f"https://h{n}.example.com/") for n in range(16)]
    r = api.client.post(
        "/v1/webhook-endpoints", headers=merchant, json={"url": "https://h16.example.com/"}
    )
    assert r.status_code == 422 and r.json()["code"] == "webhook_limit_exceeded", r.text
    assert api.client.delete(f"/v1/webhook-endpoints/{made[0]['id']}", headers=merchant)
    add_endpoint(api, merchant, "https://h16.example.com/")  # room again
    rotations = f"/v1/webhook-endpoints/{made[1]['id']}/secret-rotations"
    for _ in range(2):
        assert api.client.post(rotations, headers=merchant, json={}).status_code == 201
    r = api.client.post(rotations, headers=merchant, json={})
    assert r.status_code == 422 and r.json()["reason"] == "secrets_in_overlap", r.text
    r = api.client.post(rotations, headers=merchant, json={"overlap_s": 0})
    assert r.status_code == 201, r.text  # a leaked secret can always be stopped at once


def test_a_key_without_the_webhooks_scope_is_refused_and_new_merchants_have_it(api, container):
    _, default_key = merchants.create_merchant(container.ctx, name="Kiosk")
    assert "webhooks:manage" in default_key.scopes
    merchant = {"Authorization": f"Bearer {default_key.secret}"}
    r = api.client.post(
        "/v1/api-keys", headers=merchant, json={"scopes": ["payments:read"], "label": "ro"}
    )
    narrow = {"Authorization": f"Bearer {r.json()['secret']}"}
    r = api.client.get("/v1/webhook-endpoints", headers=narrow)
    assert r.status_code == 403 and r.json()["scope"] == "webhooks:manage", r.text
    assert api.client.get("/v1/events", headers=narrow).status_code == 200


def test_the_cli_delivers_once_and_reports_what_it_did(settings, clock, monkeypatch, capsys):
    local = replace(settings, webhook_allow_local=True)
    built = build(local, clock=clock, hasher=Argon2PasswordHasher.cheap_for_tests())
    ctx = built.ctx
    try:
        merchant_id, _ = merchants.create_merchant(ctx, name="Kiosk")
        with Receiver() as receiver:
            created = webhooks.create_endpoint(
                ctx, merchant_id=merchant_id, url=receiver.url(), actor="test"
            )
            payment = payments.create(
                ctx,
                merchant_id=merchant_id,
                amount=Money(450, currency("USD")),
                description="Flat white",
                reference=None,
            )
            payments.cancel(ctx, merchant_id=merchant_id, payment_id=payment.id)
            for name, value in {
                "ZEROPAY_DATABASE_URL": settings.database_url,
                "ZEROPAY_VAULT_DEV_FILE": str(settings.vault_dev_file),
                "ZEROPAY_WEBHOOK_ALLOW_LOCAL": "1",
            }.items():
                monkeypatch.setenv(name, value)
            assert cli.main(["webhooks", "deliver", "--once"]) == 0
        done = json.loads(capsys.readouterr().out)
        assert done == {"events": 1, "late_events": 0, "deliveries_made": 1, "attempts": 1}
        [got] = receiver.requests
        signature = got.headers["zeropay-signature"]
        sent_at = int(signature.split(",")[0].removeprefix("t="))
        assert verify(signature, got.body, [created.secret.encode()], now=sent_at)
    finally:
        built.engine.dispose()


def test_the_fan_out_cursor_starts_after_the_events_already_written(hooks):
    with hooks.container.engine.connect() as c:
        row = c.execute(text("SELECT last_seq, gaps FROM webhook_fanout")).one()
    assert (row.last_seq, row.gaps) == (0, "[]")


def test_the_readme_example_verifies_a_real_delivery(hooks):
    """The ten lines merchants copy from the README, run against what ZeroPay sends."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(import hashlib.*?)```", readme, re.S)
    assert example is not None
    namespace: dict = {}
    exec(example.group(1), namespace)  # noqa: S102 - our own documentation
    verify_zeropay = namespace["verify_zeropay"]
    merchant = hooks.merchant()
    with Receiver() as receiver:
        secret = add_endpoint(hooks, merchant, receiver.url())["secret"]
        cancel_a_payment(hooks, merchant)
        assert deliver(hooks) == 1
    [got] = receiver.requests
    header = got.headers["zeropay-signature"]
    forever = 10**10  # the fixed clock of the tests is not the wall clock the example reads
    assert verify_zeropay(header, got.body, [secret], tolerance_s=forever)
    assert not verify_zeropay(header, got.body + b" ", [secret], tolerance_s=forever)
    assert not verify_zeropay(header, got.body, [secret], tolerance_s=-1)  # too old: a replay


def test_the_escape_hatch_is_off_unless_set_and_announced_when_on(settings, clock, caplog):
    assert Settings.from_env({}).webhook_allow_local is False
    assert Settings.from_env({"ZEROPAY_WEBHOOK_ALLOW_LOCAL": "1"}).webhook_allow_local is True
    assert Settings.from_env({"ZEROPAY_WEBHOOK_ALLOW_LOCAL": "0"}).webhook_allow_local is False
    with pytest.raises(ConfigError):
        Settings.from_env({"ZEROPAY_WEBHOOK_ALLOW_LOCAL": "yes please"})
    with caplog.at_level(logging.WARNING, logger="zeropay.webhooks"):
        built = build(replace(settings, webhook_allow_local=True), clock=clock)
    built.engine.dispose()
    assert built.ctx.webhooks.allow_local
    assert "ZEROPAY_WEBHOOK_ALLOW_LOCAL is on" in caplog.text


def test_a_redelivery_waits_while_an_attempt_is_on_the_wire(hooks, clock):
    merchant = hooks.merchant()
    endpoint = add_endpoint(hooks, merchant, "https://hooks.example.com/zp")
    event_id = cancel_a_payment(hooks, merchant)
    ctx = hooks.container.ctx
    webhooks.fan_out(ctx)
    now = clock.now()
    claimed = ctx.run(
        lambda uow: uow.webhooks.claim_due(
            now, owner="worker-1", until=now + timedelta(seconds=60), limit=5
        )
    )
    assert [c.delivery.event_id for c in claimed] == [event_id]
    path = f"/v1/webhook-endpoints/{endpoint['id']}/redeliveries"
    r = hooks.client.post(path, headers=merchant, json={"event_id": event_id})
    assert r.status_code == 409 and r.json()["reason"] == "attempt_in_progress", r.text
    clock.advance(seconds=61)  # the worker died: its lease ran out
    r = hooks.client.post(path, headers=merchant, json={"event_id": event_id})
    assert r.status_code == 202, r.text
