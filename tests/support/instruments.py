"""Payment instruments from the outside: a payer's bound phone adds a card or a phone number,
gives a merchant a token and provisions a cryptogram key; the phone computes each cryptogram the
way README's "Payment instruments and tokens" says; the merchant charges with its API key.

The cryptogram is built here from the bytes up (``hmac`` over the documented encoding), not with
``domain.instruments.cryptogram``, so the tests prove the server against the documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from zeropay.services import merchants

from .mfa import Device, Mfa, bound

CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
NO_FUNDS_CARD = "4000-0000-0000-9995"
PHONE = "+82 10-1234-5678"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(token: str, amount: int, currency: str, merchant_id: str, counter: int) -> bytes:
    out = b"zeropay-cryptogram-v1"
    for part in (token, str(amount), currency, merchant_id, str(counter)):
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return out


def cryptogram(
    key: bytes, token: str, amount: int, currency: str, merchant_id: str, counter: int
) -> str:
    mac = hmac.new(key, canonical(token, amount, currency, merchant_id, counter), hashlib.sha256)
    return b64url(mac.digest())


@dataclass
class Merchant:
    id: str
    headers: dict[str, str]


def merchant(mfa: Mfa, name: str = "Corner Cafe") -> Merchant:
    merchant_id, key = merchants.create_merchant(mfa.container.ctx, name=name)
    return Merchant(merchant_id, {"Authorization": f"Bearer {key.secret}"})


@dataclass
class Wallet:
    """One payer's bound phone and what it learnt: instrument tokens, merchant tokens, keys."""

    mfa: Mfa
    phone: Device
    keys: dict[str, bytes] = field(default_factory=dict)  # instrument token -> cryptogram key
    counters: dict[str, int] = field(default_factory=dict)

    def add(self, **body: Any) -> Any:
        return self.phone.call("POST", "/v1/me/instruments", body)

    def add_card(self, number: str = CARD, month: int = 12, year: int = 2030) -> dict[str, Any]:
        r = self.add(kind="card", number=number, exp_month=month, exp_year=year)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def add_phone(self, phone: str = PHONE, region: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "carrier", "phone": phone}
        if region is not None:
            body["region"] = region
        r = self.add(**body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def grant(self, token: str, merchant_id: str) -> str:
        r = self.phone.call(
            "POST", f"/v1/me/instruments/{token}/grants", {"merchant_id": merchant_id}
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def provision(self, token: str) -> bytes:
        r = self.phone.call("POST", f"/v1/me/instruments/{token}/devices")
        assert r.status_code == 201, r.text
        key = unb64url(r.json()["key"])
        assert len(key) == 32
        self.keys[token] = key
        return key

    def use(
        self,
        instrument_token: str,
        merchant_token: str,
        merchant_id: str,
        amount: int,
        currency: str = "USD",
        counter: int | None = None,
    ) -> dict[str, Any]:
        """The body a merchant sends for one use: the phone made the cryptogram."""
        if counter is None:
            counter = self.counters.get(instrument_token, 0) + 1
        self.counters[instrument_token] = max(self.counters.get(instrument_token, 0), counter)
        key = self.keys[instrument_token]
        return {
            "token": merchant_token,
            "amount": amount,
            "currency": currency,
            "counter": counter,
            "cryptogram": cryptogram(key, merchant_token, amount, currency, merchant_id, counter),
        }


def wallet(mfa: Mfa, email: str) -> Wallet:
    return Wallet(mfa, bound(mfa, email))


@dataclass
class OnFile:
    """A card on file with a merchant, with a key on the payer's phone."""

    wallet: Wallet
    merchant: Merchant
    instrument: dict[str, Any]
    merchant_token: str

    @property
    def token(self) -> str:
        return str(self.instrument["token"])

    def body(self, amount: int = 500, currency: str = "USD", **kw: Any) -> dict[str, Any]:
        return self.wallet.use(
            self.token, self.merchant_token, self.merchant.id, amount, currency, **kw
        )

    def charge(self, body: dict[str, Any], *, key: str | None = None) -> Any:
        headers = dict(self.merchant.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.wallet.mfa.client.post("/v1/charges", headers=headers, json=body)


def on_file(
    mfa: Mfa,
    email: str = "payer@example.com",
    *,
    number: str = CARD,
    phone: str | None = None,
    shop: Merchant | None = None,
) -> OnFile:
    w = wallet(mfa, email)
    made = w.add_phone(phone) if phone is not None else w.add_card(number)
    shop = shop or merchant(mfa)
    mtok = w.grant(made["token"], shop.id)
    w.provision(made["token"])
    return OnFile(w, shop, made, mtok)
