"""GeoIP without the network: the country database shipped inside the ``geoip2fast`` package,
and the country's rough centre from a table shipped with ZeroPay (``data/country_centres.csv``),
so travel speed can be estimated when an event carries no coordinates of its own.

A country's place is its capital or main city (the US: its geographic centre), which is coarse:
the travel rule only fires beyond ``travel_distance_min_km`` (500 km by default), and an event's
own ``lat``/``lon`` always win. A country missing from the table gives its code and no place;
private, reserved and unknown addresses give None.
"""

from __future__ import annotations

import csv
import io
from functools import cache, lru_cache
from importlib import resources

from zeropay.services.risk_replay import Place

ADDRESSES_CACHED_MAX = 16_384  # answers kept per process: about 150 bytes each


@cache
def _centres() -> dict[str, tuple[float, float]]:
    text = resources.files("zeropay").joinpath("data/country_centres.csv").read_text("utf-8")
    rows = csv.DictReader(io.StringIO(text))
    return {r["country"]: (float(r["lat"]), float(r["lon"])) for r in rows}


class CountryGeoIP:
    """``locate(ip)`` for the replay and the live path (a lookup takes a few microseconds, an
    address asked for again well under one). Loading the database takes a tenth of a second:
    build one per process and keep it."""

    def __init__(self) -> None:
        from geoip2fast import GeoIP2Fast

        self._db = GeoIP2Fast()
        self._centres = _centres()
        self._places: dict[str, Place] = {}  # one per country, shared by its addresses
        # The database cannot change under a running process, so an answer can be kept; traffic
        # comes from far fewer addresses than events, and the least recently asked go first.
        self._cached = lru_cache(maxsize=ADDRESSES_CACHED_MAX)(self._lookup)

    def __call__(self, ip: str) -> Place | None:
        return self._cached(ip)

    def cache_clear(self) -> None:
        """Forget every answer kept, as a fresh process would (the benchmark starts cold)."""
        self._cached.cache_clear()

    def _lookup(self, ip: str) -> Place | None:
        found = self._db.lookup(ip)
        code = getattr(found, "country_code", "") or ""
        if len(code) != 2 or not code.isalpha() or getattr(found, "is_private", False):
            return None
        place = self._places.get(code)
        if place is None:
            centre = self._centres.get(code)
            place = self._places[code] = Place(code, *centre) if centre else Place(code)
        return place
