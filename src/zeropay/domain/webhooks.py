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

Delivery: every event of the outbox (``payment_events``) becomes one delivery per active
endpoint of its merchant that existed when the event was made. A delivery is ``pending`` until
a 2xx answer (``delivered``) or until ``ATTEMPTS_MAX`` attempts failed (``given_up``).

    pending --2xx--> delivered
    pending --other answer, network error or refused address--> pending (later) | given_up
    delivered | given_up --redelivery asked--> pending (a fresh schedule, the same event id)

The fan-out reads the outbox in ``seq`` order after a cursor. On PostgreSQL a sequence number is
taken when a row is inserted, not when its transaction commits, so a lower ``seq`` can appear
after a higher one was read: the cursor moves past it and the hole is remembered as a gap,
watched until its event shows up or ``bounds.WEBHOOK_FANOUT_GAP_WAIT_S`` passes (a rolled-back
transaction leaves a gap that never fills).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from zeropay.domain import bounds
from zeropay.domain.errors import InvalidOverlap, WebhookLimitExceeded, invariant
from zeropay.domain.errors import UrlRefused as UrlRefused

URL_LENGTH_MAX = bounds.WEBHOOK_URL_LENGTH_MAX
SIGNATURE_TOLERANCE_S = 300
RETRY_BASE_S = 30
RETRY_MAX_S = 6 * 3600
ATTEMPTS_MAX = 12  # about 30 hours of tries with the doubling above, then given up

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

OVERLAP_S_DEFAULT = 24 * 3600  # both secrets sign for a day after a rotation, unless told
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, itself no secret
SIGNATURE_HEADER = "ZeroPay-Signature"
EVENT_ID_HEADER = "ZeroPay-Event-Id"
EVENT_TYPE_HEADER = "ZeroPay-Event-Type"


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    url: str
    scheme: str
    host: str  # a lower-case DNS name, or an IP address
    port: int
    is_ip: bool


def _refused(why: str, reason: str) -> UrlRefused:
    return UrlRefused(f"this webhook URL is refused: {why}", reason=reason, field="url")


