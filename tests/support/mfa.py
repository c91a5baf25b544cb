"""A payer's devices against the real app: every request signed with the device's DPoP key,
passkeys from a software authenticator, email codes read from a real SMTP server.

Tests run under the shipped default policy with a fixed clock, so proofs carry the clock's time.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from typing import Any

import pyotp
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from zeropay.services import mail

from .dpop_client import DeviceKey
from .webauthn_soft import SoftAuthenticator

PASSWORD = "correct horse battery staple"
BASE = "http://localhost"


class SmtpInbox:
    """A real SMTP server (aiosmtpd) on a free local port that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def bodies_to(self, address: str) -> list[tuple[str, str]]:
        out = []
        for rcpt, raw in self.messages:
            if address in rcpt:
                message = message_from_bytes(raw)
                payload = message.get_payload(decode=True)
                assert isinstance(payload, bytes)
                out.append((str(message["Subject"]), payload.decode()))
        return out


CODE = re.compile(r"code is (\d{4}) (\d{4})")


@dataclass
class Device:
    """One phone or browser: its DPoP key, its platform authenticator, its session token."""

    client: TestClient
    now: Callable[[], datetime]
    name: str = "Pixel 9"
    platform: str = "android"
    key: DeviceKey = field(default_factory=DeviceKey)
    authenticator: SoftAuthenticator = field(default_factory=SoftAuthenticator)
    token: str | None = None
    ip: str | None = None  # where it is: sent as X-Forwarded-For (through a trusted proxy)
    device_class: str | None = None  # what it says at registration (README: Older phones)

    def proof(self, method: str, path: str, *, token: str | None = None) -> str:
        return self.key.proof(
            method, BASE + path, access_token=token, iat=int(self.now().timestamp())
        )

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        signed: bool = True,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """A request from this device: with its session (if any) and a fresh DPoP proof."""
        sent = dict(headers or {})
        use = self.token if token is None else (token or None)  # "": send no session
        if use is not None:
            sent["Authorization"] = f"DPoP {use}"
        if signed:
            sent["DPoP"] = self.proof(method, path, token=use)
        if self.ip is not None:
            sent.setdefault("X-Forwarded-For", self.ip)
        return self.client.request(method, path, json=json, headers=sent)

    def info(self) -> dict[str, str]:
        said = {"device_class": self.device_class} if self.device_class else {}
        return {"name": self.name, "platform": self.platform, **said}


