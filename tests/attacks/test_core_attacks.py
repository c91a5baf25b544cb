"""Attacks on the payments core: brute force, replay, tamper, race."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from zeropay.services import audit, ledger_check

PASSWORD = "a long passphrase"


def login(api, email, password):
    return api.client.post("/v1/sessions", json={"email": email, "password": password})


def test_brute_force_locks_the_password_after_five_and_hides_which_part_failed(api, clock):
    api.payer("victim@example.com")
    unknown = login(api, "nobody@example.com", "whatever123")
    for _ in range(5):
        r = login(api, "victim@example.com", "guess-guess")
        assert r.status_code == 401 and r.json() == unknown.json()
    r = login(api, "victim@example.com", PASSWORD)  # right password, but locked
    assert r.status_code == 401 and r.json() == unknown.json()
    clock.advance(seconds=61)
    r = login(api, "victim@example.com", PASSWORD)
    assert r.status_code == 201
    notes = api.client.get("/v1/me/notifications",
                           headers={"Authorization": f"Bearer {r.json()['token']}"}).json()
    assert [n["kind"] for n in notes["data"]] == ["factor.locked"]


def test_the_second_lock_lasts_twice_as_long(api, clock):
    api.payer("victim@example.com")
    for lock in (1, 2):
        for _ in range(5):
            login(api, "victim@example.com", "guess-guess")
        clock.advance(seconds=60 * 2 ** (lock - 1) - 1)
        assert login(api, "victim@example.com", PASSWORD).status_code == 401
        clock.advance(seconds=1)
    # A success would reset the count; the second lock has just ended.
    assert login(api, "victim@example.com", PASSWORD).status_code == 201


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_parallel_guesses_cannot_outrun_the_lock(api, container, monkeypatch):
    api.payer("victim@example.com")
    hasher = container.ctx.hasher
    checked = []
    real_verify = hasher.verify

    def counting(encoded, secret):
        checked.append(secret)
        return real_verify(encoded, secret)

    monkeypatch.setattr(hasher, "verify", counting)
    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(lambda _: login(api, "victim@example.com", "guess").status_code,
                              range(40)))
    assert codes == [401] * 40
    assert len(checked) == 5


def test_a_replayed_top_up_moves_money_once_and_a_changed_one_is_refused(api, container):
    payer = api.payer()
    other = api.payer("other@example.com")
    headers = {**payer, "Idempotency-Key": "topup-1"}
    first = api.client.post("/v1/wallet/topups", headers=headers,
                            json={"amount": 500, "currency": "USD"})
    again = api.client.post("/v1/wallet/topups", headers=headers,
                            json={"amount": 500, "currency": "USD"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    changed = api.client.post("/v1/wallet/topups", headers=headers,
                              json={"amount": 600, "currency": "USD"})
    assert (changed.status_code, changed.json()["code"]) == (422, "idempotency_key_reused")
    theirs = api.client.post("/v1/wallet/topups", headers={**other, "Idempotency-Key": "topup-1"},
                             json={"amount": 700, "currency": "USD"})
    assert theirs.status_code == 201
    assert api.balance(payer) == 500 and api.balance(other) == 700


def test_a_replayed_confirmation_pays_once(api):
    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=400)
    headers = {**payer, "Idempotency-Key": "confirm-1"}
    a = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=headers)
    b = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=headers)
    c = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert (a.status_code, b.status_code, c.status_code) == (200, 200, 409)
    assert api.balance(payer) == 600


def test_another_payer_cannot_confirm_a_payment_already_paid(api):
    payer = api.payer(usd=1000)
    thief = api.payer("thief@example.com", usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=400)
    api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=thief)
    assert r.status_code == 404
    assert api.client.get(f"/v1/checkout/{payment['id']}", headers=thief).status_code == 404


def test_a_session_ends_at_logout_after_idling_and_after_twelve_hours(api, clock):
    payer = api.payer()
    assert api.client.delete("/v1/sessions/current", headers=payer).status_code == 204
    assert api.client.get("/v1/wallet", headers=payer).status_code == 401
    r = login(api, "ana@example.com", PASSWORD)
    idle = {"Authorization": f"Bearer {r.json()['token']}"}
    clock.advance(seconds=301)
    assert api.client.get("/v1/wallet", headers=idle).json()["reason"] == "idle"
    r = login(api, "ana@example.com", PASSWORD)
    busy = {"Authorization": f"Bearer {r.json()['token']}"}
    for _ in range(12 * 15):
        clock.advance(seconds=240)
        if api.client.get("/v1/wallet", headers=busy).status_code != 200:
            break
    assert api.client.get("/v1/wallet", headers=busy).json()["reason"] == "expired"


def test_a_tampered_or_moved_email_ciphertext_fails_closed(api, container):
    a = api.payer("a@example.com")
    api.payer("b@example.com")
    with container.engine.begin() as c:
        rows = c.execute(text("SELECT id, email_ciphertext FROM users ORDER BY id")).all()
        c.execute(text("UPDATE users SET email_ciphertext = :x WHERE id = :id"),
                  {"x": bytes(rows[1].email_ciphertext), "id": rows[0].id})
    r = api.client.get("/v1/me", headers=a)
    if r.status_code == 200:  # a is rows[1]: move the other way
        with container.engine.begin() as c:
            c.execute(text("UPDATE users SET email_ciphertext = :x WHERE id = :id"),
                      {"x": bytes(rows[0].email_ciphertext), "id": rows[1].id})
        r = api.client.get("/v1/me", headers=a)
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed")


def test_ledger_rows_cannot_be_edited_or_deleted_and_wallets_cannot_go_negative(api, container):
    api.payer(usd=500)
    for statement in ("UPDATE ledger_transfers SET amount_minor = 1",
                      "DELETE FROM ledger_transfers", "DELETE FROM audit_log",
                      "UPDATE ledger_accounts SET debits_posted = credits_posted + 1 "
                      "WHERE kind = 'wallet'"):
        with pytest.raises(Exception) as caught, container.engine.begin() as c:
            c.execute(text(statement))
        assert "append-only" in str(caught.value) or "never_negative" in str(caught.value)
    assert ledger_check.verify(container.ctx)[2] == []


def test_audit_verify_detects_an_edited_entry(api, container, backend):
    api.payer()
    assert audit.verify(container.ctx).breaks == []
    with container.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            c.execute(text("DROP TRIGGER audit_log_no_update"))
        c.execute(text("UPDATE audit_log SET event = 'nothing.happened' WHERE seq = 1"))
    assert [b.kind for b in audit.verify(container.ctx).breaks] == ["edited"]
