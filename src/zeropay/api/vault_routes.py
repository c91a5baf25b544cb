"""The vault for key custodians: status (public: it holds no secret), unseal, seal."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from zeropay.domain import bounds
from zeropay.domain.errors import NotAuthenticated, VaultStateConflict
from zeropay.services import vault as vault_service
from zeropay.services.context import AppContext
from zeropay.services.ports import VaultControl

router = APIRouter(prefix="/v1/vault", tags=["vault"])


def _vault(request: Request) -> VaultControl:
    vault = request.app.state.container.vault
    if vault is None:
        raise VaultStateConflict("this server runs without a vault (a test key ring)")
    return vault


def _ctx(request: Request) -> AppContext:
    return request.app.state.container.ctx


def _token(authorization: Annotated[str | None, Header()] = None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("a key custodian's credential is required", reason="custodian")
    return token


Vault = Annotated[VaultControl, Depends(_vault)]
Context = Annotated[AppContext, Depends(_ctx)]
CustodianToken = Annotated[str, Depends(_token)]


class ShareIn(BaseModel):
    share: str = Field(max_length=bounds.VAULT_SHARE_TEXT_MAX)


def _status(vault: VaultControl) -> dict[str, Any]:
    status = vault.status()
    return {
        "initialized": status.initialized,
        "sealed": vault.sealed,
        "development": status.development,
        "threshold": status.threshold,
        "shares": status.shares,
        "shares_received": status.received,
        "key_version": status.generation,
    }


@router.get("/status")
def status(vault: Vault) -> dict[str, Any]:
    return _status(vault)


@router.post("/unseal")
def unseal(body: ShareIn, vault: Vault, ctx: Context, token: CustodianToken) -> dict[str, Any]:
    progress = vault_service.submit_share(ctx, vault, token=token, share=body.share)
    return {
        "sealed": progress.sealed,
        "shares_received": progress.received,
        "threshold": progress.threshold,
        "processes": progress.processes,
    }


@router.post("/seal")
def seal(vault: Vault, ctx: Context, token: CustodianToken) -> dict[str, Any]:
    vault_service.seal(ctx, vault, token=token)
    return _status(vault)
