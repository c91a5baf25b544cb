"""Webhooks under attack: URLs and DNS answers that reach inside (SSRF) at creation and at
delivery, a name that rebinds between the check and the connection, one merchant reaching for
another's endpoints, events or deliveries, workers and fan-outs racing, an event that commits
late below the cursor, and receivers that trickle, redirect or never resolve."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import text

from support.webhook_receiver import Receiver, Trickler, tls_contexts
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.webhook_http import HttpWebhookSender
from zeropay.bootstrap import build
from zeropay.domain.webhooks import parse_url
from zeropay.services import merchants, webhooks


class Resolver:
    """A resolver port that answers what the test says, and counts lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return list(self.answers.get(host, []))


class SpySender:
    """The real sender, recording where it was asked to connect."""

    def __init__(self) -> None:
        self.real = HttpWebhookSender()
        self.connected_to: list[str] = []

    def post(self, *, url, address, headers, body):
        self.connected_to.append(address)
        return self.real.post(url=url, address=address, headers=headers, body=body)


def _build(settings, clock, **changes):
    return build(
        replace(settings, **changes),
        clock=clock,
        hasher=Argon2PasswordHasher.cheap_for_tests(),
    )


@pytest.fixture
def local(settings, clock, api_for) -> Iterator:
    """The API of an app with the development escape hatch on."""
    built = _build(settings, clock, webhook_allow_local=True)
    yield api_for(built)
    built.engine.dispose()


def _with_webhooks(api, **setup):
    """The same app with another webhook sender or resolver (a test double at the root)."""
    ctx = api.container.ctx
    api.container = replace(
        api.container, ctx=replace(ctx, webhooks=replace(ctx.webhooks, **setup))
    )
    return api.container.ctx


def add_endpoint(api, merchant, url: str) -> dict:
    r = api.client.post("/v1/webhook-endpoints", headers=merchant, json={"url": url})
    assert r.status_code == 201, r.text
    return r.json()


def cancel_a_payment(api, merchant) -> str:
    payment = api.payment(merchant)
    r = api.client.post(f"/v1/payments/{payment['id']}/cancel", headers=merchant)
    assert r.status_code == 200, r.text
    return str(api.client.get("/v1/events", headers=merchant).json()["data"][0]["id"])


def merchant_id_of(api, merchant) -> str:
    key = merchant["Authorization"].split()[1]
    return merchants.authenticate_key(api.container.ctx, key).merchant_id


def log_of(api, merchant, endpoint_id: str) -> list[dict]:
    r = api.client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=merchant)
    return list(r.json()["data"])


# ---- SSRF ---------------------------------------------------------------------------------------

INSIDE = [
    ("https://127.0.0.1/hook", "loopback"),
    ("https://[::1]:8443/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://10.0.0.8/hook", "private"),
    ("https://192.168.1.20/hook", "private"),
    ("https://[fd12::1]/hook", "private"),
    ("https://169.254.169.254/latest/meta-data/", "link_local"),
    ("https://100.64.0.1/hook", "not_public"),  # carrier-grade NAT
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://2130706433/hook", "not_public"),  # 127.0.0.1 as one number
    ("https://0x7f.0.0.1/hook", "not_public"),
    ("https://localhost/hook", "not_public"),
    ("https://metadata.google.internal/hook", "loopback"),
    ("https://printer.local/hook", "loopback"),
    ("https://user:pw@shop.example.com/hook", "credentials"),
    ("http://shop.example.com/hook", "scheme"),
    ("file:///etc/passwd", "scheme"),
]


def test_urls_that_reach_inside_are_refused_at_creation_each_with_its_reason(api):
    merchant = api.merchant()
    for url, reason in INSIDE:
        r = api.client.post("/v1/webhook-endpoints", headers=merchant, json={"url": url})
        assert r.status_code == 422, (url, r.text)
        assert (r.json()["code"], r.json()["reason"]) == ("webhook_url_refused", reason), url
    assert api.client.get("/v1/webhook-endpoints", headers=merchant).json()["data"] == []


