"""Payment instruments, pure rules: card numbers (ISO/IEC 7812 Luhn), expiries, brands and
display forms, carrier numbers (phonenumbers), and the cryptogram's canonical bytes, MAC and
verification (replay, every altered field, another key)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain import instruments as di
from zeropay.domain.errors import CryptogramInvalid, InstrumentInvalid, InvalidInput
from zeropay.domain.instruments import (
    TokenUse,
    canonical_use,
    card_brand,
    cryptogram,
    luhn_valid,
    parse_card,
    parse_card_number,
    parse_counter,
    parse_cryptogram,
    parse_expiry,
    verify_cryptogram,
)
from zeropay.domain.money import Money
from zeropay.services.instruments import parse_carrier

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
KEY = bytes(range(32))

# ---- card numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digits",
    [
        "79927398713",  # the worked example of ISO/IEC 7812-1 Annex B
        "4242424242424242",
        "4000000000000002",
        "4000000000009995",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "3530111333300000",
    ],
)
def test_published_test_numbers_pass_the_luhn_check(digits):
    assert luhn_valid(digits)


@given(st.text(alphabet="0123456789", min_size=13, max_size=19), st.data())
def test_any_single_digit_error_fails_the_luhn_check(number, data):
    # Make it valid, then change one digit: Luhn catches every single-digit error.
    body = number[:-1]
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    valid = body + check
    at = data.draw(st.integers(0, len(valid) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != valid[at]]))
    assert luhn_valid(valid) and not luhn_valid(valid[:at] + wrong + valid[at + 1 :])


def test_spaces_and_dashes_between_digits_are_tolerated():
    assert parse_card_number("4242 4242 4242 4242") == "4242424242424242"
    assert parse_card_number("4242-4242-4242-4242") == "4242424242424242"
    assert parse_card_number("4242424242424242") == "4242424242424242"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("4242 4242 4242 4241", "luhn"),
        ("4242.4242.4242.4242", "format"),
        ("４２４２４２４２４２４２４２４２", "format"),  # full-width digits are not ASCII digits
        ("4242x242424242424", "format"),
        ("", "length"),
        ("424242424242", "length"),  # 12 digits
        ("42424242424242424242", "length"),  # 20 digits
        ("4" * 41, "format"),  # longer than any number with separators
        (4242424242424242, "format"),
        (None, "format"),
    ],
)
def test_a_bad_card_number_is_refused_with_a_reason_and_never_repeated(raw, reason):
    with pytest.raises(InstrumentInvalid) as caught:
        parse_card_number(raw)
    assert caught.value.details == {"field": "number", "reason": reason}
    assert caught.value.code == "instrument_invalid"
    if isinstance(raw, str) and len(raw) > 4:
        assert raw not in caught.value.message and raw[-4:] not in caught.value.message


def test_a_card_is_good_through_its_expiry_month_and_refused_after():
    assert parse_expiry(11, 2026, now=NOW) == di.Expiry(11, 2026)
    assert parse_expiry(1, 2046, now=NOW) == di.Expiry(1, 2046)
    with pytest.raises(InstrumentInvalid) as caught:
        parse_expiry(10, 2026, now=NOW)
    assert caught.value.details["reason"] == "expired"
    last_moment = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    assert not di.is_expired(di.Expiry(11, 2026), last_moment)
    assert di.is_expired(di.Expiry(11, 2026), datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("month", "year", "field", "reason"),
    [
        (0, 2030, "exp_month", "range"),
        (13, 2030, "exp_month", "range"),
        (True, 2030, "exp_month", "format"),
        ("12", 2030, "exp_month", "format"),
        (12, 30, "exp_year", "range"),  # two digits are not a year
        (12, 2047, "exp_year", "range"),
        (12, 2030.0, "exp_year", "format"),
        (12, 2025, "exp_year", "expired"),
    ],
)
def test_a_bad_expiry_names_its_field(month, year, field, reason):
    with pytest.raises(InstrumentInvalid) as caught:
        parse_expiry(month, year, now=NOW)
    assert caught.value.details == {"field": field, "reason": reason}


@pytest.mark.parametrize(
    ("digits", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3530111333300000", "jcb"),
        ("6200000000000005", "unionpay"),
        ("36227206271667", "diners"),
        ("9999999999999995", "card"),
    ],
)
def test_the_brand_comes_from_the_number_range(digits, brand):
    assert card_brand(digits) == brand


def test_a_card_is_shown_by_its_brand_and_last_four_and_never_logged_whole():
    card = parse_card("4242 4242 4242 4242", 12, 2030, now=NOW)
    assert card.display == "Visa •••• 4242"
    assert card.kind is di.InstrumentKind.CARD and card.expiry == di.Expiry(12, 2030)
    assert "4242424242424242" not in repr(card) and "4242" not in repr(card)


# ---- carrier-billing phone numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "region"),
    [("+82 10-1234-5678", None), ("010-1234-5678", "KR"), ("01012345678", "KR")],
)
def test_a_mobile_number_is_stored_as_e164_and_shown_masked(phone, region):
    made = parse_carrier(phone, region)
    assert made.number == "+821012345678"
    assert made.display == "+82 ••••••5678"
    assert made.kind is di.InstrumentKind.CARRIER and made.expiry is None
    assert "1012345678" not in repr(made)


@pytest.mark.parametrize(
    ("phone", "region", "field", "reason"),
    [
        ("+82 2-1234-5678", None, "phone", "not_mobile"),  # a Seoul landline
        ("+82 10-123", None, "phone", "invalid"),
        ("010-1234-5678", None, "phone", "unparsable"),  # national, and no region
        ("not a number", None, "phone", "unparsable"),
        ("+82 10 1234 5678 9999 99", None, "phone", "format"),  # over the length bound
        (821012345678, None, "phone", "format"),
        ("010-1234-5678", "ZZ", "region", "region"),
        ("010-1234-5678", "kr", "region", "region"),
        ("010-1234-5678", 82, "region", "region"),
    ],
)
def test_a_number_that_cannot_be_billed_is_refused_with_a_reason(phone, region, field, reason):
    with pytest.raises(InstrumentInvalid) as caught:
        parse_carrier(phone, region)
    assert caught.value.details == {"field": field, "reason": reason}


def test_the_duplicate_index_input_is_unambiguous():
    # Length prefixes: ("ab", "c...") and ("a", "bc...") are different inputs.
    assert di.number_index_input("usr_ab", "4242") != di.number_index_input("usr_a", "b4242")
    assert di.number_index_input("usr_a", "4242") == di.number_index_input("usr_a", "4242")


# ---- cryptograms --------------------------------------------------------------------------------

USE = TokenUse(
    token="mtok_example", amount=Money.of(1250, "EUR"), merchant_id="mer_01jdz7cafe", counter=7
)


def test_the_canonical_use_and_its_cryptogram_match_the_documented_vector():
    """The README's worked example; the MAC was checked with ``openssl dgst -sha256 -mac HMAC
    -macopt hexkey:000102...1f`` over these bytes."""
    assert canonical_use(USE).hex() == (
        "7a65726f7061792d63727970746f6772616d2d7631"  # zeropay-cryptogram-v1
        "0000000c" + b"mtok_example".hex() + "00000004" + b"1250".hex() + "00000003"
        + b"EUR".hex() + "0000000e" + b"mer_01jdz7cafe".hex() + "00000001" + b"7".hex()
    )
    assert cryptogram(KEY, USE).hex() == (
        "6af8f99f2d22356e46b5577f14b98317341836e73ca039499eaf749792e4c09c"
    )
    assert parse_cryptogram("avj5ny0iNW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJw") == cryptogram(KEY, USE)


def test_a_cryptogram_is_accepted_for_exactly_its_use_with_a_fresh_counter():
    presented = cryptogram(KEY, USE)
    verify_cryptogram(use=USE, presented=presented, expected_key=KEY, last_counter=6)
    verify_cryptogram(use=USE, presented=presented, expected_key=KEY, last_counter=0)


@pytest.mark.parametrize("last_counter", [7, 8, 2**63 - 1])
def test_a_cryptogram_whose_counter_was_passed_is_a_replay(last_counter):
    with pytest.raises(CryptogramInvalid) as caught:
        verify_cryptogram(
            use=USE, presented=cryptogram(KEY, USE), expected_key=KEY, last_counter=last_counter
        )
    assert caught.value.details["reason"] == "replayed"


@pytest.mark.parametrize(
    "altered",
    [
        TokenUse("mtok_exampla", USE.amount, USE.merchant_id, USE.counter),
        TokenUse(USE.token, Money.of(1251, "EUR"), USE.merchant_id, USE.counter),
        TokenUse(USE.token, Money.of(1250, "USD"), USE.merchant_id, USE.counter),
        TokenUse(USE.token, USE.amount, "mer_01jdz7cafF", USE.counter),
        TokenUse(USE.token, USE.amount, USE.merchant_id, 8),
    ],
    ids=["token", "amount", "currency", "merchant", "counter"],
)
def test_a_cryptogram_for_any_other_use_is_refused(altered):
    with pytest.raises(CryptogramInvalid) as caught:
        verify_cryptogram(
            use=altered, presented=cryptogram(KEY, USE), expected_key=KEY, last_counter=0
        )
    assert caught.value.details["reason"] == "mismatch"


def test_another_devices_key_does_not_make_this_cryptogram():
    other = bytes(31) + b"\x01"
    with pytest.raises(CryptogramInvalid):
        verify_cryptogram(
            use=USE, presented=cryptogram(other, USE), expected_key=KEY, last_counter=0
        )


def test_the_comparison_is_constant_time(monkeypatch):
    calls = []
    original = di.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(di.hmac, "compare_digest", spy)
    assert di.made_with(KEY, USE, cryptogram(KEY, USE))
    assert calls == [(cryptogram(KEY, USE), cryptogram(KEY, USE))]


@pytest.mark.parametrize(
    "raw", [0, -1, 2**63, True, 1.0, "1", None], ids=lambda r: f"{type(r).__name__}:{r}"
)
def test_a_counter_is_a_positive_integer_that_fits_a_bigint(raw):
    with pytest.raises(InvalidInput) as caught:
        parse_counter(raw)
    assert caught.value.details == {"field": "counter"}
    assert parse_counter(1) == 1 and parse_counter(2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "avj5ny0iNW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJ",  # 31 bytes and a bit
        "avj5ny0iNW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJwA",  # 33 bytes
        "avj5ny0iNW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJw=",  # padding
        "avj5ny0iNW5GtVd/FLmDFzQYNuc8oDlJnq90l5LkwJw",  # standard, not URL-safe, alphabet
        "avj5ny0i NW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJw",
        None,
        b"avj5ny0iNW5GtVd_FLmDFzQYNuc8oDlJnq90l5LkwJw",
    ],
)
def test_a_malformed_cryptogram_is_invalid_input(raw):
    with pytest.raises(InvalidInput) as caught:
        parse_cryptogram(raw)
    assert caught.value.details == {"field": "cryptogram"}
