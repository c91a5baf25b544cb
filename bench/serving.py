"""What the benchmarks that drive a real server share: a free port, waiting until the server is
ready at ``/readyz`` (or the reason it is not), checking an answer, and bounded concurrency."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

READY_WAIT_S = 30


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Return once ``url/readyz`` answers 200; raise with the log's tail if the server exits or
    is not ready within ``READY_WAIT_S``."""
    deadline = time.monotonic() + READY_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {log_tail(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {READY_WAIT_S}s: {log_tail(log)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(r: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON body of an answer with the ``status`` expected; else stop the run, saying why."""
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return dict(r.json())


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    """Await ``coros`` with at most ``limit`` running at once."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of ``values``; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]