def test_the_escape_hatch_lets_loopback_and_http_through_and_nothing_else(local):
    merchant = local.merchant()
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "https://[::1]/hook"):
        add_endpoint(local, merchant, url)
    for url, reason in [
        ("http://10.0.0.8/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link_local"),
        ("http://0.0.0.0:9/hook", "unspecified"),
        ("http://printer.local/hook", "loopback"),
    ]:
        r = local.client.post("/v1/webhook-endpoints", headers=merchant, json={"url": url})
        assert r.status_code == 422 and r.json()["reason"] == reason, (url, r.text)


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["127.0.0.1"], "loopback"),
        (["10.1.2.3"], "private"),
        (["93.184.216.34", "10.0.0.1"], "private"),  # one inside answer is enough
        (["169.254.169.254"], "link_local"),
        ([], "unresolved"),
    ],
)
def test_a_name_that_resolves_inside_is_refused_at_delivery_and_never_connected_to(
    api, answers, reason
):
    merchant = api.merchant()
    endpoint = add_endpoint(api, merchant, "https://hooks.example.com/zeropay")
    sender, resolver = SpySender(), Resolver({"hooks.example.com": answers})
    ctx = _with_webhooks(api, sender=sender, resolver=resolver)
    cancel_a_payment(api, merchant)
    webhooks.fan_out(ctx)
    assert webhooks.deliver_due(ctx, owner="test") == 1
    assert sender.connected_to == []  # refused before any connection
    assert resolver.lookups == ["hooks.example.com"]
    [delivery] = log_of(api, merchant, endpoint["id"])
    assert delivery["state"] == "pending"  # DNS may be fixed: it is tried again later
    assert [(a["status_code"], a["error"]) for a in delivery["log"]] == [
        (None, f"refused:{reason}")
    ]


def test_an_endpoint_made_under_the_escape_hatch_is_refused_once_it_is_off(local, settings, clock):
    merchant = local.merchant()
    with Receiver() as receiver:
        endpoint = add_endpoint(local, merchant, receiver.url())
        cancel_a_payment(local, merchant)
        ctx = _with_webhooks(local, allow_local=False)
        webhooks.fan_out(ctx)
        assert webhooks.deliver_due(ctx, owner="test") == 1
    assert receiver.requests == []
    [delivery] = log_of(local, merchant, endpoint["id"])
    assert delivery["log"][0]["error"] == "refused:scheme"


def test_the_connection_goes_to_the_address_that_was_checked_not_to_a_second_lookup(local):
    """DNS rebinding: the first answer passes the check, a second one would point inside. The
    name is looked up once and the checked address is the one connected to."""
    merchant = local.merchant()
    with Receiver() as receiver:
        url = f"http://rebind.example.com:{receiver.port}/hooks"
        endpoint = add_endpoint(local, merchant, url)
        resolver = Resolver({"rebind.example.com": ["127.0.0.1"]})
        sender = SpySender()
        ctx = _with_webhooks(local, sender=sender, resolver=resolver)
        original = resolver.resolve

        def rebinding(host: str, port: int) -> list[str]:
            found = original(host, port)
            resolver.answers[host] = ["10.9.9.9"]  # what a second lookup would get
            return found

        resolver.resolve = rebinding
        cancel_a_payment(local, merchant)
        webhooks.fan_out(ctx)
        assert webhooks.deliver_due(ctx, owner="test") == 1
    assert resolver.lookups == ["rebind.example.com"]
    assert sender.connected_to == ["127.0.0.1"]
    [got] = receiver.requests
    assert got.headers["host"] == f"rebind.example.com:{receiver.port}"
    assert log_of(local, merchant, endpoint["id"])[0]["state"] == "delivered"


def test_over_tls_the_name_is_verified_while_the_checked_address_is_connected_to(local):
    """Connecting to an address (not a name) must not weaken TLS: the name goes in SNI and the
    certificate is verified against it."""
    merchant = local.merchant()
    server, client, sni = tls_contexts("hooks.example.com")
    with Receiver(tls=server) as receiver:
        resolver = Resolver({n: ["127.0.0.1"] for n in ("hooks.example.com", "evil.example.com")})
        ctx = _with_webhooks(local, sender=HttpWebhookSender(verify=client), resolver=resolver)
        good = add_endpoint(local, merchant, f"https://hooks.example.com:{receiver.port}/hooks")
        bad = add_endpoint(local, merchant, f"https://evil.example.com:{receiver.port}/hooks")
        cancel_a_payment(local, merchant)
        webhooks.fan_out(ctx)
        assert webhooks.deliver_due(ctx, owner="test") == 2
    [got] = receiver.requests
    assert got.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert "hooks.example.com" in sni
    assert log_of(local, merchant, good["id"])[0]["state"] == "delivered"
    [refused] = log_of(local, merchant, bad["id"])  # its certificate names another host
    assert refused["state"] == "pending" and refused["log"][0]["error"] == "connect_failed"


