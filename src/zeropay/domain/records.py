"""Plain records that cross the service boundary: users, API keys, refunds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from zeropay.domain.money import Money


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email_ciphertext: bytes
    password_hash: str
    status: str
    created_at: datetime
    email_verified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    merchant_id: str
    secret_hash: bytes
    scopes: frozenset[str]
    label: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    payment_id: str
    amount: Money
    reason: str | None
    transfer_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    kind: str
    body: str
    created_at: datetime
