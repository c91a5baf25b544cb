"""SQL store of consents: one row per user and signal group once the user chose (no row: given)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.domain.consents import Consent, SignalGroup

_T = t.consents


class ConsentRepository(_Repo):
    def of_user(self, user_id: str, *, lock: bool = False) -> dict[SignalGroup, Consent]:
        stmt = select(_T).where(_T.c.user_id == user_id)
        rows = self.c.execute(self._for_update(stmt) if lock else stmt).all()
        return {
            SignalGroup(r.signal_group): Consent(
                SignalGroup(r.signal_group), bool(r.given), _aware(r.changed_at)
            )
            for r in rows
        }

    def save(self, user_id: str, consent: Consent) -> None:
        assert consent.changed_at is not None
        values = {"given": consent.given, "changed_at": consent.changed_at}
        insert = pg_insert if self.c.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(_T).values(user_id=user_id, signal_group=consent.group.value, **values)
        self.c.execute(
            stmt.on_conflict_do_update(
                index_elements=[_T.c.user_id, _T.c.signal_group], set_=values
            )
        )

    def remove_all(self, user_id: str) -> int:
        return self.c.execute(delete(_T).where(_T.c.user_id == user_id)).rowcount
