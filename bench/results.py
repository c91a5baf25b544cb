"""Where benchmark figures go: one JSON file, one key per benchmark, replaced atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def merge(out: Path, key: str, record: dict[str, Any]) -> None:
    """Put ``record`` under ``key`` in ``out``, keeping the other benchmarks' figures."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(out.read_text()) if out.exists() else {}
    except json.JSONDecodeError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[key] = record
    tmp = out.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)
