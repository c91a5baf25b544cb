"""Consents in the privacy center: which of the risk engine's signal groups the signed-in user
lets it use (``domain.consents`` says what each group holds and what always stays).

Withholding a group is a change to how the account is protected, so it needs a strong sign-in
within ``recent_auth_s`` (as removing a factor does): otherwise a stolen session could switch off
the location signals that would have caught it paying from another continent. Giving a group
back needs no more than the session. Every change is audited, and withholding a group also
drops what the engine had already learned in it from the user's record (``engine.forget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from zeropay.domain.consents import Consent, SignalGroup, consents_of, parse_changes
from zeropay.domain.recovery import Restricted
from zeropay.domain.risk.engine import forget
from zeropay.domain.risk.state import dump_user, load_user
from zeropay.domain.sessions import Session, require_recent_auth
from zeropay.services import audit, recovery
from zeropay.services.context import AppContext, UnitOfWork
from zeropay.services.ports import RecordKey


@dataclass(frozen=True, slots=True)
class ConsentsView:
    user_id: str
    consents: Mapping[SignalGroup, Consent]  # every group


def mine(ctx: AppContext, session: Session) -> ConsentsView:
    user_id = session.user_id
    return ctx.read(lambda uow: ConsentsView(user_id, consents_of(uow.consents.of_user(user_id))))


def change(ctx: AppContext, session: Session, raw: object) -> ConsentsView:
    """Apply ``{"location": false, ...}``: a group set to what it already is changes nothing
    (no audit entry, the time it changed stays)."""
    changes = parse_changes(raw)
    user_id = session.user_id
    if not all(changes.values()):
        require_recent_auth(session, ctx.now(), ctx.policy.recent_auth_s)
        # a device that recovered the account lately does not switch off what would catch it
        recovery.check(ctx, session, Restricted.WITHHOLD_SIGNALS)

    def work(uow: UnitOfWork) -> ConsentsView:
        now = ctx.now()
        current = consents_of(uow.consents.of_user(user_id, lock=True))
        withdrawn: set[SignalGroup] = set()
        for group, given in changes.items():
            if current[group].given == given:
                continue
            uow.consents.save(user_id, Consent(group, given, now))
            audit.record(
                ctx,
                uow,
                "consent.given" if given else "consent.withheld",
                actor=user_id,
                subject=user_id,
                group=group.value,
            )
            if not given:
                withdrawn.add(group)
        if withdrawn:
            _forget(uow, user_id, frozenset(withdrawn), now)
        return ConsentsView(user_id, consents_of(uow.consents.of_user(user_id)))

    return ctx.run(work)


def _forget(uow: UnitOfWork, user_id: str, groups: frozenset[SignalGroup], now: datetime) -> None:
    """Drop what the engine learned about the user in ``groups`` (their record, if any)."""
    key: RecordKey = ("user", user_id)
    if uow.risk.read_record(key) is None:
        return
    user = load_user(uow.risk.lock_records([key], now)[key])
    forget(user, groups)
    uow.risk.save_records({key: dump_user(user)}, now)
