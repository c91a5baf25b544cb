"""Adversarial tests: brute force, enumeration, replay, races, tampering, append-only storage."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from zeropay.services import audit, ledger_check

PASSWORD = "a long passphrase"
VICTIM = "victim@example.com"
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def login(api: Any, email: str, password: str) -> Any:
    return api.client.post("/v1/sessions", json={"email": email, "password": password})


def bearer(r: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {r.json()['token']}"}


def ledger_clean(container: Any) -> int:
    _, transfers, violations = ledger_check.verify(container.ctx)
    assert violations == []
    return int(transfers)


# ---- brute force ------------------------------------------------------------------------------


def test_thirty_wrong_passwords_lock_the_account_and_the_right_one_is_refused_like_a_stranger(
    api, clock
):
    api.payer(VICTIM)
    stranger = login(api, "nobody@example.com", "whatever guess")
    assert (stranger.status_code, stranger.json()["code"]) == (401, "authentication_failed")
    for attempt in range(30):
        r = login(api, VICTIM, f"wrong guess {attempt}")
        assert r.status_code == 401 and r.content == stranger.content, attempt
    # Locked now: the right password gets exactly the stranger's answer.
    r = login(api, VICTIM, PASSWORD)
    assert r.status_code == 401 and r.content == stranger.content
    assert r.json()["code"] == "authentication_failed"


def test_after_five_failures_the_right_password_is_refused_until_the_lock_expires_and_the_user_is_told(  # noqa: E501
    api, clock
):
    api.payer(VICTIM)
    stranger = login(api, "nobody@example.com", "whatever guess")
    for _ in range(4):
        assert login(api, VICTIM, "wrong guess").status_code == 401
    # Four failures do not lock: the right password still works and resets the count.
    ok = login(api, VICTIM, PASSWORD)
    assert ok.status_code == 201
    for _ in range(5):
        assert login(api, VICTIM, "wrong guess").status_code == 401
    refused = login(api, VICTIM, PASSWORD)
    assert refused.status_code == 401 and refused.content == stranger.content
    clock.advance(seconds=59)
    assert login(api, VICTIM, PASSWORD).status_code == 401
    clock.advance(seconds=2)  # 61 s after the lock
    r = login(api, VICTIM, PASSWORD)
    assert r.status_code == 201, r.text
    notes = api.client.get("/v1/me/notifications", headers=bearer(r))
    assert notes.status_code == 200
    kinds = [n["kind"] for n in notes.json()["data"]]
    assert kinds == ["factor.locked"]


def test_the_second_lock_lasts_120_seconds_twice_the_first(api, clock):
    api.payer(VICTIM)
    for _ in range(5):
        login(api, VICTIM, "wrong guess")
    clock.advance(seconds=61)
    # The first lock is over; five more failures lock again, now for 120 s.
    for _ in range(5):
        assert login(api, VICTIM, "wrong guess").status_code == 401
    clock.advance(seconds=61)
    assert login(api, VICTIM, PASSWORD).status_code == 401  # a 60 s lock would be over
    clock.advance(seconds=58)  # 119 s
    assert login(api, VICTIM, PASSWORD).status_code == 401
    clock.advance(seconds=2)  # 121 s
    r = login(api, VICTIM, PASSWORD)
    assert r.status_code == 201, r.text
    notes = api.client.get("/v1/me/notifications", headers=bearer(r)).json()["data"]
    assert Counter(n["kind"] for n in notes) == {"factor.locked": 2}


def test_a_locked_password_does_not_count_the_refused_attempts_as_new_failures(api, clock):
    api.payer(VICTIM)
    for _ in range(5):
        login(api, VICTIM, "wrong guess")
    for _ in range(20):  # all refused while locked
        login(api, VICTIM, "wrong guess")
    clock.advance(seconds=61)
    r = login(api, VICTIM, PASSWORD)
    assert r.status_code == 201
    notes = api.client.get("/v1/me/notifications", headers=bearer(r)).json()["data"]
    assert [n["kind"] for n in notes] == ["factor.locked"]


@POSTGRES_ONLY
def test_forty_parallel_guesses_reach_password_verification_at_most_five_times(
    api, container, monkeypatch, backend
):
    api.payer(VICTIM)
    hasher = container.ctx.hasher
    real_verify = hasher.verify
    lock = threading.Lock()
    verified: list[str] = []

    def counting(encoded: str, secret: str) -> None:
        with lock:
            verified.append(secret)
        real_verify(encoded, secret)

    monkeypatch.setattr(hasher, "verify", counting)
    stranger = login(api, "nobody@example.com", "whatever guess")
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: login(api, VICTIM, f"guess {i}"), range(40)))
    assert [a.status_code for a in answers] == [401] * 40
    assert all(a.content == stranger.content for a in answers)
    assert len(verified) <= 5, len(verified)
    assert len(verified) == 5  # exactly the five failures the policy allows
    # And the lock holds for the real password afterwards.
    assert login(api, VICTIM, PASSWORD).status_code == 401


# ---- enumeration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unknown",
    ["nobody@example.com", "not-an-email", "VICTIM@example.org"],
    ids=["unknown_email", "malformed_email", "similar_email"],
)
def test_an_unknown_email_and_a_wrong_password_get_byte_identical_answers(api, unknown):
    api.payer(VICTIM)
    wrong = login(api, VICTIM, "wrong guess")
    ghost = login(api, unknown, "wrong guess")
    assert wrong.status_code == ghost.status_code == 401
    assert wrong.content == ghost.content
    assert wrong.json()["code"] == "authentication_failed"

    def headers(r: Any) -> dict[str, str]:
        return {k: v for k, v in r.headers.items() if k.lower() != "x-request-id"}

    assert headers(wrong) == headers(ghost)


# ---- idempotency ------------------------------------------------------------------------------


def test_the_same_top_up_sent_twice_with_one_key_moves_money_once(api, container):
    payer = api.payer()
    transfers_before = ledger_clean(container)
    headers = {**payer, "Idempotency-Key": "topup-1"}
    body = {"amount": 500, "currency": "USD"}
    first = api.client.post("/v1/wallet/topups", headers=headers, json=body)
    again = api.client.post("/v1/wallet/topups", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in {k.lower() for k in first.headers}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert ledger_clean(container) == transfers_before + 1
    assert api.balance(payer) == 500


def test_the_same_key_with_a_different_amount_is_refused_and_moves_nothing(api, container):
    payer = api.payer()
    headers = {**payer, "Idempotency-Key": "topup-1"}
    api.client.post("/v1/wallet/topups", headers=headers, json={"amount": 500, "currency": "USD"})
    transfers = ledger_clean(container)
    for body in (
        {"amount": 600, "currency": "USD"},
        {"amount": 500, "currency": "EUR"},
        {"amount": 500, "currency": "USD", "source": "test_card_declined"},
    ):
        r = api.client.post("/v1/wallet/topups", headers=headers, json=body)
        assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_reused"), body
        assert r.headers["content-type"].startswith("application/problem+json")
    assert ledger_clean(container) == transfers
    assert api.balance(payer) == 500


def test_the_same_key_used_by_another_payer_is_their_own_request(api, container):
    ana = api.payer("ana@example.com")
    bob = api.payer("bob@example.com")
    r1 = api.client.post(
        "/v1/wallet/topups",
        headers={**ana, "Idempotency-Key": "shared"},
        json={"amount": 500, "currency": "USD"},
    )
    r2 = api.client.post(
        "/v1/wallet/topups",
        headers={**bob, "Idempotency-Key": "shared"},
        json={"amount": 700, "currency": "USD"},
    )
    assert r1.status_code == r2.status_code == 201, r2.text
    assert "idempotent-replayed" not in {k.lower() for k in r2.headers}
    assert r2.json()["id"] != r1.json()["id"]
    assert (api.balance(ana), api.balance(bob)) == (500, 700)
    assert ledger_clean(container) == 2


def test_the_same_key_used_by_another_merchant_is_their_own_payment(api):
    m1 = api.merchant("One")
    m2 = api.merchant("Two")
    body = {"amount": 450, "currency": "USD", "description": "Flat white"}
    p1 = api.client.post("/v1/payments", headers={**m1, "Idempotency-Key": "k"}, json=body)
    p2 = api.client.post("/v1/payments", headers={**m2, "Idempotency-Key": "k"}, json=body)
    assert p1.status_code == p2.status_code == 201
    assert p1.json()["id"] != p2.json()["id"]
    assert [p["id"] for p in api.client.get("/v1/payments", headers=m2).json()["data"]] == [
        p2.json()["id"]
    ]


def test_a_replayed_refusal_stays_a_refusal_and_does_not_pay_later(api, container):
    payer = api.payer(usd=100)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=450)
    headers = {**payer, "Idempotency-Key": "pay-1"}
    first = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=headers)
    assert (first.status_code, first.json()["code"]) == (402, "insufficient_funds")
    api.client.post("/v1/wallet/topups", headers=payer, json={"amount": 1000, "currency": "USD"})
    again = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=headers)
    assert again.status_code == 402 and again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.balance(payer) == 1100


def _count_transfers_for(container: Any, payment_id: str) -> int:
    with container.engine.connect() as c:
        return int(
            c.execute(
                text("SELECT count(*) FROM ledger_transfers WHERE reference = :pid"),
                {"pid": payment_id},
            ).scalar_one()
        )


@POSTGRES_ONLY
def test_fifty_concurrent_confirmations_with_one_key_pay_exactly_once(api, container, backend):
    payer = api.payer(usd=2000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=450)
    headers = {**payer, "Idempotency-Key": "confirm-once"}
    barrier = threading.Barrier(25)

    def confirm(_: int) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=headers)

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(confirm, range(50)))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 409}, statuses
    ok = [a for a in answers if a.status_code == 200]
    assert ok, statuses
    assert len({a.content for a in ok}) == 1
    assert ok[0].json()["status"] == "succeeded"
    for a in answers:
        if a.status_code == 409:
            assert a.json()["code"] == "idempotency_request_in_flight", a.text
    assert _count_transfers_for(container, payment["id"]) == 1
    assert api.balance(payer) == 2000 - 450
    ledger_clean(container)


@POSTGRES_ONLY
def test_twenty_concurrent_payments_from_a_wallet_of_ten_spend_exactly_ten(api, container, backend):
    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payments = [api.payment(merchant, amount=100)["id"] for _ in range(20)]
    barrier = threading.Barrier(20)

    def confirm(pid: str) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return api.client.post(f"/v1/checkout/{pid}/confirm", headers=payer)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(confirm, payments))
    outcome = Counter(
        (a.status_code, a.json().get("code") or a.json().get("status")) for a in answers
    )
    assert outcome == {(200, "succeeded"): 10, (402, "insufficient_funds"): 10}, outcome
    assert api.balance(payer) == 0
    paid = sum(_count_transfers_for(container, pid) for pid in payments)
    assert paid == 10
    ledger_clean(container)


# ---- sessions ---------------------------------------------------------------------------------


def test_a_token_replayed_after_logout_is_refused(api):
    payer = api.payer()
    assert api.client.get("/v1/me", headers=payer).status_code == 200
    r = api.client.delete("/v1/sessions/current", headers=payer)
    assert r.status_code == 204
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/wallet"),
        ("DELETE", "/v1/sessions/current"),
        ("GET", "/v1/sessions"),
    ]:
        r = api.client.request(method, path, headers=payer)
        assert (r.status_code, r.json()["code"]) == (401, "not_authenticated"), path


def test_a_revoked_session_is_refused_but_the_other_sessions_stay(api):
    first = api.payer()
    second = bearer(login(api, "ana@example.com", PASSWORD))
    listed = api.client.get("/v1/sessions", headers=second).json()["data"]
    other = next(s["id"] for s in listed if not s["current"])
    assert api.client.delete(f"/v1/sessions/{other}", headers=second).status_code == 204
    r = api.client.get("/v1/me", headers=first)
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")
    assert api.client.get("/v1/me", headers=second).status_code == 200


def test_a_session_idle_for_301_seconds_is_refused(api, clock):
    payer = api.payer()
    clock.advance(seconds=299)
    assert api.client.get("/v1/me", headers=payer).status_code == 200  # touches it
    clock.advance(seconds=301)
    r = api.client.get("/v1/me", headers=payer)
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")
    # And it stays dead: a late request does not revive it.
    clock.advance(seconds=1)
    assert api.client.get("/v1/me", headers=payer).status_code == 401


def test_a_session_ends_after_12_hours_even_if_used_every_4_minutes(api, clock):
    payer = api.payer()
    elapsed = 0
    while elapsed + 240 < 12 * 3600:
        clock.advance(seconds=240)
        elapsed += 240
        r = api.client.get("/v1/wallet", headers=payer)
        assert r.status_code == 200, (elapsed, r.text)
    clock.advance(seconds=12 * 3600 - elapsed)  # exactly 12 h after sign-in
    r = api.client.get("/v1/wallet", headers=payer)
    assert (r.status_code, r.json()["code"]) == (401, "not_authenticated")


# ---- tampering --------------------------------------------------------------------------------


def _user_ids(container: Any) -> dict[str, str]:
    with container.engine.connect() as c:
        rows = c.execute(text("SELECT id, email_ciphertext FROM users ORDER BY created_at, id"))
        return {r.id: bytes(r.email_ciphertext) for r in rows}


def _set_ciphertext(container: Any, user_id: str, blob: bytes) -> None:
    with container.engine.begin() as c:
        c.execute(
            text("UPDATE users SET email_ciphertext = :b WHERE id = :id"),
            {"b": blob, "id": user_id},
        )


def _me_of(api: Any, payer: dict[str, str]) -> tuple[str, dict[str, Any]]:
    me = api.client.get("/v1/me", headers=payer)
    assert me.status_code == 200, me.text
    return me.json()["id"], me.json()


@pytest.mark.parametrize("where", ["format", "version", "nonce", "body", "tag"])
def test_one_changed_byte_of_a_stored_email_makes_me_fail_with_503_not_500(api, container, where):
    payer = api.payer()
    user_id, _ = _me_of(api, payer)
    blob = bytearray(_user_ids(container)[user_id])
    offset = {"format": 0, "version": 4, "nonce": 8, "body": 5 + 12 + 1, "tag": len(blob) - 1}
    blob[offset[where]] ^= 0x01
    _set_ciphertext(container, user_id, bytes(blob))
    r = api.client.get("/v1/me", headers=payer)
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed"), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "ana@example.com" not in r.text


def test_an_email_ciphertext_moved_to_another_users_row_does_not_decrypt(api, container):
    ana = api.payer("ana@example.com")
    bob = api.payer("bob@example.com")
    ana_id, _ = _me_of(api, ana)
    bob_id, _ = _me_of(api, bob)
    blobs = _user_ids(container)
    _set_ciphertext(container, bob_id, blobs[ana_id])
    r = api.client.get("/v1/me", headers=bob)
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed"), r.text
    assert "ana@example.com" not in r.text
    assert api.client.get("/v1/me", headers=ana).json()["email"] == "ana@example.com"


def test_a_truncated_email_ciphertext_fails_with_503(api, container):
    payer = api.payer()
    user_id, _ = _me_of(api, payer)
    _set_ciphertext(container, user_id, _user_ids(container)[user_id][:10])
    r = api.client.get("/v1/me", headers=payer)
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed"), r.text


# ---- append-only storage ----------------------------------------------------------------------


def _use_the_platform(api: Any) -> None:
    payer = api.payer(usd=1000)
    merchant = api.merchant()
    payment = api.payment(merchant, amount=300)
    r = api.client.post(f"/v1/checkout/{payment['id']}/confirm", headers=payer)
    assert r.status_code == 200, r.text
    r = api.client.post(
        f"/v1/payments/{payment['id']}/refunds", headers=merchant, json={"amount": 100}
    )
    assert r.status_code == 201, r.text
    login(api, "ana@example.com", "wrong guess")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET amount_minor = 1",
        "DELETE FROM ledger_transfers",
        "UPDATE audit_log SET event = 'nothing'",
        "DELETE FROM audit_log",
    ],
    ids=["update_transfers", "delete_transfers", "update_audit", "delete_audit"],
)
def test_ledger_transfers_and_the_audit_log_refuse_update_and_delete(api, container, statement):
    _use_the_platform(api)
    with container.engine.connect() as c:
        before = (
            c.execute(text("SELECT count(*), sum(amount_minor) FROM ledger_transfers")).one(),
            c.execute(text("SELECT count(*) FROM audit_log")).scalar_one(),
        )
    with pytest.raises((IntegrityError, DBAPIError)), container.engine.begin() as c:
        c.execute(text(statement))
    with container.engine.connect() as c:
        after = (
            c.execute(text("SELECT count(*), sum(amount_minor) FROM ledger_transfers")).one(),
            c.execute(text("SELECT count(*) FROM audit_log")).scalar_one(),
        )
    assert after == before
    assert before[1] > 0 and before[0][0] > 0
    assert audit.verify(container.ctx).breaks == []
    ledger_clean(container)


def test_the_audit_chain_verifies_after_normal_use_and_breaks_when_a_row_is_edited(
    api, container, backend
):
    _use_the_platform(api)
    report = audit.verify(container.ctx)
    assert report.entries >= 5
    assert report.breaks == []
    with container.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            c.execute(text("DROP TRIGGER audit_log_no_update"))
        seq = c.execute(text("SELECT min(seq) FROM audit_log WHERE event = 'factor.failed'"))
        target = seq.scalar_one()
        assert target is not None
        c.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE seq = :s"), {"s": target})
    broken = audit.verify(container.ctx)
    assert broken.entries == report.entries
    assert [b.seq for b in broken.breaks] == [target], broken.breaks


def test_a_deleted_audit_tail_is_reported_by_the_head(api, container, backend):
    _use_the_platform(api)
    with container.engine.begin() as c:
        if backend == "postgres":
            c.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            c.execute(text("DROP TRIGGER audit_log_no_delete"))
        c.execute(text("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"))
    assert audit.verify(container.ctx).breaks != []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_accounts SET debits_posted = credits_posted + 1 WHERE kind = 'wallet'",
        "UPDATE ledger_accounts SET debits_pending = credits_posted + 1 WHERE kind = 'wallet'",
        "UPDATE ledger_accounts SET debits_posted = credits_posted + 1 WHERE kind = 'merchant'",
        "UPDATE ledger_accounts SET credits_posted = -1 WHERE kind = 'funding'",
    ],
    ids=["wallet_posted", "wallet_pending", "merchant_posted", "negative_counter"],
)
def test_a_wallet_cannot_be_driven_negative_by_writing_sql_directly(api, container, statement):
    _use_the_platform(api)
    with container.engine.connect() as c:
        before = c.execute(text("SELECT * FROM ledger_accounts ORDER BY id")).all()
    with pytest.raises(IntegrityError), container.engine.begin() as c:
        c.execute(text(statement))
    with container.engine.connect() as c:
        assert c.execute(text("SELECT * FROM ledger_accounts ORDER BY id")).all() == before
    ledger_clean(container)
