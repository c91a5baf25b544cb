"""Bad input on every endpoint: a 4xx ``application/problem+json`` with a stable code, never a
500, and nothing written (rows, balances and the ledger are exactly as before)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from zeropay.services import ledger_check

PASSWORD = "a long passphrase"
PAY = {"amount": 450, "currency": "USD", "description": "Flat white"}
TOPUP = {"amount": 500, "currency": "USD"}
TABLES = (
    "users",
    "sessions",
    "notifications",
    "payments",
    "refunds",
    "ledger_accounts",
    "ledger_transfers",
    "spend_counters",
    "idempotency_keys",
)


# ---- helpers ----------------------------------------------------------------------------------


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code != 500, r.text
    assert (r.status_code, r.json().get("code")) == (status, code), r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["type"] == f"https://zeropay.dev/problems/{code}"
    return dict(body)


def snapshot(container: Any) -> dict[str, Any]:
    """Everything a bad request could have written: row counts, every balance, ledger health."""
    with container.engine.connect() as c:
        counts = {t: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
        balances = c.execute(
            text(
                "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending "
                "FROM ledger_accounts ORDER BY id"
            )
        ).all()
        pays = c.execute(
            text(
                "SELECT id, status, amount_minor, amount_captured_minor, amount_refunded_minor, "
                "description FROM payments ORDER BY id"
            )
        ).all()
    _, transfers, violations = ledger_check.verify(container.ctx)
    assert violations == []
    return {
        "counts": counts,
        "balances": [tuple(b) for b in balances],
        "payments": [tuple(p) for p in pays],
        "transfers": transfers,
    }


@pytest.fixture
def world(api: Any, container: Any) -> dict[str, Any]:
    """A payer with money, two merchants, and payments in each interesting state."""
    payer = api.payer("payer@example.com", usd=3000)
    other_payer = api.payer("other@example.com", usd=1000)
    merchant = api.merchant("Corner Cafe")
    other_merchant = api.merchant("Other Shop")
    pending = api.payment(merchant, amount=300, description="Pending latte")
    paid = api.payment(merchant, amount=400, description="Paid latte")
    r = api.client.post(f"/v1/checkout/{paid['id']}/confirm", headers=payer)
    assert r.status_code == 200, r.text
    held = api.payment(merchant, amount=500, description="Held latte", capture_method="manual")
    r = api.client.post(f"/v1/checkout/{held['id']}/confirm", headers=payer)
    assert r.status_code == 200 and r.json()["status"] == "authorized", r.text
    secret = api.payment(other_merchant, amount=777, description="Top secret order")
    return {
        "payer": payer,
        "other_payer": other_payer,
        "merchant": merchant,
        "other_merchant": other_merchant,
        "pending": pending["id"],
        "paid": paid["id"],
        "held": held["id"],
        "secret": secret["id"],
    }


def ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [str(c[0]) for c in cases]


# ---- amounts and currencies, on every endpoint that takes money -------------------------------

AMOUNT_CASES = [
    ("float", 12.5, 422, "invalid_amount"),
    ("float_whole", 12.0, 422, "invalid_amount"),
    ("string", "1250", 422, "invalid_amount"),
    ("bool_true", True, 422, "invalid_amount"),
    ("null", None, 422, "invalid_amount"),
    ("zero", 0, 422, "invalid_amount"),
    ("negative", -5, 422, "invalid_amount"),
    ("huge", 10**30, 422, "invalid_amount"),
    ("list", [450], 422, "invalid_amount"),
]

CURRENCY_CASES = [
    ("unknown", "XXX", "unknown_currency"),
    ("lower_case", "usd", "unknown_currency"),
    ("two_letters", "US", "unknown_currency"),
    ("four_letters", "USDD", "unknown_currency"),
    ("number", 840, "unknown_currency"),
    ("null", None, "unknown_currency"),
    ("empty", "", "unknown_currency"),
]


@pytest.mark.parametrize(("case", "amount", "status", "code"), AMOUNT_CASES, ids=ids(AMOUNT_CASES))
def test_a_bad_payment_amount_is_refused_and_creates_nothing(
    api, container, world, case, amount, status, code
):
    before = snapshot(container)
    r = api.client.post("/v1/payments", headers=world["merchant"], json={**PAY, "amount": amount})
    assert_problem(r, status, code)
    assert snapshot(container) == before


@pytest.mark.parametrize(("case", "currency", "code"), CURRENCY_CASES, ids=ids(CURRENCY_CASES))
def test_a_bad_payment_currency_is_refused_and_creates_nothing(
    api, container, world, case, currency, code
):
    before = snapshot(container)
    r = api.client.post(
        "/v1/payments", headers=world["merchant"], json={**PAY, "currency": currency}
    )
    assert_problem(r, 422, code)
    assert snapshot(container) == before


@pytest.mark.parametrize(("case", "amount", "status", "code"), AMOUNT_CASES, ids=ids(AMOUNT_CASES))
def test_a_bad_top_up_amount_is_refused_and_funds_nothing(
    api, container, world, case, amount, status, code
):
    before = snapshot(container)
    r = api.client.post(
        "/v1/wallet/topups", headers=world["payer"], json={**TOPUP, "amount": amount}
    )
    assert_problem(r, status, code)
    assert snapshot(container) == before
    assert api.balance(world["payer"]) == 3000 - 400 - 500


@pytest.mark.parametrize(("case", "currency", "code"), CURRENCY_CASES, ids=ids(CURRENCY_CASES))
def test_a_bad_top_up_currency_is_refused_and_funds_nothing(
    api, container, world, case, currency, code
):
    before = snapshot(container)
    r = api.client.post(
        "/v1/wallet/topups", headers=world["payer"], json={**TOPUP, "currency": currency}
    )
    assert_problem(r, 422, code)
    assert snapshot(container) == before


# Capture and refund take an optional amount; null there means "all of it", so it is not bad.
PARTIAL_AMOUNT_CASES = [c for c in AMOUNT_CASES if c[0] not in {"null"}]


@pytest.mark.parametrize(
    ("case", "amount", "status", "code"), PARTIAL_AMOUNT_CASES, ids=ids(PARTIAL_AMOUNT_CASES)
)
def test_a_bad_capture_amount_is_refused_and_the_hold_stays(
    api, container, world, case, amount, status, code
):
    before = snapshot(container)
    r = api.client.post(
        f"/v1/payments/{world['held']}/capture", headers=world["merchant"], json={"amount": amount}
    )
    assert_problem(r, status, code)
    assert snapshot(container) == before
    got = api.client.get(f"/v1/payments/{world['held']}", headers=world["merchant"]).json()
    assert got["status"] == "authorized"


@pytest.mark.parametrize(
    ("case", "amount", "status", "code"), PARTIAL_AMOUNT_CASES, ids=ids(PARTIAL_AMOUNT_CASES)
)
def test_a_bad_refund_amount_is_refused_and_refunds_nothing(
    api, container, world, case, amount, status, code
):
    before = snapshot(container)
    r = api.client.post(
        f"/v1/payments/{world['paid']}/refunds", headers=world["merchant"], json={"amount": amount}
    )
    assert_problem(r, status, code)
    assert snapshot(container) == before


def test_a_payment_above_the_per_payment_limit_is_refused(api, container, world):
    before = snapshot(container)
    r = api.client.post("/v1/payments", headers=world["merchant"], json={**PAY, "amount": 5001})
    assert_problem(r, 422, "payment_limit_exceeded")
    assert snapshot(container) == before
    # The limit itself is allowed: the boundary is exactly USD 50.00.
    assert (
        api.client.post(
            "/v1/payments", headers=world["merchant"], json={**PAY, "amount": 5000}
        ).status_code
        == 201
    )


def test_a_declined_top_up_is_refused_and_funds_nothing(api, container, world):
    before = snapshot(container)
    r = api.client.post(
        "/v1/wallet/topups",
        headers=world["payer"],
        json={**TOPUP, "source": "test_card_declined"},
    )
    assert_problem(r, 402, "funding_declined")
    assert snapshot(container) == before


# ---- shapes: unknown fields, missing fields, wrong JSON ---------------------------------------

SHAPE_CASES = [
    # (id, method, path template, body, status, code)
    (
        "users_unknown",
        "POST",
        "/v1/users",
        {"email": "new@example.com", "password": PASSWORD, "admin": True},
        422,
        "unknown_field",
    ),
    ("users_missing", "POST", "/v1/users", {"email": "new@example.com"}, 422, "missing_field"),
    ("users_array", "POST", "/v1/users", [{"email": "a@example.com"}], 422, "invalid_input"),
    (
        "sessions_unknown",
        "POST",
        "/v1/sessions",
        {"email": "payer@example.com", "password": PASSWORD, "otp": "1"},
        422,
        "unknown_field",
    ),
    ("sessions_missing", "POST", "/v1/sessions", {"password": PASSWORD}, 422, "missing_field"),
    ("topup_unknown", "POST", "/v1/wallet/topups", {**TOPUP, "bonus": 100}, 422, "unknown_field"),
    (
        "topup_missing_amount",
        "POST",
        "/v1/wallet/topups",
        {"currency": "USD"},
        422,
        "missing_field",
    ),
    ("topup_missing_currency", "POST", "/v1/wallet/topups", {"amount": 5}, 422, "missing_field"),
    (
        "topup_source",
        "POST",
        "/v1/wallet/topups",
        {**TOPUP, "source": "real_card"},
        422,
        "invalid_input",
    ),
    ("payment_unknown", "POST", "/v1/payments", {**PAY, "payer_id": "usr_x"}, 422, "unknown_field"),
    (
        "payment_missing_description",
        "POST",
        "/v1/payments",
        {"amount": 450, "currency": "USD"},
        422,
        "missing_field",
    ),
    (
        "payment_missing_amount",
        "POST",
        "/v1/payments",
        {"currency": "USD", "description": "x"},
        422,
        "missing_field",
    ),
    (
        "payment_capture_method",
        "POST",
        "/v1/payments",
        {**PAY, "capture_method": "later"},
        422,
        "invalid_input",
    ),
    (
        "capture_unknown",
        "POST",
        "/v1/payments/{held}/capture",
        {"amount": 100, "tip": 1},
        422,
        "unknown_field",
    ),
    (
        "refund_unknown",
        "POST",
        "/v1/payments/{paid}/refunds",
        {"amount": 100, "to": "me"},
        422,
        "unknown_field",
    ),
    (
        "refund_reason_number",
        "POST",
        "/v1/payments/{paid}/refunds",
        {"reason": 5},
        422,
        "invalid_input",
    ),
]


def _auth_for(path: str, world: dict[str, Any]) -> dict[str, str]:
    if path.startswith("/v1/payments"):
        return world["merchant"]
    if path in ("/v1/users", "/v1/sessions"):
        return {}
    return world["payer"]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "code"), SHAPE_CASES, ids=ids(SHAPE_CASES)
)
def test_an_unknown_or_missing_field_is_refused_with_its_code(
    api, container, world, case, method, path, body, status, code
):
    before = snapshot(container)
    url = path.format(**world)
    r = api.client.request(method, url, headers=_auth_for(path, world), json=body)
    assert_problem(r, status, code)
    assert snapshot(container) == before


BODY_ROUTES = [
    ("users", "/v1/users"),
    ("sessions", "/v1/sessions"),
    ("topups", "/v1/wallet/topups"),
    ("payments", "/v1/payments"),
    ("capture", "/v1/payments/{held}/capture"),
    ("refunds", "/v1/payments/{paid}/refunds"),
]

MALFORMED = [
    ("truncated", b'{"amount": 450,'),
    ("trailing_comma", b'{"amount": 450,}'),
    ("single_quotes", b"{'amount': 450}"),
    ("bare_word", b"amount=450"),
    ("bom_only", b"\xef\xbb\xbf"),
    ("two_documents", b"{} {}"),
]


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES, ids=ids(BODY_ROUTES))
@pytest.mark.parametrize(("case", "raw"), MALFORMED, ids=ids(MALFORMED))
def test_malformed_json_is_a_400_on_every_route_with_a_body(
    api, container, world, route, path, case, raw
):
    before = snapshot(container)
    headers = {**_auth_for(path, world), "Content-Type": "application/json"}
    r = api.client.post(path.format(**world), headers=headers, content=raw)
    assert_problem(r, 400, "malformed_json")
    assert snapshot(container) == before


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES[:4], ids=ids(BODY_ROUTES[:4]))
def test_an_empty_body_where_one_is_required_is_a_missing_field(api, container, world, route, path):
    before = snapshot(container)
    headers = {**_auth_for(path, world), "Content-Type": "application/json"}
    r = api.client.post(path, headers=headers, content=b"")
    assert_problem(r, 422, "missing_field")
    assert snapshot(container) == before


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"4.5e2"])
@pytest.mark.parametrize("path", ["/v1/payments", "/v1/wallet/topups"])
def test_a_non_integer_json_number_is_not_an_amount(api, container, world, path, token):
    # Python's json accepts NaN and Infinity; they must fail as amounts, never as a 500.
    before = snapshot(container)
    auth = world["merchant"] if path == "/v1/payments" else world["payer"]
    raw = b'{"amount": ' + token + b', "currency": "USD", "description": "x"}'
    if path != "/v1/payments":
        raw = b'{"amount": ' + token + b', "currency": "USD"}'
    r = api.client.post(path, headers={**auth, "Content-Type": "application/json"}, content=raw)
    assert_problem(r, 422, "invalid_amount")
    assert snapshot(container) == before


# ---- body size --------------------------------------------------------------------------------

BIG = json.dumps({**PAY, "description": "x" * (64 * 1024 + 10)}).encode()


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES, ids=ids(BODY_ROUTES))
def test_a_body_over_64_kib_is_refused_with_content_length(api, container, world, route, path):
    before = snapshot(container)
    headers = {**_auth_for(path, world), "Content-Type": "application/json"}
    r = api.client.post(path.format(**world), headers=headers, content=BIG)
    assert_problem(r, 413, "body_too_large")
    assert snapshot(container) == before


@pytest.mark.parametrize(("route", "path"), BODY_ROUTES, ids=ids(BODY_ROUTES))
def test_a_chunked_body_over_64_kib_is_refused_without_content_length(
    api, container, world, route, path
):
    before = snapshot(container)
    headers = {**_auth_for(path, world), "Content-Type": "application/json"}
    chunks = [BIG[i : i + 4096] for i in range(0, len(BIG), 4096)]
    r = api.client.post(path.format(**world), headers=headers, content=iter(chunks))
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_problem(r, 413, "body_too_large")
    assert snapshot(container) == before


def test_a_body_of_exactly_64_kib_is_not_refused_for_its_size(api, world):
    body = json.dumps({**PAY, "description": "x"}).encode()
    body = body + b" " * (64 * 1024 - len(body))
    assert len(body) == 64 * 1024
    headers = {**world["merchant"], "Content-Type": "application/json"}
    r = api.client.post("/v1/payments", headers=headers, content=body)
    assert r.status_code == 201, r.text
    r = api.client.post("/v1/payments", headers=headers, content=iter([body[:1000], body[1000:]]))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("declared", ["abc", "-1", "1e9", str(10**20)])
def test_a_nonsense_content_length_is_refused(api, world, declared):
    # httpx would fix the header, so speak ASGI to the app directly.
    import asyncio

    app = api.client.app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/payments",
        "raw_path": b"/v1/payments",
        "query_string": b"",
        "headers": [
            (b"content-length", declared.encode()),
            (b"content-type", b"application/json"),
            (b"authorization", world["merchant"]["Authorization"].encode()),
        ],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413
    assert json.loads(body)["code"] == "body_too_large"


# ---- text fields ------------------------------------------------------------------------------

TEXT_CASES = [
    ("nul", "a\u0000b"),
    ("bell_c0", "a\u0007b"),
    ("escape_c0", "\u001b[31mred"),
    ("del", "a\u007fb"),
    ("c1_control", "a\u0085b"),
    ("rtl_override", "pay \u202eevil"),
    ("rtl_isolate", "pay \u2067evil"),
    ("lrm", "pay \u200e5"),
    ("private_use", "a\ue000b"),
    ("unassigned", "a\U000e0080b"),
]


@pytest.mark.parametrize(("case", "value"), TEXT_CASES, ids=ids(TEXT_CASES))
def test_a_description_with_a_control_or_bidi_character_is_refused(
    api, container, world, case, value
):
    before = snapshot(container)
    r = api.client.post(
        "/v1/payments", headers=world["merchant"], json={**PAY, "description": value}
    )
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


@pytest.mark.parametrize(("case", "value"), TEXT_CASES, ids=ids(TEXT_CASES))
def test_a_reference_with_a_control_or_bidi_character_is_refused(
    api, container, world, case, value
):
    before = snapshot(container)
    r = api.client.post("/v1/payments", headers=world["merchant"], json={**PAY, "reference": value})
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


@pytest.mark.parametrize(("case", "value"), TEXT_CASES, ids=ids(TEXT_CASES))
def test_a_refund_reason_with_a_control_or_bidi_character_is_refused(
    api, container, world, case, value
):
    before = snapshot(container)
    r = api.client.post(
        f"/v1/payments/{world['paid']}/refunds", headers=world["merchant"], json={"reason": value}
    )
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


RAW_TEXT_CASES = [
    ("lone_high_surrogate", b'"\\ud800"'),
    ("lone_low_surrogate", b'"\\udc00"'),
    ("reversed_pair", b'"\\udc00\\ud800"'),
    ("escaped_nul", b'"a\\u0000b"'),
    ("raw_tab", b'"a\tb"'),
]


@pytest.mark.parametrize(("case", "raw"), RAW_TEXT_CASES, ids=ids(RAW_TEXT_CASES))
def test_a_description_with_a_surrogate_sent_as_raw_json_is_refused(
    api, container, world, case, raw
):
    before = snapshot(container)
    body = b'{"amount": 450, "currency": "USD", "description": ' + raw + b"}"
    headers = {**world["merchant"], "Content-Type": "application/json"}
    r = api.client.post("/v1/payments", headers=headers, content=body)
    # A raw tab inside a JSON string is itself invalid JSON.
    if case == "raw_tab":
        assert_problem(r, 400, "malformed_json")
    else:
        assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


def test_invalid_utf8_is_refused_without_a_500(api, container, world):
    before = snapshot(container)
    headers = {**world["merchant"], "Content-Type": "application/json"}
    body = b'{"amount": 450, "currency": "USD", "description": "\xff\xfe"}'
    r = api.client.post("/v1/payments", headers=headers, content=body)
    # Starlette refuses it before JSON parsing, as a generic 400 "http_error" problem.
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] in ("malformed_json", "http_error")
    assert snapshot(container) == before


LENGTH_CASES = [
    ("empty_description", "description", "", 422),
    ("description_501", "description", "x" * 501, 422),
    ("reference_129", "reference", "r" * 129, 422),
    ("description_501_multibyte", "description", "\u00e9" * 501, 422),
]


@pytest.mark.parametrize(("case", "field", "value", "status"), LENGTH_CASES, ids=ids(LENGTH_CASES))
def test_a_description_of_the_wrong_length_is_refused(
    api, container, world, case, field, value, status
):
    before = snapshot(container)
    r = api.client.post("/v1/payments", headers=world["merchant"], json={**PAY, field: value})
    assert_problem(r, status, "invalid_input")
    assert snapshot(container) == before


@pytest.mark.parametrize("blank", ["   ", "\u3000\u3000"], ids=["spaces", "ideographic"])
def test_a_description_that_is_blank_after_trimming_is_refused(api, container, world, blank):
    before = snapshot(container)
    r = api.client.post(
        "/v1/payments", headers=world["merchant"], json={**PAY, "description": blank}
    )
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


def test_a_description_of_exactly_500_characters_is_accepted(api, world):
    r = api.client.post(
        "/v1/payments", headers=world["merchant"], json={**PAY, "description": "x" * 500}
    )
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "x" * 500


# ---- Idempotency-Key header -------------------------------------------------------------------

IDEMPOTENT_ROUTES = [
    ("topups", "/v1/wallet/topups", TOPUP),
    ("payments", "/v1/payments", PAY),
    ("confirm", "/v1/checkout/{pending}/confirm", None),
    ("cancel", "/v1/payments/{pending}/cancel", None),
    ("capture", "/v1/payments/{held}/capture", {}),
    ("refunds", "/v1/payments/{paid}/refunds", {}),
]

BAD_KEYS = [
    ("256_chars", "k" * 256),
    ("1000_chars", "k" * 1000),
    ("empty", ""),
]


@pytest.mark.parametrize(("route", "path", "body"), IDEMPOTENT_ROUTES, ids=ids(IDEMPOTENT_ROUTES))
@pytest.mark.parametrize(("case", "key"), BAD_KEYS, ids=ids(BAD_KEYS))
def test_a_bad_idempotency_key_is_refused_before_any_work(
    api, container, world, route, path, body, case, key
):
    before = snapshot(container)
    auth = world["payer"] if "checkout" in path or "wallet" in path else world["merchant"]
    kwargs: dict[str, Any] = {"headers": {**auth, "Idempotency-Key": key}}
    if body is not None:
        kwargs["json"] = body
    r = api.client.post(path.format(**world), **kwargs)
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


def test_a_top_up_with_a_valid_255_character_idempotency_key_succeeds(api, container, world):
    # Regression: the key once went verbatim into ledger_transfers.id VARCHAR(80) (a 500 on
    # PostgreSQL for any key over ~43 characters).
    key = "k" * 255
    r = api.client.post(
        "/v1/wallet/topups", headers={**world["payer"], "Idempotency-Key": key}, json=TOPUP
    )
    assert r.status_code == 201, r.text
    again = api.client.post(
        "/v1/wallet/topups", headers={**world["payer"], "Idempotency-Key": key}, json=TOPUP
    )
    assert again.status_code == 201 and again.json() == r.json()
    assert ledger_check.verify(container.ctx)[2] == []


# ---- authentication on every route ------------------------------------------------------------

PAYER_ROUTES = [
    ("list_sessions", "GET", "/v1/sessions", None),
    ("logout", "DELETE", "/v1/sessions/current", None),
    ("revoke_session", "DELETE", "/v1/sessions/ses_nope", None),
    ("me", "GET", "/v1/me", None),
    ("notifications", "GET", "/v1/me/notifications", None),
    ("wallet", "GET", "/v1/wallet", None),
    ("transactions", "GET", "/v1/wallet/transactions", None),
    ("topup", "POST", "/v1/wallet/topups", TOPUP),
    ("checkout", "GET", "/v1/checkout/{pending}", None),
    ("confirm", "POST", "/v1/checkout/{pending}/confirm", None),
]

MERCHANT_ROUTES = [
    ("create_payment", "POST", "/v1/payments", PAY),
    ("list_payments", "GET", "/v1/payments", None),
    ("get_payment", "GET", "/v1/payments/{pending}", None),
    ("cancel", "POST", "/v1/payments/{pending}/cancel", None),
    ("capture", "POST", "/v1/payments/{held}/capture", {}),
    ("refund", "POST", "/v1/payments/{paid}/refunds", {}),
    ("list_refunds", "GET", "/v1/payments/{paid}/refunds", None),
]

BAD_AUTH = [
    ("missing", None),
    ("empty", ""),
    ("scheme_only", "Bearer"),
    ("basic", "Basic YWxpY2U6c2VjcmV0"),
    ("token_without_scheme", "abcdefghijklmnopqrstuvwxyz"),
    ("unknown_token", "Bearer abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
    ("overlong_token", "Bearer " + "a" * 300),
    ("forged_api_key", "Bearer zpk_key_01abc.Zm9yZ2Vk"),
    ("sql_injection", "Bearer ' OR '1'='1"),
]


def _call(
    api: Any, method: str, path: str, world: dict[str, Any], headers: dict[str, str], body: Any
) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return api.client.request(method, path.format(**world), **kwargs)


@pytest.mark.parametrize(
    ("route", "method", "path", "body"),
    PAYER_ROUTES + MERCHANT_ROUTES,
    ids=ids(PAYER_ROUTES + MERCHANT_ROUTES),
)
@pytest.mark.parametrize(("case", "authorization"), BAD_AUTH, ids=ids(BAD_AUTH))
def test_missing_or_forged_credentials_are_refused_on_every_route(
    api, container, world, route, method, path, body, case, authorization
):
    before = snapshot(container)
    headers = {} if authorization is None else {"Authorization": authorization}
    r = _call(api, method, path, world, headers, body)
    assert_problem(r, 401, "not_authenticated")
    assert r.headers.get("www-authenticate") == "Bearer"
    assert snapshot(container) == before


@pytest.mark.parametrize(("route", "method", "path", "body"), PAYER_ROUTES, ids=ids(PAYER_ROUTES))
def test_a_merchant_key_is_refused_on_a_payer_route(
    api, container, world, route, method, path, body
):
    before = snapshot(container)
    r = _call(api, method, path, world, world["merchant"], body)
    assert_problem(r, 401, "not_authenticated")
    assert snapshot(container) == before


@pytest.mark.parametrize(
    ("route", "method", "path", "body"), MERCHANT_ROUTES, ids=ids(MERCHANT_ROUTES)
)
def test_a_payer_session_is_refused_on_a_merchant_route(
    api, container, world, route, method, path, body
):
    before = snapshot(container)
    r = _call(api, method, path, world, world["payer"], body)
    assert_problem(r, 401, "not_authenticated")
    assert snapshot(container) == before


def test_a_revoked_api_key_is_refused(api, container, world):
    from zeropay.services import merchants

    merchant_id, key = merchants.create_merchant(container.ctx, name="Revoked Shop")
    merchants.revoke_api_key(container.ctx, merchant_id=merchant_id, key_id=key.key_id, actor="t")
    r = api.client.get("/v1/payments", headers={"Authorization": f"Bearer {key.secret}"})
    assert_problem(r, 401, "not_authenticated")


def test_an_api_key_with_one_byte_changed_is_refused(api, world):
    secret = world["merchant"]["Authorization"]
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    r = api.client.get("/v1/payments", headers={"Authorization": forged})
    assert_problem(r, 401, "not_authenticated")


# ---- other people's and unknown ids -----------------------------------------------------------

PAYMENT_ID_ROUTES = [
    ("get", "GET", "/v1/payments/{pid}", None),
    ("cancel", "POST", "/v1/payments/{pid}/cancel", None),
    ("capture", "POST", "/v1/payments/{pid}/capture", {}),
    ("capture_amount", "POST", "/v1/payments/{pid}/capture", {"amount": 1}),
    ("refund", "POST", "/v1/payments/{pid}/refunds", {}),
    ("refund_amount", "POST", "/v1/payments/{pid}/refunds", {"amount": 1}),
    ("list_refunds", "GET", "/v1/payments/{pid}/refunds", None),
]


@pytest.mark.parametrize(
    ("route", "method", "path", "body"), PAYMENT_ID_ROUTES, ids=ids(PAYMENT_ID_ROUTES)
)
def test_another_merchants_payment_is_not_found_and_not_leaked(
    api, container, world, route, method, path, body
):
    before = snapshot(container)
    # The other merchant's payment, and also our own payer-visible ids from the other side.
    kwargs: dict[str, Any] = {"headers": world["merchant"]}
    if body is not None:
        kwargs["json"] = body
    r = api.client.request(method, path.format(pid=world["secret"]), **kwargs)
    problem = assert_problem(r, 404, "not_found")
    assert "Top secret" not in r.text and "777" not in r.text
    assert set(problem) <= {"type", "title", "status", "code", "detail"}
    r = api.client.request(
        method, path.format(pid=world["paid"]), **{**kwargs, "headers": world["other_merchant"]}
    )
    assert_problem(r, 404, "not_found")
    assert "Paid latte" not in r.text
    assert snapshot(container) == before


UNKNOWN_IDS = [
    ("plausible", "pay_01hzzzzzzzzzzzzzzzzzzzzzzz"),
    ("garbage", "nope"),
    ("overlong", "p" * 2000),
    ("sql", "x' OR '1'='1"),
    ("unicode", "p\u00e9y"),
]


@pytest.mark.parametrize(
    ("route", "method", "path", "body"), PAYMENT_ID_ROUTES, ids=ids(PAYMENT_ID_ROUTES)
)
@pytest.mark.parametrize(("case", "pid"), UNKNOWN_IDS, ids=ids(UNKNOWN_IDS))
def test_an_unknown_payment_id_is_not_found_for_a_merchant(
    api, container, world, route, method, path, body, case, pid
):
    before = snapshot(container)
    kwargs: dict[str, Any] = {"headers": world["merchant"]}
    if body is not None:
        kwargs["json"] = body
    r = api.client.request(method, path.format(pid=pid), **kwargs)
    assert_problem(r, 404, "not_found")
    assert snapshot(container) == before


@pytest.mark.parametrize(("case", "pid"), UNKNOWN_IDS, ids=ids(UNKNOWN_IDS))
@pytest.mark.parametrize("action", ["checkout", "confirm"])
def test_an_unknown_payment_id_is_not_found_for_a_payer(api, container, world, case, pid, action):
    before = snapshot(container)
    if action == "checkout":
        r = api.client.get(f"/v1/checkout/{pid}", headers=world["payer"])
    else:
        r = api.client.post(f"/v1/checkout/{pid}/confirm", headers=world["payer"])
    assert_problem(r, 404, "not_found")
    assert snapshot(container) == before


NUL_ROUTES = [
    ("checkout", "GET", "/v1/checkout/a%00b", None, "payer"),
    ("confirm", "POST", "/v1/checkout/a%00b/confirm", None, "payer"),
    ("revoke_session", "DELETE", "/v1/sessions/a%00b", None, "payer"),
    ("get", "GET", "/v1/payments/a%00b", None, "merchant"),
    ("cancel", "POST", "/v1/payments/a%00b/cancel", None, "merchant"),
    ("capture", "POST", "/v1/payments/a%00b/capture", {}, "merchant"),
    ("refund", "POST", "/v1/payments/a%00b/refunds", {}, "merchant"),
    ("list_refunds", "GET", "/v1/payments/a%00b/refunds", None, "merchant"),
    ("list_cursor", "GET", "/v1/payments?starting_after=a%00b", None, "merchant"),
]


@pytest.mark.parametrize(
    ("route", "method", "path", "body", "who"), NUL_ROUTES, ids=ids(NUL_ROUTES)
)
def test_an_id_with_a_nul_byte_is_not_found_never_a_500(
    api, container, world, backend, request, route, method, path, body, who
):
    from fastapi.testclient import TestClient

    from zeropay.api.app import create_app

    before = snapshot(container)
    # As a real server would: an unhandled exception becomes the app's 500 problem.
    with TestClient(
        create_app(container), base_url="http://localhost", raise_server_exceptions=False
    ) as c:
        kwargs: dict[str, Any] = {"headers": world[who]}
        if body is not None:
            kwargs["json"] = body
        r = c.request(method, path, **kwargs)
    assert r.status_code != 500, r.text
    expected = 422 if route == "list_cursor" else 404
    assert r.status_code in (expected, 404, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert snapshot(container) == before


def test_a_payer_cannot_see_or_pay_a_payment_another_payer_already_paid(api, container, world):
    before = snapshot(container)
    r = api.client.get(f"/v1/checkout/{world['paid']}", headers=world["other_payer"])
    assert r.status_code in (404, 409), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = api.client.post(f"/v1/checkout/{world['paid']}/confirm", headers=world["other_payer"])
    assert r.status_code in (404, 409), r.text
    assert r.json()["code"] in ("not_found", "invalid_state")
    assert snapshot(container) == before
    assert api.balance(world["other_payer"]) == 1000


def test_a_payer_cannot_revoke_another_payers_session(api, container, world):
    listed = api.client.get("/v1/sessions", headers=world["other_payer"]).json()["data"]
    theirs = listed[0]["id"]
    r = api.client.delete(f"/v1/sessions/{theirs}", headers=world["payer"])
    assert_problem(r, 404, "not_found")
    # Their session still works.
    assert api.client.get("/v1/me", headers=world["other_payer"]).status_code == 200


@pytest.mark.parametrize(("case", "sid"), UNKNOWN_IDS, ids=ids(UNKNOWN_IDS))
def test_revoking_an_unknown_session_is_not_found(api, container, world, case, sid):
    before = snapshot(container)
    r = api.client.delete(f"/v1/sessions/{sid}", headers=world["payer"])
    assert_problem(r, 404, "not_found")
    assert snapshot(container) == before


# ---- list parameters --------------------------------------------------------------------------

LIST_ROUTES = [
    ("payments", "/v1/payments", "merchant"),
    ("transactions", "/v1/wallet/transactions", "payer"),
]

LIST_QUERIES = [
    ("limit_0", "limit=0"),
    ("limit_101", "limit=101"),
    ("limit_negative", "limit=-1"),
    ("limit_float", "limit=1.5"),
    ("limit_word", "limit=ten"),
    ("limit_huge", "limit=" + "9" * 40),
]


@pytest.mark.parametrize(("route", "path", "who"), LIST_ROUTES, ids=ids(LIST_ROUTES))
@pytest.mark.parametrize(("case", "query"), LIST_QUERIES, ids=ids(LIST_QUERIES))
def test_a_list_limit_out_of_range_is_refused(api, container, world, route, path, who, case, query):
    before = snapshot(container)
    r = api.client.get(f"{path}?{query}", headers=world[who])
    assert_problem(r, 422, "invalid_input")
    assert snapshot(container) == before


@pytest.mark.parametrize(("route", "path", "who"), LIST_ROUTES, ids=ids(LIST_ROUTES))
def test_list_limits_of_1_and_100_are_accepted(api, world, route, path, who):
    for limit in (1, 100):
        r = api.client.get(f"{path}?limit={limit}", headers=world[who])
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) <= limit


@pytest.mark.parametrize("query", ["before=0", "before=-3", "before=x"])
def test_a_bad_history_cursor_is_refused(api, world, query):
    r = api.client.get(f"/v1/wallet/transactions?{query}", headers=world["payer"])
    assert_problem(r, 422, "invalid_input")


def test_a_payment_list_cursor_over_40_characters_is_refused(api, world):
    r = api.client.get("/v1/payments?starting_after=" + "p" * 41, headers=world["merchant"])
    assert_problem(r, 422, "invalid_input")


def test_a_payment_list_cursor_of_another_merchant_does_not_leak_their_payments(api, world):
    r = api.client.get(f"/v1/payments?starting_after={world['secret']}", headers=world["merchant"])
    assert r.status_code in (200, 404, 422), r.text
    assert "Top secret" not in r.text and world["secret"] not in r.text.replace(
        f"starting_after={world['secret']}", ""
    )


# ---- state ------------------------------------------------------------------------------------

STATE_CASES = [
    ("refund_unpaid", "POST", "/v1/payments/{pending}/refunds", {}),
    ("refund_unpaid_amount", "POST", "/v1/payments/{pending}/refunds", {"amount": 100}),
    ("refund_authorized", "POST", "/v1/payments/{held}/refunds", {}),
    ("capture_unpaid", "POST", "/v1/payments/{pending}/capture", {}),
    ("capture_succeeded", "POST", "/v1/payments/{paid}/capture", {}),
    ("cancel_succeeded", "POST", "/v1/payments/{paid}/cancel", None),
]


@pytest.mark.parametrize(("case", "method", "path", "body"), STATE_CASES, ids=ids(STATE_CASES))
def test_an_action_in_the_wrong_state_is_an_invalid_state(
    api, container, world, case, method, path, body
):
    before = snapshot(container)
    r = _call(api, method, path, world, world["merchant"], body)
    assert_problem(r, 409, "invalid_state")
    assert snapshot(container) == before


def test_confirming_an_already_paid_payment_again_is_an_invalid_state(api, container, world):
    before = snapshot(container)
    r = api.client.post(f"/v1/checkout/{world['paid']}/confirm", headers=world["payer"])
    assert_problem(r, 409, "invalid_state")
    assert snapshot(container) == before


def test_confirming_without_enough_money_is_refused_and_moves_nothing(api, container, world):
    big = api.payment(world["merchant"], amount=5000)
    before = snapshot(container)
    r = api.client.post(f"/v1/checkout/{big['id']}/confirm", headers=world["other_payer"])
    assert_problem(r, 402, "insufficient_funds")
    assert snapshot(container) == before


# ---- registration and login -------------------------------------------------------------------

REGISTRATION_CASES = [
    ("short", {"email": "new@example.com", "password": "short"}, 422, "weak_password"),
    ("seven_chars", {"email": "new@example.com", "password": "abcdefg"}, 422, "weak_password"),
    ("common", {"email": "new@example.com", "password": "password123"}, 422, "weak_password"),
    ("common_upper", {"email": "new@example.com", "password": "PASSWORD123"}, 422, "weak_password"),
    ("len_1025", {"email": "new@example.com", "password": "x" * 1025}, 422, "weak_password"),
    ("len_4096", {"email": "new@example.com", "password": "x" * 4096}, 422, "weak_password"),
    ("len_4097", {"email": "new@example.com", "password": "x" * 4097}, 422, "invalid_input"),
    ("password_number", {"email": "new@example.com", "password": 12345678}, 422, "invalid_input"),
    ("password_null", {"email": "new@example.com", "password": None}, 422, "invalid_input"),
    ("email_no_at", {"email": "not-an-email", "password": PASSWORD}, 422, "invalid_input"),
    ("email_no_domain_dot", {"email": "a@localhost", "password": PASSWORD}, 422, "invalid_input"),
    ("email_no_local", {"email": "@example.com", "password": PASSWORD}, 422, "invalid_input"),
    ("email_space", {"email": "a b@example.com", "password": PASSWORD}, 422, "invalid_input"),
    ("email_nul", {"email": "a\u0000@example.com", "password": PASSWORD}, 422, "invalid_input"),
    ("email_trailing_dot", {"email": "a@example.com.", "password": PASSWORD}, 422, "invalid_input"),
    (
        "email_too_long",
        {"email": "a" * 250 + "@example.com", "password": PASSWORD},
        422,
        "invalid_input",
    ),
    (
        "email_321",
        {"email": "a" * 309 + "@example.com", "password": PASSWORD},
        422,
        "invalid_input",
    ),
    ("email_number", {"email": 5, "password": PASSWORD}, 422, "invalid_input"),
    ("email_empty", {"email": "", "password": PASSWORD}, 422, "invalid_input"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code"), REGISTRATION_CASES, ids=ids(REGISTRATION_CASES)
)
def test_a_bad_registration_is_refused_and_creates_no_user(
    api, container, world, case, body, status, code
):
    before = snapshot(container)
    r = api.client.post("/v1/users", json=body)
    assert_problem(r, status, code)
    assert snapshot(container) == before


@pytest.mark.parametrize(
    "email",
    [
        "payer@example.com",
        "PAYER@example.com",
        "  payer@example.com  ",
        "payer@EXAMPLE.COM",
        "\uff50ayer@example.com",
    ],
    ids=["same", "upper_local", "padded", "upper_domain", "fullwidth_p"],
)
def test_registering_a_taken_email_is_a_409(api, container, world, email):
    before = snapshot(container)
    r = api.client.post("/v1/users", json={"email": email, "password": "another passphrase"})
    assert_problem(r, 409, "email_taken")
    assert snapshot(container) == before
    # The original owner's password still works.
    r = api.client.post("/v1/sessions", json={"email": "payer@example.com", "password": PASSWORD})
    assert r.status_code == 201


LOGIN_CASES = [
    ("bad_email_shape", {"email": "not-an-email", "password": PASSWORD}),
    ("unknown_email", {"email": "ghost@example.com", "password": PASSWORD}),
    ("wrong_password", {"email": "payer@example.com", "password": "wrong passphrase"}),
    ("empty_password", {"email": "payer@example.com", "password": ""}),
    ("nul_password", {"email": "payer@example.com", "password": PASSWORD + "\u0000"}),
]


@pytest.mark.parametrize(("case", "body"), LOGIN_CASES, ids=ids(LOGIN_CASES))
def test_a_bad_login_is_an_authentication_failure_and_makes_no_session(
    api, container, world, case, body
):
    before = snapshot(container)
    r = api.client.post("/v1/sessions", json=body)
    assert_problem(r, 401, "authentication_failed")
    assert snapshot(container)["counts"]["sessions"] == before["counts"]["sessions"]


@pytest.mark.parametrize(
    ("case", "body", "code"),
    [
        ("password_number", {"email": "payer@example.com", "password": 1}, "invalid_input"),
        ("email_list", {"email": ["payer@example.com"], "password": PASSWORD}, "invalid_input"),
        (
            "password_too_long",
            {"email": "payer@example.com", "password": "x" * 4097},
            "invalid_input",
        ),
    ],
    ids=["password_number", "email_list", "password_too_long"],
)
def test_a_login_body_of_the_wrong_type_is_refused(api, container, world, case, body, code):
    before = snapshot(container)
    r = api.client.post("/v1/sessions", json=body)
    assert_problem(r, 422, code)
    assert snapshot(container) == before


# ---- methods and routes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/payments"),
        ("PATCH", "/v1/wallet"),
        ("DELETE", "/v1/users"),
        ("GET", "/v1/wallet/topups"),
        ("GET", "/v1/users"),
    ],
)
def test_a_wrong_method_is_a_405_problem(api, world, method, path):
    r = api.client.request(method, path, headers=world["payer"])
    assert_problem(r, 405, "method_not_allowed")


def test_an_unknown_route_is_a_404_problem(api):
    assert_problem(api.client.get("/v1/nothing"), 404, "not_found")
