"""Double-entry ledger rules (after TigerBeetle's accounts and two-phase transfers).

A transfer moves one amount in one currency from a debit account to a credit account, so every
transfer is its own balanced pair of entries and the sum over the ledger is zero by construction.
A *pending* transfer (a hold) reserves the amount on both sides until a later transfer posts it
(fully or partly), voids it, or expires it. Transfers are never updated: a correction is a new,
reversing transfer.

Balances are kept on each account as four counters. ``verify_balances`` recomputes them from the
transfers and names every account whose stored counters disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from zeropay.domain.errors import (
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidStateTransition,
    TransferIdReused,
    invariant,
)
from zeropay.domain.money import Currency, Money


class AccountKind(StrEnum):
    WALLET = "wallet"  # a payer's stored value; credit-normal, never below zero
    MERCHANT = "merchant"  # what the platform owes a merchant; credit-normal, never below zero
    FUNDING = "funding"  # an external funding source (cards, bank); debit-normal, unbounded
    PLATFORM = "platform"  # the platform's own account (fees, corrections); unbounded


# Accounts whose credits must always cover their debits, posted and pending together.
BALANCE_LIMITED = frozenset({AccountKind.WALLET, AccountKind.MERCHANT})


class TransferKind(StrEnum):
    POSTED = "posted"  # single-phase: moves money now
    PENDING = "pending"  # a hold: reserves money until posted, voided or expired
    POST_PENDING = "post_pending"  # settles a hold, for its amount or less
    VOID_PENDING = "void_pending"  # releases a hold
    EXPIRE_PENDING = "expire_pending"  # releases a hold whose time ran out


RESOLVING = frozenset(
    {TransferKind.POST_PENDING, TransferKind.VOID_PENDING, TransferKind.EXPIRE_PENDING}
)


@dataclass(frozen=True, slots=True)
class Balance:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def available(self) -> int:
        """What a credit-normal account can still spend: posted credit less debits and holds."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    def __add__(self, other: Balance) -> Balance:
        return Balance(
            self.debits_posted + other.debits_posted,
            self.credits_posted + other.credits_posted,
            self.debits_pending + other.debits_pending,
            self.credits_pending + other.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: AccountKind
    currency: Currency
    balance: Balance = Balance()

    @property
    def balance_limited(self) -> bool:
        return self.kind in BALANCE_LIMITED


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    kind: TransferKind
    debit_account_id: str
    credit_account_id: str
    amount: Money
    code: str  # why the money moved: topup, payment, refund, reversal, ...
    created_at: datetime
    pending_id: str | None = None  # for a resolving transfer: the hold it resolves
    expires_at: datetime | None = None  # for a hold
    reference: str | None = None  # the business object this belongs to (a payment id)

    def same_request_as(self, other: Transfer) -> bool:
        """Whether a resubmission asks for exactly this transfer (server timestamps aside)."""
        return replace(other, created_at=self.created_at, expires_at=self.expires_at) == self


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """How one transfer changes the counters of its two accounts."""

    debit: Balance
    credit: Balance


def check_resubmission(existing: Transfer, requested: Transfer) -> Transfer:
    """A client-chosen transfer id is accepted once; the same request again gets the original."""
    if not existing.same_request_as(requested):
        raise TransferIdReused(
            "this transfer id was already used for a different transfer", transfer_id=requested.id
        )
    return existing


def _check_pair(debit: Account, credit: Account, amount: Money) -> None:
    if amount.amount_minor <= 0:
        raise InvalidAmount("a transfer moves a positive amount", reason="not_positive")
    invariant(debit.id != credit.id, "a transfer needs two different accounts")
    for account in (debit, credit):
        if account.currency != amount.currency:
            raise CurrencyMismatch(
                f"account {account.id} holds {account.currency.code}, not {amount.currency.code}",
                expected=account.currency.code,
                got=amount.currency.code,
            )


def plan_transfer(
    *, debit: Account, credit: Account, amount: Money, pending: bool = False
) -> BalanceChange:
    """The balance change of a new posted or pending transfer, refusing an overdraft."""
    _check_pair(debit, credit, amount)
    if debit.balance_limited and debit.balance.available < amount.amount_minor:
        raise InsufficientFunds(
            "insufficient funds", account_id=debit.id, currency=amount.currency.code
        )
    n = amount.amount_minor
    if pending:
        return BalanceChange(debit=Balance(debits_pending=n), credit=Balance(credits_pending=n))
    return BalanceChange(debit=Balance(debits_posted=n), credit=Balance(credits_posted=n))


def plan_resolution(
    *,
    hold: Transfer,
    kind: TransferKind,
    resolved_by: Transfer | None,
    now: datetime,
    amount: Money | None = None,
) -> tuple[Money, BalanceChange]:
    """Settle or release a hold. Returns the amount posted (zero for void/expire) and the change.

    A hold is resolved exactly once. It can be posted or voided only before it expires, and
    expired only after; posting may take less than the hold (the rest is released).
    """
    invariant(kind in RESOLVING, f"{kind} does not resolve a hold")
    if hold.kind is not TransferKind.PENDING:
        raise InvalidStateTransition("only a pending transfer can be resolved", transfer_id=hold.id)
    if resolved_by is not None:
        raise InvalidStateTransition(
            f"the hold was already resolved ({resolved_by.kind})",
            transfer_id=hold.id,
            resolved_by=resolved_by.id,
        )
    expired = hold.expires_at is not None and now >= hold.expires_at
    if kind is TransferKind.EXPIRE_PENDING and not expired:
        raise InvalidStateTransition("the hold has not expired yet", transfer_id=hold.id)
    if kind is not TransferKind.EXPIRE_PENDING and expired:
        raise InvalidStateTransition("the hold has expired", transfer_id=hold.id, reason="expired")
    held = hold.amount.amount_minor
    release = Balance(debits_pending=-held), Balance(credits_pending=-held)
    posted = Money.zero(hold.amount.currency)
    if kind is TransferKind.POST_PENDING:
        posted = hold.amount if amount is None else amount
        if posted.currency != hold.amount.currency:
            raise CurrencyMismatch(
                "a hold is posted in its own currency",
                expected=hold.amount.currency.code,
                got=posted.currency.code,
            )
        if not 0 < posted.amount_minor <= held:
            raise InvalidAmount(
                "a hold can be posted for a positive amount up to what it holds",
                reason="exceeds_hold",
                held=held,
            )
        n = posted.amount_minor
        release = (release[0] + Balance(debits_posted=n), release[1] + Balance(credits_posted=n))
    return posted, BalanceChange(debit=release[0], credit=release[1])


# ---- verification over the whole ledger ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerViolation:
    rule: str
    subject: str  # the account or transfer id the violation names
    message: str


def expected_balances(transfers: Iterable[Transfer]) -> dict[str, Balance]:
    """Recompute every account's counters from the transfers alone."""
    by_id: dict[str, Transfer] = {}
    totals: dict[str, Balance] = {}

    def add(account_id: str, change: Balance) -> None:
        totals[account_id] = totals.get(account_id, Balance()) + change

    for t in transfers:
        by_id[t.id] = t
        n = t.amount.amount_minor
        if t.kind is TransferKind.POSTED:
            add(t.debit_account_id, Balance(debits_posted=n))
            add(t.credit_account_id, Balance(credits_posted=n))
        elif t.kind is TransferKind.PENDING:
            add(t.debit_account_id, Balance(debits_pending=n))
            add(t.credit_account_id, Balance(credits_pending=n))
        else:
            hold = by_id.get(t.pending_id or "")
            held = hold.amount.amount_minor if hold is not None else 0
            add(t.debit_account_id, Balance(debits_pending=-held))
            add(t.credit_account_id, Balance(credits_pending=-held))
            if t.kind is TransferKind.POST_PENDING:
                add(t.debit_account_id, Balance(debits_posted=n))
                add(t.credit_account_id, Balance(credits_posted=n))
    return totals


def verify_ledger(
    accounts: Iterable[Account], transfers: Iterable[Transfer]
) -> list[LedgerViolation]:
    """Every ledger invariant, checked over stored accounts and transfers (in creation order)."""
    accounts = list(accounts)
    by_account = {a.id: a for a in accounts}
    violations: list[LedgerViolation] = []
    seen: dict[str, Transfer] = {}
    resolved: dict[str, str] = {}

    def flag(rule: str, subject: str, message: str) -> None:
        violations.append(LedgerViolation(rule, subject, message))

    ordered = list(transfers)
    for t in ordered:
        if t.amount.amount_minor <= 0:
            flag("positive_amount", t.id, "transfer amount is not positive")
        if t.debit_account_id == t.credit_account_id:
            flag("two_accounts", t.id, "transfer debits and credits the same account")
        for side in (t.debit_account_id, t.credit_account_id):
            account = by_account.get(side)
            if account is None:
                flag("account_exists", t.id, f"transfer names unknown account {side}")
            elif account.currency != t.amount.currency:
                flag("one_currency", t.id, f"account {side} is not in {t.amount.currency.code}")
        if t.kind in RESOLVING:
            hold = seen.get(t.pending_id or "")
            if hold is None or hold.kind is not TransferKind.PENDING:
                flag(
                    "resolves_a_hold",
                    t.id,
                    f"resolves {t.pending_id}, which is not an earlier hold",
                )
            else:
                if t.pending_id in resolved:
                    flag("resolved_once", t.id, f"hold {t.pending_id} resolved twice")
                resolved[hold.id] = t.id
                if (t.debit_account_id, t.credit_account_id) != (
                    hold.debit_account_id,
                    hold.credit_account_id,
                ):
                    flag("resolves_same_accounts", t.id, "resolution moves other accounts")
                if t.kind is TransferKind.POST_PENDING and t.amount > hold.amount:
                    flag("post_within_hold", t.id, "posted more than the hold reserved")
        seen[t.id] = t

    expected = expected_balances(ordered)
    total = Balance()
    for account in accounts:
        want = expected.get(account.id, Balance())
        total = total + account.balance
        if account.balance != want:
            flag(
                "balance_matches_transfers",
                account.id,
                f"stored {account.balance} but transfers give {want}",
            )
        if account.balance_limited and account.balance.available < 0:
            flag("never_negative", account.id, f"available balance {account.balance.available}")
    if total.debits_posted != total.credits_posted or total.debits_pending != total.credits_pending:
        flag("sums_to_zero", "ledger", f"debits and credits differ: {total}")
    return violations
