from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zeropay.api.app import create_app
from zeropay.bootstrap import Container
from zeropay.services import merchants


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url="http://localhost") as c:
        yield c


class Api:
    """A few calls every HTTP test needs, spelled once."""

    def __init__(self, client: TestClient, container: Container) -> None:
        self.client = client
        self.container = container

    def payer(self, email: str = "ana@example.com", *, usd: int = 0) -> dict[str, str]:
        r = self.client.post("/v1/users", json={"email": email, "password": "a long passphrase"})
        assert r.status_code == 201, r.text
        r = self.client.post("/v1/sessions", json={"email": email, "password": "a long passphrase"})
        assert r.status_code == 201, r.text
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        if usd:
            r = self.client.post(
                "/v1/wallet/topups", headers=headers, json={"amount": usd, "currency": "USD"}
            )
            assert r.status_code == 201, r.text
        return headers

    def merchant(self, name: str = "Corner Cafe") -> dict[str, str]:
        _, key = merchants.create_merchant(self.container.ctx, name=name)
        return {"Authorization": f"Bearer {key.secret}"}

    def payment(self, merchant: dict[str, str], amount: int = 450, **extra: Any) -> dict[str, Any]:
        body = {"amount": amount, "currency": "USD", "description": "Flat white", **extra}
        r = self.client.post("/v1/payments", headers=merchant, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def balance(self, payer: dict[str, str], currency: str = "USD") -> int:
        r = self.client.get("/v1/wallet", headers=payer)
        assert r.status_code == 200, r.text
        for b in r.json()["balances"]:
            if b["currency"] == currency:
                return int(b["available"])
        return 0


@pytest.fixture
def api(client: TestClient, container: Container) -> Api:
    return Api(client, container)
