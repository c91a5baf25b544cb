"""Attacks on payment confirmation (PSD2 RTS Art. 4 and 5; OWASP transaction authorization):
proofs over another amount, payee or payment, a payment changed on the server under its flow,
replayed and stale answers, guessing, answers after the expiry, and races -- over HTTP on SQLite
and PostgreSQL (the races on PostgreSQL only, from many threads at once).

Every attack must leave the payer's money where it was (the hold released, nothing posted), the
payment payable afresh, and the ledger sound: ``services.ledger_check.verify`` finds nothing and
no hold is pending without its payment waiting on it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from support import sca
from support.mfa import PASSWORD, Device, Mfa
from support.webauthn_soft import b64url, b64url_decode
from zeropay.adapters.sql import tables as t
from zeropay.api.app import create_app
from zeropay.domain.dynamic_linking import canonical
from zeropay.services import ledger_check, payments

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
EMAIL = "ana@example.com"
FUNDS = 60_000  # EUR 600
PRICE = 4_000  # EUR 40: over the low-value ceiling (EUR 30), so SCA is always asked
SMALL = 1_000  # EUR 10: low value, and within a new phone's limits
WAITING = frozenset({"requires_action", "authorized", "in_review"})  # a payment that holds


# ---- the scene -------------------------------------------------------------------------------------


def _payer(mfa: Mfa, clock: Any, email: str = EMAIL) -> Device:
    """A payer a day after binding the phone (past its reduced limits), signed in afresh."""
    phone = sca.payer(mfa, email, EUR=FUNDS)
    sca.season(mfa, clock, (phone, email))
    return phone


def _asked(mfa: Mfa, phone: Device, payee: sca.Shop, amount: int = PRICE) -> tuple[str, dict]:
    """A payment the payer confirms and is asked to authenticate: its id and its flow."""
    payment_id = sca.bill(mfa, payee, amount, "EUR")
    return payment_id, sca.flow_of(sca.confirm(phone, payment_id))


def _code(r: Any) -> tuple[int, str | None]:
    return r.status_code, r.json().get("code")


def _status(mfa: Mfa, payment_id: str) -> str:
    with mfa.container.engine.connect() as c:
        return str(
            c.execute(select(t.payments.c.status).where(t.payments.c.id == payment_id)).scalar_one()
        )


def _transfers(mfa: Mfa, payment_id: str) -> list[str]:
    """The kinds of the ledger transfers made for a payment, in order."""
    x = t.ledger_transfers.c
    with mfa.container.engine.connect() as c:
        rows = c.execute(select(x.kind).where(x.reference == payment_id).order_by(x.seq))
        return [r.kind for r in rows]


def _merchant_balance(mfa: Mfa, payee: sca.Shop) -> int:
    a = t.ledger_accounts.c
    with mfa.container.engine.connect() as c:
        row = c.execute(
            select(a.credits_posted, a.debits_posted).where(
                a.kind == "merchant", a.owner_id == payee.id, a.currency == "EUR"
            )
        ).first()
    return 0 if row is None else int(row.credits_posted - row.debits_posted)


def _tamper_records(mfa: Mfa, payment_id: str) -> list[dict[str, Any]]:
    """The ``payment.confirmation_tampered`` audit entries about a payment, decrypted."""
    x = t.audit_log.c
    ctx = mfa.container.ctx
    out = []
    with mfa.container.engine.connect() as c:
        rows = c.execute(
            select(t.audit_log).where(
                x.event == "payment.confirmation_tampered", x.subject == payment_id
            )
        ).all()
    for row in rows:
        at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
        plain = ctx.keyring.decrypt(
            row.data,
            table="audit_log",
            column="data",
            row_id=f"{row.actor}|{row.subject}|{at.isoformat()}",
        )
        out.append({"actor": row.actor, **json.loads(plain)})
    return out


def _notices(phone: Device, kind: str) -> list[str]:
    r = phone.call("GET", "/v1/me/notifications")
    assert r.status_code == 200, r.text
    return [n["body"] for n in r.json()["data"] if n["kind"] == kind]


def _sound(mfa: Mfa) -> None:
    """The ledger verifies, and every hold still pending belongs to a payment that waits on it
    (no money left reserved for nothing)."""
    _, _, violations = ledger_check.verify(mfa.container.ctx)
    assert violations == []
    x, p = t.ledger_transfers.c, t.payments.c
    resolved = select(x.pending_id).where(x.pending_id.is_not(None))
    with mfa.container.engine.connect() as c:
        pending = c.execute(
            select(x.id, x.reference, p.status)
            .join(t.payments, p.id == x.reference, isouter=True)
            .where(x.kind == "pending", x.id.not_in(resolved))
        ).all()
        waiting = c.execute(select(p.id).where(p.status.in_(WAITING))).scalars().all()
    assert all(row.status in WAITING for row in pending), pending
    assert sorted(row.reference for row in pending) == sorted(waiting)


def _released(mfa: Mfa, phone: Device, payment_id: str, *, spent: int = 0) -> None:
    """Nothing was paid for ``payment_id``: its hold is voided and it can be paid afresh."""
    assert sca.wallet(phone, "EUR") == (FUNDS - spent, 0)
    assert _transfers(mfa, payment_id) == ["pending", "void_pending"]
    assert _status(mfa, payment_id) == "requires_confirmation"
    _sound(mfa)


def _ask_options(phone: Device, flow_id: str) -> Any:
    """Ask for a passkey ceremony: the first thing a payer's wallet does to answer a flow."""
    return phone.call("POST", f"/v1/auth/flows/{flow_id}/passkey-options", token="")


