"""Score a risk engine's decisions against labelled events (issue 4).

The events are the engine's input, each with a ``label`` (``scenario``, ``attack``), as
``services.risk_simulation`` makes them; the decisions are its output, one per event, joined by
``id``. Only the file formats are shared: nothing here depends on the engine.

Definitions:

- An attack payment is *stopped* when the action is ``block`` or ``review``, or ``challenge``
  with at least one named factor that is not in the event's ``holds``: a challenge the attacker
  can answer stops nothing.
- Honest friction is measured on honest payments: the share challenged, and the share blocked,
  where ``review`` counts as blocked (the payer is held up either way); and on honest passkey
  logins (``type`` login, ``first_factor`` passkey): the share challenged, reviewed or blocked.
- ``password_only_logins_allowed`` counts logins, honest or not, whose first factor is a correct
  password and whose action is ``allow``: a password alone never signs anyone in.

A share is ``None`` when nothing was measured (no payment of that kind), and a target that
nothing measured is not met.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ACTIONS = frozenset({"allow", "challenge", "review", "block"})
HOLDING_ACTIONS = frozenset({"review", "block"})  # the payment does not go through as asked
EVENTS_MAX = 10_000_000  # bounds the work and memory of one scoring run

ATTACK_STOPPED_SHARE_MIN = 0.95
ATTACK_SCENARIO_STOPPED_SHARE_MIN = 0.90
HONEST_CHALLENGED_SHARE_MAX = 0.02
HONEST_BLOCKED_SHARE_MAX = 0.001
HONEST_PASSKEY_LOGINS_CHALLENGED_SHARE_MAX = 0.03
PASSWORD_ONLY_LOGINS_ALLOWED_MAX = 0


@dataclass(frozen=True, slots=True)
class AttackScenarioResult:
    scenario: str
    payments: int
    stopped: int

    @property
    def share(self) -> float | None:
        return _share(self.stopped, self.payments)


@dataclass(frozen=True, slots=True)
class HonestScenarioResult:
    scenario: str
    payments: int
    challenged: int
    blocked: int  # blocked or held for review

    @property
    def challenged_share(self) -> float | None:
        return _share(self.challenged, self.payments)

    @property
    def blocked_share(self) -> float | None:
        return _share(self.blocked, self.payments)


@dataclass(frozen=True, slots=True)
class Report:
    attack_scenarios: tuple[AttackScenarioResult, ...]  # sorted by name
    honest_scenarios: tuple[HonestScenarioResult, ...]
    honest_passkey_logins: int
    honest_passkey_logins_challenged: int  # challenged, held for review or blocked
    password_only_logins_allowed: int

    @property
    def attack_payments(self) -> int:
        return sum(result.payments for result in self.attack_scenarios)

    @property
    def attack_stopped(self) -> int:
        return sum(result.stopped for result in self.attack_scenarios)

    @property
    def attack_stopped_share(self) -> float | None:
        return _share(self.attack_stopped, self.attack_payments)

    @property
    def honest_payments(self) -> int:
        return sum(result.payments for result in self.honest_scenarios)

    @property
    def honest_challenged(self) -> int:
        return sum(result.challenged for result in self.honest_scenarios)

    @property
    def honest_blocked(self) -> int:
        return sum(result.blocked for result in self.honest_scenarios)

    @property
    def honest_challenged_share(self) -> float | None:
        return _share(self.honest_challenged, self.honest_payments)

    @property
    def honest_blocked_share(self) -> float | None:
        return _share(self.honest_blocked, self.honest_payments)

    @property
    def honest_passkey_logins_challenged_share(self) -> float | None:
        return _share(self.honest_passkey_logins_challenged, self.honest_passkey_logins)

    def as_dict(self) -> dict[str, object]:
        return {
            "attack_scenarios": [
                {
                    "scenario": r.scenario,
                    "payments": r.payments,
                    "stopped": r.stopped,
                    "share": r.share,
                }
                for r in self.attack_scenarios
            ],
            "honest_scenarios": [
                {
                    "scenario": r.scenario,
                    "payments": r.payments,
                    "challenged": r.challenged,
                    "blocked": r.blocked,
                    "challenged_share": r.challenged_share,
                    "blocked_share": r.blocked_share,
                }
                for r in self.honest_scenarios
            ],
            "attack_payments": self.attack_payments,
            "attack_stopped": self.attack_stopped,
            "attack_stopped_share": self.attack_stopped_share,
            "honest_payments": self.honest_payments,
            "honest_challenged": self.honest_challenged,
            "honest_challenged_share": self.honest_challenged_share,
            "honest_blocked": self.honest_blocked,
            "honest_blocked_share": self.honest_blocked_share,
            "honest_passkey_logins": self.honest_passkey_logins,
            "honest_passkey_logins_challenged": self.honest_passkey_logins_challenged,
            "honest_passkey_logins_challenged_share": self.honest_passkey_logins_challenged_share,
            "password_only_logins_allowed": self.password_only_logins_allowed,
            "targets_met": targets_met(self),
        }

    def table(self) -> str:
        lines = [f"{'attack scenario':<24}{'payments':>10}{'stopped':>10}{'share':>10}"]
        for a in self.attack_scenarios:
            lines.append(f"{a.scenario:<24}{a.payments:>10}{a.stopped:>10}{_percent(a.share):>10}")
        lines += ["", f"{'honest scenario':<24}{'payments':>10}{'challenged':>12}{'blocked':>10}"]
        for h in self.honest_scenarios:
            lines.append(f"{h.scenario:<24}{h.payments:>10}{h.challenged:>12}{h.blocked:>10}")
        met = targets_met(self)
        lines += ["", f"{'measure':<46}{'value':>10}  {'target':<10}{'met':>4}"]
        for key, label, value, target in _measures(self):
            lines.append(f"{label:<46}{value:>10}  {target:<10}{'yes' if met[key] else 'NO':>4}")
        return "\n".join(lines)


def score(
    events: Iterable[Mapping[str, object]], decisions: Iterable[Mapping[str, object]]
) -> Report:
    """Join ``decisions`` to ``events`` by id and count; see the module docstring.

    Raises ``ValueError`` naming the id for an event without a decision, a decision without an
    event, a repeated id, an unknown action, or a malformed label, holds or factors.
    """
    by_id = _decisions_by_id(decisions)
    tally = _Tally()
    seen: set[str] = set()
    for index, event in enumerate(events):
        if index >= EVENTS_MAX:
            raise ValueError(f"more than {EVENTS_MAX} events")
        event_id = _text(event, "id", "an event")
        if event_id in seen:
            raise ValueError(f"event {event_id!r} appears twice")
        seen.add(event_id)
        decision = by_id.pop(event_id, None)
        if decision is None:
            raise ValueError(f"no decision for event {event_id!r}")
        tally.count(event, event_id, *decision)
    if by_id:
        raise ValueError(f"decision for unknown event {next(iter(by_id))!r}")
    return tally.report()


@dataclass(slots=True)
class _Tally:
    attacks: dict[str, list[int]] = field(default_factory=dict)  # [payments, stopped]
    honest: dict[str, list[int]] = field(default_factory=dict)  # [payments, challenged, blocked]
    passkey_logins: int = 0
    passkey_logins_challenged: int = 0
    password_only_allowed: int = 0

    def count(
        self, event: Mapping[str, object], event_id: str, action: str, factors: frozenset[str]
    ) -> None:
        scenario, attack = _label(event, event_id)
        if scenario in (self.honest if attack else self.attacks):
            raise ValueError(f"event {event_id!r}: scenario {scenario!r} is both attack and not")
        kind = event.get("type")
        if attack:
            counts = self.attacks.setdefault(scenario, [0, 0])
            if kind == "payment":
                counts[0] += 1
                counts[1] += _stops(action, factors, _names(event, "holds", event_id))
        else:
            counts = self.honest.setdefault(scenario, [0, 0, 0])
            if kind == "payment":
                counts[0] += 1
                counts[1] += action == "challenge"
                counts[2] += action in HOLDING_ACTIONS
        if kind == "login":
            first_factor = event.get("first_factor")
            if first_factor == "passkey" and not attack:
                self.passkey_logins += 1
                self.passkey_logins_challenged += action != "allow"
            # A password alone never signs in, whoever typed it.
            correct_password = first_factor == "password" and event.get("first_factor_ok") is True
            self.password_only_allowed += correct_password and action == "allow"

    def report(self) -> Report:
        return Report(
            attack_scenarios=tuple(
                AttackScenarioResult(name, *self.attacks[name]) for name in sorted(self.attacks)
            ),
            honest_scenarios=tuple(
                HonestScenarioResult(name, *self.honest[name]) for name in sorted(self.honest)
            ),
            honest_passkey_logins=self.passkey_logins,
            honest_passkey_logins_challenged=self.passkey_logins_challenged,
            password_only_logins_allowed=self.password_only_allowed,
        )


def targets_met(report: Report) -> dict[str, bool]:
    """Issue 4's targets, each by name; one not measured (a share of nothing) is not met."""
    scenario_shares = [result.share for result in report.attack_scenarios]
    return {
        "attack_stopped": _at_least(report.attack_stopped_share, ATTACK_STOPPED_SHARE_MIN),
        "attack_stopped_every_scenario": bool(scenario_shares)
        and all(_at_least(share, ATTACK_SCENARIO_STOPPED_SHARE_MIN) for share in scenario_shares),
        "honest_challenged": _at_most(report.honest_challenged_share, HONEST_CHALLENGED_SHARE_MAX),
        "honest_blocked": _at_most(report.honest_blocked_share, HONEST_BLOCKED_SHARE_MAX),
        "honest_passkey_logins_challenged": _at_most(
            report.honest_passkey_logins_challenged_share,
            HONEST_PASSKEY_LOGINS_CHALLENGED_SHARE_MAX,
        ),
        "password_only_logins_allowed": report.password_only_logins_allowed
        <= PASSWORD_ONLY_LOGINS_ALLOWED_MAX,
    }


