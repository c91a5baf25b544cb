"""``zeropay serve``: N worker processes, each with its own listening socket on one port.

With SO_REUSEPORT the kernel spreads new connections evenly over the workers' sockets. One
shared socket (uvicorn's own ``--workers``) lets whichever worker wakes first take most
keep-alive connections, and on a small machine one worker then does most of the work. The
supervisor restarts a worker that dies and stops them all on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from types import FrameType

log = logging.getLogger("zeropay.serve")

RESTART_BACKOFF_S = 1.0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(infos[0][4])
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int) -> None:
    import uvicorn

    sock = _listen(host, port)
    config = uvicorn.Config(
        "zeropay.bootstrap:asgi_app",
        factory=True,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        # X-Forwarded-For is read by the API alone, through ZEROPAY_TRUSTED_PROXIES
        # (api.deps.client_address). uvicorn's own handling would trust 127.0.0.1 (or
        # FORWARDED_ALLOW_IPS) and rewrite the peer address before we see it.
        proxy_headers=False,
        forwarded_allow_ips=[],
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve(*, host: str, port: int, workers: int) -> None:
    if workers == 1:
        _worker(host, port)
        return
    context = multiprocessing.get_context("spawn")
    procs: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        proc = context.Process(target=_worker, args=(host, port), daemon=False)
        proc.start()
        return proc

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    procs = [start() for _ in range(workers)]
    print(
        f"zeropay serving on http://{host}:{port} with {workers} workers (pid {os.getpid()})",
        flush=True,
    )
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            if not proc.is_alive() and not stopping:
                log.error("worker %s exited with %s; restarting", proc.pid, proc.exitcode)
                time.sleep(RESTART_BACKOFF_S)
                procs[i] = start()
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