def _ended_as_tampered(mfa: Mfa, phone: Device, payment_id: str, flow: dict, what: str) -> None:
    """The flow is over, the funds are back, and the attempt is recorded and told to the payer."""
    assert sca.view(phone, flow["id"])["status"] == "failed"
    r = _ask_options(phone, flow["id"])
    assert _code(r) == (409, "flow_ended"), r.text
    _released(mfa, phone, payment_id)
    [entry] = _tamper_records(mfa, payment_id)
    assert entry["what"] == what and entry["flow"] == flow["id"]
    assert len(_notices(phone, "payment.confirmation_tampered")) == 1
    assert sca.decision_of(phone, payment_id)["outcome"] == "failed"


# ---- a proof over another transaction ------------------------------------------------------------


@pytest.mark.parametrize("change", ["amount", "payee"])
def test_a_passkey_assertion_over_another_amount_or_payee_ends_the_flow_and_releases_the_funds(
    psd2, clock, change
):
    phone = _payer(psd2, clock)
    shop, thief = sca.shop(psd2, "Book Shop"), sca.shop(psd2, "Thief Ltd")
    payment_id, flow = _asked(psd2, phone, shop)
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    ceremony = sca.options(phone, flow["id"])
    other = {"amount": PRICE * 10, "payee": thief.id}[change]
    # The page showed the payer another transaction, and the passkey signed what it showed.
    made = sca.assertion_over(
        phone, ceremony, sca.changed(ceremony["transaction"], **{change: other})
    )
    r = sca.passkey(psd2, phone, flow["id"], made)
    assert _code(r) == (409, "transaction_changed"), r.text
    _ended_as_tampered(psd2, phone, payment_id, flow, "proof")
    assert _merchant_balance(psd2, shop) == 0 and _merchant_balance(psd2, thief) == 0


def test_a_device_signature_over_another_amount_ends_the_flow_and_releases_the_funds(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    shown = sca.view(phone, flow["id"])["transaction"]
    signed = canonical(sca.changed(shown, amount=PRICE * 10))
    r = sca.device_key(psd2, phone, flow["id"], signed, signed=b64url(signed))
    assert _code(r) == (409, "transaction_changed"), r.text
    _ended_as_tampered(psd2, phone, payment_id, flow, "proof")
    assert _merchant_balance(psd2, shop) == 0


def test_a_device_signature_over_another_amount_sent_bare_is_a_failed_attempt(psd2, clock):
    # Without the signed bytes the server cannot tell a lie from a wrong key: an ordinary
    # failure, counted, and the flow goes on.
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    shown = sca.view(phone, flow["id"])["transaction"]
    r = sca.device_key(psd2, phone, flow["id"], canonical(sca.changed(shown, amount=1)))
    assert _code(r) == (401, "authentication_failed"), r.text
    assert sca.view(phone, flow["id"])["attempts_left"] == 4
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    paid = sca.answer_with_device_key(psd2, phone, flow)
    assert paid.status_code == 200 and paid.json()["payment"]["id"] == payment_id, paid.text
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, 0)
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


# ---- the payment changed on the server under its flow --------------------------------------------


