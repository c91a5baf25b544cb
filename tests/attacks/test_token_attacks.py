"""Attacks on tokens and cryptograms, over HTTP on SQLite and PostgreSQL and, for the races, from
many threads on PostgreSQL: replayed and altered cryptograms, another merchant's token, another
payer's token, dead tokens and keys, brute force against a device key, two charges racing for
one counter, and payers racing for the carrier's monthly cap. Every test that moves money ends
with the ledger verified."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from sqlalchemy import text

from support.instruments import (
    b64url,
    cryptogram,
    merchant,
    on_file,
    unb64url,
    wallet,
)
from zeropay.adapters.vault.crypto import DecryptionFailed
from zeropay.domain.errors import DomainError
from zeropay.domain.money import Money
from zeropay.services import audit, charges, ledger_check
from zeropay.services.ports import FundingRequest

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def _count(mfa: Any, sql: str) -> int:
    with mfa.container.engine.connect() as c:
        return int(c.execute(text(sql)).scalar_one())


def _merchant_balance(mfa: Any, merchant_id: str) -> int:
    with mfa.container.engine.connect() as c:
        found = c.execute(
            text(
                "SELECT credits_posted - debits_posted FROM ledger_accounts"
                " WHERE kind = 'merchant' AND owner_id = :m"
            ),
            {"m": merchant_id},
        ).scalar()
    return int(found or 0)


def _ledger_clean(mfa: Any) -> None:
    _, _, violations = ledger_check.verify(mfa.container.ctx)
    assert violations == []


def _refused(r: Any) -> None:
    assert r.status_code == 403 and r.json()["code"] == "cryptogram_invalid", r.text
    assert "reason" not in r.json()  # replay and tampering answer alike


# ---- replay and tampering -----------------------------------------------------------------------


def test_a_replayed_cryptogram_pays_nothing(mfa, backend):
    f = on_file(mfa)
    body = f.body(500)
    assert f.charge(body).status_code == 201
    _refused(f.charge(body))
    _refused(f.charge(body, key="a-fresh-idempotency-key"))
    assert _count(mfa, "SELECT count(*) FROM charges") == 1
    assert _merchant_balance(mfa, f.merchant.id) == 500
    _ledger_clean(mfa)


def test_an_older_counter_is_refused_after_a_newer_one_was_accepted(mfa, backend):
    f = on_file(mfa)
    early, late = f.body(500, counter=4), f.body(500, counter=9)
    assert f.charge(late).status_code == 201
    _refused(f.charge(early))  # genuine, but made before the one accepted
    assert f.charge(f.body(500, counter=10)).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [("amount", 5000), ("currency", "EUR"), ("counter", 2), ("cryptogram", None)],
)
def test_a_cryptogram_sent_with_any_field_changed_pays_nothing(mfa, backend, field, value):
    f = on_file(mfa)
    genuine = f.body(500, counter=1)
    if field == "cryptogram":  # one bit of the MAC flipped
        mac = bytearray(unb64url(genuine["cryptogram"]))
        mac[0] ^= 1
        value = b64url(bytes(mac))
    _refused(f.charge({**genuine, field: value}))
    assert _count(mfa, "SELECT count(*) FROM charges") == 0
    assert f.charge(genuine).status_code == 201  # the genuine one still pays, once
    assert _merchant_balance(mfa, f.merchant.id) == 500


def test_a_cryptogram_made_for_another_merchant_or_another_token_pays_nothing(mfa, backend):
    f = on_file(mfa)
    other = merchant(mfa, "Book Nook")
    key = f.wallet.keys[f.token]
    # Made for the other merchant, sent by this one with its own token.
    for_other = cryptogram(key, f.merchant_token, 500, "USD", other.id, 1)
    _refused(f.charge({**f.body(500, counter=1), "cryptogram": for_other}))
    # Made over the payer's other instrument's merchant token, sent with this token.
    second = f.wallet.add_phone()
    other_token = f.wallet.grant(second["token"], f.merchant.id)
    over_other_token = cryptogram(key, other_token, 500, "USD", f.merchant.id, 1)
    _refused(f.charge({**f.body(500, counter=1), "cryptogram": over_other_token}))
    assert _count(mfa, "SELECT count(*) FROM charges") == 0


# ---- whose token --------------------------------------------------------------------------------


def test_another_merchants_token_is_answered_like_an_unknown_token(mfa, backend):
    f = on_file(mfa)
    thief = merchant(mfa, "Thief Ltd")
    key = f.wallet.keys[f.token]
    stolen = {
        "token": f.merchant_token,
        "amount": 500,
        "currency": "USD",
        "counter": 1,
        # Even with a cryptogram made for the thief: the token is not the thief's.
        "cryptogram": cryptogram(key, f.merchant_token, 500, "USD", thief.id, 1),
    }
    r = mfa.client.post("/v1/charges", headers=thief.headers, json=stolen)
    unknown = mfa.client.post(
        "/v1/charges", headers=thief.headers, json={**stolen, "token": "mtok_" + "x" * 43}
    )
    as_payer_token = mfa.client.post(
        "/v1/charges", headers=thief.headers, json={**stolen, "token": f.token}
    )
    assert r.status_code == unknown.status_code == as_payer_token.status_code == 404
    assert r.json() == unknown.json() == as_payer_token.json()
    # Nor does the owner's merchant see anything of the attempt; its token still works.
    assert f.charge(f.body(500, counter=1)).status_code == 201
    paid = mfa.client.get("/v1/charges/" + _only_charge_id(mfa), headers=thief.headers)
    missing = mfa.client.get("/v1/charges/chg_" + "0" * 26, headers=thief.headers)
    assert paid.status_code == missing.status_code == 404 and paid.json() == missing.json()


def _only_charge_id(mfa: Any) -> str:
    with mfa.container.engine.connect() as c:
        return str(c.execute(text("SELECT id FROM charges")).scalar_one())


def test_another_payers_token_is_answered_like_an_unknown_token(mfa, backend):
    owner = on_file(mfa, "owner@example.com")
    thief = wallet(mfa, "thief@example.com")
    thief.add_card("5555 5555 5555 4444")
    shop = merchant(mfa, "Thief's shop")
    for ref in (owner.token, owner.instrument["id"]):
        for method, path, body in (
            ("GET", "", None),
            ("DELETE", "", None),
            ("POST", "/grants", {"merchant_id": shop.id}),
            ("POST", "/devices", None),
        ):
            stolen = thief.phone.call(method, f"/v1/me/instruments/{ref}{path}", body)
            unknown = thief.phone.call(method, f"/v1/me/instruments/tok_{'x' * 43}{path}", body)
            assert stolen.status_code == unknown.status_code == 404, (method, path, stolen.text)
            assert stolen.json() == unknown.json()
    assert _count(mfa, "SELECT count(*) FROM instrument_grants") == 1  # the owner's own
    assert owner.charge(owner.body(500)).status_code == 201


def test_a_key_dies_with_its_device(mfa, backend):
    f = on_file(mfa)
    body = f.body(500)
    r = f.wallet.phone.call("GET", "/v1/me/devices")
    assert r.status_code == 200, r.text
    [device] = r.json()["data"]
    r = f.wallet.phone.call("DELETE", f"/v1/me/devices/{device['id']}")
    assert r.status_code == 204, r.text
    _refused(f.charge(body))  # a genuine cryptogram of the unbound device's key
    assert _count(mfa, "SELECT count(*) FROM charges") == 0


def test_an_instrument_moved_to_another_payer_opens_for_nobody(mfa, backend):
    """A database writer rewrites an instrument's owner: its display form, its device keys and
    its number are under the first owner's keys, and every read names the owner the row says."""
    owner = on_file(mfa, "owner@example.com")
    body = owner.body(500)
    thief = wallet(mfa, "thief@example.com")
    thief_id = thief.phone.call("GET", "/v1/me").json()["id"]
    instrument_id = owner.instrument["id"]
    with mfa.container.engine.begin() as c:
        c.execute(
            text("UPDATE instruments SET user_id = :t WHERE id = :i"),
            {"t": thief_id, "i": instrument_id},
        )
    r = thief.phone.call("GET", "/v1/me/instruments")
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed"), r.text
    assert "4242" not in r.text
    r = owner.charge(body)  # the device key no longer opens for the row's owner
    assert (r.status_code, r.json()["code"]) == (503, "decryption_failed"), r.text
    ctx, gateway = mfa.container.ctx, mfa.container.funding
    moved = ctx.read(lambda uow: uow.instruments.get(instrument_id))
    request = FundingRequest("chg_moved", moved, owner.merchant.id, Money.of(500, "USD"))
    with pytest.raises(DecryptionFailed):  # nor does the number, for the funding gateway
        ctx.run(
            lambda uow: gateway.charge(
                uow, request, now=ctx.now(), audit=partial(audit.record, ctx, uow)
            )
        )
    assert _count(mfa, "SELECT count(*) FROM charges") == 0
    _ledger_clean(mfa)


