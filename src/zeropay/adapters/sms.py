"""Text messages behind the ``SmsSender`` port: a development sink and an HTTP gateway.

The sink appends each message as a JSON line to a file that ``GET /dev/sms`` shows, so the demo
needs no carrier. The gateway POSTs JSON to any SMS provider's HTTP endpoint with a bearer
token; a transport failure or a non-2xx answer is an ``InfrastructureError`` (never a silent
loss)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from zeropay.domain.errors import InfrastructureError

MESSAGES_SHOWN_MAX = 50


class SmsUnavailable(InfrastructureError):
    code = "sms_unavailable"


class DevSmsSink:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, *, to: str, body: str) -> None:
        line = json.dumps({"to": to, "body": body, "at": datetime.now(UTC).isoformat()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")

    def recent(self, limit: int = MESSAGES_SHOWN_MAX) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()[-limit:]
        return [json.loads(line) for line in reversed(lines)]


class HttpSmsGateway:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        sender: str = "ZeroPay",
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.sender = sender
        self._client = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def send(self, *, to: str, body: str) -> None:
        try:
            answer = self._client.post(self.url, json={"to": to, "from": self.sender, "text": body})
        except httpx.HTTPError as exc:
            raise SmsUnavailable(f"the SMS gateway could not be reached: {exc}") from exc
        if not answer.is_success:
            raise SmsUnavailable(f"the SMS gateway answered {answer.status_code}")
