"""SQL store of the platform's fraud rate (PSD2 RTS Art. 18-20): fraud reports, and the closed
days and quarters with the value captured and the value of fraud reported in each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _is_unique_violation, _Repo
from zeropay.domain.fraud import ClosedPeriod, FraudKind, FraudReport, PeriodKind, Reporter, Totals
from zeropay.domain.ledger import TransferKind
from zeropay.domain.money import Money, currency

# Money moves from a payer to a merchant in a transfer with this code (services.payments): posted
# at once (automatic capture), or a hold posted later (manual capture, a review approved, a
# confirmation that passed SCA). A hold itself, and one voided or expired, captures nothing.
_PAYMENT_CODE = "payment"
_CAPTURING = (TransferKind.POSTED.value, TransferKind.POST_PENDING.value)

_R = t.fraud_reports.c
_P = t.fraud_periods.c
_T = t.fraud_period_totals.c


def _report(row: Row[Any]) -> FraudReport:
    return FraudReport(
        id=row.id,
        payment_id=row.payment_id,
        kind=FraudKind(row.kind),
        amount=Money(row.amount_minor, currency(row.currency)),
        counted_minor=row.counted_minor,
        reporter=Reporter(row.reporter),
        reported_by=row.reported_by,
        reason=row.reason,
        reported_at=_aware(row.reported_at),
    )


def _sums(rows: Any) -> dict[str, int]:
    # PostgreSQL sums BIGINT into NUMERIC: back to int, exactly.
    return {code: int(total) for code, total in rows if total}


class FraudRepository(_Repo):
    def add_report(self, report: FraudReport) -> bool:
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.fraud_reports).values(
                        id=report.id,
                        payment_id=report.payment_id,
                        kind=report.kind.value,
                        amount_minor=report.amount.amount_minor,
                        counted_minor=report.counted_minor,
                        currency=report.amount.currency.code,
                        reporter=report.reporter.value,
                        reported_by=report.reported_by,
                        reason=report.reason,
                        reported_at=report.reported_at,
                    )
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False
            raise
        return True

    def reports_of(self, payment_id: str) -> list[FraudReport]:
        rows = self.c.execute(
            select(t.fraud_reports)
            .where(_R.payment_id == payment_id)
            .order_by(_R.reported_at, _R.id)
        ).all()
        return [_report(r) for r in rows]

    def captured_between(self, start: datetime, end: datetime) -> dict[str, int]:
        lt = t.ledger_transfers.c
        return _sums(
            self.c.execute(
                select(lt.currency, func.sum(lt.amount_minor))
                .where(
                    lt.code == _PAYMENT_CODE,
                    lt.created_at >= start,
                    lt.created_at < end,
                    lt.kind.in_(_CAPTURING),
                )
                .group_by(lt.currency)
            ).all()
        )

    def fraud_between(self, start: datetime, end: datetime) -> dict[str, int]:
        return _sums(
            self.c.execute(
                select(_R.currency, func.sum(_R.counted_minor))
                .where(_R.reported_at >= start, _R.reported_at < end)
                .group_by(_R.currency)
            ).all()
        )

    def close(self, period: ClosedPeriod, now: datetime) -> bool:
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.fraud_periods).values(
                        kind=period.kind.value,
                        starts_at=period.starts_at,
                        ends_at=period.ends_at,
                        closed_at=now,
                    )
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False
            raise
        totals = period.totals
        rows = [
            {
                "kind": period.kind.value,
                "starts_at": period.starts_at,
                "currency": code,
                "captured_minor": totals.captured_minor.get(code, 0),
                "fraud_minor": totals.fraud_minor.get(code, 0),
            }
            for code in totals.currencies()
        ]
        if rows:
            self.c.execute(insert(t.fraud_period_totals), rows)
        return True

    def closed(self, kind: PeriodKind, *, since: datetime) -> set[datetime]:
        rows = self.c.execute(
            select(_P.starts_at).where(_P.kind == kind.value, _P.starts_at >= since)
        ).scalars()
        return {_aware(r) for r in rows}

    def newest_closed(self, kind: PeriodKind) -> datetime | None:
        newest = self.c.execute(
            select(func.max(_P.starts_at)).where(_P.kind == kind.value)
        ).scalar_one_or_none()
        return None if newest is None else _aware(newest)

    def day_totals(self, first: datetime, last: datetime) -> Totals:
        rows = self.c.execute(
            select(_T.currency, func.sum(_T.captured_minor), func.sum(_T.fraud_minor))
            .where(_T.kind == PeriodKind.DAY.value, _T.starts_at >= first, _T.starts_at <= last)
            .group_by(_T.currency)
        ).all()
        return Totals(
            captured_minor={code: int(captured) for code, captured, _ in rows},
            fraud_minor={code: int(fraud) for code, _, fraud in rows},
        )

    def quarters(self, *, since: datetime) -> list[ClosedPeriod]:
        rows = self.c.execute(
            select(_P.starts_at, _P.ends_at, _T.currency, _T.captured_minor, _T.fraud_minor)
            .select_from(
                t.fraud_periods.outerjoin(
                    t.fraud_period_totals,
                    and_(_T.kind == _P.kind, _T.starts_at == _P.starts_at),
                )
            )
            .where(_P.kind == PeriodKind.QUARTER.value, _P.starts_at >= since)
            .order_by(_P.starts_at.desc(), _T.currency)
        ).all()
        spans: dict[datetime, datetime] = {}
        captured: dict[datetime, dict[str, int]] = {}
        fraud: dict[datetime, dict[str, int]] = {}
        for row in rows:
            start = _aware(row.starts_at)
            spans[start] = _aware(row.ends_at)
            captured.setdefault(start, {})
            fraud.setdefault(start, {})
            if row.currency is not None:  # a quarter with no money at all has no totals
                captured[start][row.currency] = row.captured_minor
                fraud[start][row.currency] = row.fraud_minor
        return [
            ClosedPeriod(PeriodKind.QUARTER, start, end, Totals(captured[start], fraud[start]))
            for start, end in spans.items()
        ]
