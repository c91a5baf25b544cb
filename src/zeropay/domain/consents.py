"""Consents: the signal groups a user may withhold from the risk engine, and what each holds.

A user can opt out of two kinds of profiling without being locked out (GDPR Art. 21: an
objection to processing on legitimate interest, Art. 6(1)(f)):

- ``location``: where the user is -- the country and coordinates GeoIP derives from the IP
  address, and every signal built on them (impossible travel, a new country). The engine does
  not geolocate the user's events, keeps no place with a decision and learns no place.
- ``behaviour``: the habits the engine learns about the user -- the hours of day they are
  active at, their typical amounts and the payees they usually pay. The engine neither scores
  against these habits nor records them.

What stays, whatever the user chooses, are the security signals that profile nobody and
protect the account itself: a new or untrusted device and a cloned passkey, failed attempts,
velocity against abuse (per user, device, IP address and payee), accounts sharing a device,
cash-out merchant categories, the carrier's monthly cap, a recent recovery or new device, and
the known-bad lists. The IP address itself stays with the events for the failure velocity and
the block list; it is just never turned into a place.

``SIGNAL_GROUPS`` is the one place that says which engine signal belongs to which group; a
test holds it to the engine's list of signals, so a new signal must be placed in one.

With fewer signals the engine knows less, so it asks for a factor more often: each withheld
group adds its points from the risk rules' ``[withheld]`` table, which can turn an allowed
event into a challenge but never, on its own, into a review or a block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from zeropay.domain.errors import InvalidInput


class SignalGroup(StrEnum):
    LOCATION = "location"
    BEHAVIOUR = "behaviour"


# Every signal of the engine (``domain.risk.config.SIGNALS``) is in exactly one of these.
SIGNAL_GROUPS: Mapping[SignalGroup | None, frozenset[str]] = {
    SignalGroup.LOCATION: frozenset({"impossible_travel", "new_country"}),
    SignalGroup.BEHAVIOUR: frozenset({"unusual_hour", "unusual_amount", "new_payee"}),
    # None: security signals, never withheld (see the module docstring for why each stays).
    None: frozenset(
        {
            "new_device",
            "untrusted_device",
            "recent_new_device",
            "clone_signal",
            "failed_attempts",
            "velocity_user",
            "velocity_device",
            "velocity_ip",
            "velocity_payee",
            "shared_device",
            "cashout_mcc",
            "cashout_velocity",
            "monthly_cap",
            "recent_recovery",
            "blocked_device",
            "blocked_ip",
            "blocked_payee",
        }
    ),
}
NO_GROUPS: frozenset[SignalGroup] = frozenset()
WITHHELD_REASON_PREFIX = "signals_withheld:"
_GROUPS = {g.value: g for g in SignalGroup}


def withheld_reason(group: SignalGroup) -> str:
    """The reason a decision carries when ``group`` was withheld: ``signals_withheld:location``."""
    return WITHHELD_REASON_PREFIX + group.value


class ConsentsInvalid(InvalidInput):
    """A consent change that cannot be applied; ``field`` and ``reason`` say what is wrong."""

    code = "consents_invalid"


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's choice for one group. No choice made yet means given: the signals are used."""

    group: SignalGroup
    given: bool = True
    changed_at: datetime | None = None  # None: never changed


def consents_of(stored: Mapping[SignalGroup, Consent]) -> dict[SignalGroup, Consent]:
    """Every group, with the stored choice where there is one."""
    return {g: stored.get(g, Consent(g)) for g in SignalGroup}


def withheld(stored: Mapping[SignalGroup, Consent]) -> frozenset[SignalGroup]:
    return frozenset(g for g, c in stored.items() if not c.given)


def parse_groups(raw: object) -> frozenset[SignalGroup]:
    """A list of group names, as a risk event carries them (``withheld``)."""
    if not isinstance(raw, list) or len(raw) > len(_GROUPS):
        raise ConsentsInvalid("withheld is a list of signal groups", reason="invalid_withheld")
    out = set()
    for item in raw:
        group = _GROUPS.get(item) if isinstance(item, str) else None
        if group is None:
            raise ConsentsInvalid("withheld names location or behaviour", reason="invalid_withheld")
        out.add(group)
    return frozenset(out)


def parse_changes(raw: object) -> dict[SignalGroup, bool]:
    """A consent change from untrusted JSON: ``{"location": false, "behaviour": true}``, one or
    both groups, each true (use the signals) or false (withhold them)."""
    if not isinstance(raw, Mapping):
        raise ConsentsInvalid(
            "send a JSON object of groups to true or false", reason="not_an_object"
        )
    if not raw:
        raise ConsentsInvalid("name at least one of location, behaviour", reason="empty")
    changes: dict[SignalGroup, bool] = {}
    for key, value in raw.items():
        group = _GROUPS.get(key) if isinstance(key, str) else None
        if group is None:
            raise ConsentsInvalid(
                "the groups are location and behaviour", field=str(key)[:40], reason="unknown_group"
            )
        if not isinstance(value, bool):  # 0, 1, "false" and null are refused, not guessed at
            raise ConsentsInvalid(
                f"{group.value} is true or false", field=group.value, reason="not_a_boolean"
            )
        changes[group] = value
    return changes
