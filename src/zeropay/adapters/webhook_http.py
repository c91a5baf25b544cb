"""Webhook delivery over HTTP (behind the ``WebhookSender`` port) and name resolution (behind
``Resolver``).

The sender connects to the address the caller already checked, never to the name again: the
URL's host is replaced by that address, and the name goes in the Host header and, over TLS, in
SNI, where the certificate is verified against it. A second lookup here would let a DNS server
that answers a public address to the check and a private one to the connection (rebinding)
reach inside.

Every attempt is bounded: a timeout on each connect, TLS, write and read; a deadline on the
whole attempt, enforced by shutting the socket down (a receiver that trickles its answer one
byte at a time never trips a per-read timeout); at most a few KiB of the answer read; no
redirect followed (it could point anywhere the URL check refused); no proxy from the
environment; no connection reused (a kept connection to an address, opened for one host name,
would carry another name's request).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from zeropay import __version__
from zeropay.domain import bounds
from zeropay.domain.webhooks import WebhookUrl
from zeropay.services.ports import WebhookAnswer

USER_AGENT = f"ZeroPay-Webhooks/{__version__}"


class _Deadline:
    """Shuts the attempt's socket down when its time is up. The socket is duplicated when it
    connects, so the duplicate still reaches it after TLS wraps (and detaches) the original."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: told when the TCP connection is up."""
        if name != "connection.connect_tcp.complete":
            return
        raw = info["return_value"].get_extra_info("socket")
        if raw is None:
            return
        with self._lock:
            self._socket = raw.dup()
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already closed by the peer or by us
                self._socket.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _error_class(exc: httpx.HTTPError) -> str:
    """A stable name for what went wrong, for the merchant's delivery log."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "protocol_error"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection_lost"
    return "network_error"


class HttpWebhookSender:
    def __init__(
        self,
        *,
        timeout_s: float = bounds.WEBHOOK_ATTEMPT_TIMEOUT_S,
        deadline_s: float = bounds.WEBHOOK_ATTEMPT_DEADLINE_S,
        response_bytes_max: int = bounds.WEBHOOK_RESPONSE_BYTES_MAX,
        verify: Any = True,
    ) -> None:
        """``verify``: as httpx takes it (an ``ssl.SSLContext`` in tests with their own CA)."""
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.response_bytes_max = response_bytes_max
        self._verify = verify
        self._lock = threading.Lock()
        self._client_made: httpx.Client | None = None

    @property
    def _client(self) -> httpx.Client:
        # Made on first use: loading the CA bundle costs tens of milliseconds, and most
        # processes (and tests) that build a sender never send a webhook.
        with self._lock:
            if self._client_made is None:
                transport = httpx.HTTPTransport(
                    verify=self._verify,
                    trust_env=False,
                    retries=0,
                    limits=httpx.Limits(max_connections=100, max_keepalive_connections=0),
                )
                self._client_made = httpx.Client(
                    transport=transport,
                    timeout=httpx.Timeout(self.timeout_s),
                    follow_redirects=False,
                    trust_env=False,
                )
            return self._client_made

    def post(
        self, *, url: WebhookUrl, address: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookAnswer:
        named = httpx.URL(url.url)
        target = named.copy_with(host=address)
        sent_headers = {
            **headers,
            "Host": named.netloc.decode("ascii"),
            "User-Agent": USER_AGENT,
            "Connection": "close",
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        with _Deadline(self.deadline_s) as deadline:
            extensions: dict[str, Any] = {"trace": deadline.trace}
            if url.scheme == "https" and not url.is_ip:
                extensions["sni_hostname"] = url.host
            try:
                with self._client.stream(
                    "POST", target, content=body, headers=sent_headers, extensions=extensions
                ) as response:
                    status_code = response.status_code
                    self._drain(response)
            except httpx.HTTPError as exc:
                error = "timeout" if deadline.expired else _error_class(exc)
        duration_ms = int((time.perf_counter() - started) * 1000)
        return WebhookAnswer(status_code=status_code, error=error, duration_ms=duration_ms)

    def _drain(self, response: httpx.Response) -> None:
        """Read at most ``response_bytes_max`` of the answer (undecoded: no decompression
        bomb), then let the connection close. The status alone decides; a body cut short
        changes nothing."""
        read = 0
        with contextlib.suppress(httpx.HTTPError):
            for chunk in response.iter_raw():
                read += len(chunk)
                if read >= self.response_bytes_max:
                    break

    def close(self) -> None:
        with self._lock:
            if self._client_made is not None:
                self._client_made.close()
                self._client_made = None


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``)."""

    def resolve(self, host: str, port: int) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return []
        out: list[str] = []
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            if address not in out:
                out.append(address)
        return out
