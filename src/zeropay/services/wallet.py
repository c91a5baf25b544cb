"""The payer's wallet: balances, history, and top-ups from a test funding source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from zeropay.domain import bounds
from zeropay.domain.errors import FundingDeclined, InvalidInput, TopUpLimitExceeded
from zeropay.domain.ledger import (
    Account,
    AccountKind,
    Transfer,
    TransferKind,
    check_resubmission,
    plan_transfer,
)
from zeropay.domain.money import Money
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.idempotency import Hook

TEST_FUNDING_OWNER = "test-funding"

# Test funding sources, in the manner of card networks' test numbers: one always succeeds,
# one is always declined, so clients can exercise both paths.
TEST_SOURCES = {"test_card": True, "test_card_declined": False}


def balances(ctx: AppContext, user_id: str) -> list[Account]:
    return ctx.read(
        lambda uow: [a for a in uow.ledger.accounts_of(user_id) if a.kind is AccountKind.WALLET]
    )


@dataclass(frozen=True)
class Movement:
    seq: int
    transfer: Transfer
    direction: str  # credit (money in) | debit (money out) | hold | release
    wallet_id: str


def history(
    ctx: AppContext, user_id: str, *, limit: int, before: int | None = None
) -> list[Movement]:
    def work(uow: UnitOfWork) -> list[Movement]:
        wallets = [a.id for a in uow.ledger.accounts_of(user_id) if a.kind is AccountKind.WALLET]
        if not wallets:
            return []
        rows = uow.ledger.history(
            wallets, limit=min(limit, bounds.PAGE_SIZE_MAX), before_seq=before
        )
        out = []
        for seq, t in rows:
            mine = t.debit_account_id if t.debit_account_id in wallets else t.credit_account_id
            outgoing = t.debit_account_id == mine
            direction = {
                TransferKind.PENDING: "hold",
                TransferKind.VOID_PENDING: "release",
                TransferKind.EXPIRE_PENDING: "release",
            }.get(t.kind, "debit" if outgoing else "credit")
            out.append(Movement(seq=seq, transfer=t, direction=direction, wallet_id=mine))
        return out

    return ctx.read(work)


def topup_transfer_id(user_id: str, idempotency_key: str) -> str:
    """The ledger id of a top-up sent with an idempotency key: the same payer and key always
    name the same transfer, so the ledger itself refuses to fund twice. Hashed to a fixed length
    whatever the key's length."""
    digest = hashlib.sha256(f"{user_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"top_{digest[:48]}"


def top_up(
    ctx: AppContext,
    *,
    user_id: str,
    amount: Money,
    source: str,
    transfer_id: str,
    on_commit: Hook | None = None,
) -> tuple[Transfer, Account]:
    """Move money from a test funding source into the payer's wallet. ``transfer_id`` is chosen
    by the client (through its idempotency key), so a resubmission cannot fund twice."""
    if source not in TEST_SOURCES:
        raise InvalidInput(f"source must be one of {sorted(TEST_SOURCES)}", field="source")
    cap = ctx.profile.limits.monthly_max(amount.currency)
    if amount.amount_minor > cap:
        raise TopUpLimitExceeded(
            f"a top-up may be at most {Money(cap, amount.currency)}", limit_minor=cap
        )
    if not TEST_SOURCES[source]:
        raise FundingDeclined("the funding source declined the top-up", source=source)

    def work(uow: UnitOfWork) -> tuple[Transfer, Account]:
        now: datetime = ctx.now()
        code = amount.currency.code
        funding = uow.ledger.open_account(AccountKind.FUNDING, TEST_FUNDING_OWNER, code, now)
        wallet = uow.ledger.open_account(AccountKind.WALLET, user_id, code, now)
        requested = Transfer(
            id=transfer_id,
            kind=TransferKind.POSTED,
            debit_account_id=funding.id,
            credit_account_id=wallet.id,
            amount=amount,
            code="topup",
            created_at=now,
        )
        existing = uow.ledger.transfer(transfer_id)
        if existing is not None:
            return check_resubmission(existing, requested), uow.ledger.account(wallet.id)
        change = plan_transfer(debit=funding, credit=wallet, amount=amount)
        uow.ledger.apply(requested, change, debit_limited=False)
        return requested, uow.ledger.account(wallet.id)

    return ctx.run(work, on_commit)
