"""A payer with every kind of personal data the platform keeps encrypted, written through the
HTTP API: an address proved by an emailed code, a bound phone with a passkey, an authenticator
app (TOTP), an OCRA app, a phone number for texts, two security questions, a card with the
phone's cryptogram key for it; and a merchant with a webhook endpoint whose secret was rotated
once."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS, EncryptedColumn
from zeropay.adapters.vault.vault import REVEALED_ONLY
from zeropay.services import mail, merchants

from . import ocra as ocra_app
from .mfa import Device, Mfa, bound

ANSWERS = {"childhood_street": "main street", "first_school": "Lincoln Elementary"}


@dataclass(frozen=True)
class Payer:
    device: Device
    email: str
    user_id: str
    totp_seed: bytes
    ocra: ocra_app.OcraApp
    phone: str
    questions: tuple[str, ...]


def texted_code(mfa: Mfa) -> str:
    """The digits of the newest text in the development sink's file."""
    lines = mfa.container.settings.dev_sms_file.read_text(encoding="utf-8").splitlines()
    found = re.search(r"(\d{4}) ?(\d{4})", json.loads(lines[-1])["body"])
    assert found, lines[-1]
    return found.group(1) + found.group(2)


def payer(mfa: Mfa, email: str, *, phone: str, answers: dict[str, str] | None = None) -> Payer:
    """Everything above for one payer; their mail is delivered over SMTP."""
    device = bound(mfa, email)
    totp = mfa.enroll_totp(device)
    ocra = ocra_app.enroll(device, mfa.now())
    r = device.call("POST", "/v1/me/factors/sms", {"phone": phone})
    assert r.status_code == 201, r.text
    r = device.call(
        "POST", f"/v1/me/factors/sms/{r.json()['id']}/confirm", {"code": texted_code(mfa)}
    )
    assert r.status_code == 204, r.text
    chosen = answers or ANSWERS
    r = device.call("PUT", "/v1/me/security-questions", {"answers": chosen})
    assert r.status_code == 204, r.text
    # A card in the vault, with this phone's cryptogram key for it.
    card = {"kind": "card", "number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030}
    r = device.call("POST", "/v1/me/instruments", card)
    assert r.status_code == 201, r.text
    r = device.call("POST", f"/v1/me/instruments/{r.json()['token']}/devices")
    assert r.status_code == 201, r.text
    mail.deliver_due(mfa.container.ctx)
    r = device.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    seed = base64.b32decode(totp.secret + "=" * (-len(totp.secret) % 8))
    return Payer(device, email, r.json()["id"], seed, ocra, phone, tuple(sorted(chosen)))


def two_payers(mfa: Mfa) -> tuple[Payer, Payer]:
    """Two payers with every kind of personal data and different questions: one to keep, one
    to erase."""
    kept = payer(mfa, "kept@example.com", phone="+821055501111")
    gone = payer(
        mfa,
        "gone@example.com",
        phone="+821055502222",
        answers={"first_concert": "the beatles", "favourite_teacher": "Mrs Kim"},
    )
    return kept, gone


def webhook_secrets(mfa: Mfa, name: str = "Corner Cafe") -> tuple[dict[str, str], list[str]]:
    """A merchant's key header and the two signing secrets it was shown (creation, rotation)."""
    _, key = merchants.create_merchant(mfa.container.ctx, name=name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    r = mfa.client.post(
        "/v1/webhook-endpoints", headers=headers, json={"url": "https://hooks.example.com/zp"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    r = mfa.client.post(
        f"/v1/webhook-endpoints/{created['id']}/secret-rotations", headers=headers, json={}
    )
    assert r.status_code == 201, r.text
    return headers, [created["secret"], r.json()["secret"]]


@dataclass(frozen=True)
class Field:
    """One stored ciphertext and what opens it: a registry entry and the row it came from."""

    column: EncryptedColumn
    row: Any

    @property
    def ciphertext(self) -> bytes:
        return bytes(getattr(self.row, self.column.column))

    @property
    def subject(self) -> str | None:
        return self.column.subject(self.row)

    @property
    def where(self) -> str:
        keys = ",".join(str(getattr(self.row, k)) for k in self.column.key)
        return f"{self.column.table.name}.{self.column.column}[{keys}]"

    def open(self, vault: Any) -> bytes:
        """Opened as the platform opens it, under the subject the registry names: an
        instrument's number only by the funding adapter's revealer, the rest by ``decrypt``."""
        where = {
            "table": self.column.table.name,
            "column": self.column.aad_column,
            "row_id": self.column.row_id(self.row),
            "subject": self.subject,
        }
        if (where["table"], where["column"]) in REVEALED_ONLY:
            return bytes(vault.revealer().reveal(self.ciphertext, **where))
        return bytes(vault.decrypt(self.ciphertext, **where))


def stored_fields(mfa: Mfa) -> list[Field]:
    """Every non-null field of every registered column, as the database holds it now."""
    out = []
    with mfa.container.engine.connect() as c:
        for column in ENCRYPTED_COLUMNS:
            data = column.table.c[column.column]
            rows = c.execute(select(column.table).where(data.is_not(None))).all()
            out.extend(Field(column, row) for row in rows)
    return out
