"""Stateful property test: any sequence of top-ups, payments, holds, posts, voids and refunds
keeps every limited balance at or above zero, debits equal to credits, and the stored balances
equal to what the transfers say. Runs the real SQL ledger on SQLite against a simple model."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.migrate import migrate
from zeropay.adapters.sql.uow import transactor
from zeropay.domain.errors import InsufficientFunds, InvalidAmount, InvalidStateTransition
from zeropay.domain.ledger import (
    AccountKind,
    Transfer,
    TransferKind,
    plan_resolution,
    plan_transfer,
    verify_ledger,
)
from zeropay.domain.money import Money

NOW = datetime(2026, 11, 2, tzinfo=UTC)
USERS = ("u1", "u2")
amounts = st.integers(min_value=1, max_value=5000)


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{Path(self.dir.name) / 'l.db'}")
        migrate(self.engine)
        self.transact = transactor(self.engine)
        self.n = 0
        self.model = {u: 0 for u in USERS}  # what each wallet can spend
        self.merchant = 0

    def teardown(self) -> None:
        self.engine.dispose()
        self.dir.cleanup()

    def _id(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def _move(
        self,
        debit: tuple[AccountKind, str],
        credit: tuple[AccountKind, str],
        amount: int,
        *,
        pending: bool = False,
    ) -> str | None:
        tid = self._id()

        def work(uow):
            a = uow.ledger.open_account(debit[0], debit[1], "USD", NOW)
            b = uow.ledger.open_account(credit[0], credit[1], "USD", NOW)
            money = Money.of(amount, "USD")
            change = plan_transfer(debit=a, credit=b, amount=money, pending=pending)
            kind = TransferKind.PENDING if pending else TransferKind.POSTED
            uow.ledger.apply(
                Transfer(
                    id=tid,
                    kind=kind,
                    debit_account_id=a.id,
                    credit_account_id=b.id,
                    amount=money,
                    code="test",
                    created_at=NOW,
                ),
                change,
                debit_limited=a.balance_limited,
            )

        try:
            self.transact(work)
        except InsufficientFunds:
            return None
        return tid

    @rule(user=st.sampled_from(USERS), amount=amounts)
    def top_up(self, user, amount):
        assert self._move((AccountKind.FUNDING, "bank"), (AccountKind.WALLET, user), amount)
        self.model[user] += amount

    @rule(user=st.sampled_from(USERS), amount=amounts)
    def pay(self, user, amount):
        done = self._move((AccountKind.WALLET, user), (AccountKind.MERCHANT, "m"), amount)
        assert (done is not None) == (amount <= self.model[user])
        if done:
            self.model[user] -= amount
            self.merchant += amount

    @rule(target=holds, user=st.sampled_from(USERS), amount=amounts)
    def hold(self, user, amount):
        done = self._move(
            (AccountKind.WALLET, user), (AccountKind.MERCHANT, "m"), amount, pending=True
        )
        assert (done is not None) == (amount <= self.model[user])
        if done:
            self.model[user] -= amount
        return (done, user, amount)

    @rule(
        h=holds,
        kind=st.sampled_from([TransferKind.POST_PENDING, TransferKind.VOID_PENDING]),
        part=st.integers(min_value=0, max_value=6000),
    )
    def resolve(self, h, kind, part):
        hold_id, user, amount = h
        if hold_id is None:
            return

        def work(uow):
            hold = uow.ledger.transfer(hold_id)
            posted, change = plan_resolution(
                hold=hold,
                kind=kind,
                resolved_by=uow.ledger.resolution_of(hold_id),
                now=NOW,
                amount=Money.of(part, "USD") if part else None,
            )
            uow.ledger.apply(
                Transfer(
                    id=self._id(),
                    kind=kind,
                    debit_account_id=hold.debit_account_id,
                    credit_account_id=hold.credit_account_id,
                    amount=posted if posted.amount_minor else hold.amount,
                    code="test",
                    created_at=NOW,
                    pending_id=hold_id,
                ),
                change,
                debit_limited=False,
            )
            return posted.amount_minor

        try:
            posted = self.transact(work)
        except (InvalidStateTransition, InvalidAmount):
            return
        self.model[user] += amount - posted
        self.merchant += posted

    @rule(user=st.sampled_from(USERS), amount=amounts)
    def refund(self, user, amount):
        done = self._move((AccountKind.MERCHANT, "m"), (AccountKind.WALLET, user), amount)
        assert (done is not None) == (amount <= self.merchant)
        if done:
            self.merchant -= amount
            self.model[user] += amount

    @invariant()
    def ledger_is_sound(self):
        def read(uow):
            return list(uow.ledger.all_accounts()), list(uow.ledger.all_transfers())

        accounts, transfers = self.transact(read)
        assert verify_ledger(accounts, transfers) == []
        for account in accounts:
            if account.kind is AccountKind.WALLET:
                assert account.balance.available == self.model[account.id.rsplit("_", 1)[-1]]
                assert account.balance.available >= 0
            if account.kind is AccountKind.MERCHANT:
                assert account.balance.available == self.merchant


LedgerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, print_blob=True
)
test_ledger_keeps_its_invariants_under_any_sequence = LedgerMachine.TestCase