def test_a_redirect_is_not_followed(local):
    merchant = local.merchant()
    with Receiver(statuses=(302,)) as receiver:
        endpoint = add_endpoint(local, merchant, receiver.url())
        cancel_a_payment(local, merchant)
        webhooks.fan_out(local.container.ctx)
        assert webhooks.deliver_due(local.container.ctx, owner="test") == 1
    assert len(receiver.requests) == 1
    [delivery] = log_of(local, merchant, endpoint["id"])
    assert delivery["state"] == "pending" and delivery["log"][0]["status_code"] == 302


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_deadline():
    # One byte every 0.2 s never trips the 1 s read timeout; only the deadline ends it.
    sender = HttpWebhookSender(timeout_s=1, deadline_s=1.5)
    with Trickler(every_s=0.2) as trickler:
        url = parse_url(
            f"http://127.0.0.1:{trickler.port}/hook", allow_http=True, allow_loopback=True
        )
        started = time.monotonic()
        answer = sender.post(url=url, address="127.0.0.1", headers={}, body=b"{}")
        took = time.monotonic() - started
    assert (answer.status_code, answer.error) == (None, "timeout")
    assert 1.4 <= took < 3.5, took


def test_nothing_is_sent_to_an_address_nobody_listens_on_and_the_failure_is_named():
    sender = HttpWebhookSender(timeout_s=1, deadline_s=2)
    with Receiver() as receiver:
        port = receiver.port  # free once the receiver is gone
    url = parse_url(f"http://127.0.0.1:{port}/hook", allow_http=True, allow_loopback=True)
    answer = sender.post(url=url, address="127.0.0.1", headers={}, body=b"{}")
    assert (answer.status_code, answer.error) == (None, "connect_failed")


# ---- isolation ----------------------------------------------------------------------------------


def test_a_merchant_never_sees_another_merchants_endpoints_events_or_deliveries(local):
    alice, mallory = local.merchant("Alice"), local.merchant("Mallory")
    with Receiver() as receiver:
        endpoint = add_endpoint(local, alice, receiver.url())
        event_id = cancel_a_payment(local, alice)
        webhooks.fan_out(local.container.ctx)
        webhooks.deliver_due(local.container.ctx, owner="test")
    [delivery] = log_of(local, alice, endpoint["id"])
    ep = f"/v1/webhook-endpoints/{endpoint['id']}"
    for method, path, body in [
        ("GET", ep, None),
        ("DELETE", ep, None),
        ("GET", f"{ep}/deliveries", None),
        ("POST", f"{ep}/secret-rotations", {}),
        ("POST", f"{ep}/redeliveries", {"event_id": event_id}),
        ("GET", f"/v1/events/{event_id}", None),
        ("GET", f"/v1/events/{event_id}/deliveries", None),
    ]:
        r = local.client.request(method, path, headers=mallory, json=body)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (method, path, r.text)
    mine = add_endpoint(local, mallory, receiver.url("/mallory"))
    r = local.client.post(
        f"/v1/webhook-endpoints/{mine['id']}/redeliveries",
        headers=mallory,
        json={"event_id": event_id},  # Alice's event to Mallory's own endpoint
    )
    assert r.status_code == 404, r.text
    for path in (
        "/v1/webhook-endpoints",
        "/v1/events",
        f"/v1/events?starting_after={event_id}",
        f"/v1/webhook-endpoints?starting_after={endpoint['id']}",
        f"/v1/webhook-endpoints/{mine['id']}/deliveries?starting_after={delivery['id']}",
    ):
        seen = local.client.get(path, headers=mallory).json()["data"]
        assert endpoint["id"] not in str(seen) and event_id not in str(seen), path
    assert local.client.get(ep, headers=alice).status_code == 200  # still Alice's, untouched


# ---- races --------------------------------------------------------------------------------------


