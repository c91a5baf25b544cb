"""Authentication flows as objects (after Ory Kratos' self-service flows).

A flow has an id, the access point it serves, the paths the user may take, the factors done so
far (each with its time), attempts left, an expiry, and what it is bound to. Every change goes
through ``transition``: the server decides the next step and refuses a step the flow does not
expect now, so a client cannot skip a factor or answer them out of order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from zeropay.domain.errors import FlowEnded, FlowStepRefused, invariant
from zeropay.domain.factors import Factor
from zeropay.domain.policy import AccessPoint, Path, PointPolicy
from zeropay.domain.sessions import AuthMethod

# The binding key of a flow started by an email address, for whoever it belongs to. It offers
# the policy's paths until a factor proves the person (then it narrows to what the user holds),
# so its answers are the same for an account with any factors, one with none, and no account.
ADDRESSED = "addressed"


class FlowState(StrEnum):
    ACTIVE = "active"
    COMPLETE = "complete"
    FAILED = "failed"  # attempts used up; a new flow must start afresh


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    point: AccessPoint
    user_id: str | None  # None while a passkey login has not said who it is
    state: FlowState
    paths: tuple[Path, ...]
    done: tuple[AuthMethod, ...]
    attempts_left: int
    issued_at: datetime
    expires_at: datetime
    # What the flow is bound to: the device key that started it (``jkt``), a device being
    # registered, a session being stepped up. A step from anything else is refused.
    binding: Mapping[str, str] = field(default_factory=dict)

    @property
    def done_factors(self) -> tuple[Factor, ...]:
        return tuple(Factor(m.factor) for m in self.done)

    def next_factors(self) -> frozenset[Factor]:
        """The factors that may come next: the next one on every path whose beginning matches
        what is done. Empty once the flow is complete."""
        done = self.done_factors
        return frozenset(
            p[len(done)] for p in self.paths if len(p) > len(done) and p[: len(done)] == done
        )

    def is_complete(self) -> bool:
        return self.done_factors in self.paths

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def status(self, now: datetime) -> str:
        if self.state is FlowState.ACTIVE and self.is_expired(now):
            return "expired"
        return self.state.value


def start_flow(
    *,
    flow_id: str,
    point: AccessPoint,
    rule: PointPolicy,
    paths: tuple[Path, ...],
    user_id: str | None,
    now: datetime,
    binding: Mapping[str, str] | None = None,
    done: tuple[AuthMethod, ...] = (),
    asked: tuple[Path, ...] = (),
) -> Flow:
    """``asked``: paths beyond the policy's that the risk engine asked for (it may ask for more
    than the policy, never for less)."""
    invariant(bool(paths), "a flow has at least one path")
    invariant(
        all(p in rule.paths or p in asked or _is_waived(p, rule) for p in paths),
        "paths from the policy or the risk engine",
    )
    flow = Flow(
        id=flow_id,
        point=point,
        user_id=user_id,
        state=FlowState.ACTIVE,
        paths=paths,
        done=done,
        attempts_left=rule.attempts_max,
        issued_at=now,
        expires_at=now + timedelta(seconds=rule.ttl_s),
        binding=dict(binding or {}),
    )
    invariant(bool(flow.next_factors()), "a new flow has a step to take")
    return flow


def _is_waived(path: Path, rule: PointPolicy) -> bool:
    return any(
        tuple(f for f in full if f in path or f not in rule.waived_when_unavailable) == path
        and set(full) - set(path) <= rule.waived_when_unavailable
        for full in rule.paths
    )


def check_step(flow: Flow, factor: Factor, now: datetime) -> None:
    """Refuse, before any secret is checked, a step this flow does not expect now."""
    if flow.state is not FlowState.ACTIVE:
        raise FlowEnded(f"this flow is {flow.state.value}; start a new one", reason=flow.state)
    if flow.is_expired(now):
        raise FlowEnded("this flow has expired; start a new one", reason="expired")
    expected = flow.next_factors()
    if factor not in expected:
        raise FlowStepRefused(
            f"the flow does not expect {factor.value} now",
            next=sorted(f.value for f in expected),
        )


@dataclass(frozen=True, slots=True)
class FactorPassed:
    factor: Factor


@dataclass(frozen=True, slots=True)
class FactorFailed:
    factor: Factor


@dataclass(frozen=True, slots=True)
class Identified:
    """A passkey login learns who the user is from the credential."""

    user_id: str
    paths: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class Narrowed:
    """A flow started by an email address offers every path the policy has, whoever the address
    belongs to (or whether anyone does). Once a factor proves the person, it narrows to the
    paths this user can take."""

    paths: tuple[Path, ...]


FlowEvent = FactorPassed | FactorFailed | Identified | Narrowed


def transition(flow: Flow, event: FlowEvent, now: datetime) -> Flow:
    match event:
        case Identified(user_id=user_id, paths=paths):
            if flow.state is not FlowState.ACTIVE or flow.is_expired(now):
                raise FlowEnded("this flow has ended; start a new one", reason="ended")
            invariant(flow.user_id in (None, user_id), "a flow serves one user")
            invariant(not flow.done, "identification comes before any factor")
            return replace(flow, user_id=user_id, paths=paths)
        case Narrowed(paths=paths):
            if flow.state is not FlowState.ACTIVE or flow.is_expired(now):
                raise FlowEnded("this flow has ended; start a new one", reason="ended")
            invariant(flow.user_id is not None, "a flow narrows for a known user")
            done = flow.done_factors
            invariant(
                bool(paths) and all(p[: len(done)] == done and len(p) > len(done) for p in paths),
                "a narrowed path continues what is done",
            )
            return replace(flow, paths=paths)
        case FactorPassed(factor=factor):
            check_step(flow, factor, now)
            passed = replace(flow, done=(*flow.done, AuthMethod(factor.value, now)))
            if passed.is_complete():
                return replace(passed, state=FlowState.COMPLETE)
            return passed
        case FactorFailed(factor=factor):
            check_step(flow, factor, now)
            left = flow.attempts_left - 1
            invariant(left >= 0, "attempts never go below zero")
            return replace(
                flow, attempts_left=left, state=FlowState.FAILED if left == 0 else flow.state
            )
