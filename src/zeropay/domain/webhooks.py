"""Merchant webhooks, the rules: which URLs may receive them (no SSRF), how a delivery is signed
(so a merchant can tell ours from a forgery, across a secret rotation), and when a failed
delivery is tried again.

A URL is refused when its host is, or resolves to, anything but a public unicast address:
loopback, private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254),
carrier-grade NAT, multicast, reserved or unspecified. Hosts that a resolver would read as a
number (``2130706433``, ``0x7f.1``, ``0177.0.0.1``) are refused outright: they are IP addresses
in disguise. A name is checked again on every delivery against the addresses it resolves to
then (DNS can change), and the delivery connects to an address that passed.

Signature: ``ZeroPay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``, one ``v1``
per secret valid at the time (two during a rotation's overlap). A receiver accepts when any
``v1`` matches one of its secrets and ``t`` is within its tolerance (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from zeropay.domain.errors import InvalidInput

URL_LENGTH_MAX = 2048
SIGNATURE_TOLERANCE_S = 300
RETRY_BASE_S = 30
RETRY_MAX_S = 6 * 3600
ATTEMPTS_MAX = 12  # about 30 hours of tries with the doubling above, then given up

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UrlRefused(InvalidInput):
    code = "webhook_url_refused"


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    url: str
    scheme: str
    host: str  # a lower-case DNS name, or an IP address
    port: int
    is_ip: bool


def _refused(why: str, reason: str) -> UrlRefused:
    return UrlRefused(f"this webhook URL is refused: {why}", reason=reason, field="url")


def address_refusal(address: str) -> str | None:
    """None for a public unicast address; else the stable reason it may not be called."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global or ip.is_reserved:
        return "not_public"
    return None


def parse_url(raw: object, *, allow_http: bool = False) -> WebhookUrl:
    """A webhook URL a merchant gave: https (http only where ``allow_http``, for development),
    no credentials in it, a host that is a public address or a DNS name."""
    if not isinstance(raw, str) or not 0 < len(raw) <= URL_LENGTH_MAX or not raw.isascii():
        raise _refused("a URL is ASCII text of at most 2048 characters", "malformed")
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise _refused("it is not a URL", "malformed") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        raise _refused("webhooks are delivered over https", "scheme")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refused("a URL carries no user name or password", "credentials")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise _refused("it names no host", "malformed")
    if parts.fragment:
        raise _refused("a webhook URL has no fragment", "malformed")
    default = 443 if scheme == "https" else 80
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip:
        reason = address_refusal(host)
        if reason is not None:
            raise _refused(f"{host} is not a public address", reason)
    else:
        labels = host.split(".")
        if not all(_LABEL.match(label) for label in labels):
            raise _refused("the host is not a DNS name", "malformed")
        if len(labels) < 2 or _NUMERIC_LABEL.match(labels[-1]):
            # A single label resolves on the local network; a numeric last label is an
            # address in disguise (inet_aton reads 2130706433 and 0177.1 as 127.0.0.1).
            raise _refused("the host is not a public DNS name", "not_public")
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise _refused("the host is a local name", "loopback")
    return WebhookUrl(url=raw.strip(), scheme=scheme, host=host, port=port or default, is_ip=is_ip)


def check_resolved(url: WebhookUrl, addresses: Iterable[str]) -> str:
    """The address to connect to, after the name resolved to ``addresses``: every one of them
    must be public (a name with one private answer among public ones is refused)."""
    found = list(addresses)
    if not found:
        raise _refused(f"{url.host} does not resolve", "unresolved")
    for address in found:
        reason = address_refusal(address)
        if reason is not None:
            raise _refused(f"{url.host} resolves to a non-public address", reason)
    return found[0]


# ---- signing -------------------------------------------------------------------------------------


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[bytes], timestamp: int, body: bytes) -> str:
    """The header value: the time and one signature per valid secret, newest first."""
    if not secrets:
        raise ValueError("a webhook is signed with at least one secret")
    return ",".join([f"t={timestamp}", *(f"v1={_mac(s, timestamp, body)}" for s in secrets)])


def verify(
    header: str,
    body: bytes,
    secrets: Sequence[bytes],
    *,
    now: int,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a merchant runs: any ``v1`` made by any of its secrets, over this body, recent."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance_s:
        return False
    expected = [_mac(s, timestamp, body) for s in secrets]
    return any(hmac.compare_digest(e, got) for e in expected for got in signatures)


def retry_delay_s(attempt: int, jitter: float) -> int | None:
    """Seconds before try ``attempt + 1`` after ``attempt`` failed (1-based): doubling from
    ``RETRY_BASE_S`` up to ``RETRY_MAX_S``, spread by ``jitter`` in [0, 1) (up to +25 %) so
    deliveries to a merchant that was down do not all return at once. None: give up."""
    if attempt >= ATTEMPTS_MAX:
        return None
    delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempt - 1))
    return int(delay * (1 + 0.25 * min(max(jitter, 0.0), 0.999)))
