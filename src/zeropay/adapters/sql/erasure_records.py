"""SQL store for erasure (GDPR Art. 17): the user's row marked erased, and the identity data that
anti-money-laundering record keeping keeps (``aml_retention``)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import AccountRepository, _aware, _Repo
from zeropay.domain.records import User
from zeropay.services.ports import RetainedIdentity


class ErasureRepository(_Repo):
    def lock_user(self, user_id: str) -> User | None:
        stmt = select(t.users).where(t.users.c.id == user_id)
        row = self.c.execute(self._for_update(stmt)).first()
        return None if row is None else AccountRepository._user(row)

    def mark_erased(self, user_id: str, *, email_index: bytes, password_hash: str) -> None:
        self.c.execute(
            update(t.users)
            .where(t.users.c.id == user_id)
            .values(status="erased", email_index=email_index, password_hash=password_hash)
        )

    def retain(self, identity: RetainedIdentity) -> None:
        self.c.execute(
            insert(t.aml_retention).values(
                user_id=identity.user_id,
                email_ciphertext=identity.email_ciphertext,
                erased_at=identity.erased_at,
                retained_until=identity.retained_until,
            )
        )

    def retained(self, user_id: str) -> RetainedIdentity | None:
        x = t.aml_retention.c
        row = self.c.execute(select(t.aml_retention).where(x.user_id == user_id)).first()
        if row is None:
            return None
        return RetainedIdentity(
            user_id=row.user_id,
            email_ciphertext=bytes(row.email_ciphertext),
            erased_at=_aware(row.erased_at),
            retained_until=_aware(row.retained_until),
        )
