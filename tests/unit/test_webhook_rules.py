"""Webhook rules: SSRF attempts refused with a stable reason, signatures that survive a secret
rotation and refuse tampering and replay, and the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain.errors import InvalidOverlap, InvariantViolation, WebhookLimitExceeded
from zeropay.domain.webhooks import (
    ATTEMPTS_MAX,
    OVERLAP_S_DEFAULT,
    RETRY_MAX_S,
    DeliveryState,
    Endpoint,
    EndpointStatus,
    FanoutCursor,
    OutboxEvent,
    SecretPeriod,
    UrlRefused,
    advance_cursor,
    after_attempt,
    check_resolved,
    fanout_pairs,
    parse_overlap_s,
    parse_url,
    plan_rotation,
    retry_delay_s,
    signature_header,
    signing_order,
    verify,
)

DELIVERED, PENDING, GIVEN_UP = (
    DeliveryState.DELIVERED,
    DeliveryState.PENDING,
    DeliveryState.GIVEN_UP,
)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.1.2.3/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.0.0.8/hook", "private"),
        ("https://172.16.5.4/hook", "private"),
        ("https://192.168.1.1/hook", "private"),
        ("https://[fd00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link_local"),
        ("https://[fe80::1]/hook", "link_local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://100.64.0.1/hook", "not_public"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://2130706433/hook", "not_public"),  # 127.0.0.1 as one number
        ("https://0x7f.1/hook", "not_public"),
        ("https://0177.0.0.1/hook", "not_public"),
        ("https://localhost/hook", "not_public"),
        ("https://api.localhost/hook", "loopback"),
        ("https://printer.local/hook", "loopback"),
        ("https://intranet/hook", "not_public"),
        ("http://shop.example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://shop.example.com/", "scheme"),
        ("https://user:pw@shop.example.com/hook", "credentials"),
        ("https://shop.example.com@127.0.0.1/hook", "credentials"),
        ("https://shop.example.com:99999/hook", "malformed"),
        ("https://shop_example.com/hook", "malformed"),
        ("https://xn--bcher-kva.example/hook#frag", "malformed"),
        ("https://bücher.example/hook", "malformed"),
        ("", "malformed"),
        ("https://" + "a" * 2100 + ".com/", "malformed"),
    ],
)
def test_urls_that_reach_inside_are_refused_with_a_stable_reason(url, reason):
    with pytest.raises(UrlRefused) as refused:
        parse_url(url)
    assert refused.value.code == "webhook_url_refused"
    assert refused.value.details["reason"] == reason


def test_public_urls_are_accepted_and_http_only_in_development():
    ok = parse_url("https://Shop.Example.com./webhooks/zeropay?x=1")
    assert (ok.host, ok.port, ok.is_ip) == ("shop.example.com", 443, False)
    assert parse_url("https://93.184.216.34:8443/h").port == 8443
    assert parse_url("http://shop.example.com/h", allow_http=True).port == 80


def test_a_name_that_resolves_to_any_inside_address_is_refused_on_delivery():
    url = parse_url("https://rebind.example.com/hook")
    assert check_resolved(url, ["93.184.216.34"]) == "93.184.216.34"
    for answers in (["93.184.216.34", "10.0.0.1"], ["127.0.0.1"], ["::ffff:169.254.169.254"], []):
        with pytest.raises(UrlRefused):
            check_resolved(url, answers)


SECRET_OLD, SECRET_NEW = b"whsec_old" * 4, b"whsec_new" * 4
BODY = b'{"id":"evt_1","type":"payment.succeeded"}'


def test_a_signature_verifies_with_either_secret_during_a_rotation():
    header = signature_header([SECRET_NEW, SECRET_OLD], 1_700_000_000, BODY)
    assert header.startswith("t=1700000000,v1=") and header.count("v1=") == 2
    assert verify(header, BODY, [SECRET_OLD], now=1_700_000_010)  # not yet rotated
    assert verify(header, BODY, [SECRET_NEW], now=1_700_000_010)  # rotated
    after = signature_header([SECRET_NEW], 1_700_000_000, BODY)
    assert not verify(after, BODY, [SECRET_OLD], now=1_700_000_010)  # overlap over


def test_a_tampered_body_time_or_signature_and_a_replay_are_refused():
    header = signature_header([SECRET_NEW], 1_700_000_000, BODY)
    assert not verify(
        header, BODY.replace(b"succeeded", b"refunded"), [SECRET_NEW], now=1_700_000_000
    )
    assert not verify(
        header.replace("t=1700000000", "t=1700000100"), BODY, [SECRET_NEW], now=1_700_000_100
    )
    assert not verify(
        header[:-1] + ("0" if header[-1] != "0" else "1"), BODY, [SECRET_NEW], now=1_700_000_000
    )
    assert not verify(header, BODY, [SECRET_NEW], now=1_700_000_000 + 301)  # replayed later
    assert not verify("v1=abc", BODY, [SECRET_NEW], now=1_700_000_000)
    assert not verify("t=nope,v1=abc", BODY, [SECRET_NEW], now=1_700_000_000)


def test_retries_double_up_to_a_ceiling_and_then_stop():
    delays = [retry_delay_s(n, 0.0) for n in range(1, ATTEMPTS_MAX + 1)]
    assert delays[:4] == [30, 60, 120, 240]
    assert max(d for d in delays if d is not None) == RETRY_MAX_S
    assert delays[-1] is None
    assert 30 <= retry_delay_s(1, 0.99) <= 38  # jitter adds at most a quarter


# ---- the development escape hatch ---------------------------------------------------------------


def test_the_escape_hatch_lets_this_machine_through_and_nothing_else_inside():
    assert parse_url("http://127.0.0.1:8080/h", allow_http=True, allow_loopback=True).is_ip
    assert parse_url("https://localhost/h", allow_loopback=True).host == "localhost"
    assert parse_url("https://hooks.localhost/h", allow_loopback=True).port == 443
    url = parse_url("https://rebind.example.com/h")
    assert check_resolved(url, ["127.0.0.1", "::1"], allow_loopback=True) == "127.0.0.1"
    for refused, reason in [
        ("https://10.0.0.1/h", "private"),
        ("https://169.254.169.254/h", "link_local"),
        ("https://0.0.0.0/h", "unspecified"),
        ("https://printer.local/h", "loopback"),
        ("https://metadata.google.internal/h", "loopback"),
    ]:
        with pytest.raises(UrlRefused) as caught:
            parse_url(refused, allow_http=True, allow_loopback=True)
        assert caught.value.details["reason"] == reason, refused
    with pytest.raises(UrlRefused):
        check_resolved(url, ["127.0.0.1", "10.0.0.1"], allow_loopback=True)


@pytest.mark.parametrize(
    "url", ["https://shop.example.com/a\tb", "https://shop.example.com/\r\nX: y", "https://a .com/"]
)
def test_a_url_with_a_space_or_a_control_character_is_refused_not_cleaned(url):
    # urlsplit would silently drop the tab and the newline: stored and checked would differ.
    with pytest.raises(UrlRefused) as caught:
        parse_url(url)
    assert caught.value.details["reason"] == "malformed"


def test_a_resolver_answer_that_is_no_address_is_refused():
    with pytest.raises(UrlRefused) as caught:
        check_resolved(parse_url("https://shop.example.com/"), ["not-an-address"])
    assert caught.value.details["reason"] == "malformed"


# ---- rotation -----------------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_a_rotation_gives_the_secrets_still_signing_the_end_of_the_overlap():
    first = SecretPeriod("whs_1", T0, None)
    plan = plan_rotation([first], now=T0 + timedelta(hours=1), overlap_s=OVERLAP_S_DEFAULT)
    assert plan == {"whs_1": T0 + timedelta(hours=25)}
    ending = SecretPeriod("whs_1", T0, T0 + timedelta(hours=2))
    second = SecretPeriod("whs_2", T0 + timedelta(hours=1), None)
    later = plan_rotation([ending, second], now=T0 + timedelta(hours=1), overlap_s=86400)
    assert later == {"whs_1": T0 + timedelta(hours=2), "whs_2": T0 + timedelta(hours=25)}
    assert plan_rotation([first], now=T0, overlap_s=0) == {"whs_1": T0}  # ends at once


def test_a_rotation_that_would_put_too_many_secrets_in_one_overlap_is_refused():
    valid = [SecretPeriod(f"whs_{n}", T0, None) for n in range(3)]
    with pytest.raises(WebhookLimitExceeded) as caught:
        plan_rotation(valid, now=T0, overlap_s=60)
    assert caught.value.details["reason"] == "secrets_in_overlap"
    assert len(plan_rotation(valid, now=T0, overlap_s=0)) == 3  # all stopped: always allowed
    expired = [SecretPeriod(f"whs_{n}", T0, T0 + timedelta(seconds=1)) for n in range(5)]
    assert plan_rotation(expired, now=T0 + timedelta(seconds=1), overlap_s=60) == {}


@pytest.mark.parametrize("raw", [-1, 7 * 86400 + 1, 1.5, "60", True, [60]])
def test_an_overlap_that_is_not_whole_seconds_in_bounds_is_refused(raw):
    with pytest.raises(InvalidOverlap):
        parse_overlap_s(raw)


def test_an_overlap_defaults_to_a_day_and_may_be_zero_or_a_week():
    assert parse_overlap_s(None) == OVERLAP_S_DEFAULT == 86400
    assert parse_overlap_s(0) == 0 and parse_overlap_s(7 * 86400) == 7 * 86400


def test_only_secrets_inside_their_period_sign_newest_first():
    old = SecretPeriod("whs_old", T0, T0 + timedelta(hours=24))
    new = SecretPeriod("whs_new", T0 + timedelta(hours=1), None)
    future = SecretPeriod("whs_future", T0 + timedelta(days=9), None)
    now = T0 + timedelta(hours=2)
    assert [p.id for p in signing_order([old, new, future], now)] == ["whs_new", "whs_old"]
    assert [p.id for p in signing_order([old, new], T0 + timedelta(hours=24))] == ["whs_new"]


# ---- attempts -----------------------------------------------------------------------------------


def test_an_attempt_is_delivered_on_2xx_and_otherwise_tried_later_then_given_up():
    assert after_attempt(attempt=1, status_code=204, now=T0, jitter=0).state is DELIVERED
    for status in (None, 199, 301, 302, 404, 500):
        out = after_attempt(attempt=1, status_code=status, now=T0, jitter=0)
        assert (out.state, out.next_attempt_at) == (PENDING, T0 + timedelta(seconds=30))
    last = after_attempt(attempt=ATTEMPTS_MAX, status_code=500, now=T0, jitter=0)
    assert (last.state, last.next_attempt_at) == (GIVEN_UP, None)
    assert after_attempt(attempt=ATTEMPTS_MAX, status_code=200, now=T0, jitter=0).state is DELIVERED


# ---- fan-out ------------------------------------------------------------------------------------


def _endpoint(endpoint_id, merchant_id, at, status=EndpointStatus.ACTIVE):
    return Endpoint(endpoint_id, merchant_id, "https://h.example.com/", status, at)


def _event(seq, merchant_id, at):
    return OutboxEvent(seq, f"evt_{seq}", merchant_id, at)


def test_an_event_goes_to_its_merchants_active_endpoints_that_existed_when_it_was_made():
    early, late = T0, T0 + timedelta(minutes=1)
    endpoints = [
        _endpoint("whe_a", "mer_1", early),
        _endpoint("whe_b", "mer_1", late),
        _endpoint("whe_c", "mer_1", early, EndpointStatus.DISABLED),
        _endpoint("whe_d", "mer_2", early),
    ]
    pairs = fanout_pairs([_event(1, "mer_1", early), _event(2, "mer_1", late)], endpoints)
    assert [(e.id, p.id) for e, p in pairs] == [
        ("evt_1", "whe_a"),
        ("evt_2", "whe_a"),
        ("evt_2", "whe_b"),
    ]


def test_the_cursor_jumps_holes_at_once_and_remembers_them_as_gaps():
    after = advance_cursor(FanoutCursor(10), fresh=[11, 14, 15, 18], late=[], now=T0)
    assert after.last_seq == 18
    assert [(g.first_seq, g.last_seq) for g in after.gaps] == [(12, 13), (16, 17)]
    filled = advance_cursor(after, fresh=[], late=[13, 16], now=T0 + timedelta(seconds=5))
    assert filled.last_seq == 18
    assert [(g.first_seq, g.last_seq, g.seen_at) for g in filled.gaps] == [
        (12, 12, T0),
        (17, 17, T0),
    ]
    waited = advance_cursor(filled, fresh=[19], late=[], now=T0 + timedelta(seconds=600))
    assert waited.gaps == () and waited.last_seq == 19  # rolled back, most likely


def test_the_gaps_watched_are_bounded_and_the_oldest_go_first():
    after = advance_cursor(FanoutCursor(0), fresh=[2, 4, 6, 8], late=[], now=T0, gaps_max=2)
    assert [g.first_seq for g in after.gaps] == [5, 7]
    with pytest.raises(InvariantViolation):
        advance_cursor(FanoutCursor(10), fresh=[9], late=[], now=T0)
    assert advance_cursor(FanoutCursor(3), fresh=[], late=[], now=T0) == FanoutCursor(3)
