"""Who is asking: the client's IP address, read through the proxies we trust.

A request reaches us from its *peer*, the address at the other end of the TCP connection. Behind
a load balancer the peer is the balancer, and the client's address is in ``X-Forwarded-For``,
which every proxy extends on the right with the address it received the request from::

    X-Forwarded-For: <whatever the client wrote>, <seen by proxy 1>, <seen by proxy 2>
    peer: proxy 3

Everything left of what our own proxies wrote is the client's to choose, so the header is read
from the right and only as far as trusted proxies vouch for it:

1. A peer that is not a trusted proxy is the client, and its X-Forwarded-For is ignored entirely:
   anyone can send one.
2. Otherwise each entry, right to left, is the address the hop to its right saw. The first entry
   outside the trusted networks is the client.
3. An entry that is not an address stops the walk: the client is the last address a trusted hop
   vouched for (the entry right of the bad one, or the peer), never the garbage.
4. When every entry walked is trusted, the left-most one walked is the client (a request from
   inside the proxies' own network, such as a health check).

Entry forms accepted: ``192.0.2.1``, ``192.0.2.1:443``, ``2001:db8::1``, ``[2001:db8::1]`` and
``[2001:db8::1]:443`` (some proxies append the client's port; it is dropped), with optional
spaces or tabs around them. Anything else is malformed: an empty entry, a host name, ``unknown``
or an obfuscated id (RFC 7239 §6), a zone id (``fe80::1%eth0``), leading zeros, quotes, an IPv4
address in brackets. Addresses come out normalised: an IPv4-mapped IPv6 address as IPv4, IPv6
in lower case and compressed.

The work is bounded (``domain.bounds``): only the right-most ``FORWARDED_FOR_LENGTH_MAX``
characters of the joined header lines and at most ``FORWARDED_FOR_ENTRIES_MAX`` entries are
read; an entry cut by the length cap is malformed.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TypeAlias

from zeropay.domain import bounds

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

_OWS = " \t"  # RFC 9110 §5.6.1: optional whitespace around list elements
_PORT_DIGITS_MAX = 5


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: ``peer`` is the connection's remote address, ``forwarded_for`` the
    X-Forwarded-For header lines in the order received, ``trusted`` the proxies' networks."""
    client = _peer_address(peer)
    if client is None:
        return peer  # a Unix socket or an in-process test transport: nothing to trust
    for entry in _entries_from_right(forwarded_for):
        if not _is_trusted(client, trusted):
            break  # rule 1 for the peer, rule 2 for an entry: this one is the client
        hop = None if entry is None else parse_forwarded_entry(entry)
        if hop is None:
            break  # rule 3: keep what the last trusted hop saw
        client = hop
    return str(client)


def parse_forwarded_entry(text: str) -> IPAddress | None:
    """One X-Forwarded-For entry as a normalised address, or None when it is malformed."""
    entry = text.strip(_OWS)
    if not entry or len(entry) > bounds.FORWARDED_ENTRY_LENGTH_MAX or not entry.isascii():
        return None
    if entry.startswith("["):
        host, closed, port = entry[1:].partition("]")
        if not closed or (port and not _is_port(port)):
            return None
        address = _address(host)
        if not isinstance(address, IPv6Address):
            return None  # RFC 3986 §3.2.2: brackets hold IPv6 only
        return _normalised(address)
    if entry.count(":") == 1:  # IPv6 has at least two
        host, _, port = entry.partition(":")
        address = _address(host)
        return address if isinstance(address, IPv4Address) and _is_port(":" + port) else None
    address = _address(entry)
    return None if address is None else _normalised(address)


def parse_trusted_network(text: str) -> IPNetwork:
    """One trusted proxy: an address or a CIDR network with no host bits set, normalised like
    client addresses. Raises ``ValueError`` saying what is wrong."""
    network = ip_network(text.strip(), strict=True)
    if isinstance(network, IPv6Network):
        if network.network_address.scope_id is not None:
            raise ValueError("a zone id names a local link, not a proxy")
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            network = IPv4Network((mapped, network.prefixlen - 96))
    if network.prefixlen == 0:
        # Every X-Forwarded-For entry would be trusted: the client could name any address.
        raise ValueError("a /0 network trusts any address at all: name the proxies' networks")
    return network


def _address(text: str) -> IPAddress | None:
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return None  # a zone id means something only on the host that wrote it
    return address


def _normalised(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # one client, one key: 192.0.2.1 and ::ffff:192.0.2.1 alike
    return address


def _peer_address(peer: str) -> IPAddress | None:
    """The connection's remote address, normalised; a link-local peer's zone id is dropped."""
    try:
        address = ip_address(peer)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        address = IPv6Address(int(address))
    return _normalised(address)  # a dual-stack socket reports IPv4 peers as IPv4-mapped


def _is_port(text: str) -> bool:
    digits = text[1:]
    return (
        text.startswith(":")
        and 1 <= len(digits) <= _PORT_DIGITS_MAX
        and digits.isascii()
        and digits.isdigit()
        and int(digits) <= 65535
    )


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def _entries_from_right(lines: Sequence[str]) -> list[str | None]:
    """The header's entries, right-most first, at most ``FORWARDED_FOR_ENTRIES_MAX`` of them
    from at most ``FORWARDED_FOR_LENGTH_MAX`` characters; None stands for an entry the length
    cap cut (what is left of it could look like another address)."""
    if not lines:
        return []
    length_max, entries_max = bounds.FORWARDED_FOR_LENGTH_MAX, bounds.FORWARDED_FOR_ENTRIES_MAX
    kept: list[str] = []
    length = -1  # the joined length: one comma fewer than lines
    for line in reversed(lines):  # RFC 9110 §5.3: several lines are one comma-separated list
        kept.append(line[-length_max - 1 :])
        length += len(kept[-1]) + 1
        if length > length_max:
            break
    joined = ",".join(reversed(kept))
    cut = len(joined) > length_max
    pieces = joined[-length_max:].rsplit(",", entries_max)
    entries: list[str | None] = []
    entries.extend(reversed(pieces[-entries_max:]))  # a remainder left of them is never read
    if cut and len(pieces) <= entries_max:
        entries[-1] = None
    return entries
