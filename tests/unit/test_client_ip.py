"""The client's IP address through trusted proxies (domain.network), attacked with forged,
malformed and oversized X-Forwarded-For headers; and the ZEROPAY_TRUSTED_PROXIES setting."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.config import ConfigError, Settings
from zeropay.domain import bounds
from zeropay.domain.network import IPNetwork, client_ip, parse_forwarded_entry

PROXIES: tuple[IPNetwork, ...] = (
    ip_network("10.0.0.0/8"),
    ip_network("192.168.7.3/32"),
    ip_network("2001:db8:f00::/48"),
)
PROXY = "10.0.0.5"  # the load balancer the server sees as its peer
CLIENT = "203.0.113.9"
FORGED = "198.51.100.66"  # what an attacker would like to be seen as


def ip(peer: str, *lines: str, trusted: tuple[IPNetwork, ...] = PROXIES) -> str:
    return client_ip(peer, list(lines), trusted)


# ---- a peer that is not a trusted proxy ---------------------------------------------------------


def test_a_client_sending_its_own_x_forwarded_for_directly_is_seen_as_its_peer_address() -> None:
    assert ip(CLIENT, FORGED) == CLIENT
    assert ip(CLIENT, f"{FORGED}, {PROXY}") == CLIENT  # naming a proxy does not make one
    assert ip(CLIENT, "10.0.0.1", "10.0.0.2") == CLIENT


def test_with_no_trusted_proxies_configured_the_header_is_ignored_even_from_loopback() -> None:
    # uvicorn would have trusted 127.0.0.1; with nothing configured we trust no one.
    assert ip("127.0.0.1", FORGED, trusted=()) == "127.0.0.1"
    assert ip("::1", FORGED, trusted=()) == "::1"


def test_a_peer_that_is_not_an_address_is_returned_as_it_is_and_trusted_for_nothing() -> None:
    assert ip("testclient", FORGED) == "testclient"  # Starlette's in-process test transport
    assert ip("", FORGED) == ""  # a Unix socket has no peer address


# ---- behind trusted proxies ---------------------------------------------------------------------


def test_spoofed_left_most_entries_behind_a_trusted_proxy_lose_to_the_right_most_untrusted() -> (
    None
):
    assert ip(PROXY, CLIENT) == CLIENT
    assert ip(PROXY, f"{FORGED}, {CLIENT}") == CLIENT
    assert ip(PROXY, f"{FORGED}, 10.9.9.9, {FORGED}, {CLIENT}") == CLIENT


def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop() -> None:
    chain = f"{FORGED}, {CLIENT}, 192.168.7.3, 10.1.2.3, 2001:db8:f00::7"
    assert ip(PROXY, chain) == CLIENT
    assert ip("2001:db8:f00::1", f"{CLIENT}, 10.1.2.3") == CLIENT


def test_header_lines_are_read_as_one_list_in_the_order_received() -> None:
    assert ip(PROXY, f"{FORGED}, {CLIENT}", "10.1.1.1", "10.2.2.2") == CLIENT
    assert ip(PROXY, CLIENT, FORGED) == FORGED  # the proxy's line comes last: its view wins


def test_an_address_just_outside_a_trusted_network_is_the_client() -> None:
    assert ip(PROXY, f"{FORGED}, 11.0.0.1") == "11.0.0.1"
    assert ip(PROXY, f"{FORGED}, 192.168.7.4") == "192.168.7.4"


def test_a_trusted_proxy_that_sends_no_header_is_itself_the_client() -> None:
    assert ip(PROXY) == PROXY


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert ip(PROXY, "10.7.7.7, 10.1.1.1") == "10.7.7.7"  # a health check from inside


# ---- malformed entries --------------------------------------------------------------------------

GARBAGE = [
    "",
    "   ",
    "unknown",  # RFC 7239 §6.2
    "_hidden",  # RFC 7239 §6.3 obfuscated identifier
    "evil.example",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",  # leading zeros: octal to some parsers
    "0x7f.0.0.1",
    "256.1.1.1",
    '"203.0.113.9"',
    "203.0.113.9 198.51.100.66",
    "203.0.113.9;for=1.2.3.4",
    "[203.0.113.9]",  # brackets hold IPv6 only
    "203.0.113.9:",
    "203.0.113.9:99999",
    "203.0.113.9:80x",
    "[2001:db8::1",
    "[2001:db8::1]x",
    "[2001:db8::1]:",
    "fe80::1%eth0",  # a zone id means nothing off its host
    "[fe80::1%25eth0]:80",
    "２０３.0.113.9",  # full-width digits
    "203.0.113.9\x00",
    "1" * (bounds.FORWARDED_ENTRY_LENGTH_MAX + 1),
    "2001:db8::" + "0:" * 40 + "1",
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_a_malformed_entry_is_refused(garbage: str) -> None:
    assert parse_forwarded_entry(garbage) is None


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_stops_the_walk_at_the_last_trusted_hops_view_never_at_the_garbage(
    garbage: str,
) -> None:
    assert ip(PROXY, f"{CLIENT}, {garbage}, 10.3.3.3") == "10.3.3.3"
    assert ip(PROXY, f"{CLIENT}, {garbage}") == PROXY


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_left_of_the_client_is_never_read(garbage: str) -> None:
    assert ip(PROXY, f"{garbage}, {CLIENT}, 10.3.3.3") == CLIENT


def test_empty_entries_and_an_empty_header_line_stop_the_walk() -> None:
    assert ip(PROXY, f"{CLIENT},,10.3.3.3") == "10.3.3.3"
    assert ip(PROXY, f"{CLIENT}, 10.3.3.3,") == PROXY
    assert ip(PROXY, CLIENT, "") == PROXY
    assert ip(PROXY, "") == PROXY


# ---- forms and normalisation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" \t203.0.113.9\t ", "203.0.113.9"),
        ("203.0.113.9:443", "203.0.113.9"),
        ("2001:DB8:0:0:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:DB8::1]:65535", "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("::FFFF:cb00:7109", "203.0.113.9"),
        ("[::ffff:203.0.113.9]:80", "203.0.113.9"),
        (
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
    ],
)
def test_an_entry_comes_out_as_one_normal_address(entry: str, expected: str) -> None:
    assert str(parse_forwarded_entry(entry)) == expected
    assert ip(PROXY, f"{FORGED}, {entry}") == expected


def test_an_ipv4_mapped_client_and_its_ipv4_form_are_one_client() -> None:
    assert ip(PROXY, "::ffff:203.0.113.9") == ip(PROXY, CLIENT) == CLIENT
    assert ip("::ffff:203.0.113.9", FORGED) == CLIENT


def test_an_ipv4_mapped_peer_is_matched_against_ipv4_trusted_networks() -> None:
    # A dual-stack socket reports an IPv4 proxy as ::ffff:10.0.0.5.
    assert ip("::ffff:10.0.0.5", f"{FORGED}, {CLIENT}") == CLIENT


def test_an_ipv4_mapped_hop_is_matched_against_ipv4_trusted_networks() -> None:
    assert ip(PROXY, f"{FORGED}, {CLIENT}, ::ffff:10.9.9.9") == CLIENT


def test_a_link_local_peer_loses_its_zone_id() -> None:
    assert ip("fe80::1%eth0", FORGED) == "fe80::1"
    trusted = (ip_network("fe80::/64"),)
    assert ip("fe80::1%eth0", CLIENT, trusted=trusted) == CLIENT


def test_an_ipv6_proxy_chain_yields_the_ipv6_client_compressed_in_lower_case() -> None:
    chain = "2001:DB8:1::66, 2001:DB8:2:0:0:0:0:9, [2001:db8:f00::2]:443"
    assert ip("2001:db8:f00::1", chain) == "2001:db8:2::9"


# ---- bounds -------------------------------------------------------------------------------------


def test_an_overlong_header_is_read_from_the_right_only() -> None:
    padding = "x" * (10 * bounds.FORWARDED_FOR_LENGTH_MAX)
    assert ip(PROXY, f"{padding}, {CLIENT}, 10.3.3.3") == CLIENT
    assert ip(PROXY, f"{padding}, {FORGED}", CLIENT) == CLIENT
    assert ip(PROXY, *[FORGED] * 10_000, CLIENT) == CLIENT


def test_an_entry_cut_by_the_length_cap_is_malformed_even_when_its_tail_looks_like_an_address() -> (
    None
):
    # The right-most FORWARDED_FOR_LENGTH_MAX characters start with "92.0.2.10", the tail of
    # "192.0.2.10": read as an address, it would name someone the proxies never saw.
    hop = "10.3.3.3".rjust(bounds.FORWARDED_FOR_LENGTH_MAX - len("92.0.2.10,"))
    header = f"192.0.2.10,{hop}"
    assert len(header) == bounds.FORWARDED_FOR_LENGTH_MAX + 1
    assert ip(PROXY, header) == "10.3.3.3"
    assert ip(PROXY, "192.0.2.10", hop) == "10.3.3.3"  # cut across header lines alike


def test_a_header_of_exactly_the_length_cap_is_read_whole() -> None:
    hop = "10.3.3.3".rjust(bounds.FORWARDED_FOR_LENGTH_MAX - len("92.0.2.10,"))
    header = f"92.0.2.10,{hop}"
    assert len(header) == bounds.FORWARDED_FOR_LENGTH_MAX
    assert ip(PROXY, header) == "92.0.2.10"


def test_no_more_than_the_entry_cap_of_hops_is_walked() -> None:
    hops = [f"10.0.0.{i}" for i in range(bounds.FORWARDED_FOR_ENTRIES_MAX + 8)]
    # The client sits beyond the cap: the walk ends on the last hop it read, a trusted one.
    assert ip(PROXY, ", ".join([FORGED, *hops])) == "10.0.0.8"
    # Within the cap it is found.
    within = hops[-(bounds.FORWARDED_FOR_ENTRIES_MAX - 1) :]
    assert ip(PROXY, ", ".join([FORGED, *within])) == FORGED


def test_many_entries_left_of_the_client_cost_nothing_and_change_nothing() -> None:
    header = ", ".join([FORGED] * 100_000 + [CLIENT, "10.3.3.3"])
    assert ip(PROXY, header) == CLIENT


# ---- properties ---------------------------------------------------------------------------------

HEADER_TEXT = st.text(
    alphabet=st.sampled_from(list("0123456789abcdefABCDEF.:[]%, \t_xyz")), max_size=120
)


@given(lines=st.lists(HEADER_TEXT, max_size=4))
def test_any_header_from_an_untrusted_peer_is_ignored(lines: list[str]) -> None:
    assert client_ip(CLIENT, lines, PROXIES) == CLIENT


@given(lines=st.lists(HEADER_TEXT, max_size=4))
def test_any_header_through_a_trusted_proxy_yields_the_peer_or_an_address_it_contains(
    lines: list[str],
) -> None:
    found = client_ip(PROXY, lines, PROXIES)
    assert ip_address(found)  # always an address, never garbage
    seen = {str(parse_forwarded_entry(e)) for line in lines for e in line.split(",")}
    assert found == PROXY or found in seen


# ---- the setting --------------------------------------------------------------------------------


def test_trusted_proxies_default_to_no_one() -> None:
    assert Settings.from_env({}).trusted_proxies == ()
    assert Settings.from_env({"ZEROPAY_TRUSTED_PROXIES": ""}).trusted_proxies == ()


def test_trusted_proxies_are_parsed_from_addresses_and_networks() -> None:
    raw = "10.0.0.0/8, 192.168.7.3 ,2001:db8:f00::/48, ::ffff:172.16.0.0/108,"
    assert Settings.from_env({"ZEROPAY_TRUSTED_PROXIES": raw}).trusted_proxies == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("192.168.7.3/32"),
        IPv6Network("2001:db8:f00::/48"),
        IPv4Network("172.16.0.0/12"),  # IPv4-mapped, kept as IPv4 like the addresses
    )


@pytest.mark.parametrize(
    "entry",
    ["proxy.internal", "10.0.0.1/8", "10.0.0.0/33", "0.0.0.0/0", "::/0", "fe80::%eth0/64", "*"],
)
def test_a_bad_trusted_proxy_stops_the_start_naming_the_entry(entry: str) -> None:
    with pytest.raises(ConfigError, match="ZEROPAY_TRUSTED_PROXIES") as raised:
        Settings.from_env({"ZEROPAY_TRUSTED_PROXIES": f"10.0.0.0/8, {entry}"})
    assert repr(entry) in str(raised.value)


def test_more_trusted_proxies_than_the_bound_are_refused() -> None:
    raw = ",".join(f"10.0.{i // 256}.{i % 256}" for i in range(bounds.TRUSTED_PROXIES_MAX + 1))
    with pytest.raises(ConfigError, match="ZEROPAY_TRUSTED_PROXIES"):
        Settings.from_env({"ZEROPAY_TRUSTED_PROXIES": raw})


# ---- the server ---------------------------------------------------------------------------------


def test_uvicorn_never_reads_x_forwarded_for_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its ProxyHeadersMiddleware would trust 127.0.0.1 (or FORWARDED_ALLOW_IPS) and rewrite
    the peer address before ``api.deps.client_address`` sees it."""
    import uvicorn

    from zeropay import serve

    configs: list[uvicorn.Config] = []

    class Recorder:
        def __init__(self, config: uvicorn.Config) -> None:
            configs.append(config)

        def run(self, sockets: object) -> None:
            pass

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    monkeypatch.setattr(serve, "_listen", lambda host, port: object())
    monkeypatch.setattr(uvicorn, "Server", Recorder)
    serve.serve(host="127.0.0.1", port=8000, workers=1)
    [config] = configs
    assert config.proxy_headers is False
    assert config.forwarded_allow_ips == []
