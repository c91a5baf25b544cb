"""Ledger operations: ``verify`` every invariant, ``reverse`` a posted transfer."""

from __future__ import annotations

import hashlib

from zeropay.domain import bounds
from zeropay.domain.errors import InvalidInput, InvalidStateTransition, NotFound
from zeropay.domain.ledger import (
    LedgerViolation,
    Transfer,
    TransferKind,
    plan_transfer,
    verify_ledger,
)
from zeropay.services import audit
from zeropay.services.context import AppContext, UnitOfWork

REVERSIBLE_CODES = frozenset({"topup"})


def verify(ctx: AppContext) -> tuple[int, int, list[LedgerViolation]]:
    def work(uow: UnitOfWork) -> tuple[int, int, list[LedgerViolation]]:
        accounts = list(uow.ledger.all_accounts())
        transfers = list(uow.ledger.all_transfers())
        return len(accounts), len(transfers), verify_ledger(accounts, transfers)

    return ctx.run(work)


def reverse(ctx: AppContext, *, transfer_id: str, reason: str, actor: str) -> Transfer:
    """Correct a posted transfer the only way the ledger allows: a new transfer the other way.

    A transfer is reversed at most once (the reversal's id derives from it). Payments and refunds
    have their own flows (cancel, refund) and are refused here, so their records stay consistent.
    """
    reason = reason.strip()
    if not 0 < len(reason) <= bounds.REASON_LENGTH_MAX:
        raise InvalidInput("a reversal needs a reason of 1 to 200 characters", field="reason")

    def work(uow: UnitOfWork) -> Transfer:
        original = uow.ledger.transfer(transfer_id)
        if original is None:
            raise NotFound("no such transfer")
        if original.kind is not TransferKind.POSTED or original.code not in REVERSIBLE_CODES:
            raise InvalidStateTransition(
                f"only posted {', '.join(sorted(REVERSIBLE_CODES))} transfers can be reversed"
            )
        reversal = Transfer(
            id=f"rev_{hashlib.sha256(original.id.encode()).hexdigest()[:48]}",
            kind=TransferKind.POSTED,
            debit_account_id=original.credit_account_id,
            credit_account_id=original.debit_account_id,
            amount=original.amount,
            code="reversal",
            created_at=ctx.now(),
            reference=original.id,
        )
        if uow.ledger.transfer(reversal.id) is not None:
            raise InvalidStateTransition("this transfer was already reversed")
        debit = uow.ledger.account(reversal.debit_account_id)
        credit = uow.ledger.account(reversal.credit_account_id)
        change = plan_transfer(debit=debit, credit=credit, amount=original.amount)
        uow.ledger.apply(reversal, change, debit_limited=debit.balance_limited)
        audit.record(
            ctx,
            uow,
            "ledger.reversed",
            actor=actor,
            subject=original.id,
            reversal=reversal.id,
            reason=reason,
        )
        return reversal

    return ctx.run(work)