# ---- brute force: the device key locks --------------------------------------------------------


def test_five_bad_cryptograms_lock_the_key_and_the_payer_is_told(mfa, backend, clock):
    f = on_file(mfa)
    genuine = f.body(500, counter=1)
    forged = {**genuine, "cryptogram": b64url(bytes(32))}
    for _ in range(5):
        _refused(f.charge(forged))
    r = f.charge(genuine)  # the right cryptogram, but the key is locked now
    assert r.status_code == 423 and r.json()["code"] == "cryptogram_locked", r.text
    assert r.json()["permanent"] is False
    forged_again = f.charge(forged)
    _refused(forged_again)  # a forger learns nothing about the lock
    assert "instrument.device_key_locked" in _notification_kinds(mfa)
    detail = f.wallet.phone.call("GET", f"/v1/me/instruments/{f.token}").json()
    assert detail["device_keys"][0]["locked"] is True
    clock.advance(seconds=61)
    assert f.charge(genuine).status_code == 201  # the lock ran out; nothing was spent


def test_replays_are_refused_but_do_not_lock_the_key(mfa, backend):
    """A merchant retrying a charge it did not see answered sends the same cryptogram again:
    refused each time, never counted toward the payer's lock."""
    f = on_file(mfa)
    spent = f.body(500)
    assert f.charge(spent).status_code == 201
    for _ in range(8):
        _refused(f.charge(spent))
    assert f.charge(f.body(500)).status_code == 201
    assert "instrument.device_key_locked" not in _notification_kinds(mfa)