def _decisions_by_id(
    decisions: Iterable[Mapping[str, object]],
) -> dict[str, tuple[str, frozenset[str]]]:
    """Each decision's action and named factors, by event id."""
    by_id: dict[str, tuple[str, frozenset[str]]] = {}
    for index, decision in enumerate(decisions):
        if index >= EVENTS_MAX:
            raise ValueError(f"more than {EVENTS_MAX} decisions")
        decision_id = _text(decision, "id", "a decision")
        if decision_id in by_id:
            raise ValueError(f"two decisions for event {decision_id!r}")
        action = decision.get("action")
        if not isinstance(action, str) or action not in ACTIONS:
            raise ValueError(f"decision {decision_id!r}: unknown action {action!r}")
        by_id[decision_id] = (action, _names(decision, "factors", decision_id))
    return by_id


def _text(record: Mapping[str, object], key: str, what: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} without a string {key!r}: {dict(record)!r:.200}")
    return value


def _label(event: Mapping[str, object], event_id: str) -> tuple[str, bool]:
    label = event.get("label")
    if not isinstance(label, Mapping):
        raise ValueError(f"event {event_id!r} has no label")
    scenario, attack = label.get("scenario"), label.get("attack")
    if not isinstance(scenario, str) or not isinstance(attack, bool):
        raise ValueError(f"event {event_id!r}: a label needs a string scenario and a bool attack")
    return scenario, attack


