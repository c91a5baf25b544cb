from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from zeropay.domain.errors import (
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidStateTransition,
    TransferIdReused,
)
from zeropay.domain.ledger import (
    Account,
    AccountKind,
    Balance,
    Transfer,
    TransferKind,
    check_resubmission,
    plan_resolution,
    plan_transfer,
    verify_ledger,
)
from zeropay.domain.money import Money, currency

NOW = datetime(2026, 11, 2, tzinfo=UTC)
USD = currency("USD")


def wallet(available: int = 1000) -> Account:
    return Account("w", AccountKind.WALLET, USD, Balance(credits_posted=available))


def shop() -> Account:
    return Account("m", AccountKind.MERCHANT, USD)


def funding() -> Account:
    return Account("f", AccountKind.FUNDING, USD)


def test_a_wallet_cannot_spend_more_than_it_holds_but_a_funding_source_can():
    plan_transfer(debit=wallet(1000), credit=shop(), amount=Money.of(1000, "USD"))
    with pytest.raises(InsufficientFunds):
        plan_transfer(debit=wallet(1000), credit=shop(), amount=Money.of(1001, "USD"))
    plan_transfer(debit=funding(), credit=wallet(0), amount=Money.of(10**9, "USD"))


def test_a_transfer_stays_in_one_currency():
    with pytest.raises(CurrencyMismatch):
        plan_transfer(debit=wallet(), credit=shop(), amount=Money.of(1, "EUR"))


def hold(amount: int = 500, expires_in_s: int = 60) -> Transfer:
    return Transfer(
        "h",
        TransferKind.PENDING,
        "w",
        "m",
        Money.of(amount, "USD"),
        "payment",
        NOW,
        expires_at=NOW + timedelta(seconds=expires_in_s),
    )


def test_a_hold_is_posted_for_at_most_its_amount_and_only_once():
    posted, change = plan_resolution(
        hold=hold(),
        kind=TransferKind.POST_PENDING,
        resolved_by=None,
        now=NOW,
        amount=Money.of(300, "USD"),
    )
    assert posted.amount_minor == 300
    assert change.debit == Balance(debits_posted=300, debits_pending=-500)
    with pytest.raises(InvalidAmount):
        plan_resolution(
            hold=hold(),
            kind=TransferKind.POST_PENDING,
            resolved_by=None,
            now=NOW,
            amount=Money.of(501, "USD"),
        )
    with pytest.raises(InvalidStateTransition):
        plan_resolution(hold=hold(), kind=TransferKind.VOID_PENDING, resolved_by=hold(), now=NOW)


def test_a_hold_expires_only_after_its_time_and_cannot_be_posted_after():
    with pytest.raises(InvalidStateTransition):
        plan_resolution(hold=hold(), kind=TransferKind.EXPIRE_PENDING, resolved_by=None, now=NOW)
    later = NOW + timedelta(seconds=60)
    with pytest.raises(InvalidStateTransition):
        plan_resolution(hold=hold(), kind=TransferKind.POST_PENDING, resolved_by=None, now=later)
    posted, _ = plan_resolution(
        hold=hold(), kind=TransferKind.EXPIRE_PENDING, resolved_by=None, now=later
    )
    assert posted.amount_minor == 0


def test_a_transfer_id_resubmitted_with_other_terms_is_refused():
    first = Transfer("t1", TransferKind.POSTED, "f", "w", Money.of(100, "USD"), "topup", NOW)
    assert check_resubmission(first, replace(first, created_at=NOW + timedelta(1))) is first
    with pytest.raises(TransferIdReused):
        check_resubmission(first, replace(first, amount=Money.of(101, "USD")))


def test_verify_names_a_balance_that_disagrees_with_its_transfers():
    t = Transfer("t1", TransferKind.POSTED, "f", "w", Money.of(100, "USD"), "topup", NOW)
    good = [
        Account("f", AccountKind.FUNDING, USD, Balance(debits_posted=100)),
        Account("w", AccountKind.WALLET, USD, Balance(credits_posted=100)),
    ]
    assert verify_ledger(good, [t]) == []
    bad = [good[0], Account("w", AccountKind.WALLET, USD, Balance(credits_posted=101))]
    rules = {(v.rule, v.subject) for v in verify_ledger(bad, [t])}
    assert rules == {("balance_matches_transfers", "w"), ("sums_to_zero", "ledger")}


def test_verify_names_a_negative_wallet_and_a_hold_resolved_twice():
    h = hold(100)
    void1 = Transfer(
        "v1", TransferKind.VOID_PENDING, "w", "m", Money.of(100, "USD"), "x", NOW, pending_id="h"
    )
    void2 = replace(void1, id="v2")
    accounts = [
        Account(
            "w",
            AccountKind.WALLET,
            USD,
            Balance(debits_pending=0, credits_posted=0, debits_posted=0),
        ),
        Account("m", AccountKind.MERCHANT, USD),
    ]
    rules = {v.rule for v in verify_ledger(accounts, [h, void1, void2])}
    assert "resolved_once" in rules
    overdrawn = [
        Account("w", AccountKind.WALLET, USD, Balance(debits_posted=5)),
        Account("m", AccountKind.MERCHANT, USD, Balance(credits_posted=5)),
    ]
    t = Transfer("t", TransferKind.POSTED, "w", "m", Money.of(5, "USD"), "payment", NOW)
    assert {v.rule for v in verify_ledger(overdrawn, [t])} == {"never_negative"}