def test_a_success_restarts_the_failure_count(mfa, backend):
    f = on_file(mfa)
    forged = {**f.body(500, counter=1), "cryptogram": b64url(bytes(32))}
    for round_ in range(3):
        for _ in range(4):
            _refused(f.charge(forged))
        r = f.charge(f.body(500))
        assert r.status_code == 201, (round_, r.text)


def test_a_permanently_locked_key_is_replaced_from_the_device(mfa, backend, clock):
    f = on_file(mfa)
    forged = {**f.body(500, counter=1), "cryptogram": b64url(bytes(32))}
    for lock in range(5):
        for _ in range(5):
            _refused(f.charge(forged))
        clock.advance(seconds=60 * 2**lock + 1)  # each lock runs out; the next five lock again
    r = f.charge(f.body(500))
    assert r.status_code == 423 and r.json()["permanent"] is True, r.text
    kinds = set(_notification_kinds(mfa))
    assert {
        "instrument.device_key_final_warning",
        "instrument.device_key_locked_permanently",
    } <= kinds
    # The way back: sign in strongly on the device (the old session has idled out) and
    # provision a new key.
    r = mfa.passkey_login(f.wallet.phone, "payer@example.com")
    assert r.status_code == 201, r.text
    f.wallet.phone.token = r.json()["token"]
    f.wallet.provision(f.token)
    assert f.charge(f.body(500)).status_code == 201