@pytest.mark.parametrize("column", ["amount_minor", "merchant_id"])
@pytest.mark.parametrize("next_call", ["passkey_options", "step"])
def test_a_payment_changed_on_the_server_after_the_challenge_is_refused_and_releases_the_funds(
    psd2, clock, column, next_call
):
    phone = _payer(psd2, clock)
    shop, other = sca.shop(psd2, "Book Shop"), sca.shop(psd2, "Other Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    made = sca.assertion(phone, sca.options(phone, flow["id"]))  # over what was shown
    value = {"amount_minor": PRICE + 1, "merchant_id": other.id}[column]
    with psd2.container.engine.begin() as c:
        c.execute(
            text(f"UPDATE payments SET {column} = :value WHERE id = :id"),  # noqa: S608
            {"value": value, "id": payment_id},
        )
    if next_call == "step":
        r = sca.passkey(psd2, phone, flow["id"], made)
    else:
        r = phone.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
    assert _code(r) == (409, "transaction_changed"), r.text
    _ended_as_tampered(psd2, phone, payment_id, flow, "server_record")
    # The assertion made over what the payer saw is worth nothing now either.
    assert sca.passkey(psd2, phone, flow["id"], made).status_code == 409
    assert _merchant_balance(psd2, shop) == 0 and _merchant_balance(psd2, other) == 0


def test_a_payment_the_merchant_canceled_under_its_flow_is_not_paid_by_the_answer(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    made = sca.assertion(phone, sca.options(phone, flow["id"]))
    r = psd2.client.post(
        f"/v1/payments/{payment_id}/cancel", headers={"Authorization": f"Bearer {shop.key}"}
    )
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    assert sca.wallet(phone, "EUR") == (FUNDS, 0)
    # The payer is not left with a confirmation that can only be refused.
    assert sca.view(phone, flow["id"])["status"] == "failed"
    assert sca.decision_of(phone, payment_id)["outcome"] == "failed"
    r = sca.passkey(psd2, phone, flow["id"], made)
    assert _code(r) == (409, "flow_ended"), r.text
    assert _status(psd2, payment_id) == "canceled"
    assert _transfers(psd2, payment_id) == ["pending", "void_pending"]
    assert _merchant_balance(psd2, shop) == 0
    assert sca.wallet(phone, "EUR") == (FUNDS, 0)
    _sound(psd2)


# ---- replay ------------------------------------------------------------------------------------


def test_the_same_passkey_assertion_sent_twice_pays_once(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    made = sca.assertion(phone, sca.options(phone, flow["id"]))
    r = sca.passkey(psd2, phone, flow["id"], made)
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
    again = sca.passkey(psd2, phone, flow["id"], made)
    assert _code(again) == (409, "flow_ended"), again.text
    assert _code(sca.confirm(phone, payment_id)) == (409, "invalid_state")
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, 0)
    assert _transfers(psd2, payment_id) == ["pending", "post_pending"]
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


def test_the_same_device_signature_sent_twice_is_refused_and_worth_nothing_in_a_later_flow(
    psd2, clock
):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    data = b64url_decode(sca.view(phone, flow["id"])["transaction"]["canonical"])
    signature = sca.signature(phone, data)
    r = psd2.step(phone, flow["id"], "device_key", signature=signature)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["password"], r.text
    r = psd2.step(phone, flow["id"], "device_key", signature=signature)
    assert _code(r) == (409, "flow_step_refused"), r.text
    # The thief with the phone does not know the password: the flow fails, the funds come back.
    for _ in range(5):
        r = psd2.step(phone, flow["id"], "password", password="a guess at the password")
        assert _code(r) == (401, "authentication_failed"), r.text
    _released(psd2, phone, payment_id)
    # The payment confirmed again is a new flow with a new nonce: the old signature fails there.
    fresh = sca.flow_of(sca.confirm(phone, payment_id))
    assert fresh["id"] != flow["id"]
    assert fresh["transaction"]["nonce"] != flow["transaction"]["nonce"]
    r = psd2.step(phone, fresh["id"], "device_key", signature=signature)
    assert _code(r) == (401, "authentication_failed"), r.text
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    assert _merchant_balance(psd2, shop) == 0
    _sound(psd2)


def test_an_answer_made_for_one_payment_is_refused_on_another_and_that_one_pays_nothing(
    psd2, clock
):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    # Two payments alike in all but their id: the same amount to the same payee.
    first, first_flow = _asked(psd2, phone, shop)
    second, second_flow = _asked(psd2, phone, shop)
    made_for_first = sca.assertion(phone, sca.options(phone, first_flow["id"]))
    sca.options(phone, second_flow["id"])  # the second flow's own ceremony is under way
    r = sca.passkey(psd2, phone, second_flow["id"], made_for_first)
    assert _code(r) == (409, "transaction_changed"), r.text
    assert sca.view(phone, second_flow["id"])["status"] == "failed"
    assert _transfers(psd2, second) == ["pending", "void_pending"]
    assert _status(psd2, second) == "requires_confirmation"
    # The first payment is untouched: still held, and its own answer pays it, once.
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    r = sca.passkey(psd2, phone, first_flow["id"], made_for_first)
    assert r.status_code == 200 and r.json()["payment"]["id"] == first, r.text
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, 0)
    assert _merchant_balance(psd2, shop) == PRICE
    assert _status(psd2, second) == "requires_confirmation"
    _sound(psd2)


def test_a_device_signature_made_for_one_payment_is_refused_on_another(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    first, first_flow = _asked(psd2, phone, shop)
    second, second_flow = _asked(psd2, phone, shop)
    data = b64url_decode(sca.view(phone, first_flow["id"])["transaction"]["canonical"])
    r = sca.device_key(psd2, phone, second_flow["id"], data)  # bare: a wrong signature here
    assert _code(r) == (401, "authentication_failed"), r.text
    r = sca.device_key(psd2, phone, second_flow["id"], data, signed=b64url(data))
    assert _code(r) == (409, "transaction_changed"), r.text
    assert _transfers(psd2, second) == ["pending", "void_pending"]
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)  # the first is still held
    assert _merchant_balance(psd2, shop) == 0
    assert _status(psd2, first) == "requires_action"
    _sound(psd2)


def test_an_assertion_made_for_an_earlier_ceremony_of_the_same_flow_is_refused(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    earlier = sca.options(phone, flow["id"])
    made_earlier = sca.assertion(phone, earlier)
    later = sca.options(phone, flow["id"])
    assert later["transaction"]["nonce"] != earlier["transaction"]["nonce"]
    assert later["publicKey"]["challenge"] != earlier["publicKey"]["challenge"]
    # This payment under an earlier nonce: a stale answer, one failed attempt (not tampering).
    r = sca.passkey(psd2, phone, flow["id"], made_earlier)
    assert _code(r) == (401, "authentication_failed"), r.text
    assert sca.view(phone, flow["id"])["attempts_left"] == 4
    r = sca.passkey(psd2, phone, flow["id"], made_earlier)  # and again: refused again
    assert _code(r) == (401, "authentication_failed"), r.text
    assert _merchant_balance(psd2, shop) == 0
    assert _transfers(psd2, payment_id) == ["pending"]
    assert _tamper_records(psd2, payment_id) == []
    # The current ceremony's answer pays, once.
    r = sca.answer_with_passkey(psd2, phone, flow)
    assert r.status_code == 200 and r.json()["payment"]["id"] == payment_id, r.text
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


def test_a_device_signature_made_before_a_later_ceremony_of_the_same_flow_is_refused(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    data = b64url_decode(sca.view(phone, flow["id"])["transaction"]["canonical"])
    sca.options(phone, flow["id"])  # a passkey ceremony began since: the nonce moved on
    for extra in ({}, {"signed": b64url(data)}):
        r = sca.device_key(psd2, phone, flow["id"], data, **extra)
        assert _code(r) == (401, "authentication_failed"), r.text
    assert sca.view(phone, flow["id"])["status"] == "active"
    assert _tamper_records(psd2, payment_id) == []
    assert _merchant_balance(psd2, shop) == 0
    r = sca.answer_with_device_key(psd2, phone, flow)  # over the transaction as it is now
    assert r.status_code == 200 and r.json()["payment"]["id"] == payment_id, r.text
    assert _transfers(psd2, payment_id) == ["pending", "post_pending"]
    _sound(psd2)


# ---- guessing and running out of time -------------------------------------------------------------


def test_five_wrong_answers_fail_the_flow_release_the_hold_and_the_next_confirmation_starts_afresh(
    psd2, clock
):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    left = []
    for _ in range(5):
        # The phone without the owner's finger: no user verification.
        made = sca.assertion(phone, sca.options(phone, flow["id"]), user_verified=False)
        r = sca.passkey(psd2, phone, flow["id"], made)
        assert _code(r) == (401, "authentication_failed"), r.text
        left.append(r.json()["attempts_left"])
    assert left == [4, 3, 2, 1, 0]
    assert sca.view(phone, flow["id"])["status"] == "failed"
    _released(psd2, phone, payment_id)
    r = _ask_options(phone, flow["id"])
    assert _code(r) == (409, "flow_ended"), r.text
    # A new confirmation is a new flow, a new nonce and a new hold; answered, it pays once.
    fresh = sca.flow_of(sca.confirm(phone, payment_id))
    assert fresh["id"] != flow["id"]
    assert fresh["transaction"]["nonce"] != flow["transaction"]["nonce"]
    assert fresh["attempts_left"] == 5
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    r = sca.answer_with_device_key(psd2, phone, fresh)
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, 0)
    assert _transfers(psd2, payment_id) == ["pending", "void_pending", "pending", "post_pending"]
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


def test_an_expired_confirmation_releases_the_hold_and_a_late_answer_is_refused(psd2, clock):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    made = sca.assertion(phone, sca.options(phone, flow["id"]))  # made in time, sent late
    data = b64url_decode(sca.view(phone, flow["id"])["transaction"]["canonical"])
    signature = sca.signature(phone, data)
    clock.advance(seconds=301)
    # Late, before the expiry job has run: refused all the same.
    r = sca.passkey(psd2, phone, flow["id"], made)
    assert _code(r) == (409, "flow_ended"), r.text
    r = psd2.step(phone, flow["id"], "device_key", signature=signature)
    assert _code(r) == (409, "flow_ended"), r.text
    assert _merchant_balance(psd2, shop) == 0
    assert payments.expire_holds(psd2.container.ctx) == 1
    assert payments.expire_holds(psd2.container.ctx) == 0  # released once
    assert _transfers(psd2, payment_id) == ["pending", "expire_pending"]
    assert _status(psd2, payment_id) == "requires_confirmation"
    r = sca.passkey(psd2, phone, flow["id"], made)
    assert _code(r) == (409, "flow_ended"), r.text
    sca.sign_in_with_passkey(psd2, phone, EMAIL)  # the session ended after 5 idle minutes
    assert sca.wallet(phone, "EUR") == (FUNDS, 0)
    assert sca.decision_of(phone, payment_id)["outcome"] == "failed"
    assert _merchant_balance(psd2, shop) == 0
    _sound(psd2)


def test_a_flow_that_ran_out_unanswered_is_replaced_when_the_payment_is_confirmed_again(
    psd2, clock
):
    # The expiry job has not run yet: confirming again releases the old hold and starts anew.
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    clock.advance(seconds=240)
    assert sca.flow_of(sca.confirm(phone, payment_id))["id"] == flow["id"]  # still running
    clock.advance(seconds=61)
    fresh = sca.flow_of(sca.confirm(phone, payment_id))
    assert fresh["id"] != flow["id"]
    assert _transfers(psd2, payment_id) == ["pending", "expire_pending", "pending"]
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    assert payments.expire_holds(psd2.container.ctx) == 0  # the new hold is not due
    _sound(psd2)


# ---- races (PostgreSQL: real concurrent transactions) -------------------------------------------


@contextlib.contextmanager
def _clients(mfa: Mfa, n: int) -> Iterator[list[TestClient]]:
    """``n`` more HTTP clients of the same app and database, one per racing thread."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(TestClient(create_app(mfa.container), base_url="http://localhost"))
            for _ in range(n)
        ]


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _twin(phone: Device, client: TestClient) -> Device:
    """The same phone (key, passkey, session) talking over another connection."""
    return Device(
        client, phone.now, key=phone.key, authenticator=phone.authenticator, token=phone.token
    )


@POSTGRES_ONLY
@pytest.mark.parametrize("last_step", ["passkey", "password"])
def test_two_correct_answers_raced_at_one_flow_move_the_money_once(psd2, clock, backend, last_step):
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id, flow = _asked(psd2, phone, shop)
    if last_step == "passkey":
        payload = {"credential": sca.assertion(phone, sca.options(phone, flow["id"]))}
    else:
        data = b64url_decode(sca.view(phone, flow["id"])["transaction"]["canonical"])
        assert sca.device_key(psd2, phone, flow["id"], data).status_code == 200
        payload = {"password": PASSWORD}
    with _clients(psd2, 2) as clients:
        twins = [_twin(phone, c) for c in clients]
        answers = _race([lambda d=d: psd2.step(d, flow["id"], last_step, **payload) for d in twins])
    paid = [r for r in answers if r.status_code == 200]
    assert len(paid) == 1, [r.text for r in answers]
    assert paid[0].json()["payment"]["status"] == "succeeded"
    [refused] = [r for r in answers if r.status_code != 200]
    # Turned away while the other was checked, or after it had ended the flow, or (a passkey)
    # its challenge already used: never a second payment.
    assert (*_code(refused), refused.json().get("reason")) in {
        (409, "conflict", "step_in_progress"),
        (409, "flow_ended", "complete"),
        (401, "authentication_failed", None),
    }, refused.text
    assert _transfers(psd2, payment_id) == ["pending", "post_pending"]
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, 0)
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


@POSTGRES_ONLY
@pytest.mark.parametrize(("left", "racing"), [(1, 2), (2, 6)])
def test_payments_raced_for_the_last_low_value_exemptions_get_exactly_those_left(
    psd2, backend, left, racing
):
    phone = sca.payer(psd2, EMAIL, EUR=FUNDS)
    cafe = sca.shop(psd2, "Corner Cafe")
    for _ in range(5 - left):
        assert sca.exemption_of(sca.confirm(phone, sca.bill(psd2, cafe, SMALL, "EUR")))
    bills = [sca.bill(psd2, cafe, SMALL, "EUR") for _ in range(racing)]
    with _clients(psd2, racing) as clients:
        twins = [_twin(phone, c) for c in clients]
        answers = _race(
            [lambda d=d, b=b: sca.confirm(d, b) for d, b in zip(twins, bills, strict=True)]
        )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    statuses = sorted(r.json()["status"] for r in answers)
    assert statuses == ["requires_action"] * (racing - left) + ["succeeded"] * left
    for r in answers:
        if r.json()["status"] == "requires_action":
            assert sca.reasons_of(r)[0] == "low_value_count_reached"
        else:
            assert sca.exemption_of(r) == "low_value"
    seen = sca.standing(phone)
    assert seen["since_last_sca"]["exempt_payments"] == 5
    assert seen["low_value"]["exempt_payments_left"] == 0
    assert _merchant_balance(psd2, cafe) == (5 - left + left) * SMALL
    assert sca.wallet(phone, "EUR") == (
        FUNDS - (5 - left + racing) * SMALL,
        (racing - left) * SMALL,
    )
    _sound(psd2)


@POSTGRES_ONLY
def test_one_payment_confirmed_twice_at_once_is_held_once_under_one_flow(psd2, clock, backend):
    # A double tap, or two tabs: one flow and one hold; answering it pays once.
    phone = _payer(psd2, clock)
    shop = sca.shop(psd2, "Book Shop")
    payment_id = sca.bill(psd2, shop, PRICE, "EUR")
    with _clients(psd2, 2) as clients:
        answers = _race(
            [lambda d=d: sca.confirm(d, payment_id) for d in (_twin(phone, c) for c in clients)]
        )
    flows = {sca.flow_of(r)["id"] for r in answers}
    assert len(flows) == 1
    assert _transfers(psd2, payment_id) == ["pending"]
    assert sca.wallet(phone, "EUR") == (FUNDS - PRICE, PRICE)
    r = sca.answer_with_passkey(psd2, phone, {"id": flows.pop()})
    assert r.status_code == 200 and r.json()["payment"]["status"] == "succeeded", r.text
    assert _transfers(psd2, payment_id) == ["pending", "post_pending"]
    assert _merchant_balance(psd2, shop) == PRICE
    _sound(psd2)


@POSTGRES_ONLY
def test_one_exempt_payment_confirmed_twice_at_once_is_paid_and_counted_once(psd2, backend):
    phone = sca.payer(psd2, EMAIL, EUR=FUNDS)
    cafe = sca.shop(psd2, "Corner Cafe")
    payment_id = sca.bill(psd2, cafe, SMALL, "EUR")
    with _clients(psd2, 2) as clients:
        answers = _race(
            [lambda d=d: sca.confirm(d, payment_id) for d in (_twin(phone, c) for c in clients)]
        )
    paid = [r for r in answers if r.status_code == 200]
    assert len(paid) == 1 and sca.exemption_of(paid[0]) == "low_value", [r.text for r in answers]
    [refused] = [r for r in answers if r.status_code != 200]
    assert _code(refused) == (409, "invalid_state"), refused.text
    assert _transfers(psd2, payment_id) == ["posted"]
    assert sca.standing(phone)["since_last_sca"]["exempt_payments"] == 1
    assert [d["payment_id"] for d in sca.standing(phone)["decisions"]] == [payment_id]
    assert _merchant_balance(psd2, cafe) == SMALL
    _sound(psd2)
