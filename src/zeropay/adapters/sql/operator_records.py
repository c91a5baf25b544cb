"""SQL store of operators: their roles, and the queue of payments held for review with the risk
decision that held each one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import (
    OUR_ID,
    _aware,
    _is_unique_violation,
    _payment,
    _Repo,
)
from zeropay.adapters.sql.risk_records import _assessment
from zeropay.domain.operators import Role
from zeropay.domain.payments import Payment, PaymentStatus
from zeropay.services.ports import HeldForReview, RoleGrant, StoredAssessment

_REVIEW = "review"


def _grant(row: Row[Any]) -> RoleGrant:
    return RoleGrant(
        user_id=row.user_id,
        role=Role(row.role),
        granted_at=_aware(row.granted_at),
        granted_by=row.granted_by,
    )


class OperatorRepository(_Repo):
    def roles_of(self, user_id: str) -> frozenset[Role]:
        o = t.operator_roles.c
        rows = self.c.execute(select(o.role).where(o.user_id == user_id)).scalars()
        return frozenset(Role(r) for r in rows)

    def grant(self, user_id: str, role: Role, *, granted_by: str, now: datetime) -> bool:
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.operator_roles).values(
                        user_id=user_id, role=role.value, granted_at=now, granted_by=granted_by
                    )
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False
            raise
        return True

    def revoke(self, user_id: str, role: Role) -> bool:
        o = t.operator_roles.c
        gone = self.c.execute(
            delete(t.operator_roles).where(o.user_id == user_id, o.role == role.value)
        ).rowcount
        return bool(gone == 1)

    def grants(self, *, limit: int) -> list[RoleGrant]:
        o = t.operator_roles.c
        rows = self.c.execute(
            select(t.operator_roles).order_by(o.granted_at, o.user_id, o.role).limit(limit)
        )
        return [_grant(r) for r in rows]

    def in_review(self, *, limit: int, starting_after: Payment | None) -> list[HeldForReview]:
        p, m = t.payments.c, t.merchants.c
        stmt = (
            select(t.payments, m.name.label("merchant_name"))
            .join(t.merchants, m.id == p.merchant_id)
            .where(p.status == PaymentStatus.IN_REVIEW.value)
        )
        if starting_after is not None:
            stmt = stmt.where(
                or_(
                    p.created_at > starting_after.created_at,
                    and_(p.created_at == starting_after.created_at, p.id > starting_after.id),
                )
            )
        rows = self.c.execute(stmt.order_by(p.created_at, p.id).limit(limit)).all()
        held = self._review_decisions([r.id for r in rows])
        return [HeldForReview(_payment(r), r.merchant_name, held.get(r.id)) for r in rows]

    def _review_decisions(self, payment_ids: list[str]) -> dict[str, StoredAssessment]:
        """The newest review decision of each payment (a payment may have been challenged
        before it was held)."""
        if not payment_ids:
            return {}
        a = t.risk_assessments.c
        rows = self.c.execute(
            select(t.risk_assessments)
            .where(a.ref.in_(payment_ids), a.action == _REVIEW)
            .order_by(a.created_at, a.id)
        ).all()
        return {row.ref: _assessment(row) for row in rows}  # the newest of each ref wins

    def decisions_about(self, payment_id: str, *, limit: int) -> list[StoredAssessment]:
        if not OUR_ID.fullmatch(payment_id):
            return []
        a = t.risk_assessments.c
        rows = self.c.execute(
            select(t.risk_assessments)
            .where(a.ref == payment_id)
            .order_by(a.created_at.desc(), a.id.desc())
            .limit(limit)
        ).all()
        return [_assessment(row) for row in rows]
