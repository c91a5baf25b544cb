"""Real receivers for webhook tests: an HTTP server on 127.0.0.1 in a thread that records every
request and answers from a script, and a socket server that trickles its answer a byte at a
time (a receiver that never trips a per-read timeout)."""

from __future__ import annotations

import datetime
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class Receiver:
    """Answers each POST with the next status of ``statuses`` (the last one repeats), after
    ``delay_s``. Counts requests in flight per path and event id (one delivery), to catch two
    sends of one delivery at once."""

    def __init__(
        self,
        statuses: tuple[int, ...] = (200,),
        *,
        delay_s: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.requests: list[Received] = []
        self.in_flight_max: dict[tuple[str, str], int] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, received: Received) -> int:
        event_id = (received.path, received.headers.get("zeropay-event-id", ""))
        with self._lock:
            self.requests.append(received)
            self._in_flight[event_id] = self._in_flight.get(event_id, 0) + 1
            self.in_flight_max[event_id] = max(
                self.in_flight_max.get(event_id, 0), self._in_flight[event_id]
            )
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        time.sleep(self.delay_s)
        with self._lock:
            self._in_flight[event_id] -= 1
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._answer(Received(self.path, headers, body))
                payload = b'{"ok": true}'
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_args: Any) -> None:
                pass

        return Handler


class Trickler:
    """Accepts connections and answers one byte every ``every_s`` seconds, forever."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                    if self._stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every_s)
            except OSError:
                return


def tls_contexts(name: str) -> tuple[ssl.SSLContext, ssl.SSLContext, list[str]]:
    """A server context with a certificate for ``name`` from a throwaway CA, a client context
    that trusts only that CA, and the list the server fills with the SNI names it is sent."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate(name, key, "Test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    folder = Path(tempfile.mkdtemp())
    (folder / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    seen: list[str] = []
    server.sni_callback = lambda _sock, sent, _ctx: seen.append(sent or "")
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client, seen
