"""Custodians at the vault: unseal with a share, seal, read the status.

A custodian authenticates with a credential of their own (``zeropay vault custodian-add``);
the share is what unseals, never what authenticates. While the vault is sealed nothing can be
encrypted, so the audit entries of an unseal are written once it succeeds, naming the custodian.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """The share goes to every sealed process; each one that unseals records it
    (``record_unsealed``), whichever way the shares came (this API or the CLI)."""
    name = _custodian(vault, token)
    return vault.submit_share(share, submitted_by=f"custodian:{name}")


def record_unsealed(ctx: AppContext, *, by: Sequence[str], shares: Sequence[int]) -> None:
    """One process unsealed: the audit entry names the custodian whose share completed the
    quorum (or the process that sent the key) and, in its data, every submitter."""

    def work(uow: UnitOfWork) -> None:
        audit.record(
            ctx,
            uow,
            "vault.unsealed",
            actor=by[-1] if by else "unknown",
            subject="vault",
            submitters=list(by),
            shares=list(shares),
        )

    ctx.run(work)


def seal(ctx: AppContext, vault: VaultControl, *, token: str) -> None:
    """Every process seals within a second. The audit entry is written first: after the seal
    nothing can be encrypted."""
    name = _custodian(vault, token)
    if not vault.sealed:

        def work(uow: UnitOfWork) -> None:
            audit.record(ctx, uow, "vault.sealed", actor=f"custodian:{name}", subject="vault")

        ctx.run(work)
    vault.seal_everywhere()
