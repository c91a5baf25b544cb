"""Phones without a platform authenticator, over HTTP: registered with the password and a PIN
(README: Older phones), then signing in, stepping up and paying with their device key and PIN.

The device key is the test's P-256 key either way: what a ``key_store`` or ``software`` class
changes is what the phone says it is, and so which paths the server offers it.
"""

from __future__ import annotations

from typing import Any

from .mfa import PASSWORD, Device, Mfa
from .sca import signature
from .webauthn_soft import b64url_decode

PIN = "40718293"  # 8 digits, no pattern: the shipped policy's minimum
OTHER_PIN = "58203941"


def phone(mfa: Mfa, device_class: str, name: str = "Galaxy S4") -> Device:
    """A phone that says it is of ``device_class`` when it is registered."""
    device = mfa.device(name, "android")
    device.device_class = device_class
    return device


def start_registration(mfa: Mfa, device: Device, email: str) -> dict[str, Any]:
    """A device registration started by ``device`` with its email code passed."""
    r = mfa.start(device, "device_registration", email=email, device=device.info())
    assert r.status_code == 201, r.text
    flow = r.json()
    r = device.call("POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token="")
    assert r.status_code == 202, r.text
    r = mfa.step(device, flow["id"], "email_otp", code=mfa.code_for(email))
    assert r.status_code == 200, r.text
    return dict(r.json()["flow"])


def register_with_pin(
    mfa: Mfa, device: Device, email: str, pin: str = PIN, *, approver: Device | None = None
) -> Any:
    """Email code, password, the new PIN, and the approval of ``approver`` when the user has a
    bound device. The final response; the device keeps the session token."""
    flow = start_registration(mfa, device, email)
    assert flow["next"] == ["password"], flow
    r = mfa.step(device, flow["id"], "password", password=PASSWORD)
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["pin"], r.text
    r = mfa.step(device, flow["id"], "pin", pin=pin)
    if r.status_code == 200 and r.json()["flow"]["next"] == ["bound_device_approval"]:
        assert approver is not None, "this user has a bound device: pass the approver"
        mfa.approve(device, approver, flow["id"])
        r = mfa.step(device, flow["id"], "bound_device_approval")
    if r.status_code == 201:
        device.token = r.json()["token"]
    return r


def pin_login(mfa: Mfa, device: Device, email: str, pin: str = PIN) -> Any:
    """A login from ``device``: its key (the DPoP proof), then its PIN. The last response."""
    r = mfa.start(device, "login", email=email)
    assert r.status_code == 201, r.text
    flow_id = r.json()["id"]
    r = mfa.step(device, flow_id, "device_key")
    assert r.status_code == 200 and r.json()["flow"]["next"] == ["pin"], r.text
    r = mfa.step(device, flow_id, "pin", pin=pin)
    if r.status_code == 201:
        device.token = r.json()["token"]
    return r


def sign_transaction(mfa: Mfa, device: Device, flow: dict[str, Any]) -> Any:
    """The device key's answer to a confirmation flow: its signature over the canonical
    transaction data the flow shows."""
    r = device.call("GET", f"/v1/auth/flows/{flow['id']}", token="")
    assert r.status_code == 200, r.text
    data = b64url_decode(r.json()["transaction"]["canonical"])
    return mfa.step(device, flow["id"], "device_key", signature=signature(device, data))
