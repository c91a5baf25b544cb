"""Labelled synthetic events for testing the risk engine: honest lives and attacks, in one stream.

``generate(seed, users=, days=)`` returns the events the engine reads, one dict per JSON line,
in time order, each with a ``label`` (``scenario``, ``attack``) that the engine ignores and
``services.risk_scoring`` compares with the engine's decisions. Nothing here reads the clock,
the network or global randomness: the same seed and arguments give the same events.

Every user lives one honest story. An event is labelled with the behaviour it shows, so the
ordinary days of a traveller or a big spender are labelled ``commuter``.

Honest scenarios (``attack`` false):

- ``commuter``: regular days in a Korean city; passkey logins on a bound phone (now and then a
  password, which the engine must step up); coffee, lunch, taxi and groceries at habitual payees
  at habitual hours; home broadband at home, a mobile IP outside.
- ``traveller``: flies from Incheon to Tokyo, Paris or New York for a few days and back: a
  payment at the airport, then, after at least the flight time, a login from a foreign IP in a
  new country on the same phone, and payments to local merchants (in KRW from Japan, as Korean
  wallets charge abroad, in EUR or USD from Paris or New York).
- ``new_phone``: signs in on a new phone and registers it properly (email code, passkey, and
  approval from the old phone), then pays from it; the old phone is retired.
- ``night_owl``: lives and pays between 01:00 and 04:00 local time.
- ``carrier_nat``: every event comes through a few mobile-carrier NAT addresses (211.234.x.x)
  shared by dozens of users.
- ``big_spender``: now and then pays several times their usual amount at an ordinary merchant.

Attack scenarios (``attack`` true). Attackers hold only what they stole, never the victim's
passkey, device key or bound-device approval; victims keep living their lives meanwhile:

- ``credential_stuffing``: one to three hosting IPs abroad try password logins on dozens of
  accounts within minutes, a new device each time; a few passwords work and are followed by
  payments to new payees. Holds: password.
- ``account_takeover``: a phished password used from a new device in another country, then
  payments to payees the victim never paid. Holds: password, sometimes the mailbox as well.
- ``session_theft``: a stolen session replayed from a device and IP never seen for the victim,
  with the victim's user agent and no login: payments straight away. Holds: nothing.
- ``card_testing``: one device and IP sign in to a few accounts and make many tiny payments to
  many payees within minutes. Holds: password.
- ``new_device_takeover``: a new device in a new country is registered with password and
  email code, then pays large amounts. Holds: password, email.
- ``cash_out`` (현금화): from inside Korea, after an account recovery or a new device, quick
  payments for gift cards, stored value, quasi-cash and game cash up to the monthly cap, to be
  resold for cash. Holds: password, email.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType

from zeropay.domain.factors import Factor
from zeropay.domain.limits import MONTHLY_MAX_MAJOR, PAYMENT_MAX_MAJOR
from zeropay.domain.money import currency

SCENARIOS: Mapping[str, bool] = MappingProxyType(
    {
        "commuter": False,
        "traveller": False,
        "new_phone": False,
        "night_owl": False,
        "carrier_nat": False,
        "big_spender": False,
        "credential_stuffing": True,
        "account_takeover": True,
        "session_theft": True,
        "card_testing": True,
        "new_device_takeover": True,
        "cash_out": True,
    }
)

START_S = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())  # a Monday
DAY_S = 86_400
HOUR_S = 3_600
KST_OFFSET_H = 9  # Korea keeps no daylight saving time
SESSION_S = 4 * HOUR_S  # a wallet session lasts this long before the app asks to sign in again

# The share of honest users living each story other than ``commuter``.
PERSONA_SHARES: Mapping[str, float] = {
    "traveller": 0.10,
    "new_phone": 0.08,
    "night_owl": 0.07,
    "carrier_nat": 0.12,
    "big_spender": 0.08,
}
# Incidents of each attack per 400 users and 30 days; smaller runs get proportionally fewer.
INCIDENTS_PER_400_USERS_30_DAYS = 10
LOCATION_OMITTED_SHARE = 0.05  # events whose country, lat and lon are left to GeoIP
USER_AGENT_OMITTED_SHARE = 0.02

NEW_PAYEE_SHARE = 0.08  # honest payments to a merchant of the city the user never paid
PASSWORD_TYPO_SHARE = 0.12  # honest password logins that fail once first

# Every honest user holds these on any device; the passkey syncs to their devices, the device
# key lives on a bound device, and any other bound device can approve.
HONEST_FACTORS_ALWAYS = (Factor.PASSWORD, Factor.EMAIL_OTP)
OPTIONAL_FACTORS = ((Factor.TOTP, 0.4), (Factor.SMS_OTP, 0.5), (Factor.SECURITY_QUESTION, 0.3))

# -- places ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Place:
    city: str
    country: str
    lat: float
    lon: float
    utc_offset_h: int  # standard time; daylight saving is ignored
    ip_prefixes: tuple[str, ...]  # the first two octets of local broadband or hosting networks


KR_BROADBAND = ("121.131", "211.36", "58.140", "59.10", "175.196", "125.130", "222.101")
KR_MOBILE = ("223.38", "223.62", "39.7", "110.70", "106.101", "175.223", "117.111")
CARRIER_NAT_PREFIX = "211.234"

KR_CITIES: tuple[tuple[_Place, float], ...] = (
    (_Place("Seoul", "KR", 37.5665, 126.9780, 9, KR_BROADBAND), 0.60),
    (_Place("Busan", "KR", 35.1796, 129.0756, 9, KR_BROADBAND), 0.12),
    (_Place("Incheon", "KR", 37.4563, 126.7052, 9, KR_BROADBAND), 0.10),
    (_Place("Daegu", "KR", 35.8714, 128.6014, 9, KR_BROADBAND), 0.06),
    (_Place("Daejeon", "KR", 36.3504, 127.3845, 9, KR_BROADBAND), 0.06),
    (_Place("Gwangju", "KR", 35.1595, 126.8526, 9, KR_BROADBAND), 0.06),
)
INCHEON_AIRPORT = _Place("Incheon Airport", "KR", 37.4602, 126.4407, 9, KR_MOBILE)


@dataclass(frozen=True, slots=True)
class _Destination:
    place: _Place
    flight_h: float
    currency: str


DESTINATIONS = (
    _Destination(
        _Place("Tokyo", "JP", 35.6762, 139.6503, 9, ("126.77", "153.156", "60.112")), 2.5, "KRW"
    ),
    _Destination(
        _Place("Paris", "FR", 48.8566, 2.3522, 1, ("90.84", "78.192", "92.184")), 14.0, "EUR"
    ),
    _Destination(
        _Place("New York", "US", 40.7128, -74.0060, -5, ("73.45", "24.193", "98.116")), 14.0, "USD"
    ),
)

# Where attackers come from: hosting and residential ranges abroad.
ATTACKER_ORIGINS = (
    _Place("Hanoi", "VN", 21.0278, 105.8342, 7, ("103.21", "113.161")),
    _Place("Lagos", "NG", 6.5244, 3.3792, 1, ("102.89", "105.112")),
    _Place("Moscow", "RU", 55.7558, 37.6173, 3, ("5.188", "91.243")),
    _Place("Sao Paulo", "BR", -23.5505, -46.6333, -3, ("177.54", "189.44")),
    _Place("Amsterdam", "NL", 52.3676, 4.9041, 1, ("185.220", "45.83")),
    _Place("Shenzhen", "CN", 22.5431, 114.0579, 8, ("113.87", "183.14")),
    _Place("Ashburn", "US", 39.0438, -77.4874, -5, ("3.85", "54.210")),
)
# Cloud addresses in Seoul: a stolen session replayed through them looks local.
KR_CLOUD = _Place("Seoul", "KR", 37.5326, 126.9905, 9, ("43.201", "3.36", "52.79"))

# -- merchants ------------------------------------------------------------------------------------

# ISO 18245 categories an honest day is made of, with the span of one payment in KRW.
KRW_SPAN_BY_MCC: Mapping[str, tuple[int, int]] = {
    "5814": (4_500, 12_000),  # fast food, cafes
    "5812": (9_000, 45_000),  # restaurants
    "5411": (3_000, 55_000),  # grocery
    "4121": (4_800, 28_000),  # taxi
    "5499": (1_000, 12_000),  # convenience and specialty food
    "5999": (5_000, 50_000),  # miscellaneous retail
    "5816": (1_100, 33_000),  # digital games: honest players buy items too
}
LOCAL_MCCS = ("5814", "5812", "5411", "4121", "5499", "5999")
ONLINE_MCCS = ("5999", "5732", "5311", "5816", "5947")  # retail, electronics, department stores
CASH_OUT_MCCS = ("6540", "6051", "5816", "5947", "7994")  # resold for cash
FOREIGN_ONLINE_MCCS = ("5815", "5999")  # digital media and retail billed in USD or EUR
BIG_PAYMENT_MCCS = ("5812", "5411", "5999")
FOREIGN_SPAN_MINOR = (100, 5_000)
ONLINE_SPAN_KRW = (5_000, 60_000)
MERCHANTS_PER_CITY_AND_MCC = 25
CASH_OUT_DENOMINATIONS_KRW = (30_000, 50_000, 50_000, 50_000, 60_000, 65_000)
CASH_OUT_PAYMENTS_TRIED = 24  # at 50,000 won each, past the KRW 1,000,000 monthly limit


@dataclass(frozen=True, slots=True)
class _Merchant:
    id: str
    mcc: str
    currency: str
    typical_minor: int


@dataclass(frozen=True, slots=True)
class _Catalog:
    local: Mapping[str, Mapping[str, Sequence[_Merchant]]]  # city -> mcc -> merchants
    online: Sequence[_Merchant]  # Korean online shops, in KRW
    foreign_online: Sequence[_Merchant]  # USD and EUR
    cash_out: Sequence[_Merchant]


# -- devices --------------------------------------------------------------------------------------

PHONE_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918N) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A536N) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; LM-V510N) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
)
TABLET_AGENTS = (
    "Mozilla/5.0 (iPad; CPU OS 17_3 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-X710N) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
)
ATTACKER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) "
    "AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; sdk_gphone_x86) "
    "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
    "python-requests/2.31.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
)


@dataclass(frozen=True, slots=True)
class _Device:
    id: str
    user_agent: str


# -- users ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _User:
    id: str
    persona: str
    city: _Place
    home: tuple[float, float]
    work: tuple[float, float]
    phone: _Device
    tablet: _Device | None
    home_ips: tuple[str, ...]
    out_ips: tuple[str, ...]
    payees: tuple[_Merchant, ...]
    payee_weights: tuple[float, ...]
    payments_per_day: float
    amount_scale: float
    password_login_share: float
    hour_shift_h: float
    enrolled: frozenset[Factor]  # factors held on any device: password, email, maybe TOTP, SMS
    bound: tuple[_Device, ...] = ()
    _holds_by_device: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def bind_only(self, *devices: _Device) -> None:
        self.bound = devices
        self._holds_by_device.clear()

    def holds(self, device: _Device) -> tuple[str, ...]:
        """What this user can present on ``device``: the device key only on a bound device, an
        approval only when another bound device exists."""
        cached = self._holds_by_device.get(device.id)
        if cached is None:
            held = set(self.enrolled) | {Factor.PASSKEY}  # passkeys sync to the user's devices
            if device in self.bound:
                held.add(Factor.DEVICE_KEY)
            if any(other != device for other in self.bound):
                held.add(Factor.BOUND_DEVICE_APPROVAL)
            cached = self._holds_by_device[device.id] = _factor_names(held)
        return cached


def _factor_names(held: set[Factor] | frozenset[Factor]) -> tuple[str, ...]:
    return tuple(factor.value for factor in Factor if factor in held)


@dataclass(frozen=True, slots=True)
class _Where:
    ip: str
    country: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class _Stay:
    """Where a user spends a day: the place, the networks they use and whom they pay there."""

    place: _Place
    home: tuple[float, float]
    out: tuple[float, float]
    home_ips: tuple[str, ...]
    out_ips: tuple[str, ...]
    payees: tuple[_Merchant, ...]
    payee_weights: tuple[float, ...]
    new_payees: Mapping[str, Sequence[_Merchant]]  # by mcc: merchants of the place never paid


@dataclass(frozen=True, slots=True)
class _Slot:
    start_h: float  # local time
    end_h: float
    at_home: bool
    mccs: tuple[str, ...]
    weight: float


WEEKDAY_SLOTS = (
    _Slot(7.3, 9.2, False, ("5814", "4121", "5499"), 3),
    _Slot(11.6, 13.6, False, ("5812", "5814"), 4),
    _Slot(17.8, 21.5, False, ("5411", "5812", "5999", "4121", "5499"), 3),
    _Slot(21.5, 23.5, True, ("5812", "5814", "5999", "5816", "5815"), 1),
)
WEEKEND_SLOTS = (
    _Slot(10.0, 13.0, True, ("5814", "5812", "5411", "5816", "5815"), 2),
    _Slot(13.0, 20.0, False, LOCAL_MCCS, 4),
    _Slot(20.0, 23.0, True, ("5812", "5814", "5999", "5816", "5815"), 2),
)
NIGHT_SLOTS = (
    _Slot(1.0, 4.0, True, ("5814", "5812", "5499", "5816", "4121", "5815"), 6),
    _Slot(20.0, 23.9, True, ("5812", "5814", "5999", "5411"), 2),
)
TRIP_SLOTS = (
    _Slot(9.0, 12.0, True, ("5814", "5499"), 2),
    _Slot(12.0, 19.0, False, LOCAL_MCCS, 5),
    _Slot(19.0, 23.0, False, ("5812", "4121", "5499"), 3),
)


@dataclass(frozen=True, slots=True)
class _Actor:
    """What the events of one session share: who acts, on which device, from where, holding
    which factors, in which story."""

    user: str
    device: _Device
    where: _Where
    holds: tuple[str, ...]
    scenario: str


@dataclass(slots=True)
class _Draft:
    """An event before it is sorted and numbered."""

    at_s: int
    user: str
    body: dict[str, object]
    amount_minor: int | None = None
    currency: str | None = None


# -- the simulation -------------------------------------------------------------------------------


class _Sim:
    def __init__(self, seed: int, *, users: int, days: int) -> None:
        # Reproducible test data, not secrets: a seeded generator is the point.
        self.rng = random.Random(seed)  # noqa: S311
        self.users_count = users
        self.days = days
        self.end_s = START_S + days * DAY_S
        self.drafts: list[_Draft] = []
        self.carrier_pools: list[tuple[str, ...]] = []
        self._taken: set[str] = set()

    def fresh_id(self, prefix: str, bits: int) -> str:
        """An opaque id, so that no id says which story made it."""
        while True:
            candidate = f"{prefix}{self.rng.getrandbits(bits):0{(bits + 3) // 4}x}"
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate

    def device(self, agents: Sequence[str]) -> _Device:
        return _Device(self.fresh_id("d", 48), self.rng.choice(agents))

    def ip(self, prefixes: Sequence[str]) -> str:
        rng = self.rng
        return f"{rng.choice(prefixes)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"

    def carrier_pool(self) -> tuple[str, ...]:
        """Three pools of four NAT addresses: each address carries a dozen or more users."""
        if not self.carrier_pools:
            self.carrier_pools = [
                tuple(self.ip((CARRIER_NAT_PREFIX,)) for _ in range(4)) for _ in range(3)
            ]
        return self.rng.choice(self.carrier_pools)

    def near(self, center: tuple[float, float], spread_deg: float) -> tuple[float, float]:
        rng = self.rng
        return (
            center[0] + rng.uniform(-spread_deg, spread_deg),
            center[1] + rng.uniform(-spread_deg, spread_deg),
        )

    def where(self, place: _Place, center: tuple[float, float], ip: str) -> _Where:
        lat, lon = self.near(center, 0.01)
        return _Where(ip, place.country, round(lat, 4), round(lon, 4))

    def abroad(self, origin: _Place) -> _Where:
        return self.where(origin, (origin.lat, origin.lon), self.ip(origin.ip_prefixes))

    def login(
        self, at_s: int, actor: _Actor, *, first_factor: str = "password", ok: bool = True
    ) -> None:
        self.emit(at_s, "login", actor, login=(first_factor, ok))

    def pay(self, at_s: int, actor: _Actor, merchant: _Merchant, amount_minor: int) -> None:
        self.emit(at_s, "payment", actor, payment=(merchant, amount_minor))

    def emit(
        self,
        at_s: int,
        kind: str,
        actor: _Actor,
        *,
        login: tuple[str, bool] | None = None,
        payment: tuple[_Merchant, int] | None = None,
    ) -> None:
        rng, where = self.rng, actor.where
        body: dict[str, object] = {
            "type": kind,
            "user": actor.user,
            "device": actor.device.id,
            "ip": where.ip,
        }
        if rng.random() >= LOCATION_OMITTED_SHARE:
            body.update(country=where.country, lat=where.lat, lon=where.lon)
        if rng.random() >= USER_AGENT_OMITTED_SHARE:
            body["user_agent"] = actor.device.user_agent
        if login is not None:
            body.update(first_factor=login[0], first_factor_ok=login[1])
        draft = _Draft(at_s, actor.user, body)
        if payment is not None:
            merchant, amount_minor = payment
            body.update(
                amount=amount_minor, currency=merchant.currency, payee=merchant.id, mcc=merchant.mcc
            )
            draft.amount_minor, draft.currency = amount_minor, merchant.currency
        body["holds"] = list(actor.holds)
        body["label"] = {"scenario": actor.scenario, "attack": SCENARIOS[actor.scenario]}
        self.drafts.append(draft)

    def incidents(self) -> int:
        scale = self.users_count / 400 * self.days / 30
        return max(1, round(INCIDENTS_PER_400_USERS_30_DAYS * scale))

    def attack_start_s(self) -> int:
        """A moment with some of the victims' history behind it and a day left for the attack."""
        earliest_s = START_S + min(4 * DAY_S, self.days * DAY_S // 4)
        return self.rng.randint(earliest_s, max(earliest_s, self.end_s - DAY_S))


def generate(seed: int, *, users: int = 400, days: int = 30) -> list[dict[str, object]]:
    """Labelled events for ``users`` people over ``days`` days from 2026-03-02T00:00:00Z, sorted
    by ``ts`` (ties keep the order they were made in), with ids ``e1``, ``e2``... in that order.

    Payments that would take a user past the month's limit in their currency (Korean calendar
    months) are left out, as the platform would refuse them; cash-out attacks stop there.
    """
    if users < 1 or days < 1:
        raise ValueError("a simulation needs at least one user and one day")
    sim = _Sim(seed, users=users, days=days)
    catalog = _catalog(sim)
    people = [_new_user(sim, catalog, number, persona) for number, persona in _personas(sim)]
    for user in people:
        _live(sim, catalog, user)
    _attacks(sim, catalog, people)
    return _finish(sim)


def _personas(sim: _Sim) -> list[tuple[int, str]]:
    """Quotas rather than draws, so that every story is present at any reasonable size."""
    count = sim.users_count
    each_at_least = 1 if count >= 2 * len(PERSONA_SHARES) else 0
    personas: list[str] = []
    for persona, share in PERSONA_SHARES.items():
        personas += [persona] * max(each_at_least, round(share * count))
    personas = personas[:count]
    personas += ["commuter"] * (count - len(personas))
    sim.rng.shuffle(personas)
    return list(enumerate(personas, start=1))


def _catalog(sim: _Sim) -> _Catalog:
    rng = sim.rng

    def merchant(mcc: str, code: str, span: tuple[int, int]) -> _Merchant:
        # Log-uniform: a few expensive merchants among many cheap ones.
        typical = math.exp(rng.uniform(math.log(span[0]), math.log(span[1])))
        return _Merchant(sim.fresh_id("m", 24), mcc, code, int(typical))

    local: dict[str, dict[str, list[_Merchant]]] = {}
    places = [place for place, _ in KR_CITIES] + [INCHEON_AIRPORT]
    places += [destination.place for destination in DESTINATIONS]
    for place in places:
        code = _local_currency(place)
        local[place.city] = {
            mcc: [merchant(mcc, code, _span(code, mcc)) for _ in range(MERCHANTS_PER_CITY_AND_MCC)]
            for mcc in LOCAL_MCCS
        }
    online_mccs = list(ONLINE_MCCS) + [rng.choice(ONLINE_MCCS) for _ in range(55)]
    online = [merchant(mcc, "KRW", _span("KRW", mcc)) for mcc in online_mccs]
    foreign = [
        merchant(rng.choice(FOREIGN_ONLINE_MCCS), rng.choice(("USD", "EUR")), FOREIGN_SPAN_MINOR)
        for _ in range(20)
    ]
    cash_out = [merchant(mcc, "KRW", (30_000, 65_000)) for mcc in CASH_OUT_MCCS for _ in range(4)]
    return _Catalog(local=local, online=online, foreign_online=foreign, cash_out=cash_out)


def _local_currency(place: _Place) -> str:
    for destination in DESTINATIONS:
        if destination.place == place:
            return destination.currency
    return "KRW"


def _span(code: str, mcc: str) -> tuple[int, int]:
    if code != "KRW":
        return FOREIGN_SPAN_MINOR
    return KRW_SPAN_BY_MCC.get(mcc, ONLINE_SPAN_KRW)


def _new_user(sim: _Sim, catalog: _Catalog, number: int, persona: str) -> _User:
    rng = sim.rng
    city = rng.choices([place for place, _ in KR_CITIES], [w for _, w in KR_CITIES])[0]
    phone = sim.device(PHONE_AGENTS)
    # A new phone's approval comes from the old phone, so that story has no tablet to blur it.
    tablet = sim.device(TABLET_AGENTS) if persona != "new_phone" and rng.random() < 0.2 else None
    if persona == "carrier_nat":
        home_ips = out_ips = sim.carrier_pool()
    else:
        home_ips = (sim.ip(city.ip_prefixes),)
        out_ips = tuple(sim.ip(KR_MOBILE) for _ in range(3)) + (sim.ip(city.ip_prefixes),)
    enrolled = set(HONEST_FACTORS_ALWAYS)
    enrolled |= {factor for factor, share in OPTIONAL_FACTORS if rng.random() < share}
    payees = _habitual_payees(sim, catalog, city)
    big = persona == "big_spender"
    user = _User(
        id=f"u{number}",
        persona=persona,
        city=city,
        home=sim.near((city.lat, city.lon), 0.08),
        work=sim.near((city.lat, city.lon), 0.08),
        phone=phone,
        tablet=tablet,
        home_ips=home_ips,
        out_ips=out_ips,
        payees=payees,
        payee_weights=_zipf(len(payees)),
        payments_per_day=rng.uniform(0.5, 1.6),
        # Big spenders pay little as a rule, so that their big days stand out from it.
        amount_scale=rng.uniform(0.5, 0.8) if big else rng.uniform(0.6, 1.3),
        password_login_share=rng.uniform(0.02, 0.15) if rng.random() < 0.3 else 0.0,
        hour_shift_h=rng.uniform(-0.75, 0.75),
        enrolled=frozenset(enrolled),
    )
    user.bind_only(phone, *([tablet] if tablet else []))
    return user


def _zipf(count: int) -> tuple[float, ...]:
    return tuple(1 / rank for rank in range(1, count + 1))


def _habitual_payees(sim: _Sim, catalog: _Catalog, city: _Place) -> tuple[_Merchant, ...]:
    rng = sim.rng
    by_mcc = catalog.local[city.city]
    payees = [rng.choice(by_mcc[mcc]) for mcc in LOCAL_MCCS]  # one of each kind at least
    payees += [rng.choice(by_mcc[rng.choice(LOCAL_MCCS)]) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.12:
        payees.append(rng.choice([m for m in catalog.online if m.mcc == "5816"]))
    if rng.random() < 0.15:
        payees.append(rng.choice(catalog.foreign_online))
    rng.shuffle(payees)
    return tuple(dict.fromkeys(payees))  # without repeats, in a deterministic order


def _home_stay(user: _User, catalog: _Catalog) -> _Stay:
    return _Stay(
        place=user.city,
        home=user.home,
        out=user.work,
        home_ips=user.home_ips,
        out_ips=user.out_ips,
        payees=user.payees,
        payee_weights=user.payee_weights,
        new_payees=catalog.local[user.city.city],
    )


# -- honest lives ---------------------------------------------------------------------------------


def _live(sim: _Sim, catalog: _Catalog, user: _User) -> None:
    stay = _home_stay(user, catalog)
    if user.persona == "traveller" and sim.days >= 10:
        _travel(sim, catalog, user, stay)
    elif user.persona == "new_phone" and sim.days >= 5:
        _change_phone(sim, user, stay)
    else:
        label = user.persona if user.persona in ("night_owl", "carrier_nat") else "commuter"
        big_days = _big_days(sim) if user.persona == "big_spender" else ()
        for day in range(sim.days):
            _live_day(sim, user, stay, day, label=label, big=day in big_days)


def _big_days(sim: _Sim) -> tuple[int, ...]:
    return tuple(sim.rng.sample(range(sim.days), min(sim.days, sim.rng.randint(2, 4))))


def _local_midnight_s(day: int, place: _Place) -> int:
    return START_S + day * DAY_S - place.utc_offset_h * HOUR_S


def _live_day(
    sim: _Sim,
    user: _User,
    stay: _Stay,
    day: int,
    *,
    label: str,
    big: bool = False,
    slots: Sequence[_Slot] | None = None,
    window: tuple[int, int] | None = None,
) -> None:
    """One day of ordinary life: payments at habitual hours, each session opened by a login.

    Only events inside ``window`` happen, so that a trip or a phone change can cut a day short.
    """
    rng = sim.rng
    midnight_s = _local_midnight_s(day, stay.place)
    weekend = day % 7 >= 5
    if slots is None:
        slots = WEEKEND_SLOTS if weekend else WEEKDAY_SLOTS
        slots = NIGHT_SLOTS if label == "night_owl" else slots
    low_s, high_s = window if window is not None else (midnight_s, midnight_s + DAY_S)
    count = min(_poisson(rng, user.payments_per_day * (0.8 if weekend else 1.0)), 6)
    count = max(count, 1) if big else count
    picks = sorted((_pick_time(rng, slots, user.hour_shift_h) for _ in range(count)), key=_hour)
    session_s = low_s - 2 * SESSION_S
    device = user.phone
    for index, (hour, slot) in enumerate(picks):
        at_s = midnight_s + int(hour * HOUR_S)
        if not low_s <= at_s < high_s:
            continue
        where = _stay_where(sim, stay, at_home=slot.at_home)
        tablet_out = device == user.tablet and not slot.at_home  # tablets stay at home
        if at_s - session_s > SESSION_S or tablet_out:
            device = _session_device(sim, user, at_home=slot.at_home)
            session_s = at_s - rng.randint(20, 600)
            _honest_login(
                sim, user, session_s, _Actor(user.id, device, where, user.holds(device), label)
            )
        if big and index == len(picks) - 1:
            merchant, amount_minor = _big_payment(sim, user)
            scenario = "big_spender"
        else:
            merchant = _choose_payee(rng, stay, slot)
            amount_minor = _amount(rng, merchant, user.amount_scale)
            scenario = label
        actor = _Actor(user.id, device, where, user.holds(device), scenario)
        sim.pay(at_s, actor, merchant, amount_minor)
    if rng.random() < 0.3:  # a look at the balance, nothing paid
        hour, slot = _pick_time(rng, slots, user.hour_shift_h)
        at_s = midnight_s + int(hour * HOUR_S)
        if low_s <= at_s < high_s:
            where = _stay_where(sim, stay, at_home=slot.at_home)
            _honest_login(
                sim, user, at_s, _Actor(user.id, user.phone, where, user.holds(user.phone), label)
            )


def _hour(pick: tuple[float, _Slot]) -> float:
    return pick[0]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method; the means here are small.
    limit, product, count = math.exp(-mean), rng.random(), 0
    while product > limit:
        product *= rng.random()
        count += 1
    return count


def _pick_time(rng: random.Random, slots: Sequence[_Slot], shift_h: float) -> tuple[float, _Slot]:
    slot = rng.choices(slots, [s.weight for s in slots])[0]
    hour = rng.uniform(slot.start_h, slot.end_h) + shift_h
    return min(max(hour, 0.0), 23.99), slot


def _session_device(sim: _Sim, user: _User, *, at_home: bool) -> _Device:
    if at_home and user.tablet is not None and sim.rng.random() < 0.3:
        return user.tablet
    return user.phone


def _stay_where(sim: _Sim, stay: _Stay, *, at_home: bool) -> _Where:
    ips = stay.home_ips if at_home else stay.out_ips
    return sim.where(stay.place, stay.home if at_home else stay.out, sim.rng.choice(ips))


def _choose_payee(rng: random.Random, stay: _Stay, slot: _Slot) -> _Merchant:
    """Mostly a habitual payee of the right kind for the hour; now and then somewhere new."""
    habitual = zip(stay.payees, stay.payee_weights, strict=True)
    fitting = [(merchant, weight) for merchant, weight in habitual if merchant.mcc in slot.mccs]
    if fitting and rng.random() >= NEW_PAYEE_SHARE:
        return rng.choices([m for m, _ in fitting], [w for _, w in fitting])[0]
    mccs = [mcc for mcc in slot.mccs if mcc in stay.new_payees] or list(stay.new_payees)
    return rng.choice(stay.new_payees[rng.choice(mccs)])


def _amount(rng: random.Random, merchant: _Merchant, scale: float) -> int:
    low, high = _span(merchant.currency, merchant.mcc)
    value = merchant.typical_minor * scale * rng.lognormvariate(0, 0.25)
    return _price(min(max(value, low), high), merchant.currency)


def _price(value: float, code: str) -> int:
    """A shop's price, never above the platform's ceiling for one payment: whole hundreds of
    won, or cents ending in 9 (4.99, 12.49)."""
    ceiling = PAYMENT_MAX_MAJOR[code] * currency(code).minor_per_major
    if code == "KRW":
        return min(max(round(value / 100) * 100, 100), ceiling)
    return min(max(round(value / 50) * 50 - 1, FOREIGN_SPAN_MINOR[0]), ceiling)


def _big_payment(sim: _Sim, user: _User) -> tuple[_Merchant, int]:
    """Several times the user's usual amount, at one of their ordinary merchants."""
    rng = sim.rng
    in_won = [m for m in user.payees if m.currency == "KRW"]
    merchant = rng.choice([m for m in in_won if m.mcc in BIG_PAYMENT_MCCS] or in_won)
    usual = sorted(m.typical_minor for m in in_won)
    median = usual[len(usual) // 2] * user.amount_scale
    return merchant, _price(median * rng.uniform(3.5, 6.0), "KRW")


def _honest_login(sim: _Sim, user: _User, at_s: int, actor: _Actor) -> None:
    """A passkey, or now and then the password fallback, sometimes after a typo."""
    rng = sim.rng
    if rng.random() >= user.password_login_share:
        sim.login(at_s, actor, first_factor="passkey")
        return
    if rng.random() < PASSWORD_TYPO_SHARE:
        sim.login(at_s - rng.randint(15, 60), actor, ok=False)
    sim.login(at_s, actor)


def _travel(sim: _Sim, catalog: _Catalog, user: _User, home: _Stay) -> None:
    """Home days, a flight out, days abroad on the same phone, a flight back, home days.

    Every leg takes at least the flight time plus an hour at the airports, so the speed between
    the last event at one end and the first at the other is an airliner's, never more.
    """
    rng = sim.rng
    destination = rng.choice(DESTINATIONS)
    away = _trip_stay(sim, catalog, destination)
    airport = replace(
        home,
        place=INCHEON_AIRPORT,
        out=(INCHEON_AIRPORT.lat, INCHEON_AIRPORT.lon),
        new_payees=catalog.local[INCHEON_AIRPORT.city],
    )
    leave_day = rng.randint(2, sim.days - 8)
    back_day = leave_day + rng.randint(3, 7)
    leave_s = _local_midnight_s(leave_day, user.city) + rng.randint(8 * HOUR_S, 14 * HOUR_S)
    _airport_visit(sim, user, airport, leave_s, pay=True)
    arrive_s = leave_s + _flight_s(rng, destination)
    _airport_visit(sim, user, away, arrive_s, pay=False)
    back_leave_s = _local_midnight_s(back_day, away.place) + rng.randint(8 * HOUR_S, 11 * HOUR_S)
    for day in range(leave_day + 1, back_day):
        window = (arrive_s + HOUR_S, back_leave_s - HOUR_S)
        _live_day(sim, user, away, day, label="traveller", slots=TRIP_SLOTS, window=window)
    _airport_visit(sim, user, away, back_leave_s, pay=True)
    back_s = back_leave_s + _flight_s(rng, destination)
    _airport_visit(sim, user, airport, back_s, pay=False)
    for day in range(sim.days):
        if day < leave_day:
            _live_day(sim, user, home, day, label="commuter")
        elif day > back_day:
            _live_day(sim, user, home, day, label="commuter", window=(back_s + HOUR_S, sim.end_s))


def _flight_s(rng: random.Random, destination: _Destination) -> int:
    """Gate to gate plus the airports at both ends: boarding, immigration, the ride out."""
    return int((destination.flight_h + rng.uniform(1.0, 2.5)) * HOUR_S)


def _trip_stay(sim: _Sim, catalog: _Catalog, destination: _Destination) -> _Stay:
    rng = sim.rng
    place = destination.place
    by_mcc = catalog.local[place.city]
    payees = tuple(dict.fromkeys(rng.choice(by_mcc[mcc]) for mcc in LOCAL_MCCS for _ in range(2)))
    return _Stay(
        place=place,
        home=sim.near((place.lat, place.lon), 0.03),  # the hotel
        out=sim.near((place.lat, place.lon), 0.03),
        home_ips=(sim.ip(place.ip_prefixes),),  # the hotel's Wi-Fi
        out_ips=(sim.ip(place.ip_prefixes), sim.ip(place.ip_prefixes)),  # a local SIM, cafes
        payees=payees,
        payee_weights=_zipf(len(payees)),
        new_payees=by_mcc,
    )


def _airport_visit(sim: _Sim, user: _User, stay: _Stay, at_s: int, *, pay: bool) -> None:
    """A login at the airport and, before boarding, a coffee or a snack."""
    rng = sim.rng
    where = _stay_where(sim, stay, at_home=False)
    actor = _Actor(user.id, user.phone, where, user.holds(user.phone), "traveller")
    _honest_login(sim, user, at_s, actor)
    if pay:
        merchant = rng.choice(stay.new_payees[rng.choice(("5814", "5499", "5999"))])
        amount_minor = _amount(rng, merchant, user.amount_scale)
        sim.pay(at_s + rng.randint(60, 900), actor, merchant, amount_minor)


def _change_phone(sim: _Sim, user: _User, home: _Stay) -> None:
    """Ordinary days on the old phone; one evening the new phone signs in and is registered
    with an email code, the passkey and the old phone's approval; then life goes on with it."""
    rng = sim.rng
    switch_day = rng.randint(2, sim.days - 2)
    switch_s = _local_midnight_s(switch_day, user.city) + rng.randint(19 * HOUR_S, 22 * HOUR_S)
    for day in range(switch_day + 1):
        _live_day(sim, user, home, day, label="commuter", window=(START_S, switch_s - 900))
    new_phone = sim.device(PHONE_AGENTS)
    # Not bound yet: no device key on the new phone; the old phone, still bound, approves.
    where = _stay_where(sim, home, at_home=True)
    actor = _Actor(user.id, new_phone, where, user.holds(new_phone), "new_phone")
    sim.login(switch_s, actor, first_factor="passkey" if rng.random() < 0.6 else "password")
    registered_s = switch_s + rng.randint(60, 240)
    sim.emit(registered_s, "device_registration", actor)
    user.phone = new_phone
    user.bind_only(new_phone)  # the old phone is traded in and unbound
    for day in range(switch_day, sim.days):
        _live_day(sim, user, home, day, label="new_phone", window=(registered_s + 300, sim.end_s))


# -- attacks --------------------------------------------------------------------------------------

PASSWORD = _factor_names({Factor.PASSWORD})
PASSWORD_AND_EMAIL = _factor_names({Factor.PASSWORD, Factor.EMAIL_OTP})
NOTHING: tuple[str, ...] = ()  # a stolen session, or a wrong password: no factor of the account


class _Victims:
    """Every user once, in a shuffled order, before anyone is attacked twice."""

    def __init__(self, rng: random.Random, people: Sequence[_User]) -> None:
        self.rng = rng
        self.people = people
        self.queue: list[_User] = []

    def next(self) -> _User:
        if not self.queue:
            self.queue = list(self.people)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def _attacks(sim: _Sim, catalog: _Catalog, people: Sequence[_User]) -> None:
    victims = _Victims(sim.rng, people)
    incidents = sim.incidents()
    campaigns = max(1, incidents // 2)  # a card-testing run spans several accounts
    for _ in range(incidents):
        _credential_stuffing(sim, catalog, people, victims)
    for _ in range(incidents):
        _account_takeover(sim, catalog, victims.next())
    for _ in range(incidents):
        _session_theft(sim, catalog, victims.next())
    for _ in range(campaigns):
        _card_testing(sim, catalog, victims)
    for _ in range(incidents):
        _new_device_takeover(sim, catalog, victims.next())
    for _ in range(incidents):
        _cash_out(sim, catalog, victims.next())


def _new_payees(catalog: _Catalog, victim: _User, mccs: Sequence[str]) -> list[_Merchant]:
    return [m for m in catalog.online if m.mcc in mccs and m not in victim.payees]


def _spree(
    sim: _Sim,
    actor: _Actor,
    payees: Sequence[_Merchant],
    *,
    at_s: int,
    count: int,
    gap_s: tuple[int, int],
    amounts_krw: tuple[int, int],
) -> None:
    """``count`` payments in quick succession after ``at_s``."""
    rng = sim.rng
    for _ in range(count):
        at_s += rng.randint(*gap_s)
        sim.pay(at_s, actor, rng.choice(payees), _price(rng.uniform(*amounts_krw), "KRW"))


def _credential_stuffing(
    sim: _Sim, catalog: _Catalog, people: Sequence[_User], victims: _Victims
) -> None:
    """Dozens of accounts in minutes from one to three addresses, a new device each try; the
    few passwords that work are used at once."""
    rng = sim.rng
    origin = rng.choice(ATTACKER_ORIGINS)
    ips = [sim.ip(origin.ip_prefixes) for _ in range(rng.randint(1, 3))]
    tries = rng.randint(40, 80)
    cracked = [victims.next() for _ in range(max(1, round(tries * rng.uniform(0.08, 0.15))))]
    cracked_ids = [victim.id for victim in cracked]
    known = [u.id for u in rng.sample(list(people), min(tries, len(people)))]
    # Leaked lists also hold people who never had an account here.
    strangers = [
        f"u{sim.users_count + rng.randint(1, 10 * sim.users_count)}" for _ in range(tries // 6)
    ]
    targets: list[tuple[str, _User | None]] = [
        (user_id, None) for user_id in known + strangers if user_id not in cracked_ids
    ]
    targets += [(victim.id, victim) for victim in cracked]
    rng.shuffle(targets)
    at_s = sim.attack_start_s()
    for user_id, victim in targets:
        at_s += rng.randint(2, 15)
        device = sim.device(ATTACKER_AGENTS)
        where = sim.where(origin, (origin.lat, origin.lon), rng.choice(ips))
        holds = NOTHING if victim is None else PASSWORD
        actor = _Actor(user_id, device, where, holds, "credential_stuffing")
        sim.login(at_s, actor, ok=victim is not None)
        if victim is not None:
            payees = _new_payees(catalog, victim, ONLINE_MCCS)
            count = rng.randint(1, 3)
            _spree(
                sim,
                actor,
                payees,
                at_s=at_s,
                count=count,
                gap_s=(40, 240),
                amounts_krw=(20_000, 65_000),
            )


def _account_takeover(sim: _Sim, catalog: _Catalog, victim: _User) -> None:
    """A phished password, sometimes with the mailbox, from a new device in another country."""
    rng = sim.rng
    holds = PASSWORD if rng.random() < 0.5 else PASSWORD_AND_EMAIL
    where = sim.abroad(rng.choice(ATTACKER_ORIGINS))
    actor = _Actor(victim.id, sim.device(ATTACKER_AGENTS), where, holds, "account_takeover")
    at_s = sim.attack_start_s()
    if rng.random() < 0.25:  # a mistyped copy of the phished password first
        sim.login(at_s, actor, ok=False)
        at_s += rng.randint(20, 90)
    sim.login(at_s, actor)
    payees = _new_payees(catalog, victim, ONLINE_MCCS)
    count = rng.randint(3, 7)
    _spree(
        sim, actor, payees, at_s=at_s, count=count, gap_s=(90, 600), amounts_krw=(15_000, 65_000)
    )


def _session_theft(sim: _Sim, catalog: _Catalog, victim: _User) -> None:
    """A stolen session cookie replayed with the victim's own user agent, no login, no factor;
    half the time through a cloud address in Seoul, so that the place looks ordinary."""
    rng = sim.rng
    device = _Device(sim.fresh_id("d", 48), victim.phone.user_agent)
    origin = KR_CLOUD if rng.random() < 0.5 else rng.choice(ATTACKER_ORIGINS)
    actor = _Actor(victim.id, device, sim.abroad(origin), NOTHING, "session_theft")
    payees = _new_payees(catalog, victim, ONLINE_MCCS)
    at_s, count = sim.attack_start_s(), rng.randint(3, 6)
    _spree(
        sim, actor, payees, at_s=at_s, count=count, gap_s=(45, 480), amounts_krw=(10_000, 65_000)
    )


def _card_testing(sim: _Sim, catalog: _Catalog, victims: _Victims) -> None:
    """One device and one address sign in to a few accounts and try tiny payments, each to
    another payee, a few seconds apart."""
    rng = sim.rng
    device = sim.device(ATTACKER_AGENTS)
    where = sim.abroad(rng.choice(ATTACKER_ORIGINS))
    payees = list(catalog.online) + list(catalog.foreign_online)
    rng.shuffle(payees)
    paid = 0
    at_s = sim.attack_start_s()
    for _ in range(rng.randint(2, 4)):
        actor = _Actor(victims.next().id, device, where, PASSWORD, "card_testing")
        sim.login(at_s, actor)
        at_s += rng.randint(5, 20)
        for _ in range(rng.randint(5, 10)):
            at_s += rng.randint(4, 30)
            merchant = payees[paid % len(payees)]
            paid += 1
            in_won = merchant.currency == "KRW"
            tiny_minor = rng.randint(10, 15) * 100 if in_won else rng.randint(100, 199)
            sim.pay(at_s, actor, merchant, tiny_minor)
        at_s += rng.randint(10, 60)


def _new_device_takeover(sim: _Sim, catalog: _Catalog, victim: _User) -> None:
    """A device registered from abroad with password and email code; large payments follow,
    at once or after some hours, when the new device may look settled."""
    rng = sim.rng
    origin = rng.choice(ATTACKER_ORIGINS)
    device = sim.device(ATTACKER_AGENTS)
    actor = _Actor(victim.id, device, sim.abroad(origin), PASSWORD_AND_EMAIL, "new_device_takeover")
    at_s = sim.attack_start_s()
    sim.login(at_s, actor)
    registered_s = at_s + rng.randint(60, 240)
    sim.emit(registered_s, "device_registration", actor)
    if rng.random() < 0.5:
        pay_s = registered_s + rng.randint(60, 600)
    else:
        pay_s = registered_s + rng.randint(HOUR_S, 20 * HOUR_S)
        actor = replace(actor, where=sim.abroad(origin))  # back from another address
    payees = _new_payees(catalog, victim, ("5732", "5311", "5999", "5947"))
    count = rng.randint(3, 6)
    _spree(
        sim, actor, payees, at_s=pay_s, count=count, gap_s=(120, 900), amounts_krw=(45_000, 65_000)
    )


def _cash_out(sim: _Sim, catalog: _Catalog, victim: _User) -> None:
    """현금화: from a Korean mobile address, after a recovery or a new device, gift cards and
    game cash bought back to back until the month's limit refuses more."""
    rng = sim.rng
    city = victim.city if rng.random() < 0.5 else rng.choice([place for place, _ in KR_CITIES])
    device = sim.device(PHONE_AGENTS[2:])  # Android: the resale apps run there
    where = sim.where(city, (city.lat, city.lon), sim.ip(KR_MOBILE))
    actor = _Actor(victim.id, device, where, PASSWORD_AND_EMAIL, "cash_out")
    at_s = sim.attack_start_s()
    if rng.random() < 0.5:
        sim.emit(at_s, "recovery", actor)
        pay_s = at_s + rng.randint(600, 6 * HOUR_S)
    else:
        sim.login(at_s, actor)
        sim.emit(at_s + rng.randint(60, 240), "device_registration", actor)
        pay_s = at_s + rng.randint(300, 3 * HOUR_S)
    shops = rng.sample(list(catalog.cash_out), 4)
    # More than the limit allows: ``_finish`` drops what the month's limit would refuse.
    for _ in range(CASH_OUT_PAYMENTS_TRIED):
        pay_s += rng.randint(20, 180)
        sim.pay(pay_s, actor, rng.choice(shops), rng.choice(CASH_OUT_DENOMINATIONS_KRW))


# -- output ---------------------------------------------------------------------------------------


def _finish(sim: _Sim) -> list[dict[str, object]]:
    """Sorted by time (a stable sort keeps the order of making on ties), numbered, and without
    the payments the month's limit would refuse."""
    inside = [draft for draft in sim.drafts if START_S <= draft.at_s < sim.end_s]
    inside.sort(key=_at_s)
    spent_minor: dict[tuple[str, str, str], int] = {}
    events: list[dict[str, object]] = []
    for draft in inside:
        if draft.amount_minor is not None and draft.currency is not None:
            key = (draft.user, draft.currency, _korean_month(draft.at_s))
            spent = spent_minor.get(key, 0) + draft.amount_minor
            if spent > MONTHLY_MAX_MAJOR[draft.currency] * currency(draft.currency).minor_per_major:
                continue
            spent_minor[key] = spent
        events.append({"id": f"e{len(events) + 1}", "ts": _rfc3339(draft.at_s), **draft.body})
    return events


def _at_s(draft: _Draft) -> int:
    return draft.at_s


@functools.cache
def _date(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * DAY_S, UTC).strftime("%Y-%m-%d")


def _rfc3339(at_s: int) -> str:
    day_number, second = divmod(at_s, DAY_S)
    hour, second = divmod(second, HOUR_S)
    return f"{_date(day_number)}T{hour:02d}:{second // 60:02d}:{second % 60:02d}Z"


def _korean_month(at_s: int) -> str:
    # Monthly limits count calendar months in Korea (``SpendingLimits.month_zone``).
    return _date((at_s + KST_OFFSET_H * HOUR_S) // DAY_S)[:7]
