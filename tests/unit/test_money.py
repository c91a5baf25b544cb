from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain.errors import CurrencyMismatch, InvalidAmount, UnknownCurrency
from zeropay.domain.money import Money, currency, parse_money


@pytest.mark.parametrize(
    ("code", "exponent"), [("KRW", 0), ("JPY", 0), ("USD", 2), ("EUR", 2), ("GBP", 2), ("BHD", 3)]
)
def test_currencies_know_their_iso_4217_exponent(code, exponent):
    assert currency(code).exponent == exponent


@pytest.mark.parametrize("bad", [12.5, 12.0, True, None, "1250"])
def test_money_refuses_anything_but_an_int_amount(bad):
    with pytest.raises(TypeError):
        Money(bad, currency("USD"))


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, "not_positive"),
        (-5, "not_positive"),
        (12.5, "not_an_integer"),
        ("12", "not_an_integer"),
        (True, "not_an_integer"),
        (10**16, "too_large"),
    ],
)
def test_parse_money_names_why_an_amount_is_refused(amount, reason):
    with pytest.raises(InvalidAmount) as caught:
        parse_money(amount, "USD")
    assert caught.value.details["reason"] == reason


@pytest.mark.parametrize("code", ["usd", "XXX", "US", "", None, 840])
def test_unknown_currencies_are_refused(code):
    with pytest.raises(UnknownCurrency):
        parse_money(100, code)


def test_money_in_two_currencies_does_not_add():
    with pytest.raises(CurrencyMismatch):
        _ = Money.of(1, "USD") + Money.of(1, "EUR")


def test_display_uses_the_currency_exponent():
    assert str(Money.of(1250, "USD")) == "12.50 USD"
    assert str(Money.of(65000, "KRW")) == "65000 KRW"


@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(
        lambda w: sum(w) > 0
    ),
)
def test_a_split_always_sums_to_the_whole_and_parts_differ_by_at_most_one_unit(amount, weights):
    parts = Money.of(amount, "USD").split(weights) if amount else Money.of(0, "USD").split(weights)
    assert sum(p.amount_minor for p in parts) == amount
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part.amount_minor - amount * weight / total) < 1
