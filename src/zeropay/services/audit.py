"""Writing to and checking the hash-chained audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zeropay.domain.audit import ChainBreak, verify_chain
from zeropay.services.context import AppContext, UnitOfWork

USER_ID_PREFIX = "usr_"


def data_row_id(*, actor: str, subject: str, at: datetime) -> str:
    """The row an entry's data is bound to, rebuilt from the entry's own columns."""
    return f"{actor}|{subject}|{at.astimezone(UTC).isoformat()}"


def data_subject(actor: str) -> str | None:
    """Whose key seals an entry's data: the acting user's (what a user did is that user's
    personal data, shredded with it), or the audit purpose key when an operator tool, a
    merchant or the system acted. So an erasure is recorded with the operator as actor: an
    entry acted by the erased user could not be written once the user's key is gone."""
    return actor if actor.startswith(USER_ID_PREFIX) else None


def record(
    ctx: AppContext, uow: UnitOfWork, event: str, *, actor: str, subject: str, **data: Any
) -> None:
    """Append one security event. Its data is encrypted, so the chain covers ciphertext and
    crypto-shredding a user's key later leaves the chain intact. Never put a secret in ``data``."""
    now = ctx.now()
    plaintext = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    ciphertext = ctx.keyring.encrypt(
        plaintext,
        table="audit_log",
        column="data",
        row_id=data_row_id(actor=actor, subject=subject, at=now),
        subject=data_subject(actor),
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
