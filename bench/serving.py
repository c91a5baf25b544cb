"""Waiting for a benchmark's server: ready at ``/readyz``, or the reason it is not."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

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
