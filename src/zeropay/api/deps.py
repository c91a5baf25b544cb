"""Request dependencies: the container, the signed-in payer, the calling merchant, the device.

A payer session bound to a device key (``jkt``) is accepted only with a DPoP proof (RFC 9449)
made by that key for this method and URL, fresh and never seen before: a stolen token without the
device's key is useless. Pages may carry the token in a ``__Host-`` cookie instead of the
Authorization header; a state-changing request then also needs the CSRF token (double submit).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from zeropay.domain import bounds
from zeropay.domain.dpop import access_token_hash
from zeropay.domain.errors import Forbidden, InvalidInput, NotAuthenticated, ProofInvalid
from zeropay.domain.network import IPNetwork, client_ip
from zeropay.domain.sessions import Session
from zeropay.services import accounts, merchants
from zeropay.services.authn import Requester
from zeropay.services.context import AppContext
from zeropay.services.device_keys import VerifiedProof, verify_proof
from zeropay.services.idempotency import IdempotentRequest, fingerprint

SESSION_COOKIE = "__Host-zp_session"
CSRF_COOKIE = "__Host-zp_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.container.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def _credentials(authorization: str | None) -> tuple[str, str]:
    if not authorization:
        raise NotAuthenticated("send Authorization: DPoP <token>", reason="missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() not in {"bearer", "dpop"} or not token.strip():
        raise NotAuthenticated("send Authorization: DPoP <token>", reason="malformed")
    return scheme.lower(), token.strip()


def _bearer(authorization: str | None) -> str:
    scheme, token = _credentials(authorization)
    if scheme != "bearer":
        raise NotAuthenticated("send Authorization: Bearer <api key>", reason="malformed")
    return token


def _proof_header(request: Request) -> str | None:
    values = request.headers.getlist("dpop")
    if len(values) > 1:
        raise ProofInvalid("send one DPoP proof", reason="malformed")  # RFC 9449 §4.3 step 1
    return values[0] if values else None


def current_session(
    ctx: Ctx, request: Request, authorization: Annotated[str | None, Header()] = None
) -> Session:
    from_cookie = authorization is None and SESSION_COOKIE in request.cookies
    if from_cookie:
        scheme, token = "cookie", request.cookies[SESSION_COOKIE]
    else:
        scheme, token = _credentials(authorization)
    if token.startswith(merchants.KEY_PREFIX + "_"):
        raise NotAuthenticated(
            "this endpoint needs a payer session, not an API key", reason="wrong_credential"
        )
    session = accounts.authenticate(ctx, token)
    if from_cookie and request.method not in SAFE_METHODS:
        _check_csrf(request)
    if session.jkt is not None:
        if scheme == "bearer":
            # RFC 9449 §7.1: a DPoP-bound token presented as a bearer token is refused.
            raise ProofInvalid("this session is bound to a device: use DPoP", reason="scheme")
        request.state.dpop_proof = verify_proof(
            ctx,
            _proof_header(request),
            method=request.method,
            path=request.url.path,
            expected_jkt=session.jkt,
            expected_ath=None if from_cookie else access_token_hash(token),
        )
    return session


def _check_csrf(request: Request) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Forbidden("the CSRF token is missing or wrong", reason="csrf")


def current_merchant(
    ctx: Ctx, authorization: Annotated[str | None, Header()] = None
) -> merchants.MerchantPrincipal:
    return merchants.authenticate_key(ctx, _bearer(authorization))


def requester(
    ctx: Ctx, request: Request, user_agent: Annotated[str | None, Header()] = None
) -> Requester:
    """The device asking, when it sent a DPoP proof: verified here (signature, method, URL,
    freshness, single use), bound to nothing yet -- a flow binds itself to it."""
    raw = _proof_header(request)
    proof: VerifiedProof | None = getattr(request.state, "dpop_proof", None)
    if proof is None and raw is not None:
        proof = verify_proof(ctx, raw, method=request.method, path=request.url.path)
    return Requester(
        proof=proof,
        ip=client_address(request),
        user_agent=(user_agent or "")[: bounds.USER_AGENT_LENGTH_MAX],
    )


def client_address(request: Request) -> str:
    """The client's IP address: the peer, or what the trusted proxies (ZEROPAY_TRUSTED_PROXIES)
    say in X-Forwarded-For. The one place the API reads either."""
    peer = request.client.host if request.client else ""
    trusted: tuple[IPNetwork, ...] = request.app.state.container.settings.trusted_proxies
    return client_ip(peer, request.headers.getlist("x-forwarded-for"), trusted)


CurrentSession = Annotated[Session, Depends(current_session)]
CurrentMerchant = Annotated[merchants.MerchantPrincipal, Depends(current_merchant)]
CurrentRequester = Annotated[Requester, Depends(requester)]


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
