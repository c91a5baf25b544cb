"""The canonical transaction data: every field changes it, and no two transactions share it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain.dynamic_linking import Transaction, canonical, digest, parse_canonical
from zeropay.domain.money import parse_money

BASE = Transaction(
    payment_id="pay_01", amount=parse_money(1000, "EUR"), payee="mer_cafe", nonce=bytes(16)
)


def test_each_field_changes_the_bytes_and_the_challenge():
    changed = [
        replace(BASE, payment_id="pay_02"),
        replace(BASE, amount=parse_money(1001, "EUR")),
        replace(BASE, amount=parse_money(1000, "USD")),
        replace(BASE, payee="mer_other"),
        replace(BASE, nonce=bytes(15) + b"\x01"),
    ]
    assert len({canonical(t) for t in [BASE, *changed]}) == 6
    assert len({digest(t) for t in [BASE, *changed]}) == 6


def test_the_encoding_is_the_documented_one():
    assert canonical(BASE) == (
        b"zeropay-txn-v1"
        + b"\x00\x00\x00\x06pay_01"
        + b"\x00\x00\x00\x041000"
        + b"\x00\x00\x00\x03EUR"
        + b"\x00\x00\x00\x08mer_cafe"
        + b"\x00\x00\x00\x10"
        + bytes(16)
    )


ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=12)


@given(ids, ids, ids, ids)
def test_moving_characters_between_fields_never_gives_the_same_bytes(a, b, c, d):
    one = replace(BASE, payment_id=a, payee=b)
    two = replace(BASE, payment_id=c, payee=d)
    assert (canonical(one) == canonical(two)) == ((a, b) == (c, d))


@given(ids, ids, st.integers(min_value=1, max_value=10**12), st.binary(min_size=16, max_size=16))
def test_canonical_bytes_read_back_as_the_same_transaction(payment_id, payee, amount, nonce):
    txn = Transaction(payment_id, parse_money(amount, "KRW"), payee, nonce)
    assert parse_canonical(canonical(txn)) == txn


def test_bytes_that_are_not_a_canonical_transaction_read_as_nothing():
    good = canonical(BASE)
    assert parse_canonical(b"") is None
    assert parse_canonical(b"zeropay-txn-v2" + good[14:]) is None  # another version
    assert parse_canonical(good[:-1]) is None  # cut short
    assert parse_canonical(good + b"\x00") is None  # trailing bytes
    assert parse_canonical(good.replace(b"EUR", b"XXX")) is None  # no such currency
    assert parse_canonical(good.replace(b"1000", b"-100")) is None  # not an amount
    short_nonce = good[:-20] + b"\x00\x00\x00\x0f" + bytes(15)
    assert parse_canonical(short_nonce) is None