def address_refusal(address: str, *, allow_loopback: bool = False) -> str | None:
    """None for a public unicast address; else the stable reason it may not be called.
    ``allow_loopback`` (development only) lets this machine's own addresses through, and nothing
    else: private networks and cloud metadata stay refused."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
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


def parse_url(raw: object, *, allow_http: bool = False, allow_loopback: bool = False) -> WebhookUrl:
    """A webhook URL a merchant gave: https (http only where ``allow_http``, for development),
    no credentials in it, a host that is a public address or a DNS name. ``allow_loopback``
    (development only) also accepts ``localhost`` and loopback addresses."""
    if not isinstance(raw, str) or not 0 < len(raw) <= URL_LENGTH_MAX or not raw.isascii():
        raise _refused("a URL is ASCII text of at most 2048 characters", "malformed")
    if any(ch <= " " or ch == "\x7f" for ch in raw.strip()):
        # urlsplit silently drops tabs and newlines (bpo-43882): what is stored must be what
        # was checked, so a URL with any of them, or a space, is refused instead.
        raise _refused("a URL has no spaces or control characters", "malformed")
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
        reason = address_refusal(host, allow_loopback=allow_loopback)
        if reason is not None:
            raise _refused(f"{host} is not a public address", reason)
    else:
        labels = host.split(".")
        if not all(_LABEL.match(label) for label in labels):
            raise _refused("the host is not a DNS name", "malformed")
        # RFC 6761 §6.3: these names are this machine, which development may call.
        this_machine = host == "localhost" or host.endswith(".localhost")
        if not (allow_loopback and this_machine):
            if len(labels) < 2 or _NUMERIC_LABEL.match(labels[-1]):
                # A single label resolves on the local network; a numeric last label is an
                # address in disguise (inet_aton reads 2130706433 and 0177.1 as 127.0.0.1).
                raise _refused("the host is not a public DNS name", "not_public")
            if this_machine or host.endswith((".local", ".internal")):
                raise _refused("the host is a local name", "loopback")
    return WebhookUrl(url=raw.strip(), scheme=scheme, host=host, port=port or default, is_ip=is_ip)


def check_resolved(
    url: WebhookUrl, addresses: Iterable[str], *, allow_loopback: bool = False
) -> str:
    """The address to connect to, after the name resolved to ``addresses``: every one of them
    must be public (a name with one private answer among public ones is refused)."""
    found = list(addresses)
    if not found:
        raise _refused(f"{url.host} does not resolve", "unresolved")
    for address in found:
        try:
            reason = address_refusal(address, allow_loopback=allow_loopback)
        except ValueError:
            reason = "malformed"  # a resolver's answer that is no address is not called
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


# ---- secrets and their rotation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretPeriod:
    """When one signing secret of an endpoint signs: from ``created_at`` until ``expires_at``
    (None: until a rotation gives it an end)."""

    id: str
    created_at: datetime
    expires_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        return self.created_at <= now and (self.expires_at is None or now < self.expires_at)


def parse_overlap_s(raw: object) -> int:
    """How long the secrets a rotation replaces keep signing: whole seconds from 0 (at once,
    for a secret that leaked) to ``bounds.WEBHOOK_OVERLAP_S_MAX``; None means the default."""
    if raw is None:
        return OVERLAP_S_DEFAULT
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidOverlap("overlap_s is a whole number of seconds", field="overlap_s")
    if not 0 <= raw <= bounds.WEBHOOK_OVERLAP_S_MAX:
        raise InvalidOverlap(
            f"overlap_s is between 0 and {bounds.WEBHOOK_OVERLAP_S_MAX}", field="overlap_s"
        )
    return raw


def plan_rotation(
    current: Sequence[SecretPeriod], *, now: datetime, overlap_s: int
) -> dict[str, datetime]:
    """The new ``expires_at`` of each secret still valid when a new one is added: the end of
    the overlap, or its own earlier end. Refused when the overlap would hold more than
    ``bounds.WEBHOOK_SECRETS_VALID_MAX`` secrets (each one is a signature in every header)."""
    valid = [p for p in current if p.valid_at(now)]
    if overlap_s > 0 and len(valid) + 1 > bounds.WEBHOOK_SECRETS_VALID_MAX:
        raise WebhookLimitExceeded(
            f"at most {bounds.WEBHOOK_SECRETS_VALID_MAX} secrets sign at once: wait for the "
            "last rotation's overlap to end, or rotate with overlap_s 0",
            reason="secrets_in_overlap",
        )
    end = now + timedelta(seconds=overlap_s)
    return {p.id: end if p.expires_at is None else min(p.expires_at, end) for p in valid}


def signing_order(periods: Sequence[SecretPeriod], now: datetime) -> list[SecretPeriod]:
    """The secrets that sign at ``now``, newest first (receivers that rotated match the first)."""
    return sorted(
        (p for p in periods if p.valid_at(now)), key=lambda p: (p.created_at, p.id), reverse=True
    )


# ---- endpoints, deliveries and attempts ----------------------------------------------------------


class EndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    merchant_id: str
    url: str
    status: EndpointStatus
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredSecret:
    """A signing secret as stored: encrypted under the key ring, bound to its row."""

    period: SecretPeriod
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one endpoint, and where its current schedule of attempts stands."""

    id: str
    event_id: str
    endpoint_id: str
    merchant_id: str
    state: DeliveryState
    attempts: int  # made in the current schedule (a redelivery starts a new one)
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None = None
    event_type: str | None = None
    leased_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try, as the merchant's delivery log shows it: an HTTP status, or why there was
    none (``timeout``, ``connect_failed``, ``refused:private``, ...)."""

    delivery_id: str
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased to one worker, with all it needs to make one attempt outside any
    transaction: the event as stored, the endpoint's URL and its signing secrets."""

    delivery: Delivery
    lease_owner: str
    event_type: str
    body: str
    url: str
    secrets: tuple[StoredSecret, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    state: DeliveryState
    next_attempt_at: datetime | None  # when the next attempt is due, while pending


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def after_attempt(
    *, attempt: int, status_code: int | None, now: datetime, jitter: float
) -> Outcome:
    """Where a delivery goes after attempt number ``attempt`` (1-based) answered
    ``status_code`` (None: no answer). A redirect is a failure: it is never followed, since it
    could point anywhere the URL check refused."""
    invariant(attempt >= 1, "attempts are counted from 1")
    if is_success(status_code):
        return Outcome(DeliveryState.DELIVERED, None)
    delay_s = retry_delay_s(attempt, jitter)
    if delay_s is None:
        return Outcome(DeliveryState.GIVEN_UP, None)
    return Outcome(DeliveryState.PENDING, now + timedelta(seconds=delay_s))


# ---- fan-out from the outbox -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """What the fan-out needs of a ``payment_events`` row."""

    seq: int
    id: str
    merchant_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SeqGap:
    """Sequence numbers ``first_seq..last_seq`` not seen when the cursor passed them."""

    first_seq: int
    last_seq: int
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class FanoutCursor:
    last_seq: int
    gaps: tuple[SeqGap, ...] = ()


def fanout_pairs(
    events: Iterable[OutboxEvent], endpoints: Iterable[Endpoint]
) -> list[tuple[OutboxEvent, Endpoint]]:
    """Each event with each active endpoint of its merchant that existed when it was made (an
    endpoint added later does not receive the past; a redelivery can send it one)."""
    by_merchant: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        if endpoint.status is EndpointStatus.ACTIVE:
            by_merchant.setdefault(endpoint.merchant_id, []).append(endpoint)
    return [
        (event, endpoint)
        for event in events
        for endpoint in by_merchant.get(event.merchant_id, ())
        if endpoint.created_at <= event.created_at
    ]


def _without(gap: SeqGap, seq: int) -> list[SeqGap]:
    if not gap.first_seq <= seq <= gap.last_seq:
        return [gap]
    parts = [replace(gap, last_seq=seq - 1), replace(gap, first_seq=seq + 1)]
    return [p for p in parts if p.first_seq <= p.last_seq]


def advance_cursor(
    cursor: FanoutCursor,
    *,
    fresh: Sequence[int],
    late: Sequence[int],
    now: datetime,
    wait_s: int = bounds.WEBHOOK_FANOUT_GAP_WAIT_S,
    gaps_max: int = bounds.WEBHOOK_FANOUT_GAPS_MAX,
) -> FanoutCursor:
    """The cursor after a fan-out handled ``fresh`` (the seqs read after it, ascending) and
    ``late`` (seqs found inside its gaps). The cursor moves to the last fresh seq at once, so
    the payment path never waits on a slow transaction elsewhere; each hole it jumps is kept
    as a gap and read again on later runs until its event appears or ``wait_s`` passes."""
    invariant(all(s > cursor.last_seq for s in fresh), "fresh events lie after the cursor")
    invariant(list(fresh) == sorted(set(fresh)), "fresh events are read in seq order, once")
    gaps = list(cursor.gaps)
    for seq in late:
        gaps = [part for gap in gaps for part in _without(gap, seq)]
    expired_before = now - timedelta(seconds=wait_s)
    gaps = [g for g in gaps if g.seen_at > expired_before]
    last = cursor.last_seq
    for seq in fresh:
        if seq > last + 1:
            gaps.append(SeqGap(first_seq=last + 1, last_seq=seq - 1, seen_at=now))
        last = seq
    # Beyond the bound the oldest holes are the likeliest to be rollbacks: they go first.
    gaps = sorted(gaps, key=lambda g: g.first_seq)[-gaps_max:] if gaps_max > 0 else []
    return FanoutCursor(last_seq=last, gaps=tuple(gaps))
