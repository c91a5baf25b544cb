"""Request dependencies: the container, the signed-in payer, the calling merchant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Request

from zeropay.domain import bounds
from zeropay.domain.errors import InvalidInput, NotAuthenticated
from zeropay.domain.sessions import Session
from zeropay.services import accounts, merchants
from zeropay.services.context import AppContext
from zeropay.services.idempotency import IdempotentRequest, fingerprint


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.container.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthenticated("send Authorization: Bearer <token>", reason="missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send Authorization: Bearer <token>", reason="malformed")
    return token.strip()


def current_session(ctx: Ctx, authorization: Annotated[str | None, Header()] = None) -> Session:
    token = _bearer(authorization)
    if token.startswith(merchants.KEY_PREFIX + "_"):
        raise NotAuthenticated(
            "this endpoint needs a payer session, not an API key", reason="wrong_credential"
        )
    return accounts.authenticate(ctx, token)


def current_merchant(
    ctx: Ctx, authorization: Annotated[str | None, Header()] = None
) -> merchants.MerchantPrincipal:
    return merchants.authenticate_key(ctx, _bearer(authorization))


CurrentSession = Annotated[Session, Depends(current_session)]
CurrentMerchant = Annotated[merchants.MerchantPrincipal, Depends(current_merchant)]


def idempotent_request(
    request: Request, scope: str, key: str | None, body: Any
) -> IdempotentRequest | None:
    if key is None:
        return None
    if not 1 <= len(key) <= bounds.IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key has 1 to {bounds.IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            field="Idempotency-Key",
        )
    return IdempotentRequest(
        scope=scope, key=key, fingerprint=fingerprint(request.method, request.url.path, body)
    )