class Mfa:
    """The calls the authentication tests need, spelled once."""

    def __init__(self, client: TestClient, container: Any, inbox: SmtpInbox) -> None:
        self.client = client
        self.container = container
        self.inbox = inbox

    @property
    def now(self) -> Callable[[], datetime]:
        return self.container.ctx.now

    def device(
        self, name: str = "Pixel 9", platform: str = "android", *, ip: str | None = None
    ) -> Device:
        return Device(self.client, self.now, name=name, platform=platform, ip=ip)

    def code_for(self, email: str) -> str:
        """The newest code emailed to ``email`` (the outbox is delivered over SMTP first)."""
        mail.deliver_due(self.container.ctx)
        for _, body in reversed(self.inbox.bodies_to(email)):
            found = CODE.search(body)
            if found:
                return found.group(1) + found.group(2)
        raise AssertionError(f"no code was mailed to {email}")

    def step(self, device: Device, flow_id: str, factor: str, **payload: Any) -> Any:
        return device.call(
            "POST", f"/v1/auth/flows/{flow_id}/steps", {"factor": factor, **payload}, token=""
        )

    def sign_up(self, device: Device, email: str, password: str = PASSWORD) -> str:
        """Register, prove the address; the device's session token (password + email code)."""
        r = device.call("POST", "/v1/users", {"email": email, "password": password})
        assert r.status_code == 201, r.text
        flow_id = r.json()["flow"]["id"]
        r = self.step(device, flow_id, "email_otp", code=self.code_for(email))
        assert r.status_code == 201, r.text
        device.token = r.json()["token"]
        return str(device.token)

    def start(self, who: Device, point: str, **body: Any) -> Any:
        return who.call("POST", "/v1/auth/flows", {"point": point, **body}, token="")

    def bind(self, device: Device, email: str, *, approver: Device | None = None) -> Any:
        """Register ``device``: email code, a passkey made on it, and (when the user has a bound
        device) approval from ``approver``. Returns the final response."""
        r = self.start(device, "device_registration", email=email, device=device.info())
        assert r.status_code == 201, r.text
        flow = r.json()
        r = device.call(
            "POST", f"/v1/auth/flows/{flow['id']}/codes", {"factor": "email_otp"}, token=""
        )
        assert r.status_code == 202, r.text
        r = self.step(device, flow["id"], "email_otp", code=self.code_for(email))
        assert r.status_code == 200, r.text
        r = device.call("POST", f"/v1/auth/flows/{flow['id']}/passkey-options", token="")
        assert r.status_code == 200, r.text
        credential = device.authenticator.create(r.json()["publicKey"])
        r = self.step(device, flow["id"], "passkey", credential=credential)
        if r.status_code == 200 and r.json()["flow"]["next"] == ["bound_device_approval"]:
            assert approver is not None, "this user has a bound device: pass the approver"
            self.approve(device, approver, flow["id"])
            r = self.step(device, flow["id"], "bound_device_approval")
        if r.status_code == 201:
            device.token = r.json()["token"]
        return r

    def approve(self, requester: Device, approver: Device, flow_id: str) -> None:
        r = requester.call("POST", f"/v1/auth/flows/{flow_id}/approval", token="")
        assert r.status_code == 200, r.text
        number = r.json()["approval"]["number"]
        r = approver.call(
            "POST", f"/v1/me/approvals/{flow_id}", {"decision": "approve", "number": number}
        )
        assert r.status_code == 204, r.text

    def passkey_login(self, device: Device, email: str | None = None, **get: Any) -> Any:
        body = {"email": email} if email else {}
        r = self.start(device, "login", **body)
        assert r.status_code == 201, r.text
        flow_id = r.json()["id"]
        r = device.call("POST", f"/v1/auth/flows/{flow_id}/passkey-options", token="")
        assert r.status_code == 200, r.text
        credential = device.authenticator.get(r.json()["publicKey"], **get)
        return self.step(device, flow_id, "passkey", credential=credential)

    def step_up_with_passkey(self, device: Device) -> None:
        r = device.call("POST", "/v1/me/step-up")
        assert r.status_code == 201, r.text
        flow_id = r.json()["id"]
        r = device.call("POST", f"/v1/auth/flows/{flow_id}/passkey-options", token="")
        assert r.status_code == 200, r.text
        credential = device.authenticator.get(r.json()["publicKey"])
        r = self.step(device, flow_id, "passkey", credential=credential)
        assert r.status_code == 200 and r.json()["flow"]["status"] == "complete", r.text

    def enroll_totp(self, device: Device) -> pyotp.TOTP:
        """Enroll and confirm an authenticator app (needs a recent strong login)."""
        r = device.call("POST", "/v1/me/factors/totp", {})
        assert r.status_code == 201, r.text
        made = r.json()
        app = pyotp.TOTP(made["secret"])
        r = device.call(
            "POST", f"/v1/me/factors/totp/{made['id']}/confirm", {"code": app.at(self.now())}
        )
        assert r.status_code == 204, r.text
        return app


def signed_up(mfa: Mfa, email: str) -> Device:
    """A payer who proved the address on this phone (its key is not a bound device yet)."""
    phone = mfa.device()
    mfa.sign_up(phone, email)
    return phone


def bound(mfa: Mfa, email: str) -> Device:
    """A payer whose phone is bound, with a passkey on it, signed in with two factors."""
    phone = signed_up(mfa, email)
    r = mfa.bind(phone, email)
    assert r.status_code == 201, r.text
    return phone
