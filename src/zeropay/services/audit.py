"""Writing to and checking the hash-chained audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from zeropay.domain.audit import ChainBreak, verify_chain
from zeropay.services.context import AppContext, UnitOfWork


def record(
    ctx: AppContext, uow: UnitOfWork, event: str, *, actor: str, subject: str, **data: Any
) -> None:
    """Append one security event. Its data is encrypted, so the chain covers ciphertext and
    crypto-shredding a user's key later leaves the chain intact. Never put a secret in ``data``."""
    now = ctx.now()
    plaintext = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    ciphertext = ctx.keyring.encrypt(
        plaintext, table="audit_log", column="data", row_id=f"{actor}|{subject}|{now.isoformat()}"
    )
    uow.audit.append(at=now, event=event, actor=actor, subject=subject, data=ciphertext)


@dataclass(frozen=True)
class AuditReport:
    entries: int
    breaks: list[ChainBreak]


def verify(ctx: AppContext) -> AuditReport:
    def work(uow: UnitOfWork) -> AuditReport:
        records = list(uow.audit.records())
        return AuditReport(
            entries=len(records), breaks=verify_chain(records, head=uow.audit.head())
        )

    return ctx.run(work)
