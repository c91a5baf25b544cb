"""Tokenized payment instruments: card numbers and carrier-billing phone numbers kept in the
vault and named everywhere else by random tokens, and the one-time cryptograms that authorize
each use of a token.

A payer's token (``tok_``) works only for its owner; a merchant token (``mtok_``) only for the
one merchant it was granted to, and only for the instrument it names. Neither says anything about
the number, and both are stored only as hashes.

Each use of a merchant token carries a cryptogram made by a key provisioned to one of the payer's
bound devices: HMAC-SHA256 over the canonical bytes of the use,

    b"zeropay-cryptogram-v1" || for each of (token, amount in minor units as decimal ASCII,
    currency, merchant id, counter as decimal ASCII): 4-byte big-endian length || the field's
    bytes (UTF-8)

so a cryptogram made for one amount, currency, merchant, token or counter proves nothing about
any other (the length prefixes make the encoding unambiguous, as ``domain.dynamic_linking``'s).
The counter of each device key only goes up: a cryptogram is accepted once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from zeropay.domain import bounds
from zeropay.domain.errors import CryptogramInvalid, InstrumentInvalid, InvalidInput, invariant
from zeropay.domain.lockout import FactorState
from zeropay.domain.money import Money

TOKEN_PREFIX = "tok"  # noqa: S105 - the prefix of every payer token, itself no secret
MERCHANT_TOKEN_PREFIX = "mtok"  # noqa: S105 - the prefix of every merchant token
TOKEN_BYTES = 32  # 256 random bits; OWASP ASVS asks at least 128 of a bearer token
CRYPTOGRAM_VERSION = b"zeropay-cryptogram-v1"
CRYPTOGRAM_KEY_BYTES = 32  # HMAC-SHA256 keys as long as the hash (RFC 2104 §3)
CRYPTOGRAM_BYTES = 32  # the whole HMAC-SHA256 output: nothing to gain from truncating it
COUNTER_MAX = 2**63 - 1  # a BIGINT column
CARD_DIGITS_MIN = 13
CARD_DIGITS_MAX = 19  # ISO/IEC 7812-1: an issuer identifier, an account number, a check digit


class InstrumentKind(StrEnum):
    CARD = "card"
    CARRIER = "carrier"  # a mobile number billed through its carrier


class DeclineCode(StrEnum):
    """Why a funding source declined a charge (a declined charge moves no money)."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    CARRIER_DECLINED = "carrier_declined"
    CARRIER_MONTHLY_LIMIT = "carrier_monthly_limit"
    CURRENCY_NOT_SUPPORTED = "currency_not_supported"


# ---- parsing what a payer types -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expiry:
    month: int
    year: int


@dataclass(frozen=True, slots=True)
class NewInstrument:
    """An instrument as the payer gave it, checked and normalised, before it is stored. The
    number never appears in a repr: a logged object must not leak it."""

    kind: InstrumentKind
    number: str = field(repr=False)  # card: digits only; carrier: E.164
    display: str = field(repr=False)  # card: brand and last four; carrier: masked
    brand: str | None = None  # cards only
    expiry: Expiry | None = None  # cards only

    def __post_init__(self) -> None:
        invariant(
            (self.kind is InstrumentKind.CARD) == (self.expiry is not None),
            "a card has an expiry, a phone number has none",
        )


def luhn_valid(digits: str) -> bool:
    """The ISO/IEC 7812-1 Annex B check digit (Luhn, mod 10)."""
    total = 0
    for position, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if position % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_DIGITS = frozenset("0123456789")  # str.isdigit would take "²" and other scripts' digits


def parse_card_number(raw: object) -> str:
    """The digits of a card number. Spaces and dashes between digits are tolerated (people copy
    numbers in groups of four); the message never repeats what was sent."""
    if not isinstance(raw, str) or len(raw) > bounds.CARD_NUMBER_INPUT_LENGTH_MAX:
        raise InstrumentInvalid("a card number is 13 to 19 digits", field="number", reason="format")
    digits = raw.replace(" ", "").replace("-", "")
    if not set(digits) <= _DIGITS:
        raise InstrumentInvalid(
            "a card number holds only digits, spaces and dashes", field="number", reason="format"
        )
    if not CARD_DIGITS_MIN <= len(digits) <= CARD_DIGITS_MAX:
        raise InstrumentInvalid("a card number is 13 to 19 digits", field="number", reason="length")
    if not luhn_valid(digits):
        # A typo, almost always: the check digit catches every single-digit error.
        raise InstrumentInvalid(
            "this card number is not valid: check it for a typo", field="number", reason="luhn"
        )
    return digits


