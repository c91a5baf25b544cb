"""Custodians at the vault: unseal with a share, seal, read the status.

A custodian authenticates with a credential of their own (``zeropay vault custodian-add``);
the share is what unseals, never what authenticates. While the vault is sealed nothing can be
encrypted, so the audit entries of an unseal are written once it succeeds, naming the custodian.
"""

from __future__ import annotations

from typing import Any

from zeropay.domain.errors import NotAuthenticated
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.ports import VaultControl


def _custodian(vault: VaultControl, token: str) -> str:
    name = vault.custodian(token)
    if name is None:
        raise NotAuthenticated("a key custodian's credential is required", reason="custodian")
    return name


def submit_share(ctx: AppContext, vault: VaultControl, *, token: str, share: object) -> Any:
    name = _custodian(vault, token)
    was_sealed = vault.sealed
    progress = vault.submit_share(share, submitted_by=f"custodian:{name}")
    if was_sealed and not progress.sealed:

        def work(uow: UnitOfWork) -> None:
            audit.record(ctx, uow, "vault.unsealed", actor=f"custodian:{name}", subject="vault")

        ctx.run(work)
    return progress


def seal(ctx: AppContext, vault: VaultControl, *, token: str) -> None:
    """Every process seals within a second. The audit entry is written first: after the seal
    nothing can be encrypted."""
    name = _custodian(vault, token)
    if not vault.sealed:

        def work(uow: UnitOfWork) -> None:
            audit.record(ctx, uow, "vault.sealed", actor=f"custodian:{name}", subject="vault")

        ctx.run(work)
    vault.seal_everywhere()
