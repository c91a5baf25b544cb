"""The canonical transaction data: every field changes it, and no two transactions share it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain.dynamic_linking import Transaction, canonical, digest
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