def _names(record: Mapping[str, object], key: str, event_id: str) -> frozenset[str]:
    """A list of factor names; absent means none (an event that holds nothing, a decision that
    names nothing)."""
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"{event_id!r}: {key} must be a list of factor names")
    return frozenset(value)


def _stops(action: str, factors: frozenset[str], holds: frozenset[str]) -> bool:
    if action in HOLDING_ACTIONS:
        return True
    # A challenge stops the attacker only if it asks for something they do not have.
    return action == "challenge" and not factors <= holds


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _at_least(share: float | None, minimum: float) -> bool:
    return share is not None and share >= minimum


def _at_most(share: float | None, maximum: float) -> bool:
    return share is not None and share <= maximum


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.2%}"


def _measures(report: Report) -> list[tuple[str, str, str, str]]:
    """(target key, label, value, target) for the table."""
    shares = [r.share for r in report.attack_scenarios]
    measured = [share for share in shares if share is not None]
    worst = min(measured) if measured and len(measured) == len(shares) else None
    return [
        (
            "attack_stopped",
            "attack payments stopped",
            _percent(report.attack_stopped_share),
            f">= {ATTACK_STOPPED_SHARE_MIN:.0%}",
        ),
        (
            "attack_stopped_every_scenario",
            "attack payments stopped, worst scenario",
            _percent(worst),
            f">= {ATTACK_SCENARIO_STOPPED_SHARE_MIN:.0%}",
        ),
        (
            "honest_challenged",
            "honest payments challenged",
            _percent(report.honest_challenged_share),
            f"<= {HONEST_CHALLENGED_SHARE_MAX:.0%}",
        ),
        (
            "honest_blocked",
            "honest payments blocked or held for review",
            _percent(report.honest_blocked_share),
            f"<= {HONEST_BLOCKED_SHARE_MAX:.1%}",
        ),
        (
            "honest_passkey_logins_challenged",
            "honest passkey logins challenged or blocked",
            _percent(report.honest_passkey_logins_challenged_share),
            f"<= {HONEST_PASSKEY_LOGINS_CHALLENGED_SHARE_MAX:.0%}",
        ),
        (
            "password_only_logins_allowed",
            "password-only logins allowed",
            str(report.password_only_logins_allowed),
            f"== {PASSWORD_ONLY_LOGINS_ALLOWED_MAX}",
        ),
    ]
