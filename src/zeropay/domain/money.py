"""Money as an integer count of minor units in an ISO 4217 currency.

No float ever holds money: constructors refuse ``float``, ``bool`` and ``None`` with ``TypeError``,
and arithmetic across currencies raises ``CurrencyMismatch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from zeropay.domain.errors import CurrencyMismatch, InvalidAmount, UnknownCurrency, invariant


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int  # ISO 4217 minor unit: digits after the decimal point

    @property
    def minor_per_major(self) -> int:
        return int(10**self.exponent)


# ISO 4217 (list one, 2024). KRW and JPY have no minor unit in use; BHD, KWD and JOD have three.
_CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("USD", 2),
        Currency("EUR", 2),
        Currency("GBP", 2),
        Currency("CHF", 2),
        Currency("CAD", 2),
        Currency("AUD", 2),
        Currency("SEK", 2),
        Currency("SGD", 2),
        Currency("HKD", 2),
        Currency("CNY", 2),
        Currency("KRW", 0),
        Currency("JPY", 0),
        Currency("BHD", 3),
        Currency("KWD", 3),
        Currency("JOD", 3),
    )
}

# A bound on any single amount: far above every limit, and well inside a signed 64-bit column
# even when summed over a long history.
AMOUNT_MINOR_MAX = 10**15


def currency(code: object) -> Currency:
    """Look a currency up by its ISO 4217 alphabetic code (upper case, exactly three letters)."""
    if not isinstance(code, str):
        raise UnknownCurrency("currency must be a three-letter ISO 4217 code", currency=None)
    found = _CURRENCIES.get(code)
    if found is None:
        raise UnknownCurrency(f"unknown currency {code[:8]!r}", currency=code[:8])
    return found


def _check_amount(amount_minor: object) -> int:
    # bool is a subclass of int, and True must never mean one cent.
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"amount_minor must be int, not {type(amount_minor).__name__}")
    return amount_minor


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: Currency

    def __post_init__(self) -> None:
        _check_amount(self.amount_minor)
        if not isinstance(self.currency, Currency):
            raise TypeError("currency must be a Currency")
        invariant(abs(self.amount_minor) <= AMOUNT_MINOR_MAX, "amount outside the money range")

    @classmethod
    def of(cls, amount_minor: int, code: str) -> Money:
        return cls(amount_minor, currency(code))

    @classmethod
    def zero(cls, cur: Currency) -> Money:
        return cls(0, cur)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"{self.currency.code} and {other.currency.code} cannot be combined",
                expected=self.currency.code,
                got=other.currency.code,
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def split(self, weights: list[int]) -> list[Money]:
        """Split by integer weights, largest remainder first; the parts sum to the whole."""
        if not weights or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights
        ):
            raise ValueError("weights must be a non-empty list of non-negative ints")
        total_weight = sum(weights)
        if total_weight == 0:
            raise ValueError("weights must not all be zero")
        sign = -1 if self.amount_minor < 0 else 1
        whole = abs(self.amount_minor)
        floors = [whole * w // total_weight for w in weights]
        remainders = [whole * w % total_weight for w in weights]
        short = whole - sum(floors)
        # Ties go to the earlier part, so the split is deterministic.
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in order[:short]:
            floors[i] += 1
        parts = [Money(sign * f, self.currency) for f in floors]
        invariant(sum(p.amount_minor for p in parts) == self.amount_minor, "split lost money")
        return parts

    def to_decimal(self) -> Decimal:
        """For display only; never compute with the result."""
        return Decimal(self.amount_minor).scaleb(-self.currency.exponent)

    def __str__(self) -> str:
        return f"{self.to_decimal():.{self.currency.exponent}f} {self.currency.code}"


def parse_money(amount: Any, code: Any) -> Money:
    """Turn untrusted JSON values into a positive ``Money``.

    The amount must be a JSON integer of minor units: a float (even ``12.0``), a string, a boolean
    or null is refused, because each has been a real source of off-by-100 and rounding bugs.
    """
    cur = currency(code)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(
            "amount must be an integer count of minor units (e.g. 1250 for 12.50 USD)",
            reason="not_an_integer",
        )
    if amount <= 0:
        raise InvalidAmount("amount must be greater than zero", reason="not_positive")
    if amount > AMOUNT_MINOR_MAX:
        raise InvalidAmount("amount is too large", reason="too_large")
    return Money(amount, cur)
