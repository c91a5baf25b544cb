"""Webhook rules: SSRF attempts refused with a stable reason, signatures that survive a secret
rotation and refuse tampering and replay, and the retry schedule."""

from __future__ import annotations

import pytest

from zeropay.domain.webhooks import (
    ATTEMPTS_MAX,
    RETRY_MAX_S,
    UrlRefused,
    check_resolved,
    parse_url,
    retry_delay_s,
    signature_header,
    verify,
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
