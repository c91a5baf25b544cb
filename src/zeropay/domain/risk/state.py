"""What the risk engine remembers: one record per user, device, IP and payee, learned online.

Each record is small and bounded (sliding windows are deques with a maximum length, maps of
devices or payees stop growing at a cap), so memory per subject is fixed however long it lives.
The engine reads them to decide and updates them after: the live path loads and saves the four
records of an event in its transaction; a replay keeps them all in a ``MemoryRiskState``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_EVENTS_MAX = 64  # per sliding window: enough to cross every "max" limit in the config
DEVICES_PER_USER_MAX = 32
PAYEES_PER_USER_MAX = 256
USERS_PER_SUBJECT_MAX = 64
HOURS = 24


@dataclass(slots=True)
class DeviceSeen:
    first_s: float
    last_s: float
    trusted: bool = False
    trusted_s: float | None = None  # the last time a check passed on it
    strong: bool = False  # a passkey or an approval from another device was used on it


@dataclass(slots=True)
class AmountStats:
    """Welford's running mean and variance of log(amount), per currency."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, amount_minor: int) -> None:
        x = math.log(amount_minor)
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    @property
    def stdev(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


def _window() -> deque[float]:
    return deque(maxlen=WINDOW_EVENTS_MAX)


@dataclass(slots=True)
class UserRisk:
    devices: dict[str, DeviceSeen] = field(default_factory=dict)
    # The last event that passed: where the user really was (an attacker's events never move it).
    last_s: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    countries: set[str] = field(default_factory=set)
    hours: list[int] = field(default_factory=lambda: [0] * HOURS)  # events per hour of day
    hours_total: int = 0
    amounts: dict[str, AmountStats] = field(default_factory=dict)
    payees: dict[str, int] = field(default_factory=dict)
    payments: deque[float] = field(default_factory=_window)  # attempts
    failures: deque[float] = field(default_factory=_window)  # first factors and challenges
    cashouts: deque[float] = field(default_factory=_window)
    month: str = ""
    month_spent_minor: dict[str, int] = field(default_factory=dict)
    recovery_s: float | None = None  # the last recovery attempt
    registration_s: float | None = None  # the last device registered

    def trusted_devices(self, *, other_than: str | None = None) -> int:
        return sum(1 for d, seen in self.devices.items() if seen.trusted and d != other_than)

    def see_device(self, device: str, at_s: float) -> DeviceSeen:
        seen = self.devices.get(device)
        if seen is None:
            if len(self.devices) >= DEVICES_PER_USER_MAX:
                # Forget the stalest untrusted device first: a flood of new device ids must not
                # push the user's own trusted phone out.
                oldest = min(
                    self.devices, key=lambda d: (self.devices[d].trusted, self.devices[d].last_s)
                )
                del self.devices[oldest]
            seen = self.devices[device] = DeviceSeen(first_s=at_s, last_s=at_s)
        seen.last_s = at_s
        return seen

    def count_payee(self, payee: str) -> None:
        if payee not in self.payees and len(self.payees) >= PAYEES_PER_USER_MAX:
            rarest = min(self.payees, key=lambda p: self.payees[p])
            del self.payees[rarest]
        self.payees[payee] = self.payees.get(payee, 0) + 1


@dataclass(slots=True)
class DeviceRisk:
    users: dict[str, float] = field(default_factory=dict)  # user -> last seen
    payments: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=WINDOW_EVENTS_MAX)
    )

    def see_user(self, user: str, at_s: float) -> None:
        if user not in self.users and len(self.users) >= USERS_PER_SUBJECT_MAX:
            oldest = min(self.users, key=lambda u: self.users[u])
            del self.users[oldest]
        self.users[user] = at_s


@dataclass(slots=True)
class IpRisk:
    failures: deque[float] = field(default_factory=_window)


@dataclass(slots=True)
class PayeeRisk:
    payers: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=WINDOW_EVENTS_MAX)
    )


@dataclass(slots=True)
class RiskView:
    """The four records an event touches; absent subjects get fresh records."""

    user: UserRisk
    device: DeviceRisk | None
    ip: IpRisk | None
    payee: PayeeRisk | None


