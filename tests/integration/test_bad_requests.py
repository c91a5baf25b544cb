"""Every bad input gets a 4xx problem with a stable code, never a 500, and writes nothing."""

from __future__ import annotations

import json

import pytest

from zeropay.services import ledger_check

BASE = {"amount": 450, "currency": "USD", "description": "Flat white"}

PAYMENT_CASES = [
    ("float", {**BASE, "amount": 12.5}, 422, "invalid_amount"),
    ("float_whole", {**BASE, "amount": 12.0}, 422, "invalid_amount"),
    ("string_amount", {**BASE, "amount": "1250"}, 422, "invalid_amount"),
    ("bool_amount", {**BASE, "amount": True}, 422, "invalid_amount"),
    ("null_amount", {**BASE, "amount": None}, 422, "invalid_amount"),
    ("zero", {**BASE, "amount": 0}, 422, "invalid_amount"),
    ("negative", {**BASE, "amount": -5}, 422, "invalid_amount"),
    ("huge", {**BASE, "amount": 10**30}, 422, "invalid_amount"),
    ("over_ceiling", {**BASE, "amount": 5001}, 422, "payment_limit_exceeded"),
    ("unknown_currency", {**BASE, "currency": "XXX"}, 422, "unknown_currency"),
    ("lowercase_currency", {**BASE, "currency": "usd"}, 422, "unknown_currency"),
    ("short_currency", {**BASE, "currency": "US"}, 422, "unknown_currency"),
    ("numeric_currency", {**BASE, "currency": 840}, 422, "unknown_currency"),
    ("unknown_field", {**BASE, "tip": 1}, 422, "unknown_field"),
    ("missing_field", {"amount": 450, "currency": "USD"}, 422, "missing_field"),
    ("nul_in_description", {**BASE, "description": "a\u0000b"}, 422, "invalid_input"),
    ("control_in_description", {**BASE, "description": "a\u0007b"}, 422, "invalid_input"),
    ("rtl_override", {**BASE, "description": "pay \u202eevil"}, 422, "invalid_input"),
    ("empty_description", {**BASE, "description": ""}, 422, "invalid_input"),
    ("long_description", {**BASE, "description": "x" * 501}, 422, "invalid_input"),
    ("bad_capture", {**BASE, "capture_method": "later"}, 422, "invalid_input"),
    ("array_body", [BASE], 422, "invalid_input"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), PAYMENT_CASES,
                         ids=[c[0] for c in PAYMENT_CASES])
