"""Merchants and their API keys: shown once, stored hashed, scoped, revocable."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from zeropay.domain import bounds
from zeropay.domain.errors import Forbidden, InvalidInput, NotAuthenticated, NotFound
from zeropay.domain.records import ApiKey
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork, urlsafe

SCOPES = frozenset(
    {"payments:read", "payments:write", "refunds:write", "keys:manage", "webhooks:manage"}
)
KEY_SECRET_BYTES = 32
KEY_PREFIX = "zpk"


@dataclass(frozen=True)
class MerchantPrincipal:
    merchant_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the {scope} scope", scope=scope)


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str  # shown once, never stored
    scopes: frozenset[str]


def _secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_merchant(
    ctx: AppContext, *, name: str, actor: str = "cli", mcc: str | None = None
) -> tuple[str, IssuedKey]:
    """``mcc``: the ISO 18245 merchant category code (four digits); the risk engine reads it
    (gift cards, stored value and game cash are cash-out risks)."""
    name = name.strip()
    if not 0 < len(name) <= bounds.MERCHANT_NAME_LENGTH_MAX:
        raise InvalidInput("a merchant name has 1 to 128 characters", field="name")
    if mcc is not None and not (len(mcc) == 4 and mcc.isascii() and mcc.isdigit()):
        raise InvalidInput("an MCC is four digits (ISO 18245)", field="mcc")
    merchant_id = ctx.new_id("mer")

    def work(uow: UnitOfWork) -> IssuedKey:
        uow.merchants.add(merchant_id, name, ctx.now(), mcc=mcc)
        audit.record(ctx, uow, "merchant.created", actor=actor, subject=merchant_id)
        return _issue(ctx, uow, merchant_id, SCOPES, label="default", actor=actor)

    return merchant_id, ctx.run(work)


def create_api_key(
    ctx: AppContext, *, merchant_id: str, scopes: frozenset[str], label: str, actor: str
) -> IssuedKey:
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be among {sorted(SCOPES)}", field="scopes")

    def work(uow: UnitOfWork) -> IssuedKey:
        if uow.merchants.name(merchant_id) is None:
            raise NotFound("no such merchant")
        return _issue(
            ctx,
            uow,
            merchant_id,
            scopes,
            label=label[: bounds.API_KEY_LABEL_LENGTH_MAX],
            actor=actor,
        )

    return ctx.run(work)


def _issue(
    ctx: AppContext,
    uow: UnitOfWork,
    merchant_id: str,
    scopes: frozenset[str],
    *,
    label: str,
    actor: str,
) -> IssuedKey:
    key_id = ctx.new_id("key")
    secret = f"{KEY_PREFIX}_{key_id}.{urlsafe(ctx.random_bytes(KEY_SECRET_BYTES))}"
    uow.merchants.add_api_key(
        ApiKey(key_id, merchant_id, _secret_hash(secret), scopes, label, ctx.now(), None)
    )
    audit.record(
        ctx,
        uow,
        "api_key.created",
        actor=actor,
        subject=key_id,
        merchant_id=merchant_id,
        scopes=sorted(scopes),
    )
    return IssuedKey(key_id=key_id, secret=secret, scopes=scopes)


def revoke_api_key(ctx: AppContext, *, merchant_id: str, key_id: str, actor: str) -> None:
    def work(uow: UnitOfWork) -> None:
        key = uow.merchants.api_key(key_id)
        if key is None or key.merchant_id != merchant_id:
            raise NotFound("no such API key")
        uow.merchants.revoke_api_key(key_id, ctx.now())
        audit.record(ctx, uow, "api_key.revoked", actor=actor, subject=key_id)

    ctx.run(work)


def authenticate_key(ctx: AppContext, presented: str) -> MerchantPrincipal:
    """The merchant an API key belongs to. The key id inside the secret finds the row; the whole
    secret is compared in constant time against its stored hash."""
    invalid = NotAuthenticated("the API key is not valid", reason="invalid_api_key")
    if not presented.startswith(f"{KEY_PREFIX}_") or len(presented) > 200 or "." not in presented:
        raise invalid
    key_id = presented[len(KEY_PREFIX) + 1 :].split(".", 1)[0]
    key = ctx.read(lambda uow: uow.merchants.api_key(key_id))
    if key is None or not hmac.compare_digest(key.secret_hash, _secret_hash(presented)):
        raise invalid
    if key.revoked_at is not None:
        raise NotAuthenticated("this API key was revoked", reason="revoked_api_key")
    return MerchantPrincipal(merchant_id=key.merchant_id, key_id=key.id, scopes=key.scopes)


def list_api_keys(ctx: AppContext, *, merchant_id: str) -> list[ApiKey]:
    return ctx.run(lambda uow: uow.merchants.api_keys(merchant_id))
