"""SQL store of account recoveries whose factors passed (``domain.recovery``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.domain.recovery import Recovery, RecoveryState

_T = t.recoveries


def _opt(value: datetime | None) -> datetime | None:
    return _aware(value) if value is not None else None


def _recovery(row: Row[Any]) -> Recovery:
    return Recovery(
        id=row.id,
        user_id=row.user_id,
        flow_id=row.flow_id,
        state=RecoveryState(row.state),
        factors=tuple(row.factors.split()),
        jkt=row.jkt,
        new_device=bool(row.new_device),
        password_replaced=bool(row.password_replaced),
        device_name=row.device_name,
        platform=row.platform,
        device_class=row.device_class,
        public_jwk=row.public_jwk,
        created_at=_aware(row.created_at),
        passed_at=_aware(row.passed_at),
        expires_at=_aware(row.expires_at),
        risk_reasons=tuple(row.risk_reasons.split()),
        device_id=row.device_id,
        cooling_until=_opt(row.cooling_until),
        decided_by=row.decided_by,
        decided_at=_opt(row.decided_at),
        decision_reason=row.decision_reason,
        completed_at=_opt(row.completed_at),
        reported_at=_opt(row.reported_at),
    )


def _values(r: Recovery) -> dict[str, Any]:
    return {
        "state": r.state.value,
        "password_replaced": r.password_replaced,
        "device_id": r.device_id,
        "cooling_until": r.cooling_until,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "decision_reason": r.decision_reason,
        "completed_at": r.completed_at,
        "reported_at": r.reported_at,
        "expires_at": r.expires_at,
    }


class RecoveryRepository(_Repo):
    def add(self, recovery: Recovery) -> None:
        r = recovery
        self.c.execute(
            insert(_T).values(
                id=r.id,
                user_id=r.user_id,
                flow_id=r.flow_id,
                factors=" ".join(r.factors),
                jkt=r.jkt,
                new_device=r.new_device,
                device_name=r.device_name,
                platform=r.platform,
                device_class=r.device_class,
                public_jwk=r.public_jwk,
                created_at=r.created_at,
                passed_at=r.passed_at,
                risk_reasons=" ".join(r.risk_reasons),
                **_values(r),
            )
        )

    def get(self, recovery_id: str, *, lock: bool = False) -> Recovery | None:
        stmt = select(_T).where(_T.c.id == recovery_id)
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return _recovery(row) if row is not None else None

    def by_flow(self, flow_id: str, *, lock: bool = False) -> Recovery | None:
        stmt = select(_T).where(_T.c.flow_id == flow_id)
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return _recovery(row) if row is not None else None

    def save(self, recovery: Recovery) -> None:
        self.c.execute(update(_T).where(_T.c.id == recovery.id).values(**_values(recovery)))

    def of_user(self, user_id: str, *, limit: int) -> list[Recovery]:
        stmt = (
            select(_T)
            .where(_T.c.user_id == user_id)
            .order_by(_T.c.created_at.desc(), _T.c.id.desc())
            .limit(limit)
        )
        return [_recovery(row) for row in self.c.execute(stmt)]

    def cooling(self, user_id: str, now: datetime) -> list[Recovery]:
        """The user's completed recoveries still cooling off."""
        stmt = select(_T).where(
            _T.c.user_id == user_id,
            _T.c.state == RecoveryState.COMPLETED.value,
            _T.c.cooling_until > now,
        )
        return [_recovery(row) for row in self.c.execute(stmt)]

    def in_state(self, state: RecoveryState, *, limit: int) -> list[Recovery]:
        stmt = (
            select(_T)
            .where(_T.c.state == state.value)
            .order_by(_T.c.created_at, _T.c.id)
            .limit(limit)
        )
        return [_recovery(row) for row in self.c.execute(stmt)]

    def delete_of_user(self, user_id: str) -> int:
        return self.c.execute(delete(_T).where(_T.c.user_id == user_id)).rowcount
