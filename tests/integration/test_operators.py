"""Operators over HTTP: the queue of payments the live risk engine held for review, approve and
decline with a reason, roles checked on every route (support reads, risk decides), a passkey
sign-in required, every read and decision audited with who and why; roles granted from the CLI.

The risk engine runs with test rules (tests/policies/risk-review-cashout.toml) under which a
payment to a gift-card merchant is held for review and nothing else scores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from support.mfa import PASSWORD, Device, Mfa, SmtpInbox, bound
from zeropay import cli
from zeropay.adapters.clock import FixedClock
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.api.app import create_app
from zeropay.bootstrap import build
from zeropay.config import Settings
from zeropay.domain.ledger import AccountKind
from zeropay.services import ledger_check, merchants, operators, payments
from zeropay.services.risk import Verdict

RULES = Path(__file__).parents[1] / "policies" / "risk-review-cashout.toml"
HERE = "203.0.113.10"  # the test client's address (no GeoIP country: no place signal)
GIFT_CARDS = "5947"  # ISO 18245: a cash-out category, held for review under the test rules
TOP_UP = 10_000
PRICE = 900  # under the new-device ceiling of the default policy (USD 10.00)


@pytest.fixture
def ops(mfa_settings: Settings, clock: FixedClock, smtp_inbox: SmtpInbox) -> Iterator[Mfa]:
    """The shipped authentication policy, the live risk engine with the test rules, and the
    key file's keyring (so the ``zeropay`` CLI, run on the same settings, finds accounts by
    their email's blind index)."""
    configured = replace(mfa_settings, risk_enabled=True, risk_config_file=RULES)
    built = build(
        configured,
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )
    with TestClient(create_app(built), base_url="http://localhost", client=(HERE, 50000)) as c:
        yield Mfa(c, built, smtp_inbox)
    built.engine.dispose()


# ---- helpers ------------------------------------------------------------------------------------


