"""``zeropay ledger verify``: every ledger invariant over the whole database."""

from __future__ import annotations

from zeropay.domain.ledger import LedgerViolation, verify_ledger
from zeropay.services.context import AppContext, UnitOfWork


def verify(ctx: AppContext) -> tuple[int, int, list[LedgerViolation]]:
    def work(uow: UnitOfWork) -> tuple[int, int, list[LedgerViolation]]:
        accounts = list(uow.ledger.all_accounts())
        transfers = list(uow.ledger.all_transfers())
        return len(accounts), len(transfers), verify_ledger(accounts, transfers)

    return ctx.run(work)
