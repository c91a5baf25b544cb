"""What the risk engine scores: one event (a login, a payment, a device registration or an
account recovery), parsed from untrusted input into a frozen value.

The same type comes from the live API and from a line of a replay file. Parsing names the first
thing wrong with a stable code (``missing_ts``, ``invalid_amount``...), so a replay can report
``line N: code`` and a caller can branch on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from zeropay.domain.consents import NO_GROUPS, ConsentsInvalid, SignalGroup, parse_groups
from zeropay.domain.errors import InvalidInput
from zeropay.domain.factors import Factor

ID_LENGTH_MAX = 128
TEXT_LENGTH_MAX = 512
MCC_DIGITS = 4  # ISO 18245 merchant category codes are four digits
AMOUNT_MINOR_LIMIT = 10**15  # amounts are below this many minor units
HOLDS_SEEN_MAX = 1024  # distinct valid ``holds`` lists remembered, so the memo stays small


class EventType(StrEnum):
    LOGIN = "login"
    PAYMENT = "payment"
    DEVICE_REGISTRATION = "device_registration"
    RECOVERY = "recovery"


class RiskEvent(NamedTuple):
    """Immutable, and a tuple because a replay makes one per line: a frozen dataclass costs ten
    times as much to build."""

    id: str
    at_s: float  # seconds since the epoch, UTC; the engine's only clock
    type: EventType
    user: str
    device: str | None = None
    ip: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    lat: float | None = None
    lon: float | None = None
    user_agent: str | None = None
    first_factor: Factor | None = None  # logins: password or passkey
    first_factor_ok: bool | None = None
    amount_minor: int | None = None  # payments
    currency: str | None = None
    payee: str | None = None
    mcc: str | None = None
    # A passkey assertion whose signature counter did not increase: the key may be copied.
    passkey_clone: bool = False
    # The signal groups the user withholds (``domain.consents``): the engine neither uses nor
    # learns them, and an event withholding ``location`` carries no place at all.
    withheld: frozenset[SignalGroup] = NO_GROUPS

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None


_EVENT_TYPES = {t.value: t for t in EventType}
_FACTORS = {f.value: f for f in Factor}
_FIRST_FACTORS = {f.value: f for f in (Factor.PASSWORD, Factor.PASSKEY)}
_FACTOR_COUNT = len(Factor)
# Valid ``holds`` lists already parsed, as tuples of names: a pure memo, filled up to its bound.
_HOLDS_SEEN: dict[tuple[object, ...], frozenset[Factor]] = {}
# The longest each text field may be; ids are shorter than free text.
_TEXT_MAX = dict.fromkeys(
    ("country", "ip", "user_agent", "currency"), TEXT_LENGTH_MAX
) | dict.fromkeys(("id", "user", "device", "payee"), ID_LENGTH_MAX)
_NUMBERS = (int, float)
_UTC_OFFSET = timedelta(0)


class EventInvalid(InvalidInput):
    """A replay line or live event that cannot be scored; ``reason`` is the stable code."""

    code = "risk_event_invalid"


def _text(raw: Mapping[str, object], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise EventInvalid(f"{key} is required", reason=f"missing_{key}")
        return None
    if type(value) is not str or not value or len(value) > _TEXT_MAX[key]:
        raise EventInvalid(f"{key} must be a non-empty string", reason=f"invalid_{key}")
    return value


def parse_ts(raw: object) -> float:
    """RFC 3339 in UTC (``Z`` or ``+00:00``), to epoch seconds."""
    if not isinstance(raw, str) or not 20 <= len(raw) <= 35:
        raise EventInvalid("ts must be an RFC 3339 UTC time", reason="invalid_ts")
    try:
        when = datetime.fromisoformat(raw if raw[-1] != "z" else raw[:-1] + "Z")
    except ValueError:
        raise EventInvalid("ts must be an RFC 3339 UTC time", reason="invalid_ts") from None
    if when.tzinfo is not UTC and when.utcoffset() != _UTC_OFFSET:  # no zone is refused too
        raise EventInvalid("ts must be in UTC", reason="invalid_ts")
    return when.timestamp()


def _coordinate(raw: Mapping[str, object], key: str, limit: float) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        raise EventInvalid(f"{key} must be a number", reason=f"invalid_{key}")
    if not -limit <= value <= limit:  # compared before float(): a huge int would overflow
        raise EventInvalid(f"{key} is out of range", reason=f"invalid_{key}")
    number = float(value)
    if not math.isfinite(number):
        raise EventInvalid(f"{key} is out of range", reason=f"invalid_{key}")
    return number


def parse_event(raw: object) -> RiskEvent:
    """An event from a JSON object; unknown fields are ignored."""
    if type(raw) is dict:
        event = _parse_well_formed(raw)
        if event is not None:
            return event
    return _parse_checked(raw)


def _parse_well_formed(raw: dict[str, object]) -> RiskEvent | None:
    """The common case in one pass: the event when every field is plainly valid, else None, and
    ``_parse_checked`` then names what is wrong. It accepts only what ``_parse_checked`` accepts
    and builds the same event, so it never raises: an int coordinate, a lower-case ``z`` or a
    ``str`` subclass is simply left to the checked path."""
    get = raw.get
    event_id, at, kind, user = get("id"), get("ts"), get("type"), get("user")
    if (
        type(event_id) is not str
        or not 0 < len(event_id) <= ID_LENGTH_MAX
        or type(user) is not str
        or not 0 < len(user) <= ID_LENGTH_MAX
        or type(kind) is not str
        or type(at) is not str
        or not 20 <= len(at) <= 35  # parse_ts's bounds
    ):
        return None
    event_type = _EVENT_TYPES.get(kind)
    device, ip, user_agent = get("device"), get("ip"), get("user_agent")
    if (
        event_type is None
        or not (device is None or (type(device) is str and 0 < len(device) <= ID_LENGTH_MAX))
        or not (ip is None or (type(ip) is str and 0 < len(ip) <= TEXT_LENGTH_MAX))
        or not (
            user_agent is None
            or (type(user_agent) is str and 0 < len(user_agent) <= TEXT_LENGTH_MAX)
        )
    ):
        return None
    country, lat, lon = get("country"), get("lat"), get("lon")
    if country is not None:
        if type(country) is not str or len(country) != 2 or not country.isalpha():
            return None
        country = country.upper()
    if lat is not None or lon is not None:
        # Floats in range only: an int, a bool or NaN is left to the checked path.
        if type(lat) is not float or type(lon) is not float:
            return None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
    factor, factor_ok = get("first_factor"), get("first_factor_ok")
    first = _FIRST_FACTORS.get(factor) if type(factor) is str else None
    if factor is not None:
        if first is None:
            return None
        if factor_ok is None:
            factor_ok = True  # as _first_factor: a logged first factor went through
    if factor_ok is not None and factor_ok is not True and factor_ok is not False:
        return None
    clone = get("passkey_clone", False)
    if clone is not False and clone is not True:
        return None
    if get("withheld") is not None:
        return None  # rare: left to the checked path, which drops a withheld place
    amount, currency, payee, mcc = get("amount"), get("currency"), get("payee"), get("mcc")
    if amount is None:
        if currency is not None or event_type is EventType.PAYMENT:
            return None
    elif (
        type(amount) is not int
        or not 0 < amount < AMOUNT_MINOR_LIMIT
        or type(currency) is not str
        or len(currency) != 3
        or not currency.isalpha()
    ):
        return None
    else:
        currency = currency.upper()
    if not (payee is None or (type(payee) is str and 0 < len(payee) <= ID_LENGTH_MAX)) or not (
        mcc is None or (type(mcc) is str and len(mcc) == MCC_DIGITS and mcc.isdigit())
    ):
        return None
    try:
        when = datetime.fromisoformat(at)  # parse_ts for the usual "Z"; it decides the rest
    except ValueError:
        return None
    if when.tzinfo is not UTC:
        return None
    return RiskEvent(
        event_id,
        when.timestamp(),
        event_type,
        user,
        device,
        ip,
        country,
        lat,
        lon,
        user_agent,
        first,
        factor_ok,
        amount,
        currency,
        payee,
        mcc,
        clone,
    )


def _parse_checked(raw: object) -> RiskEvent:
    """Every field checked in a fixed order, so the first thing wrong is the one named."""
    if not isinstance(raw, Mapping):
        raise EventInvalid("an event is a JSON object", reason="not_an_object")
    event_id = _text(raw, "id", required=True)
    if "ts" not in raw:
        raise EventInvalid("ts is required", reason="missing_ts")
    at_s = parse_ts(raw["ts"])
    kind = raw.get("type")
    if kind is None:
        raise EventInvalid("type is required", reason="missing_type")
    event_type = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if event_type is None:
        raise EventInvalid(
            "type is login, payment, device_registration or recovery", reason="invalid_type"
        )
    user = _text(raw, "user", required=True)
    country = _text(raw, "country")
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise EventInvalid("country is an ISO 3166 alpha-2 code", reason="invalid_country")
    lat = _coordinate(raw, "lat", 90.0)
    lon = _coordinate(raw, "lon", 180.0)
    if (lat is None) != (lon is None):
        raise EventInvalid("lat and lon come together", reason="invalid_coordinates")
    first, first_ok = _first_factor(raw)
    clone = raw.get("passkey_clone", False)
    if not isinstance(clone, bool):
        raise EventInvalid("passkey_clone is true or false", reason="invalid_passkey_clone")
    amount, currency, payee, mcc = _payment(raw, event_type)
    withheld = _withheld(raw)
    if SignalGroup.LOCATION in withheld:
        country, lat, lon = None, None, None  # a place the user withholds is never read
    assert event_id is not None and user is not None
    return RiskEvent(
        id=event_id,
        at_s=at_s,
        type=event_type,
        user=user,
        device=_text(raw, "device"),
        ip=_text(raw, "ip"),
        country=country.upper() if country else None,
        lat=lat,
        lon=lon,
        user_agent=_text(raw, "user_agent"),
        first_factor=first,
        first_factor_ok=first_ok,
        amount_minor=amount,
        currency=currency,
        payee=payee,
        mcc=mcc,
        passkey_clone=clone,
        withheld=withheld,
    )


def _withheld(raw: Mapping[str, object]) -> frozenset[SignalGroup]:
    value = raw.get("withheld")
    if value is None:
        return NO_GROUPS
    try:
        return parse_groups(value)
    except ConsentsInvalid:
        raise EventInvalid(
            "withheld is a list of location, behaviour", reason="invalid_withheld"
        ) from None


def withholding(event: RiskEvent, groups: frozenset[SignalGroup]) -> RiskEvent:
    """``event`` with ``groups`` withheld as well: a withheld location drops the place, so it is
    neither scored nor stored with the decision."""
    groups = event.withheld | groups
    if groups == event.withheld:
        return event
    if SignalGroup.LOCATION in groups:
        return event._replace(withheld=groups, country=None, lat=None, lon=None)
    return event._replace(withheld=groups)


def _first_factor(raw: Mapping[str, object]) -> tuple[Factor | None, bool | None]:
    factor = raw.get("first_factor")
    ok = raw.get("first_factor_ok")
    if factor is None:
        if ok is not None and not isinstance(ok, bool):
            raise EventInvalid("first_factor_ok is true or false", reason="invalid_first_factor_ok")
        return None, ok
    if factor not in (Factor.PASSWORD.value, Factor.PASSKEY.value):
        raise EventInvalid("first_factor is password or passkey", reason="invalid_first_factor")
    if ok is None:
        ok = True  # a logged first factor without an outcome went through
    if not isinstance(ok, bool):
        raise EventInvalid("first_factor_ok is true or false", reason="invalid_first_factor_ok")
    return _FACTORS[factor], ok


def _payment(
    raw: Mapping[str, object], event_type: EventType
) -> tuple[int | None, str | None, str | None, str | None]:
    amount = raw.get("amount")
    if amount is not None and (
        isinstance(amount, bool)
        or not isinstance(amount, int)
        or not 0 < amount < AMOUNT_MINOR_LIMIT
    ):
        raise EventInvalid("amount is a positive integer of minor units", reason="invalid_amount")
    currency = _text(raw, "currency")
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise EventInvalid("currency is an ISO 4217 code", reason="invalid_currency")
    if (amount is None) != (currency is None):
        raise EventInvalid("amount and currency come together", reason="invalid_currency")
    mcc = raw.get("mcc")
    if mcc is not None and (
        not isinstance(mcc, str) or len(mcc) != MCC_DIGITS or not mcc.isdigit()
    ):
        raise EventInvalid("mcc is four digits (ISO 18245)", reason="invalid_mcc")
    if event_type is EventType.PAYMENT and amount is None:
        raise EventInvalid("a payment has an amount", reason="missing_amount")
    return amount, currency.upper() if currency else None, _text(raw, "payee"), mcc


def parse_holds(raw: object) -> frozenset[Factor]:
    """The factors the actor could present if challenged (replay only; absent means none)."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or len(raw) > _FACTOR_COUNT:
        raise EventInvalid("holds is a list of factors", reason="invalid_holds")
    names = tuple(raw)
    try:
        return _HOLDS_SEEN[names]  # a replay sees the same few lists on every line
    except (KeyError, TypeError):  # not seen yet, or an unhashable item (no factor's name)
        pass
    for item in names:
        if not isinstance(item, str) or item not in _FACTORS:
            raise EventInvalid(f"unknown factor {item!r} in holds", reason="invalid_holds")
    holds = frozenset(_FACTORS[name] for name in names)
    if len(_HOLDS_SEEN) < HOLDS_SEEN_MAX:
        _HOLDS_SEEN[names] = holds
    return holds


def event_as_input(event: RiskEvent) -> dict[str, object]:
    """The event as a replay line would carry it (``parse_event`` reads it back): what the live
    path keeps with each decision, so past live traffic can be replayed under new rules."""
    out: dict[str, object] = {
        "id": event.id,
        "ts": datetime.fromtimestamp(event.at_s, UTC).isoformat().replace("+00:00", "Z"),
        "type": event.type.value,
        "user": event.user,
    }
    for key in ("device", "ip", "country", "lat", "lon", "user_agent", "currency", "payee", "mcc"):
        value = getattr(event, key)
        if value is not None:
            out[key] = value
    if event.first_factor is not None:
        out["first_factor"] = event.first_factor.value
    if event.first_factor_ok is not None:
        out["first_factor_ok"] = event.first_factor_ok
    if event.amount_minor is not None:
        out["amount"] = event.amount_minor
    if event.passkey_clone:
        out["passkey_clone"] = True
    if event.withheld:
        out["withheld"] = sorted(g.value for g in event.withheld)
    return out