def _notification_kinds(mfa: Any) -> list[str]:
    with mfa.container.engine.connect() as c:
        return [str(r.kind) for r in c.execute(text("SELECT kind FROM notifications"))]


# ---- races (PostgreSQL, many threads) -----------------------------------------------------------

THREADS = 16


def _race(calls: list[Any]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def one(call: Any) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        try:
            return call()
        except DomainError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


@POSTGRES_ONLY
def test_one_cryptogram_raced_by_many_threads_pays_once(mfa, backend):
    f = on_file(mfa)
    body = f.body(700, counter=1)
    ctx, gateway = mfa.container.ctx, mfa.container.funding

    def charge() -> Any:
        return charges.charge(
            ctx,
            gateway,
            merchant_id=f.merchant.id,
            token=body["token"],
            amount=Money.of(700, "USD"),
            counter=1,
            cryptogram=unb64url(body["cryptogram"]),
        )

    outcomes = _race([charge] * THREADS)
    paid = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(paid) == 1 and paid[0].status.value == "succeeded"
    refused = [type(o).__name__ for o in outcomes if o is not paid[0]]
    assert refused == ["CryptogramInvalid"] * (THREADS - 1)
    assert _count(mfa, "SELECT count(*) FROM charges") == 1
    assert _count(mfa, "SELECT count(*) FROM ledger_transfers") == 1
    assert _merchant_balance(mfa, f.merchant.id) == 700
    assert _count(mfa, "SELECT last_counter FROM instrument_device_keys") == 1
    _ledger_clean(mfa)


@POSTGRES_ONLY
def test_payers_phones_racing_for_the_carriers_monthly_cap_pass_it_by_nothing(mfa, backend):
    """One payer, several phones each with its own key: the KRW 1,000,000 a month is one
    counter, taken with a conditional UPDATE, so the racing charges fill it and no more."""
    w = wallet(mfa, "carrier@example.com")
    shop = merchant(mfa)
    phones = [f"+82 10-1234-56{n:02d}" for n in range(8)]
    made = []
    for phone in phones:
        instrument = w.add_phone(phone)
        made.append((instrument["token"], w.grant(instrument["token"], shop.id)))
        w.provision(instrument["token"])
    first_token, first_mtok = made[0]
    for _ in range(14):  # 910,000 of the month, one after another
        body = w.use(first_token, first_mtok, shop.id, 65_000, "KRW")
        r = mfa.client.post("/v1/charges", headers=shop.headers, json=body)
        assert r.status_code == 201, r.text
    ctx, gateway = mfa.container.ctx, mfa.container.funding
    calls = []
    for token, mtok in made[1:]:  # seven phones, 65,000 each: room for one
        body = w.use(token, mtok, shop.id, 65_000, "KRW")
        calls.append(
            lambda body=body: charges.charge(
                ctx,
                gateway,
                merchant_id=shop.id,
                token=body["token"],
                amount=Money.of(65_000, "KRW"),
                counter=body["counter"],
                cryptogram=unb64url(body["cryptogram"]),
            )
        )
    outcomes = _race(calls)
    statuses = sorted(o.status.value for o in outcomes)
    assert statuses == ["declined"] * 6 + ["succeeded"]
    assert all(o.decline_code in (None, "carrier_monthly_limit") for o in outcomes)
    with mfa.container.engine.connect() as c:
        total = c.execute(text("SELECT amount_minor FROM carrier_billing_totals")).scalar_one()
    assert total == 975_000 == _merchant_balance(mfa, shop.id)
    _ledger_clean(mfa)
