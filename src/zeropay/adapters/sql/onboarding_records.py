"""SQL store of skip-and-return onboarding: one row per user and step once it left pending."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.domain.onboarding import Step, StepState, StepStatus

_T = t.onboarding_steps


def _state(row: Row[Any]) -> StepState:
    return StepState(
        step=Step(row.step),
        status=StepStatus(row.status),
        updated_at=_aware(row.updated_at),
        skipped_at=_aware(row.skipped_at) if row.skipped_at is not None else None,
        completed_at=_aware(row.completed_at) if row.completed_at is not None else None,
        reminders_sent=row.reminders_sent,
    )


class OnboardingRepository(_Repo):
    def states(self, user_id: str, *, lock: bool = False) -> dict[Step, StepState]:
        stmt = select(_T).where(_T.c.user_id == user_id)
        rows = self.c.execute(self._for_update(stmt) if lock else stmt).all()
        return {s.step: s for s in map(_state, rows)}

    def save(self, user_id: str, state: StepState) -> None:
        assert state.updated_at is not None
        values = {
            "status": state.status.value,
            "updated_at": state.updated_at,
            "skipped_at": state.skipped_at,
            "completed_at": state.completed_at,
            "reminders_sent": state.reminders_sent,
        }
        insert = pg_insert if self.c.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(_T).values(user_id=user_id, step=state.step.value, **values)
        self.c.execute(
            stmt.on_conflict_do_update(index_elements=[_T.c.user_id, _T.c.step], set_=values)
        )

    def skipped_before(
        self, before: datetime, *, reminders_below: int, limit: int
    ) -> list[tuple[str, StepState]]:
        """Skipped steps whose skip is older than ``before`` (the first reminder's delay), oldest
        first; the caller decides from the schedule which of them are due."""
        stmt = (
            select(_T)
            .where(
                and_(
                    _T.c.status == StepStatus.SKIPPED.value,
                    _T.c.skipped_at <= before,
                    _T.c.reminders_sent < reminders_below,
                )
            )
            .order_by(_T.c.skipped_at, _T.c.user_id, _T.c.step)
            .limit(limit)
        )
        return [(row.user_id, _state(row)) for row in self.c.execute(self._for_update(stmt))]