def _at_once(count: int, work) -> list:
    """Run ``work`` in ``count`` threads released together; their results (or errors)."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_two_workers_racing_never_send_one_delivery_twice_at_once(local):
    merchant = local.merchant()
    ctx = local.container.ctx
    with Receiver(delay_s=0.3) as receiver:
        for path in ("/a", "/b"):
            add_endpoint(local, merchant, receiver.url(path))
        events = [cancel_a_payment(local, merchant) for _ in range(3)]
        webhooks.fan_out(ctx)
        made = _at_once(6, lambda: webhooks.deliver_due(ctx, owner="worker"))
    assert not [m for m in made if isinstance(m, Exception)], made
    assert sum(made) == 6  # three events to two endpoints, once each
    sent = sorted((q.path, q.headers["zeropay-event-id"]) for q in receiver.requests)
    assert sent == sorted((p, e) for p in ("/a", "/b") for e in events)
    assert set(receiver.in_flight_max.values()) == {1}  # never two sends of one at once
    with local.container.engine.connect() as c:
        attempts = c.execute(text("SELECT count(*) FROM webhook_attempts")).scalar_one()
    assert attempts == 6


def test_two_fan_outs_racing_make_each_delivery_exactly_once(local):
    merchant = local.merchant()
    ctx = local.container.ctx
    for n in range(2):
        add_endpoint(local, merchant, f"https://hooks{n}.example.com/zp")
    for _ in range(15):
        cancel_a_payment(local, merchant)
    reports = _at_once(2, lambda: webhooks.fan_out(ctx, batch=4))
    assert not [r for r in reports if isinstance(r, Exception)], reports
    # Each event was read by exactly one of the two runs: the cursor is locked while it moves.
    assert sum(r.events for r in reports) == 15
    assert sum(r.deliveries for r in reports) == 30
    with local.container.engine.connect() as c:
        pairs = c.execute(
            text("SELECT count(*), count(DISTINCT event_id || endpoint_id) FROM webhook_deliveries")
        ).one()
    assert tuple(pairs) == (30, 30)
    assert webhooks.fan_out(ctx).deliveries == 0  # nothing is made twice later either


# ---- the cursor and sequence gaps --------------------------------------------------------------


def _insert_event(
    connection, *, seq: int | None, event_id: str, merchant_id: str, payment_id: str, at
):
    columns = "id, merchant_id, payment_id, type, body, created_at"
    values = ":id, :merchant_id, :payment_id, 'payment.canceled', :body, :at"
    if seq is not None:
        columns, values = f"seq, {columns}", f":seq, {values}"
    connection.execute(
        text(f"INSERT INTO payment_events ({columns}) VALUES ({values})"),
        {
            "seq": seq,
            "id": event_id,
            "merchant_id": merchant_id,
            "payment_id": payment_id,
            "body": f'{{"id":"{event_id}"}}',
            "at": at,
        },
    )


def _delivered_events(api) -> set[str]:
    with api.container.engine.connect() as c:
        return set(c.execute(text("SELECT event_id FROM webhook_deliveries")).scalars())


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_event_that_commits_after_the_cursor_passed_its_seq_is_still_delivered(local, clock):
    """On PostgreSQL a transaction takes its seq when it inserts and shows it when it commits:
    a slow one shows a seq below events already fanned out."""
    merchant = local.merchant()
    merchant_id = merchant_id_of(local, merchant)
    ctx = local.container.ctx
    add_endpoint(local, merchant, "https://hooks.example.com/zp")
    slow_payment = local.payment(merchant)
    with local.container.engine.connect() as slow:
        slow.begin()
        _insert_event(
            slow,
            seq=None,
            event_id="evt_slow",
            merchant_id=merchant_id,
            payment_id=slow_payment["id"],
            at=clock.now(),
        )
        fast = cancel_a_payment(local, merchant)  # a higher seq, committed first
        assert webhooks.fan_out(ctx).deliveries == 1
        assert _delivered_events(local) == {fast}
        slow.commit()
    report = webhooks.fan_out(ctx)
    assert (report.events, report.late, report.deliveries) == (0, 1, 1)
    assert _delivered_events(local) == {fast, "evt_slow"}
    assert webhooks.fan_out(ctx).deliveries == 0
    with local.container.engine.connect() as c:
        assert c.execute(text("SELECT gaps FROM webhook_fanout")).scalar_one() == "[]"


def test_a_gap_in_the_sequence_is_watched_until_it_fills_or_its_wait_ends(local, clock):
    merchant = local.merchant()
    merchant_id = merchant_id_of(local, merchant)
    ctx = local.container.ctx
    add_endpoint(local, merchant, "https://hooks.example.com/zp")
    payment = local.payment(merchant)
    with local.container.engine.begin() as c:
        for seq in (1, 4, 6):  # 2-3 and 5 are missing: transactions still open, or rolled back
            _insert_event(
                c,
                seq=seq,
                event_id=f"evt_{seq}",
                merchant_id=merchant_id,
                payment_id=payment["id"],
                at=clock.now(),
            )
    assert webhooks.fan_out(ctx).deliveries == 3
    with local.container.engine.begin() as c:
        _insert_event(
            c,
            seq=3,
            event_id="evt_3",
            merchant_id=merchant_id,
            payment_id=payment["id"],
            at=clock.now(),
        )
    assert webhooks.fan_out(ctx).late == 1
    assert _delivered_events(local) == {"evt_1", "evt_3", "evt_4", "evt_6"}
    clock.advance(seconds=601)  # the wait is over: 2 and 5 are taken for rollbacks
    webhooks.fan_out(ctx)
    with local.container.engine.begin() as c:
        _insert_event(
            c,
            seq=5,
            event_id="evt_5",
            merchant_id=merchant_id,
            payment_id=payment["id"],
            at=clock.now(),
        )
    assert webhooks.fan_out(ctx).late == 0
    with local.container.engine.connect() as c:
        assert c.execute(text("SELECT gaps FROM webhook_fanout")).scalar_one() == "[]"