class Shop:
    def __init__(self, ops: Mfa, name: str = "Gift Card Kiosk", mcc: str | None = GIFT_CARDS):
        self.id, key = merchants.create_merchant(ops.container.ctx, name=name, mcc=mcc)
        self.headers = {"Authorization": f"Bearer {key.secret}"}
        self.client = ops.client

    def bill(self, amount: int = PRICE, capture_method: str = "automatic") -> str:
        body = {
            "amount": amount,
            "currency": "USD",
            "description": "Gift card",
            "capture_method": capture_method,
        }
        r = self.client.post("/v1/payments", headers=self.headers, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def payment(self, payment_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/payments/{payment_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())


def _payer(ops: Mfa, email: str = "payer@example.com") -> Device:
    phone = bound(ops, email)
    r = phone.call("POST", "/v1/wallet/topups", {"amount": TOP_UP, "currency": "USD"})
    assert r.status_code == 201, r.text
    return phone


def _user_id(device: Device) -> str:
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _passkey_session(ops: Mfa, device: Device, email: str) -> None:
    """Sign ``device`` in again, with the passkey alone (the operators' way in)."""
    device.token = None
    r = ops.passkey_login(device, email)
    assert r.status_code == 201, r.text
    assert [m["factor"] for m in r.json()["session"]["methods"]] == ["passkey"]
    device.token = r.json()["token"]


def _operator(ops: Mfa, email: str, *roles: str) -> Device:
    """An account with ``roles`` (granted as the CLI does), signed in with its passkey."""
    phone = bound(ops, email)
    for role in roles:
        operators.grant(ops.container.ctx, email=email, role=role, actor="cli")
    _passkey_session(ops, phone, email)
    return phone


def _held(ops: Mfa, payer: Device, shop: Shop, capture_method: str = "automatic") -> str:
    payment_id = shop.bill(capture_method=capture_method)
    r = payer.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_review"
    return payment_id


def _wallet(payer: Device) -> dict[str, int]:
    r = payer.call("GET", "/v1/wallet")
    assert r.status_code == 200, r.text
    [usd] = [b for b in r.json()["balances"] if b["currency"] == "USD"]
    return {"available": usd["available"], "held": usd["held"]}


def _merchant_balance(ops: Mfa, merchant_id: str) -> dict[str, int]:
    accounts = ops.container.ctx.read(lambda uow: uow.ledger.accounts_of(merchant_id))
    [usd] = [a for a in accounts if a.kind is AccountKind.MERCHANT]
    return {"posted": usd.balance.posted, "pending": usd.balance.credits_pending}


def _spent(ops: Mfa, payer_id: str) -> int:
    ctx = ops.container.ctx
    period = ctx.profile.limits.period(ctx.now())
    return int(ctx.read(lambda uow: uow.spend.spent(payer_id, "USD", period)))


def _transfer_kinds(ops: Mfa, payment_id: str) -> list[str]:
    transfers = ops.container.ctx.run(lambda uow: list(uow.ledger.all_transfers()))
    return sorted(t.kind.value for t in transfers if t.reference == payment_id)


def _ledger_ok(ops: Mfa) -> None:
    _, _, violations = ledger_check.verify(ops.container.ctx)
    assert violations == []


def _audit(ops: Mfa, event: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(actor, subject, data) of each audit entry named ``event``, oldest first, decrypted."""
    ctx = ops.container.ctx
    records = ctx.run(lambda uow: [r for r, _ in uow.audit.records()])
    out = []
    for r in records:
        if r.event != event:
            continue
        row_id = f"{r.actor}|{r.subject}|{r.at.astimezone(UTC).isoformat()}"
        plain = ctx.keyring.decrypt(r.data, table="audit_log", column="data", row_id=row_id)
        out.append((r.actor, r.subject, json.loads(plain)))
    return out


def _problem(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("code")


def _queue(device: Device, query: str = "") -> dict[str, Any]:
    r = device.call("GET", f"/v1/operator/reviews{query}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _decide(device: Device, payment_id: str, verb: str, reason: Any = "checked") -> Any:
    body = {} if reason is None else {"reason": reason}
    return device.call("POST", f"/v1/operator/reviews/{payment_id}/{verb}", body)


# ---- deciding -----------------------------------------------------------------------------------


def test_a_risk_operator_sees_the_held_payment_and_approving_it_pays_the_merchant_once(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}
    analyst = _operator(ops, "risk@example.com", "risk")

    [item] = _queue(analyst)["data"]
    assert item["id"] == payment_id and item["payer_id"] == _user_id(payer)
    assert item["merchant"] == {"id": shop.id, "name": "Gift Card Kiosk"}
    assert (item["payment"]["amount"], item["payment"]["currency"]) == (PRICE, "USD")
    assert item["payment"]["status"] == "in_review" and item["payment"]["created_at"]
    assert item["risk"]["score"] == 80 and item["risk"]["reasons"] == ["cashout_mcc"]
    assert item["risk"]["config_version"] == "risk-test-review-cashout"
    r = analyst.call("GET", f"/v1/operator/reviews/{payment_id}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert [d["action"] for d in detail["decisions"]] == ["review"]
    assert detail["hold"]["amount"] == PRICE and detail["hold"]["resolution"] is None

    r = _decide(analyst, payment_id, "approve", "Known customer; confirmed by phone")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["amount_captured"]) == ("succeeded", PRICE)
    assert shop.payment(payment_id)["status"] == "succeeded"
    # The payer paid once: the hold became the payment, nothing more was taken.
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": 0}
    assert _merchant_balance(ops, shop.id) == {"posted": PRICE, "pending": 0}
    assert _transfer_kinds(ops, payment_id) == ["pending", "post_pending"]
    assert _spent(ops, _user_id(payer)) == PRICE
    assert _queue(analyst)["data"] == []
    _ledger_ok(ops)
    [(actor, subject, data)] = _audit(ops, "review.approved")
    assert (actor, subject) == (_user_id(analyst), payment_id)
    assert data["role"] == "risk" and data["reason"] == "Known customer; confirmed by phone"
    assert data["payment_status"] == "succeeded"


def test_an_approved_manual_capture_payment_is_authorized_and_the_merchant_captures_it(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop, capture_method="manual")
    analyst = _operator(ops, "risk@example.com", "risk")
    r = _decide(analyst, payment_id, "approve")
    assert r.status_code == 200 and r.json()["status"] == "authorized", r.text
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}  # still held
    r = ops.client.post(
        f"/v1/payments/{payment_id}/capture", headers=shop.headers, json={"amount": 600}
    )
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert _wallet(payer) == {"available": TOP_UP - 600, "held": 0}
    assert _merchant_balance(ops, shop.id)["posted"] == 600
    _ledger_ok(ops)


def test_declining_releases_the_payers_money_and_the_room_under_the_monthly_limit(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    assert _spent(ops, _user_id(payer)) == PRICE
    analyst = _operator(ops, "risk@example.com", "risk")
    r = _decide(analyst, payment_id, "decline", "Card-testing pattern on this merchant")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["amount_captured"]) == ("declined", 0)
    assert shop.payment(payment_id)["status"] == "declined"
    assert _wallet(payer) == {"available": TOP_UP, "held": 0}
    assert _merchant_balance(ops, shop.id) == {"posted": 0, "pending": 0}
    assert _transfer_kinds(ops, payment_id) == ["pending", "void_pending"]
    assert _spent(ops, _user_id(payer)) == 0
    _ledger_ok(ops)
    [(actor, subject, data)] = _audit(ops, "review.declined")
    assert (actor, subject) == (_user_id(analyst), payment_id)
    assert (data["role"], data["reason"]) == ("risk", "Card-testing pattern on this merchant")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("approve", "approve"),
        ("approve", "decline"),
        ("decline", "approve"),
        ("decline", "decline"),
    ],
)
def test_a_second_decision_on_the_same_payment_is_refused_with_the_payment_state_code(
    ops, first, second
):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    analyst = _operator(ops, "risk@example.com", "risk")
    assert _decide(analyst, payment_id, first).status_code == 200
    wallet, merchant = _wallet(payer), _merchant_balance(ops, shop.id)
    r = _decide(analyst, payment_id, second)
    assert _problem(r) == (409, "invalid_state"), r.text
    assert r.json()["payment_status"] == ("succeeded" if first == "approve" else "declined")
    assert (_wallet(payer), _merchant_balance(ops, shop.id)) == (wallet, merchant)
    assert len(_audit(ops, "review.approved") + _audit(ops, "review.declined")) == 1
    _ledger_ok(ops)


def test_a_payment_not_held_for_review_cannot_be_approved(ops):
    payer, cafe = _payer(ops), Shop(ops, "Corner Cafe", mcc="5814")
    payment_id = cafe.bill()
    r = payer.call("POST", f"/v1/checkout/{payment_id}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    analyst = _operator(ops, "risk@example.com", "risk")
    assert _problem(_decide(analyst, payment_id, "approve")) == (409, "invalid_state")
    assert _problem(_decide(analyst, "pay_nothing", "decline")) == (404, "not_found")


def test_a_review_that_ran_out_of_time_is_left_to_the_expiry_job(ops, clock):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    clock.advance(seconds=ops.container.ctx.durations.review_ttl_s)
    analyst = _operator(ops, "risk@example.com", "risk")
    r = _decide(analyst, payment_id, "approve")
    assert _problem(r) == (409, "invalid_state") and r.json()["reason"] == "expired", r.text
    assert payments.expire_holds(ops.container.ctx) == 1
    assert shop.payment(payment_id)["status"] == "expired"
    _passkey_session(ops, payer, "payer@example.com")  # three days later: signed in again
    assert _wallet(payer) == {"available": TOP_UP, "held": 0}
    _ledger_ok(ops)


# ---- who may: roles, passkey, credentials -------------------------------------------------------


def test_an_account_without_an_operator_role_is_refused_on_every_operator_route(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    _passkey_session(ops, payer, "payer@example.com")  # a passkey is not a role
    for method, path in (
        ("GET", "/v1/operator/reviews"),
        ("GET", f"/v1/operator/reviews/{payment_id}"),
        ("GET", f"/v1/operator/users/{_user_id(payer)}/risk"),
    ):
        assert _problem(payer.call(method, path)) == (403, "not_an_operator"), path
    for verb in ("approve", "decline"):
        assert _problem(_decide(payer, payment_id, verb)) == (403, "not_an_operator")
    assert shop.payment(payment_id)["status"] == "in_review"
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}


def test_a_support_operator_reads_the_queue_but_cannot_decide_and_nothing_changes(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    agent = _operator(ops, "support@example.com", "support")
    assert [i["id"] for i in _queue(agent)["data"]] == [payment_id]
    assert agent.call("GET", f"/v1/operator/reviews/{payment_id}").status_code == 200
    assert agent.call("GET", f"/v1/operator/users/{_user_id(payer)}/risk").status_code == 200
    for verb in ("approve", "decline"):
        assert _problem(_decide(agent, payment_id, verb)) == (403, "operator_role_required")
        # The role is checked before the body: a bad reason teaches support nothing either.
        assert _problem(_decide(agent, payment_id, verb, "")) == (403, "operator_role_required")
    assert shop.payment(payment_id)["status"] == "in_review"
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}
    assert _transfer_kinds(ops, payment_id) == ["pending"]
    assert _audit(ops, "review.approved") == [] and _audit(ops, "review.declined") == []


def test_a_risk_operator_signed_in_with_password_and_totp_must_use_a_passkey(ops, clock):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    phone = _operator(ops, "risk@example.com", "risk")
    app = ops.enroll_totp(phone)
    clock.advance(seconds=30)  # the next code: the one that confirmed the app is spent
    laptop = ops.device("Work laptop", "linux")
    r = laptop.call("POST", "/v1/sessions", {"email": "risk@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    r = ops.step(laptop, r.json()["flow"]["id"], "totp", code=app.at(ops.now()))
    assert r.status_code == 201, r.text
    assert [m["factor"] for m in r.json()["session"]["methods"]] == ["password", "totp"]
    laptop.token = r.json()["token"]
    assert _problem(laptop.call("GET", "/v1/operator/reviews")) == (403, "passkey_required")
    assert _problem(_decide(laptop, payment_id, "approve")) == (403, "passkey_required")
    assert shop.payment(payment_id)["status"] == "in_review"
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}


def test_a_merchant_api_key_or_no_credential_is_not_an_operator(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    for headers in (shop.headers, {}):
        for method, path, body in (
            ("GET", "/v1/operator/reviews", None),
            ("GET", f"/v1/operator/reviews/{payment_id}", None),
            ("POST", f"/v1/operator/reviews/{payment_id}/approve", {"reason": "mine"}),
            ("POST", f"/v1/operator/reviews/{payment_id}/decline", {"reason": "mine"}),
            ("GET", f"/v1/operator/users/{_user_id(payer)}/risk", None),
        ):
            r = ops.client.request(method, path, headers=headers, json=body)
            assert _problem(r) == (401, "not_authenticated"), (path, r.text)
    assert shop.payment(payment_id)["status"] == "in_review"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (None, "missing_field"),
        ("", "invalid_reason"),
        ("   ", "invalid_reason"),
        ("x" * 501, "invalid_reason"),
        ("looks fine\nIGNORE PREVIOUS", "invalid_reason"),
        ("ok \u202egnp.exe", "invalid_reason"),
        (42, "invalid_input"),
    ],
)
def test_a_decision_needs_a_reason_of_1_to_500_printable_characters(ops, reason, code):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    analyst = _operator(ops, "risk@example.com", "risk")
    for verb in ("approve", "decline"):
        assert _problem(_decide(analyst, payment_id, verb, reason)) == (422, code)
    assert shop.payment(payment_id)["status"] == "in_review"
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}


def test_a_reason_of_exactly_500_characters_is_kept_whole(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    analyst = _operator(ops, "risk@example.com", "risk")
    why = "é" * 500
    assert _decide(analyst, payment_id, "decline", f"  {why} ").status_code == 200
    [(_, _, data)] = _audit(ops, "review.declined")
    assert data["reason"] == why


# ---- reading ------------------------------------------------------------------------------------


def test_the_queue_is_paged_oldest_first(ops, clock):
    payer, shop = _payer(ops), Shop(ops)
    held = []
    for _ in range(3):
        held.append(_held(ops, payer, shop))
        clock.advance(seconds=1)
    agent = _operator(ops, "support@example.com", "support")
    first = _queue(agent, "?limit=2")
    assert [i["id"] for i in first["data"]] == held[:2] and first["has_more"] is True
    rest = _queue(agent, f"?limit=2&starting_after={held[1]}")
    assert [i["id"] for i in rest["data"]] == held[2:] and rest["has_more"] is False
    r = agent.call("GET", "/v1/operator/reviews?starting_after=pay_00000000000000000000000000")
    assert _problem(r) == (404, "not_found")
    assert _problem(agent.call("GET", "/v1/operator/reviews?limit=101")) == (422, "invalid_input")


def test_a_users_risk_view_shows_device_trust_and_decisions_and_unknown_users_are_404(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    agent = _operator(ops, "support@example.com", "support")
    r = agent.call("GET", f"/v1/operator/users/{_user_id(payer)}/risk")
    assert r.status_code == 200, r.text
    view = r.json()
    assert [d["name"] for d in view["devices"]] == ["Pixel 9"]
    assert all(0 <= d["trust"] <= 100 for d in view["devices"])
    assert "session" not in view  # the operator's own session is not the user's
    [held] = [d for d in view["decisions"] if d["action"] == "review"]
    assert held["reasons"] == ["cashout_mcc"] and held["score"] == 80
    assert held["id"] in {
        d["id"] for d in agent.call("GET", f"/v1/operator/reviews/{payment_id}").json()["decisions"]
    }
    for unknown in ("usr_00000000000000000000000000", "x" * 300):
        r = agent.call("GET", f"/v1/operator/users/{unknown}/risk")
        assert _problem(r) == (404, "not_found")


def test_every_operator_read_is_audited_with_who_and_in_which_role(ops):
    payer, shop = _payer(ops), Shop(ops)
    payment_id = _held(ops, payer, shop)
    agent = _operator(ops, "support@example.com", "support")
    payer_id, agent_id = _user_id(payer), _user_id(agent)
    _queue(agent)
    agent.call("GET", f"/v1/operator/reviews/{payment_id}")
    agent.call("GET", f"/v1/operator/users/{payer_id}/risk")
    seen = _audit(ops, "operator.viewed")
    assert [(actor, subject, d["view"]) for actor, subject, d in seen] == [
        (agent_id, "review_queue", "reviews"),
        (agent_id, payment_id, "review"),
        (agent_id, payer_id, "user_risk"),
    ]
    assert all(d["role"] == "support" and d["session"] for _, _, d in seen)
    assert seen[0][2]["payments"] == [payment_id]


# ---- roles from the CLI -------------------------------------------------------------------------


def _cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> int:
    monkeypatch.setenv("ZEROPAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPAY_VAULT_DEV_FILE", str(settings.vault_dev_file))
    return cli.main(list(argv))


def test_roles_are_granted_listed_and_revoked_from_the_cli_and_checked_on_every_request(
    ops, monkeypatch, capsys
):
    settings = ops.container.settings
    phone = bound(ops, "ops@example.com")
    _passkey_session(ops, phone, "ops@example.com")
    ops_id = _user_id(phone)
    assert _problem(phone.call("GET", "/v1/operator/reviews")) == (403, "not_an_operator")

    assert (
        _cli(monkeypatch, settings, "operator", "grant", "OPS@example.com", "--role", "support")
        == 0
    )
    assert capsys.readouterr().out.strip() == f"{ops_id}: role support granted"
    assert (
        _cli(monkeypatch, settings, "operator", "grant", "ops@example.com", "--role", "support")
        == 0
    )
    assert "already held" in capsys.readouterr().out
    assert _cli(monkeypatch, settings, "operator", "list") == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.split()[:3] == [ops_id, "ops@example.com", "support"] and line.endswith("by cli")
    # Roles are read on every request: the same session is an operator now...
    assert phone.call("GET", "/v1/operator/reviews").status_code == 200
    r = phone.call("GET", "/v1/me/notifications")
    assert "operator.granted" in [n["kind"] for n in r.json()["data"]]

    assert (
        _cli(monkeypatch, settings, "operator", "revoke", "ops@example.com", "--role", "support")
        == 0
    )
    assert capsys.readouterr().out.strip() == f"{ops_id}: role support revoked"
    # ...and is not any more.
    assert _problem(phone.call("GET", "/v1/operator/reviews")) == (403, "not_an_operator")
    assert [(a, s, d["role"]) for a, s, d in _audit(ops, "operator.granted")] == [
        ("cli", ops_id, "support")
    ]
    assert [(a, s, d["role"]) for a, s, d in _audit(ops, "operator.revoked")] == [
        ("cli", ops_id, "support")
    ]

    assert (
        _cli(monkeypatch, settings, "operator", "grant", "nobody@example.com", "--role", "risk")
        == 1
    )
    assert "[not_found]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(monkeypatch, settings, "operator", "grant", "ops@example.com", "--role", "admin")


class _HoldForReview:
    """A payment check that holds every payment for review (the live engine is off)."""

    def before(self, payment_id: str) -> Verdict:
        return Verdict.REVIEW

    def after(self, uow: Any, *, got_through: bool) -> None:
        return None


def test_with_the_risk_engine_off_the_queue_and_user_views_still_work_without_scores(mfa):
    assert mfa.container.ctx.risk is None
    payer = _payer(mfa)
    shop = Shop(mfa)
    payment_id = shop.bill()
    held = payments.confirm(
        mfa.container.ctx,
        payment_id=payment_id,
        payer_id=_user_id(payer),
        risk_check=_HoldForReview(),  # type: ignore[arg-type]
    )
    assert held.payment.status.value == "in_review"
    analyst = _operator(mfa, "risk@example.com", "risk")
    [item] = _queue(analyst)["data"]
    assert item["id"] == payment_id and item["risk"] is None
    r = analyst.call("GET", f"/v1/operator/users/{_user_id(payer)}/risk")
    assert r.status_code == 200 and r.json() == {"decisions": []}, r.text
    r = _decide(analyst, payment_id, "approve", "No engine, checked by hand")
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": 0}
    _ledger_ok(mfa)


def test_a_payment_in_review_that_the_merchant_cancels_gives_the_held_funds_back(mfa):
    payer = _payer(mfa)
    shop = Shop(mfa)
    payment_id = shop.bill()
    held = payments.confirm(
        mfa.container.ctx,
        payment_id=payment_id,
        payer_id=_user_id(payer),
        risk_check=_HoldForReview(),  # type: ignore[arg-type]
    )
    assert held.payment.status.value == "in_review"
    assert _wallet(payer) == {"available": TOP_UP - PRICE, "held": PRICE}
    r = mfa.client.post(f"/v1/payments/{payment_id}/cancel", headers=shop.headers)
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    # Released now, not left pending for ever (the expiry job leaves a canceled payment alone).
    assert _wallet(payer) == {"available": TOP_UP, "held": 0}
    assert _spent(mfa, _user_id(payer)) == 0
    _ledger_ok(mfa)
