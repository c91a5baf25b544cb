"""SQL store of the risk engine: one JSON document per user, device, IP and payee, locked by
each event that changes it, and every live decision with the event it decided.

Records are locked in one order everywhere (sorted by kind, then subject), so two events that
share a device and an IP cannot deadlock. A record that does not exist yet is created by the
same statement that locks it (a FOR UPDATE that finds no row would lock nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import TextClause, select, text, tuple_, update
from sqlalchemy.engine import Row

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.domain.factors import Factor
from zeropay.domain.risk.engine import Action, RiskDecision
from zeropay.services.ports import Document, RecordKey, StoredAssessment

_EMPTY = b"{}"


def _assessment(row: Row[Any]) -> StoredAssessment:
    return StoredAssessment(
        id=row.id,
        user_subject=row.user_subject,
        event_type=row.event_type,
        ref=row.ref,
        decision=RiskDecision(
            action=Action(row.action),
            score=row.score,
            reasons=tuple(orjson.loads(row.reasons)),
            factors=tuple(Factor(f) for f in orjson.loads(row.factors)),
            config_version=row.config_version,
        ),
        event=orjson.loads(row.event),
        state=row.state,
        created_at=_aware(row.created_at),
    )


@lru_cache(maxsize=8)
def _upsert_returning(n: int) -> TextClause:
    """Create the records that do not exist and lock all of them, in one statement: an upsert
    whose update changes nothing still takes the row lock (PostgreSQL), rows are taken in the
    order given (sorted by kind, then subject, so two events cannot deadlock), and each row
    comes back with its document. SQLite runs the same text (3.35+); its transaction already
    holds the database's write lock."""
    rows = ", ".join(f"(:k{i}, :s{i}, '{{}}', :now)" for i in range(n))
    sql = (
        "INSERT INTO risk_records (kind, subject, body, updated_at) VALUES "  # noqa: S608
        + rows  # bind placeholders only: n is a count
        + " ON CONFLICT (kind, subject) DO UPDATE SET updated_at = risk_records.updated_at"
        " RETURNING kind, subject, body"
    )
    return text(sql)


_ADD = t.risk_assessments.insert()  # built once; its compiled form is cached

_SAVE = text(
    "UPDATE risk_records SET body = :b, updated_at = :now WHERE kind = :k AND subject = :s"
)


class RiskRepository(_Repo):
    def lock_records(self, keys: Sequence[RecordKey], now: datetime) -> dict[RecordKey, Document]:
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        params: dict[str, object] = {"now": now}
        for i, (kind, subject) in enumerate(ordered):
            params[f"k{i}"], params[f"s{i}"] = kind, subject
        rows = self.c.execute(_upsert_returning(len(ordered)), params).all()
        return {(row.kind, row.subject): orjson.loads(row.body or _EMPTY) for row in rows}

    def save_records(self, bodies: dict[RecordKey, Document], now: datetime) -> None:
        if not bodies:
            return
        self.c.execute(
            _SAVE,
            [
                {"k": k, "s": s, "b": orjson.dumps(body).decode(), "now": now}
                for (k, s), body in sorted(bodies.items())
            ],
        )

    def read_record(self, key: RecordKey) -> Document | None:
        r = t.risk_records.c
        body = self.c.execute(
            select(r.body).where(r.kind == key[0], r.subject == key[1])
        ).scalar_one_or_none()
        return None if body is None else dict(orjson.loads(body))

    def purge_idle(self, idle_before: datetime, *, limit: int) -> int:
        """Forget device, IP and payee records, and the records of addresses that name no
        account, that no event has touched since ``idle_before``. A user's own record stays."""
        r = t.risk_records.c
        stale = (
            select(r.kind, r.subject)
            .where(
                r.updated_at < idle_before,
                (r.kind != "user") | r.subject.startswith("addr:"),
            )
            .limit(limit)
        )
        keys = [(row.kind, row.subject) for row in self.c.execute(stale)]
        if not keys:
            return 0
        return int(
            self.c.execute(
                t.risk_records.delete().where(
                    tuple_(r.kind, r.subject).in_(keys), r.updated_at < idle_before
                )
            ).rowcount
        )

    def add_assessment(self, assessment: StoredAssessment) -> None:
        d = assessment.decision
        self.c.execute(
            _ADD,
            dict(
                id=assessment.id,
                user_subject=assessment.user_subject,
                event_type=assessment.event_type,
                ref=assessment.ref,
                action=d.action.value,
                score=d.score,
                reasons=orjson.dumps(list(d.reasons)).decode(),
                factors=orjson.dumps([f.value for f in d.factors]).decode(),
                config_version=d.config_version,
                event=orjson.dumps(assessment.event).decode(),
                state=assessment.state,
                created_at=assessment.created_at,
            ),
        )

    def assessment(self, assessment_id: str, *, lock: bool = False) -> StoredAssessment | None:
        stmt = select(t.risk_assessments).where(t.risk_assessments.c.id == assessment_id)
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return _assessment(row) if row is not None else None

    def set_state(self, assessment_id: str, *, state: str, now: datetime) -> None:
        a = t.risk_assessments.c
        self.c.execute(
            update(t.risk_assessments)
            .where(a.id == assessment_id)
            .values(state=state, settled_at=now)
        )

    def recent(self, user_subject: str, *, limit: int) -> list[StoredAssessment]:
        a = t.risk_assessments.c
        rows = self.c.execute(
            select(t.risk_assessments)
            .where(a.user_subject == user_subject)
            .order_by(a.created_at.desc(), a.id.desc())
            .limit(limit)
        ).all()
        return [_assessment(row) for row in rows]
