"""Replay (backtesting): the live engine over a file of past events, in an isolated state.

Each line is parsed, decided, and only then are its ``holds`` used, to learn what happened: a
challenge passes only if the actor held every factor it named. Time comes from the events
alone, so the same input and configuration give byte-identical output. A malformed or
out-of-order line is reported (``line N: code``) and skipped, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from zeropay.domain.consents import SignalGroup
from zeropay.domain.risk.config import RiskConfig
from zeropay.domain.risk.engine import RiskDecision, decide, learn, passed
from zeropay.domain.risk.events import EventInvalid, RiskEvent, parse_event, parse_holds
from zeropay.domain.risk.state import MemoryRiskState

LINE_BYTES_MAX = 16_384


@dataclass(frozen=True, slots=True)
class Place:
    country: str | None
    lat: float | None = None
    lon: float | None = None


# What the replay and the live path ask of GeoIP: an IP address to a place, or None.
Locate = Callable[[str], Place | None]


def located(event: RiskEvent, locate: Locate | None) -> RiskEvent:
    """Fill the place from GeoIP where the event does not carry it; the event's own ``country``,
    ``lat`` and ``lon`` always win. An event whose user withholds their location is never
    located (``domain.consents``)."""
    has_coordinates = event.lat is not None and event.lon is not None  # not the property: hot
    if locate is None or event.ip is None or (event.country and has_coordinates):
        return event
    if SignalGroup.LOCATION in event.withheld:
        return event
    place = locate(event.ip)
    if place is None:
        return event
    country = event.country or place.country
    lat, lon = (event.lat, event.lon) if has_coordinates else (place.lat, place.lon)
    if country is event.country and lat is event.lat and lon is event.lon:
        return event  # nothing filled in: no copy
    return event._replace(country=country, lat=lat, lon=lon)


class Replayed(NamedTuple):
    """A tuple, like ``RiskEvent``: a replay makes one per line."""

    line: int
    decision: dict[str, object] | None = None  # a decided event, as its output object
    error: str | None = None  # else the code of what was wrong with the line


class Replayer:
    """The engine over an isolated, in-memory state; feed it lines in file order."""

    def __init__(self, config: RiskConfig, *, locate: Locate | None = None) -> None:
        self.config = config
        self.locate = locate
        self.state = MemoryRiskState()
        self.last_at_s: float | None = None

    def run(self, lines: Iterable[str | bytes]) -> Iterator[Replayed]:
        for number, line in enumerate(lines, start=1):
            if not line or line.isspace():  # as ``not line.strip()``, without a copy
                continue
            yield self.one(number, line)

    def one(self, number: int, line: str | bytes) -> Replayed:
        if len(line) > LINE_BYTES_MAX:
            return Replayed(number, error="line_too_long")
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:  # NaN and Infinity too: they are not JSON
            return Replayed(number, error="invalid_json")
        if not isinstance(raw, dict):
            return Replayed(number, error="not_an_object")
        try:
            event = parse_event(raw)
            holds = parse_holds(raw.get("holds"))
        except EventInvalid as exc:
            return Replayed(number, error=str(exc.details.get("reason", exc.code)))
        if self.last_at_s is not None and event.at_s < self.last_at_s:
            return Replayed(number, error="out_of_order")
        self.last_at_s = event.at_s
        event = located(event, self.locate)
        view = self.state.view(event.user, event.device, event.ip, event.payee)
        decision: RiskDecision = decide(event, view, self.config)  # before holds are looked at
        learn(event, decision, got_through=passed(decision, holds), view=view, config=self.config)
        return Replayed(number, decision.as_dict(event.id))


def encode(decision: dict[str, object]) -> bytes:
    """One output line: compact JSON, keys in the documented order, UTF-8, with its newline."""
    return orjson.dumps(decision, option=orjson.OPT_APPEND_NEWLINE)