def _int_field(raw: object, name: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InstrumentInvalid(f"{name} must be an integer", field=name, reason="format")
    return raw


def parse_expiry(month: object, year: object, *, now: datetime) -> Expiry:
    """A card's expiry (month 1-12, a four-digit year). A card is good through the last day of
    its expiry month; one whose month has passed (in UTC) is refused."""
    m = _int_field(month, "exp_month")
    y = _int_field(year, "exp_year")
    if not 1 <= m <= 12:
        raise InstrumentInvalid("exp_month is 1 to 12", field="exp_month", reason="range")
    if not now.year - 1 <= y <= now.year + bounds.CARD_EXPIRY_YEARS_AHEAD_MAX:
        raise InstrumentInvalid(
            "exp_year is the four-digit year the card expires", field="exp_year", reason="range"
        )
    expiry = Expiry(month=m, year=y)
    if is_expired(expiry, now):
        raise InstrumentInvalid("this card has expired", field="exp_year", reason="expired")
    return expiry


def is_expired(expiry: Expiry, now: datetime) -> bool:
    invariant(now.tzinfo is not None, "naive datetime")
    return (expiry.year, expiry.month) < (now.year, now.month)


# Issuer identification number ranges (ISO/IEC 7812 prefixes the networks publish), for the
# display only: whether a charge goes through is the funding source's decision.
_BRAND_RANGES: tuple[tuple[str, int, int], ...] = (
    ("amex", 34, 34),
    ("amex", 37, 37),
    ("diners", 300, 305),
    ("diners", 36, 36),
    ("diners", 38, 39),
    ("jcb", 3528, 3589),
    ("visa", 4, 4),
    ("mastercard", 51, 55),
    ("mastercard", 2221, 2720),
    ("discover", 6011, 6011),
    ("discover", 644, 649),
    ("discover", 65, 65),
    ("unionpay", 62, 62),
)
BRAND_NAMES = {
    "amex": "American Express",
    "diners": "Diners Club",
    "jcb": "JCB",
    "visa": "Visa",
    "mastercard": "Mastercard",
    "discover": "Discover",
    "unionpay": "UnionPay",
    "card": "Card",
}


def card_brand(digits: str) -> str:
    for brand, low, high in _BRAND_RANGES:
        width = len(str(low))
        if low <= int(digits[:width]) <= high:
            return brand
    return "card"


def parse_card(
    number: object, exp_month: object, exp_year: object, *, now: datetime
) -> NewInstrument:
    digits = parse_card_number(number)
    expiry = parse_expiry(exp_month, exp_year, now=now)
    brand = card_brand(digits)
    # PCI DSS 3.4 allows the last four digits to be shown; nothing else of the number is.
    return NewInstrument(
        kind=InstrumentKind.CARD,
        number=digits,
        display=f"{BRAND_NAMES[brand]} •••• {digits[-4:]}",
        brand=brand,
        expiry=expiry,
    )


def carrier_instrument(e164: str, *, country_code: int) -> NewInstrument:
    """A carrier-billing instrument from a number already parsed and validated (E.164); the
    display keeps the country code and the last four digits."""
    prefix = f"+{country_code}"
    invariant(e164.startswith(prefix) and e164[1:].isdigit(), "an E.164 number of this country")
    national = e164[len(prefix) :]
    invariant(len(national) > 4, "a national number longer than four digits")
    masked = "•" * (len(national) - 4) + national[-4:]
    return NewInstrument(kind=InstrumentKind.CARRIER, number=e164, display=f"{prefix} {masked}")


def number_index_input(user_id: str, number: str) -> bytes:
    """What the duplicate check's blind index is taken over: the owner and the number, length
    prefixed, so the same number of two users gives two unrelated indexes."""
    return _fields(user_id.encode(), number.encode())


# ---- stored instruments, merchant grants, device keys, charges ----------------------------------


@dataclass(frozen=True, slots=True)
class Instrument:
    id: str
    user_id: str
    kind: InstrumentKind
    status: str  # active | removed
    created_at: datetime
    number_ciphertext: bytes | None = field(default=None, repr=False)  # None once removed
    display_ciphertext: bytes | None = field(default=None, repr=False)
    brand: str | None = None
    expiry: Expiry | None = None
    removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """A merchant token's record: this instrument may be charged by this merchant."""

    id: str
    instrument_id: str
    merchant_id: str
    status: str  # active | revoked
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """The cryptogram key of one instrument on one bound device, its counter and its lockout."""

    id: str
    instrument_id: str
    device_id: str
    user_id: str  # the instrument's owner: the key is sealed under this user's key
    status: str  # active | removed
    created_at: datetime
    key_ciphertext: bytes | None = field(default=None, repr=False)  # None once removed
    last_counter: int = 0
    lockout: FactorState = FactorState()
    last_used_at: datetime | None = None


class ChargeStatus(StrEnum):
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    merchant_id: str
    grant_id: str
    instrument_id: str
    device_key_id: str
    kind: InstrumentKind
    amount: Money
    counter: int
    status: ChargeStatus
    created_at: datetime
    decline_code: str | None = None
    transfer_id: str | None = None  # the ledger transfer of a succeeded charge

    def __post_init__(self) -> None:
        invariant(
            (self.status is ChargeStatus.SUCCEEDED) == (self.transfer_id is not None),
            "a charge moved money exactly when it succeeded",
        )
        invariant(
            (self.status is ChargeStatus.DECLINED) == (self.decline_code is not None),
            "a declined charge says why",
        )


# ---- cryptograms --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenUse:
    """One use of a merchant token: what its cryptogram is made over."""

    token: str
    amount: Money
    merchant_id: str
    counter: int

    def __post_init__(self) -> None:
        invariant(self.amount.amount_minor > 0, "a token is used for a positive amount")
        invariant(1 <= self.counter <= COUNTER_MAX, "a counter is 1 to 2**63 - 1")


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(4, "big") + raw


def _fields(*parts: bytes) -> bytes:
    return b"".join(_field(p) for p in parts)


def canonical_use(use: TokenUse) -> bytes:
    return CRYPTOGRAM_VERSION + _fields(
        use.token.encode(),
        str(use.amount.amount_minor).encode("ascii"),
        use.amount.currency.code.encode("ascii"),
        use.merchant_id.encode(),
        str(use.counter).encode("ascii"),
    )


def cryptogram(key: bytes, use: TokenUse) -> bytes:
    """What the payer's device sends with one use: HMAC-SHA256 (RFC 2104) over its canonical
    bytes, with the key provisioned to that device for this instrument."""
    invariant(len(key) == CRYPTOGRAM_KEY_BYTES, "a cryptogram key has 32 bytes")
    return hmac.new(key, canonical_use(use), hashlib.sha256).digest()


def made_with(key: bytes, use: TokenUse, presented: bytes) -> bool:
    """Whether ``presented`` is this key's cryptogram over this use (compared in constant time,
    so the time taken says nothing about how much of a forgery was right)."""
    return hmac.compare_digest(cryptogram(key, use), presented)


def verify_cryptogram(
    *, use: TokenUse, presented: bytes, expected_key: bytes, last_counter: int
) -> None:
    """Accept a cryptogram once, for exactly the use it was made for. Raises
    ``CryptogramInvalid``; its ``reason`` is for the audit log, never for the caller."""
    if not made_with(expected_key, use, presented):
        # Another amount, currency, merchant, token or counter, or another key: altered.
        raise CryptogramInvalid("the cryptogram does not match this charge", reason="mismatch")
    if use.counter <= last_counter:
        # Made by the key for this very use, and used before (or an older one): a replay.
        raise CryptogramInvalid("the cryptogram does not match this charge", reason="replayed")


def parse_counter(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= COUNTER_MAX:
        raise InvalidInput("counter is an integer from 1 to 2**63 - 1", field="counter")
    return raw


_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_cryptogram(raw: object) -> bytes:
    """A cryptogram as sent: base64url (RFC 4648 §5) of the 32 bytes, without padding."""
    # The decoder skips characters outside the alphabet; checked first, so only one text is
    # accepted for each cryptogram.
    if not isinstance(raw, str) or len(raw) > 64 or not set(raw) <= _BASE64URL:
        raise InvalidInput("cryptogram is the base64url of 32 bytes", field="cryptogram")
    try:
        decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, binascii.Error):
        raise InvalidInput(
            "cryptogram is the base64url of 32 bytes", field="cryptogram"
        ) from None
    if len(decoded) != CRYPTOGRAM_BYTES:
        raise InvalidInput("cryptogram is the base64url of 32 bytes", field="cryptogram")
    return decoded
