"""A payer, merchants and payments under SCA, over HTTP: confirm a payment, read the flow it
starts, answer it with a passkey or with the device key and the password, and read what the
payer sees (wallet, ``GET /v1/me/sca``).

The answers are built the way the wallet builds them, from the transaction the server sends;
the ``*_over`` helpers build them over a transaction of the caller's choosing instead (what a
page that lies, or malware, would make the payer sign).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from zeropay.domain.dynamic_linking import Transaction, digest
from zeropay.domain.money import Money, currency
from zeropay.services import merchants

from .mfa import PASSWORD, Device, Mfa, bound
from .webauthn_soft import b64url, b64url_decode

SEASONED_S = 25 * 3600  # past a new device's day of reduced limits (policies/default.toml)


@dataclass(frozen=True)
class Shop:
    id: str
    key: str


def shop(mfa: Mfa, name: str) -> Shop:
    merchant_id, key = merchants.create_merchant(mfa.container.ctx, name=name)
    return Shop(merchant_id, key.secret)


def bill(mfa: Mfa, payee: Shop, amount: int, code: str, *, series_ref: str | None = None) -> str:
    body: dict[str, Any] = {"amount": amount, "currency": code, "description": "Order"}
    if series_ref is not None:
        body["series_ref"] = series_ref
    r = mfa.client.post("/v1/payments", headers={"Authorization": f"Bearer {payee.key}"}, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def payment(mfa: Mfa, payee: Shop, payment_id: str) -> dict[str, Any]:
    """The payment as its merchant reads it."""
    r = mfa.client.get(
        f"/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {payee.key}"}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def payer(mfa: Mfa, email: str, **topups: int) -> Device:
    """A payer with a bound phone and a passkey on it, signed in, with ``EUR=...`` etc. in the
    wallet."""
    phone = bound(mfa, email)
    for code, amount in topups.items():
        r = phone.call("POST", "/v1/wallet/topups", {"amount": amount, "currency": code})
        assert r.status_code == 201, r.text
    return phone


def sign_in_with_passkey(mfa: Mfa, phone: Device, email: str) -> None:
    phone.token = None
    r = mfa.passkey_login(phone, email)
    assert r.status_code == 201, r.text
    phone.token = r.json()["token"]


def season(mfa: Mfa, clock: Any, *payers: tuple[Device, str]) -> None:
    """A day later: the phones are past their reduced limits; each payer signs in again."""
    clock.advance(seconds=SEASONED_S)
    for phone, email in payers:
        sign_in_with_passkey(mfa, phone, email)


def confirm(phone: Device, payment_id: str) -> Any:
    return phone.call("POST", f"/v1/checkout/{payment_id}/confirm")


def flow_of(r: Any) -> dict[str, Any]:
    """The confirmation flow of a payment that asks for SCA."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "requires_action", body
    assert body["authentication"]["sca_required"] is True, body
    flow = body["next_action"]["flow"]
    assert flow["point"] == "payment_confirmation"
    return dict(flow)


def exemption_of(r: Any) -> str:
    """The exemption of a payment that went through without SCA."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded", body
    assert "next_action" not in body, body
    auth = body["authentication"]
    assert auth["sca_required"] is False and auth["reasons"] == [], auth
    return str(auth["exemption"])


def reasons_of(r: Any) -> list[str]:
    """Why a payment asks for SCA (its flow is started)."""
    flow_of(r)
    return list(r.json()["authentication"]["reasons"])


def view(phone: Device, flow_id: str) -> dict[str, Any]:
    r = phone.call("GET", f"/v1/auth/flows/{flow_id}", token="")
    assert r.status_code == 200, r.text
    return dict(r.json())


def options(phone: Device, flow_id: str) -> dict[str, Any]:
    """One passkey ceremony (a fresh nonce each time): the WebAuthn request options
    (``publicKey``) and the ``transaction`` whose digest is their challenge."""
    r = phone.call("POST", f"/v1/auth/flows/{flow_id}/passkey-options", token="")
    assert r.status_code == 200, r.text
    return dict(r.json())


def assertion(phone: Device, ceremony: dict[str, Any], **get: Any) -> dict[str, Any]:
    """The payer's passkey answers the ceremony as the browser would."""
    return phone.authenticator.get(ceremony["publicKey"], **get)


def passkey(mfa: Mfa, phone: Device, flow_id: str, credential: dict[str, Any]) -> Any:
    return mfa.step(phone, flow_id, "passkey", credential=credential)


def answer_with_passkey(mfa: Mfa, phone: Device, flow: dict[str, Any]) -> Any:
    made = assertion(phone, options(phone, flow["id"]))
    return passkey(mfa, phone, flow["id"], made)


def signature(phone: Device, data: bytes) -> str:
    """The device key's ES256 signature as WebCrypto makes it: r || s, base64url."""
    r, s = decode_dss_signature(phone.key.sign(data))
    return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def device_key(mfa: Mfa, phone: Device, flow_id: str, data: bytes, **extra: Any) -> Any:
    return mfa.step(phone, flow_id, "device_key", signature=signature(phone, data), **extra)


def answer_with_device_key(mfa: Mfa, phone: Device, flow: dict[str, Any]) -> Any:
    """The mobile path: the device key signs the canonical transaction, then the password."""
    data = b64url_decode(view(phone, flow["id"])["transaction"]["canonical"])
    r = device_key(mfa, phone, flow["id"], data)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["password"], r.text
    return mfa.step(phone, flow["id"], "password", password=PASSWORD)


def transaction(shown: dict[str, Any]) -> Transaction:
    """The transaction a flow's ``transaction`` JSON describes."""
    return Transaction(
        payment_id=shown["payment_id"],
        amount=Money(shown["amount"], currency(shown["currency"])),
        payee=shown["payee"],
        nonce=b64url_decode(shown["nonce"]),
    )


def changed(shown: dict[str, Any], **what: Any) -> Transaction:
    """The shown transaction with ``amount`` (minor units), ``payee`` or ``payment_id``
    changed."""
    txn = transaction(shown)
    if "amount" in what:
        what["amount"] = Money(what["amount"], txn.amount.currency)
    return replace(txn, **what)


def assertion_over(phone: Device, ceremony: dict[str, Any], txn: Transaction) -> dict[str, Any]:
    """A genuine assertion by the payer's passkey whose challenge is ``txn``'s digest."""
    return phone.authenticator.get({**ceremony["publicKey"], "challenge": b64url(digest(txn))})


def wallet(phone: Device, code: str) -> tuple[int, int]:
    """(available, held) in ``code``."""
    r = phone.call("GET", "/v1/wallet")
    assert r.status_code == 200, r.text
    for b in r.json()["balances"]:
        if b["currency"] == code:
            return int(b["available"]), int(b["held"])
    return 0, 0


def standing(phone: Device) -> dict[str, Any]:
    r = phone.call("GET", "/v1/me/sca")
    assert r.status_code == 200, r.text
    return dict(r.json())


def decision_of(phone: Device, payment_id: str) -> dict[str, Any]:
    """The newest SCA decision the payer sees for a payment."""
    found = [d for d in standing(phone)["decisions"] if d["payment_id"] == payment_id]
    assert found, f"no decision shown for {payment_id}"
    return dict(found[0])