@dataclass(slots=True)
class MemoryRiskState:
    """Every record in memory: the isolated state of a replay (or a test)."""

    users: dict[str, UserRisk] = field(default_factory=dict)
    devices: dict[str, DeviceRisk] = field(default_factory=dict)
    ips: dict[str, IpRisk] = field(default_factory=dict)
    payees: dict[str, PayeeRisk] = field(default_factory=dict)

    def view(self, user: str, device: str | None, ip: str | None, payee: str | None) -> RiskView:
        u = self.users.get(user)
        if u is None:
            u = self.users[user] = UserRisk()
        d = i = p = None
        if device is not None:
            d = self.devices.get(device)
            if d is None:
                d = self.devices[device] = DeviceRisk()
        if ip is not None:
            i = self.ips.get(ip)
            if i is None:
                i = self.ips[ip] = IpRisk()
        if payee is not None:
            p = self.payees.get(payee)
            if p is None:
                p = self.payees[payee] = PayeeRisk()
        return RiskView(u, d, i, p)


def count_since(window: deque[float], since_s: float) -> int:
    """Entries at or after ``since_s``; windows are in time order, so count from the right."""
    n = 0
    for at in reversed(window):
        if at < since_s:
            break
        n += 1
    return n


def count_pairs_since(window: deque[tuple[float, str]], since_s: float) -> int:
    n = 0
    for at, _ in reversed(window):
        if at < since_s:
            break
        n += 1
    return n


def distinct_since(window: deque[tuple[float, str]], since_s: float) -> set[str]:
    """The distinct subjects (users, payees) of the entries at or after ``since_s``."""
    out: set[str] = set()
    for at, subject in reversed(window):
        if at < since_s:
            break
        out.add(subject)
    return out


# ---- records as plain data (the live path keeps each one as a JSON document) -------------------
#
# Missing keys load as their defaults, so a record written before a field existed still loads.


def dump_user(u: UserRisk) -> dict[str, object]:
    return {
        "devices": {
            d: [s.first_s, s.last_s, s.trusted, s.trusted_s, s.strong] for d, s in u.devices.items()
        },
        "last": [u.last_s, u.last_lat, u.last_lon],
        "countries": sorted(u.countries),
        "hours": list(u.hours),
        "amounts": {c: [a.count, a.mean, a.m2] for c, a in u.amounts.items()},
        "payees": dict(u.payees),
        "payments": list(u.payments),
        "failures": list(u.failures),
        "cashouts": list(u.cashouts),
        "month": u.month,
        "month_spent_minor": dict(u.month_spent_minor),
        "recovery_s": u.recovery_s,
        "registration_s": u.registration_s,
    }


def load_user(raw: dict[str, Any]) -> UserRisk:
    u = UserRisk()
    for device, (first, last, trusted, trusted_s, strong) in raw.get("devices", {}).items():
        u.devices[device] = DeviceSeen(first, last, trusted, trusted_s, strong)
    u.last_s, u.last_lat, u.last_lon = raw.get("last", [None, None, None])
    u.countries = set(raw.get("countries", ()))
    hours = raw.get("hours")
    if isinstance(hours, list) and len(hours) == HOURS:
        u.hours = [int(h) for h in hours]
        u.hours_total = sum(u.hours)
    for currency, (count, mean, m2) in raw.get("amounts", {}).items():
        u.amounts[currency] = AmountStats(count, mean, m2)
    u.payees = dict(raw.get("payees", {}))
    u.payments.extend(raw.get("payments", ()))
    u.failures.extend(raw.get("failures", ()))
    u.cashouts.extend(raw.get("cashouts", ()))
    u.month = raw.get("month", "")
    u.month_spent_minor = dict(raw.get("month_spent_minor", {}))
    u.recovery_s = raw.get("recovery_s")
    u.registration_s = raw.get("registration_s")
    return u


def dump_device(d: DeviceRisk) -> dict[str, object]:
    return {"users": dict(d.users), "payments": [list(p) for p in d.payments]}


def load_device(raw: dict[str, Any]) -> DeviceRisk:
    d = DeviceRisk(users=dict(raw.get("users", {})))
    d.payments.extend((at, payee) for at, payee in raw.get("payments", ()))
    return d


def dump_ip(i: IpRisk) -> dict[str, object]:
    return {"failures": list(i.failures)}


def load_ip(raw: dict[str, Any]) -> IpRisk:
    i = IpRisk()
    i.failures.extend(raw.get("failures", ()))
    return i


def dump_payee(p: PayeeRisk) -> dict[str, object]:
    return {"payers": [list(x) for x in p.payers]}


def load_payee(raw: dict[str, Any]) -> PayeeRisk:
    p = PayeeRisk()
    p.payers.extend((at, user) for at, user in raw.get("payers", ()))
    return p