def test_a_bad_payment_request_is_refused_with_its_code(api, case, body, status, code):
    merchant = api.merchant()
    r = api.client.post("/v1/payments", headers=merchant, json=body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert api.client.get("/v1/payments", headers=merchant).json()["data"] == []


RAW_CASES = [
    ("malformed_json", b'{"amount": 450,', 400, "malformed_json"),
    ("lone_surrogate", b'{"amount": 450, "currency": "USD", "description": "\\ud800"}', None, None),
    ("deep_nesting", b"[" * 5000 + b"]" * 5000, None, None),
    ("not_utf8", b'{"amount": 450, "currency": "USD", "description": "\xff"}', None, None),
]


@pytest.mark.parametrize(("case", "raw", "status", "code"), RAW_CASES,
                         ids=[c[0] for c in RAW_CASES])
def test_malformed_bodies_never_reach_the_database(api, case, raw, status, code):
    merchant = api.merchant()
    r = api.client.post("/v1/payments", headers={**merchant, "Content-Type": "application/json"},
                        content=raw)
    assert 400 <= r.status_code < 500, r.text
    if status is not None:
        assert (r.status_code, r.json()["code"]) == (status, code)
    assert "code" in r.json()
    assert api.client.get("/v1/payments", headers=merchant).json()["data"] == []


def test_a_body_over_the_limit_is_refused_with_or_without_content_length(api):
    merchant = api.merchant()
    big = json.dumps({**BASE, "description": "x" * 70_000}).encode()
    r = api.client.post("/v1/payments", headers={**merchant, "Content-Type": "application/json"},
                        content=big)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    chunks = iter([big[i : i + 8192] for i in range(0, len(big), 8192)])
    r = api.client.post("/v1/payments", headers={**merchant, "Content-Type": "application/json"},
                        content=chunks)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")


TOPUP_CASES = [
    ("declined", {"amount": 500, "currency": "USD", "source": "test_card_declined"}, 402,
     "funding_declined"),
    ("unknown_source", {"amount": 500, "currency": "USD", "source": "real_card"}, 422,
     "invalid_input"),
    ("over_cap", {"amount": 70_001, "currency": "USD"}, 422, "topup_limit_exceeded"),
    ("float", {"amount": 5.5, "currency": "USD"}, 422, "invalid_amount"),
    ("unknown_currency", {"amount": 5, "currency": "ZZZ"}, 422, "unknown_currency"),
]


@pytest.mark.parametrize(("case", "body", "status", "code"), TOPUP_CASES,
                         ids=[c[0] for c in TOPUP_CASES])
def test_a_bad_top_up_is_refused_and_moves_nothing(api, container, case, body, status, code):
    payer = api.payer()
    r = api.client.post("/v1/wallet/topups", headers=payer, json=body)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert api.client.get("/v1/wallet", headers=payer).json()["balances"] == []
    assert ledger_check.verify(container.ctx)[1] == 0


@pytest.mark.parametrize(
    ("case", "body", "code"),
    [
        ("short", {"email": "a@example.com", "password": "short"}, "weak_password"),
        ("common", {"email": "a@example.com", "password": "password123"}, "weak_password"),
        ("too_long", {"email": "a@example.com", "password": "x" * 1025}, "weak_password"),
        ("contains_email", {"email": "maria@example.com", "password": "maria2026!"},
         "weak_password"),
        ("bad_email", {"email": "not-an-email", "password": "a long passphrase"},
         "invalid_input"),
        ("email_number", {"email": 5, "password": "a long passphrase"}, "invalid_input"),
        ("extra", {"email": "a@example.com", "password": "a long passphrase", "admin": True},
         "unknown_field"),
    ],
)
def test_a_bad_registration_is_refused(api, case, body, code):
    r = api.client.post("/v1/users", json=body)
    assert (r.status_code, r.json()["code"]) == (422, code), r.text


def test_a_password_of_64_characters_and_unicode_is_accepted(api):
    r = api.client.post("/v1/users", json={"email": "long@example.com",
                                           "password": "비밀번호 " * 12 + "x" * 4})
    assert r.status_code == 201, r.text


def test_registering_an_email_twice_is_refused_even_with_other_case(api):
    api.payer("dup@example.com")
    r = api.client.post("/v1/users", json={"email": " DUP@Example.com ",
                                           "password": "another passphrase"})
    assert (r.status_code, r.json()["code"]) == (409, "email_taken")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic abc", "Bearer nope", "Bearer zpk_key_x.y", "Bearer " + "a" * 300],
)
def test_merchant_and_payer_routes_refuse_missing_or_forged_credentials(api, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("get", "/v1/payments"), ("get", "/v1/wallet"), ("get", "/v1/me"),
                         ("post", "/v1/checkout/pay_x/confirm")]:
        r = api.client.request(method.upper(), path, headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "not_authenticated"), (path, r.text)


def test_credentials_of_the_wrong_kind_are_refused(api):
    payer = api.payer()
    merchant = api.merchant()
    assert api.client.get("/v1/payments", headers=payer).status_code == 401
    assert api.client.get("/v1/wallet", headers=merchant).status_code == 401


def test_a_merchant_cannot_see_or_touch_another_merchants_payment(api):
    mine = api.merchant("Mine")
    theirs = api.merchant("Theirs")
    payment = api.payment(theirs)
    for method, suffix in [("GET", ""), ("POST", "/cancel"), ("POST", "/refunds"),
                           ("POST", "/capture"), ("GET", "/refunds")]:
        r = api.client.request(method, f"/v1/payments/{payment['id']}{suffix}", headers=mine)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), suffix
    assert api.client.get(f"/v1/payments/{payment['id']}", headers=theirs).json()["status"] == (
        "requires_confirmation"
    )


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "starting_after=pay_nope"])
def test_list_parameters_out_of_range_are_refused(api, query):
    merchant = api.merchant()
    r = api.client.get(f"/v1/payments?{query}", headers=merchant)
    assert r.status_code in (404, 422) and "code" in r.json()


def test_refunding_or_capturing_an_unpaid_payment_is_an_invalid_state(api):
    merchant = api.merchant()
    payment = api.payment(merchant)
    for suffix in ("/refunds", "/capture"):
        r = api.client.post(f"/v1/payments/{payment['id']}{suffix}", headers=merchant, json={})
        assert (r.status_code, r.json()["code"]) == (409, "invalid_state")


def test_an_overlong_idempotency_key_is_refused(api):
    payer = api.payer()
    r = api.client.post("/v1/wallet/topups", headers={**payer, "Idempotency-Key": "k" * 256},
                        json={"amount": 100, "currency": "USD"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_input")


def test_unknown_routes_and_methods_answer_problems(api):
    r = api.client.get("/v1/nothing-here")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = api.client.put("/v1/payments")
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


def test_the_longest_idempotency_key_allowed_works_on_every_database(api):
    # SQLite ignores VARCHAR lengths; PostgreSQL does not. A key-derived id must fit both.
    payer = {**api.payer(), "Idempotency-Key": "k" * 255}
    for _ in range(2):
        r = api.client.post("/v1/wallet/topups", headers=payer,
                            json={"amount": 100, "currency": "USD"})
        assert r.status_code == 201, r.text
    assert api.balance(payer) == 100
