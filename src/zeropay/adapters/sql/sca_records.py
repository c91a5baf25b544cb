"""SQL store of SCA exemptions: the payer's counters since the last SCA, every decision, trusted
beneficiaries and recurring series (PSD2 RTS Art. 13, 14, 16).

The counter row is created by the statement that locks it (a FOR UPDATE that finds no row would
lock nothing), so the first two payments of a new payer serialise like every later pair.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.domain.exemptions import Counters
from zeropay.domain.money import Money, currency
from zeropay.services.ports import ScaDecisionRecord, SeriesRecord, TrustedBeneficiary

_C = t.sca_counters.c
# Typed like the table's columns: a textual statement otherwise binds and returns raw values,
# and SQLite hands back its stored timestamps as strings.
_LOCK_COUNTERS = (
    text(
        "INSERT INTO sca_counters (user_id, exempt_count, spent, last_sca_at, updated_at)"
        " VALUES (:user_id, 0, '{}', NULL, :now)"
        " ON CONFLICT (user_id) DO UPDATE SET updated_at = sca_counters.updated_at"
        " RETURNING exempt_count, spent, last_sca_at"
    )
    .bindparams(bindparam("now", type_=_C.updated_at.type))
    .columns(_C.exempt_count, _C.spent, _C.last_sca_at)
)


def _counters(row: Any) -> tuple[Counters, datetime | None]:
    if row is None:
        return Counters(), None
    spent = {str(k): int(v) for k, v in orjson.loads(row.spent).items()}
    last = _aware(row.last_sca_at) if row.last_sca_at is not None else None
    return Counters(count=int(row.exempt_count), spent_minor=spent), last


def _decision(row: Row[Any]) -> ScaDecisionRecord:
    return ScaDecisionRecord(
        id=row.id,
        payment_id=row.payment_id,
        user_id=row.user_id,
        exemption=row.exemption,
        reasons=tuple(orjson.loads(row.reasons)),
        profile=row.profile,
        flow_id=row.flow_id,
        outcome=row.outcome,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


class ScaRepository(_Repo):
    # ---- counters -----------------------------------------------------------------------------

    def lock_counters(self, user_id: str, now: datetime) -> tuple[Counters, datetime | None]:
        return _counters(self.c.execute(_LOCK_COUNTERS, {"user_id": user_id, "now": now}).one())

    def read_counters(self, user_id: str) -> tuple[Counters, datetime | None]:
        x = t.sca_counters.c
        row = self.c.execute(
            select(x.exempt_count, x.spent, x.last_sca_at).where(x.user_id == user_id)
        ).first()
        return _counters(row)

    def save_counters(
        self, user_id: str, counters: Counters, *, last_sca_at: datetime | None, now: datetime
    ) -> None:
        x = t.sca_counters.c
        self.c.execute(
            update(t.sca_counters)
            .where(x.user_id == user_id)
            .values(
                exempt_count=counters.count,
                spent=orjson.dumps(dict(sorted(counters.spent_minor.items()))).decode(),
                last_sca_at=last_sca_at,
                updated_at=now,
            )
        )

    # ---- decisions ----------------------------------------------------------------------------

    def add_decision(self, decision: ScaDecisionRecord) -> None:
        self.c.execute(
            insert(t.sca_decisions).values(
                id=decision.id,
                payment_id=decision.payment_id,
                user_id=decision.user_id,
                exemption=decision.exemption,
                reasons=orjson.dumps(list(decision.reasons)).decode(),
                profile=decision.profile,
                flow_id=decision.flow_id,
                outcome=decision.outcome,
                created_at=decision.created_at,
                updated_at=decision.updated_at,
            )
        )

    def set_outcome(self, decision_id: str, outcome: str, now: datetime) -> None:
        x = t.sca_decisions.c
        self.c.execute(
            update(t.sca_decisions)
            .where(x.id == decision_id)
            .values(outcome=outcome, updated_at=now)
        )

    def decision_of_flow(self, flow_id: str) -> ScaDecisionRecord | None:
        x = t.sca_decisions.c
        row = self.c.execute(select(t.sca_decisions).where(x.flow_id == flow_id)).first()
        return None if row is None else _decision(row)

    def open_decision(self, payment_id: str) -> ScaDecisionRecord | None:
        x = t.sca_decisions.c
        row = self.c.execute(
            select(t.sca_decisions)
            .where(x.payment_id == payment_id, x.outcome == "challenged")
            .order_by(x.created_at.desc(), x.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _decision(row)

    def decisions_of(self, user_id: str, *, limit: int) -> list[ScaDecisionRecord]:
        x = t.sca_decisions.c
        rows = self.c.execute(
            select(t.sca_decisions)
            .where(x.user_id == user_id)
            .order_by(x.created_at.desc(), x.id.desc())
            .limit(limit)
        )
        return [_decision(r) for r in rows]

    # ---- trusted beneficiaries ----------------------------------------------------------------

    def trusted(self, user_id: str) -> list[TrustedBeneficiary]:
        x, m = t.trusted_beneficiaries.c, t.merchants.c
        rows = self.c.execute(
            select(x.merchant_id, m.name, x.created_at)
            .join(t.merchants, m.id == x.merchant_id)
            .where(x.user_id == user_id)
            .order_by(x.created_at, x.merchant_id)
        )
        return [TrustedBeneficiary(r.merchant_id, r.name, _aware(r.created_at)) for r in rows]

    def is_trusted(self, user_id: str, merchant_id: str) -> bool:
        x = t.trusted_beneficiaries.c
        found = self.c.execute(
            select(x.user_id).where(x.user_id == user_id, x.merchant_id == merchant_id)
        ).first()
        return found is not None

    def add_trusted(self, user_id: str, merchant_id: str, session_id: str, now: datetime) -> bool:
        """False when the payee was already trusted (nothing changes)."""
        if self.is_trusted(user_id, merchant_id):
            return False
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.trusted_beneficiaries).values(
                        user_id=user_id,
                        merchant_id=merchant_id,
                        session_id=session_id,
                        created_at=now,
                    )
                )
        except IntegrityError:
            return False  # added by a racing request a moment ago
        return True

    def remove_trusted(self, user_id: str, merchant_id: str) -> bool:
        x = t.trusted_beneficiaries.c
        gone = self.c.execute(
            delete(t.trusted_beneficiaries).where(
                x.user_id == user_id, x.merchant_id == merchant_id
            )
        )
        return bool(gone.rowcount)

    # ---- recurring series ---------------------------------------------------------------------

    def series(self, merchant_id: str, series_ref: str, user_id: str) -> SeriesRecord | None:
        x = t.recurring_series.c
        row = self.c.execute(
            select(t.recurring_series).where(
                x.merchant_id == merchant_id, x.series_ref == series_ref, x.user_id == user_id
            )
        ).first()
        if row is None:
            return None
        return SeriesRecord(
            merchant_id=row.merchant_id,
            series_ref=row.series_ref,
            user_id=row.user_id,
            amount=Money(row.amount_minor, currency(row.currency)),
            first_payment_id=row.first_payment_id,
            created_at=_aware(row.created_at),
        )

    def add_series(self, series: SeriesRecord) -> None:
        self.c.execute(
            insert(t.recurring_series).values(
                merchant_id=series.merchant_id,
                series_ref=series.series_ref,
                user_id=series.user_id,
                amount_minor=series.amount.amount_minor,
                currency=series.amount.currency.code,
                first_payment_id=series.first_payment_id,
                created_at=series.created_at,
            )
        )
