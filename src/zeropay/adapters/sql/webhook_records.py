"""SQL for merchant webhooks: endpoints and their encrypted secrets, the fan-out cursor over the
outbox, deliveries leased to one worker at a time, and the log of every attempt.

Claims take the rows they lease with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers in
many processes take different deliveries without waiting on each other; SQLite's ``BEGIN
IMMEDIATE`` already serialises writers. Every write is conditional on the lease it holds.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _Repo, aware
from zeropay.domain.errors import InvariantViolation
from zeropay.domain.webhooks import (
    Attempt,
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointStatus,
    FanoutCursor,
    OutboxEvent,
    Outcome,
    SecretPeriod,
    SeqGap,
    StoredSecret,
)
from zeropay.services.ports import PaymentEventRecord

_E = t.webhook_endpoints.c
_S = t.webhook_secrets.c
_D = t.webhook_deliveries.c
_A = t.webhook_attempts.c
_V = t.payment_events.c
# A multi-row INSERT stays well under SQLite's 32766 and PostgreSQL's 65535 bound parameters.
_INSERT_ROWS_MAX = 500


def _endpoint(r: Row) -> Endpoint:
    return Endpoint(
        id=r.id,
        merchant_id=r.merchant_id,
        url=r.url,
        status=EndpointStatus(r.status),
        created_at=_aware(r.created_at),
        disabled_at=aware(r.disabled_at),
    )


def _period(r: Row) -> SecretPeriod:
    return SecretPeriod(id=r.id, created_at=_aware(r.created_at), expires_at=aware(r.expires_at))


def _delivery(r: Row) -> Delivery:
    return Delivery(
        id=r.id,
        event_id=r.event_id,
        endpoint_id=r.endpoint_id,
        merchant_id=r.merchant_id,
        state=DeliveryState(r.state),
        attempts=r.attempts,
        next_attempt_at=_aware(r.next_attempt_at),
        created_at=_aware(r.created_at),
        finished_at=aware(r.finished_at),
        event_type=getattr(r, "type", None),
        leased_until=aware(r.leased_until),
    )


def _outbox_event(r: Row) -> OutboxEvent:
    return OutboxEvent(
        seq=r.seq, id=r.id, merchant_id=r.merchant_id, created_at=_aware(r.created_at)
    )


def _event_record(r: Row) -> PaymentEventRecord:
    return PaymentEventRecord(
        id=r.id,
        merchant_id=r.merchant_id,
        payment_id=r.payment_id,
        type=r.type,
        body=r.body,
        created_at=_aware(r.created_at),
    )


_DELIVERY_WITH_TYPE = select(t.webhook_deliveries, _V.type).join(
    t.payment_events, _V.id == _D.event_id
)


class WebhookRepository(_Repo):
    # ---- endpoints and secrets ------------------------------------------------------------------

    def lock_merchant(self, merchant_id: str) -> bool:
        """Serialise endpoint changes of one merchant (the count bound holds under races).
        FOR NO KEY UPDATE does not wait on the key-share locks that inserting payments takes."""
        stmt = select(t.merchants.c.id).where(t.merchants.c.id == merchant_id)
        if self._locking:
            stmt = stmt.with_for_update(key_share=True)
        return self.c.execute(stmt).first() is not None

    def active_endpoint_count(self, merchant_id: str) -> int:
        stmt = select(func.count()).where(
            _E.merchant_id == merchant_id, _E.status == EndpointStatus.ACTIVE.value
        )
        return int(self.c.execute(stmt).scalar_one())

    def add_endpoint(self, endpoint: Endpoint, secret: StoredSecret) -> None:
        self.c.execute(
            insert(t.webhook_endpoints).values(
                id=endpoint.id,
                merchant_id=endpoint.merchant_id,
                url=endpoint.url,
                status=endpoint.status.value,
                created_at=endpoint.created_at,
                disabled_at=endpoint.disabled_at,
            )
        )
        self.add_secret(endpoint.id, secret)

    def endpoint(
        self, merchant_id: str, endpoint_id: str, *, lock: bool = False
    ) -> Endpoint | None:
        stmt = select(t.webhook_endpoints).where(
            _E.id == endpoint_id, _E.merchant_id == merchant_id
        )
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _endpoint(row)

    def endpoints(
        self, merchant_id: str, *, limit: int, starting_after: str | None
    ) -> list[Endpoint]:
        """Newest first; after ``starting_after`` (an endpoint id) when given."""
        stmt = select(t.webhook_endpoints).where(_E.merchant_id == merchant_id)
        if starting_after is not None:
            cursor = self.endpoint(merchant_id, starting_after)
            if cursor is None:
                return []
            stmt = stmt.where(
                or_(
                    _E.created_at < cursor.created_at,
                    (_E.created_at == cursor.created_at) & (_E.id < cursor.id),
                )
            )
        stmt = stmt.order_by(_E.created_at.desc(), _E.id.desc()).limit(limit)
        return [_endpoint(r) for r in self.c.execute(stmt)]

    def active_endpoints(self, merchant_ids: Collection[str]) -> list[Endpoint]:
        if not merchant_ids:
            return []
        stmt = select(t.webhook_endpoints).where(
            _E.merchant_id.in_(sorted(merchant_ids)), _E.status == EndpointStatus.ACTIVE.value
        )
        return [_endpoint(r) for r in self.c.execute(stmt)]

    def disable_endpoint(self, endpoint_id: str, now: datetime) -> int:
        """Disable it, delete its secrets (nothing is signed for it again), and give up what it
        was still owed; the number of deliveries given up."""
        self.c.execute(
            update(t.webhook_endpoints)
            .where(_E.id == endpoint_id, _E.status == EndpointStatus.ACTIVE.value)
            .values(status=EndpointStatus.DISABLED.value, disabled_at=now)
        )
        self.c.execute(delete(t.webhook_secrets).where(_S.endpoint_id == endpoint_id))
        result = self.c.execute(
            update(t.webhook_deliveries)
            .where(_D.endpoint_id == endpoint_id, _D.state == DeliveryState.PENDING.value)
            .values(state=DeliveryState.GIVEN_UP.value, finished_at=now)
        )
        return int(result.rowcount)

    def add_secret(self, endpoint_id: str, secret: StoredSecret) -> None:
        self.c.execute(
            insert(t.webhook_secrets).values(
                id=secret.period.id,
                endpoint_id=endpoint_id,
                secret_ciphertext=secret.ciphertext,
                created_at=secret.period.created_at,
                expires_at=secret.period.expires_at,
            )
        )

    def secret_periods(self, endpoint_id: str) -> list[SecretPeriod]:
        stmt = (
            select(_S.id, _S.created_at, _S.expires_at)
            .where(_S.endpoint_id == endpoint_id)
            .order_by(_S.created_at.desc(), _S.id.desc())
        )
        return [_period(r) for r in self.c.execute(stmt)]

    def set_secret_expiry(self, endpoint_id: str, expiries: Mapping[str, datetime]) -> None:
        for secret_id, expires_at in expiries.items():
            self.c.execute(
                update(t.webhook_secrets)
                .where(_S.id == secret_id, _S.endpoint_id == endpoint_id)
                .values(expires_at=expires_at)
            )

    def purge_expired_secrets(self, endpoint_id: str, now: datetime) -> int:
        """Secrets whose overlap has ended sign nothing again: their ciphertext goes."""
        result = self.c.execute(
            delete(t.webhook_secrets).where(
                _S.endpoint_id == endpoint_id, _S.expires_at.is_not(None), _S.expires_at <= now
            )
        )
        return int(result.rowcount)

    # ---- fan-out ---------------------------------------------------------------------------------

    def lock_fanout(self) -> FanoutCursor:
        """The cursor, locked until the commit: one fan-out at a time, across processes."""
        stmt = select(t.webhook_fanout).where(t.webhook_fanout.c.id == 1)
        row = self.c.execute(self._for_update(stmt)).first()
        if row is None:
            raise InvariantViolation("the webhook fan-out cursor row is missing (migration 0008)")
        gaps = tuple(
            SeqGap(first_seq=int(a), last_seq=int(b), seen_at=_aware(datetime.fromisoformat(s)))
            for a, b, s in json.loads(row.gaps)
        )
        return FanoutCursor(last_seq=int(row.last_seq), gaps=gaps)

    def save_fanout(self, cursor: FanoutCursor, now: datetime) -> None:
        gaps = [[g.first_seq, g.last_seq, g.seen_at.isoformat()] for g in cursor.gaps]
        self.c.execute(
            update(t.webhook_fanout)
            .where(t.webhook_fanout.c.id == 1)
            .values(last_seq=cursor.last_seq, gaps=json.dumps(gaps), updated_at=now)
        )

    def events_after(self, seq: int, *, limit: int) -> list[OutboxEvent]:
        stmt = (
            select(_V.seq, _V.id, _V.merchant_id, _V.created_at)
            .where(_V.seq > seq)
            .order_by(_V.seq)
            .limit(limit)
        )
        return [_outbox_event(r) for r in self.c.execute(stmt)]

    def events_in_gaps(self, gaps: Sequence[SeqGap], *, limit: int) -> list[OutboxEvent]:
        if not gaps:
            return []
        stmt = (
            select(_V.seq, _V.id, _V.merchant_id, _V.created_at)
            .where(or_(*(_V.seq.between(g.first_seq, g.last_seq) for g in gaps)))
            .order_by(_V.seq)
            .limit(limit)
        )
        return [_outbox_event(r) for r in self.c.execute(stmt)]

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> int:
        """Insert the ones not there yet (the unique event-endpoint pair makes a second fan-out
        of one event a no-op); how many were new."""
        created = 0
        dialect_insert = pg_insert if self._locking else sqlite_insert
        for start in range(0, len(deliveries), _INSERT_ROWS_MAX):
            rows = [
                {
                    "id": d.id,
                    "event_id": d.event_id,
                    "endpoint_id": d.endpoint_id,
                    "merchant_id": d.merchant_id,
                    "state": d.state.value,
                    "attempts": d.attempts,
                    "next_attempt_at": d.next_attempt_at,
                    "created_at": d.created_at,
                }
                for d in deliveries[start : start + _INSERT_ROWS_MAX]
            ]
            stmt = (
                dialect_insert(t.webhook_deliveries)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["event_id", "endpoint_id"])
                .returning(_D.id)  # psycopg reports no rowcount for this statement
            )
            created += len(self.c.execute(stmt).all())
        return created

    # ---- delivery --------------------------------------------------------------------------------

    def claim_due(
        self, now: datetime, *, owner: str, until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries to ``owner`` until ``until``, with what an
        attempt needs. A delivery leased to another worker, or to a disabled endpoint, is
        skipped."""
        due = (
            select(_D.id)
            .join(t.webhook_endpoints, _E.id == _D.endpoint_id)
            .where(
                _D.state == DeliveryState.PENDING.value,
                _D.next_attempt_at <= now,
                or_(_D.leased_until.is_(None), _D.leased_until <= now),
                _E.status == EndpointStatus.ACTIVE.value,
            )
            .order_by(_D.next_attempt_at, _D.id)
            .limit(limit)
        )
        if self._locking:
            due = due.with_for_update(skip_locked=True, of=t.webhook_deliveries)
        ids = list(self.c.execute(due).scalars())
        if not ids:
            return []
        self.c.execute(
            update(t.webhook_deliveries)
            .where(_D.id.in_(ids))
            .values(leased_until=until, lease_owner=owner)
        )
        rows = self.c.execute(
            select(t.webhook_deliveries, _V.type, _V.body, _E.url)
            .join(t.payment_events, _V.id == _D.event_id)
            .join(t.webhook_endpoints, _E.id == _D.endpoint_id)
            .where(_D.id.in_(ids))
            .order_by(_D.next_attempt_at, _D.id)
        ).all()
        secrets = self._valid_secrets({r.endpoint_id for r in rows}, now)
        return [
            ClaimedDelivery(
                delivery=_delivery(r),
                lease_owner=owner,
                event_type=r.type,
                body=r.body,
                url=r.url,
                secrets=tuple(secrets.get(r.endpoint_id, ())),
            )
            for r in rows
        ]

    def _valid_secrets(
        self, endpoint_ids: Collection[str], now: datetime
    ) -> dict[str, list[StoredSecret]]:
        stmt = (
            select(t.webhook_secrets)
            .where(
                _S.endpoint_id.in_(sorted(endpoint_ids)),
                _S.created_at <= now,
                or_(_S.expires_at.is_(None), _S.expires_at > now),
            )
            .order_by(_S.created_at.desc(), _S.id.desc())
        )
        out: dict[str, list[StoredSecret]] = {}
        for r in self.c.execute(stmt):
            stored = StoredSecret(period=_period(r), ciphertext=bytes(r.secret_ciphertext))
            out.setdefault(r.endpoint_id, []).append(stored)
        return out

    def finish_attempt(
        self, attempt: Attempt, outcome: Outcome, *, owner: str, now: datetime
    ) -> bool:
        """Log the attempt, and move the delivery on if ``owner`` still holds its lease and it
        is still pending (its endpoint may have been disabled meanwhile). False: the lease was
        lost, and only the log changed."""
        self.c.execute(
            insert(t.webhook_attempts).values(
                delivery_id=attempt.delivery_id,
                attempt=attempt.attempt,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                status_code=attempt.status_code,
                error=attempt.error,
            )
        )
        pending = outcome.state is DeliveryState.PENDING
        values: dict[str, object] = {
            "state": outcome.state.value,
            "attempts": attempt.attempt,
            "leased_until": None,
            "lease_owner": None,
            "finished_at": None if pending else now,
        }
        if outcome.next_attempt_at is not None:
            values["next_attempt_at"] = outcome.next_attempt_at
        result = self.c.execute(
            update(t.webhook_deliveries)
            .where(
                _D.id == attempt.delivery_id,
                _D.lease_owner == owner,
                _D.state == DeliveryState.PENDING.value,
            )
            .values(**values)
        )
        return bool(result.rowcount == 1)

    # ---- what a merchant reads -------------------------------------------------------------------

    def delivery(self, merchant_id: str, delivery_id: str) -> Delivery | None:
        row = self.c.execute(
            _DELIVERY_WITH_TYPE.where(_D.id == delivery_id, _D.merchant_id == merchant_id)
        ).first()
        return None if row is None else _delivery(row)

    def deliveries_of_endpoint(
        self, endpoint_id: str, *, limit: int, starting_after: Delivery | None
    ) -> list[Delivery]:
        """Newest first, after ``starting_after`` when given."""
        stmt = _DELIVERY_WITH_TYPE.where(_D.endpoint_id == endpoint_id)
        if starting_after is not None:
            stmt = stmt.where(
                or_(
                    _D.created_at < starting_after.created_at,
                    (_D.created_at == starting_after.created_at) & (_D.id < starting_after.id),
                )
            )
        stmt = stmt.order_by(_D.created_at.desc(), _D.id.desc()).limit(limit)
        return [_delivery(r) for r in self.c.execute(stmt)]

    def deliveries_of_event(self, merchant_id: str, event_id: str, *, limit: int) -> list[Delivery]:
        stmt = (
            _DELIVERY_WITH_TYPE.where(_D.merchant_id == merchant_id, _D.event_id == event_id)
            .order_by(_D.created_at, _D.id)
            .limit(limit)
        )
        return [_delivery(r) for r in self.c.execute(stmt)]

    def attempts_of(
        self, delivery_ids: Collection[str], *, limit_each: int
    ) -> dict[str, list[Attempt]]:
        """The last ``limit_each`` attempts of each delivery, newest first."""
        if not delivery_ids:
            return {}
        rank = (
            func.row_number()
            .over(partition_by=_A.delivery_id, order_by=_A.seq.desc())
            .label("rank")
        )
        ranked = (
            select(t.webhook_attempts, rank)
            .where(_A.delivery_id.in_(sorted(delivery_ids)))
            .subquery()
        )
        rows = self.c.execute(
            select(ranked).where(ranked.c.rank <= limit_each).order_by(ranked.c.seq.desc())
        )
        out: dict[str, list[Attempt]] = {}
        for r in rows:
            out.setdefault(r.delivery_id, []).append(
                Attempt(
                    delivery_id=r.delivery_id,
                    attempt=r.attempt,
                    started_at=_aware(r.started_at),
                    duration_ms=r.duration_ms,
                    status_code=r.status_code,
                    error=r.error,
                )
            )
        return out

    def delivery_for(self, event_id: str, endpoint_id: str, *, lock: bool) -> Delivery | None:
        stmt = select(t.webhook_deliveries).where(
            _D.event_id == event_id, _D.endpoint_id == endpoint_id
        )
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _delivery(row)

    def restart_delivery(self, delivery_id: str, now: datetime) -> None:
        """A fresh schedule for the same event: due now, no attempts made in it yet. The log
        of the earlier schedule stays."""
        self.c.execute(
            update(t.webhook_deliveries)
            .where(_D.id == delivery_id)
            .values(
                state=DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                finished_at=None,
            )
        )

    def events(
        self, merchant_id: str, *, limit: int, starting_after: str | None
    ) -> list[PaymentEventRecord]:
        """The merchant's events, newest first; after ``starting_after`` (an event id)."""
        stmt = select(t.payment_events).where(_V.merchant_id == merchant_id)
        if starting_after is not None:
            seq = self.c.execute(
                select(_V.seq).where(_V.id == starting_after, _V.merchant_id == merchant_id)
            ).scalar()
            if seq is None:
                return []
            stmt = stmt.where(_V.seq < seq)
        stmt = stmt.order_by(_V.seq.desc()).limit(limit)
        return [_event_record(r) for r in self.c.execute(stmt)]

    def event(self, merchant_id: str, event_id: str) -> PaymentEventRecord | None:
        row = self.c.execute(
            select(t.payment_events).where(_V.id == event_id, _V.merchant_id == merchant_id)
        ).first()
        return None if row is None else _event_record(row)
