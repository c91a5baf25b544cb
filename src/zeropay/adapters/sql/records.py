"""SQL for the platform's own records: idempotency keys, the audit chain, leased jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _is_unique_violation, _Repo, aware
from zeropay.domain.audit import AuditRecord, chain_hash
from zeropay.services.ports import QueuedEmail, StoredRequest


class IdempotencyRepository(_Repo):
    def claim(
        self,
        *,
        scope: str,
        key: str,
        fingerprint: bytes,
        now: datetime,
        keep: timedelta,
        lease: timedelta,
    ) -> StoredRequest | None:
        """Claim the key for this request. None when claimed now; else what is stored.

        A claim whose lease ran out (its process died mid-request) is taken over: the work it
        guarded commits in one transaction with the response, so nothing of it was written.
        """
        x = t.idempotency_keys.c
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.idempotency_keys).values(
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        status="in_flight",
                        locked_until=now + lease,
                        created_at=now,
                        expires_at=now + keep,
                    )
                )
            return None
        except IntegrityError as exc:
            if not _is_unique_violation(exc):
                raise
        stmt = select(t.idempotency_keys).where(x.scope == scope, x.key == key)
        row = self.c.execute(self._for_update(stmt)).first()
        if row is None:  # expired and cleaned between our insert and select
            return self.claim(
                scope=scope, key=key, fingerprint=fingerprint, now=now, keep=keep, lease=lease
            )
        stored = StoredRequest(
            bytes(row.fingerprint),
            row.status,
            row.response_status,
            row.response_body,
            aware(row.locked_until),
        )
        stale = (
            stored.status == "in_flight"
            and stored.fingerprint == fingerprint
            and stored.locked_until is not None
            and stored.locked_until <= now
        )
        if stale:
            self.c.execute(
                update(t.idempotency_keys)
                .where(x.scope == scope, x.key == key)
                .values(locked_until=now + lease)
            )
            return None
        return stored

    def complete(self, *, scope: str, key: str, status: int, body: str) -> None:
        x = t.idempotency_keys.c
        self.c.execute(
            update(t.idempotency_keys)
            .where(x.scope == scope, x.key == key)
            .values(
                status="completed", response_status=status, response_body=body, locked_until=None
            )
        )

    def release(self, *, scope: str, key: str) -> None:
        x = t.idempotency_keys.c
        self.c.execute(
            delete(t.idempotency_keys).where(
                x.scope == scope, x.key == key, x.status == "in_flight"
            )
        )

    def purge_expired(self, now: datetime, *, limit: int) -> int:
        x = t.idempotency_keys.c
        doomed = select(x.scope, x.key).where(x.expires_at <= now).limit(limit)
        rows = list(self.c.execute(doomed))
        for r in rows:
            self.c.execute(delete(t.idempotency_keys).where(x.scope == r.scope, x.key == r.key))
        return len(rows)


class AuditRepository(_Repo):
    def append(self, *, at: datetime, event: str, actor: str, subject: str, data: bytes) -> int:
        head_stmt = select(t.audit_head).where(t.audit_head.c.id == 1)
        head = self.c.execute(self._for_update(head_stmt)).one()
        record = AuditRecord(
            seq=head.seq + 1, at=at, event=event, actor=actor, subject=subject, data=data
        )
        digest = chain_hash(bytes(head.hash), record)
        self.c.execute(
            insert(t.audit_log).values(
                seq=record.seq,
                at=at,
                event=event,
                actor=actor,
                subject=subject,
                data=data,
                hash=digest,
            )
        )
        self.c.execute(
            update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=record.seq, hash=digest)
        )
        return record.seq

    def head(self) -> tuple[int, bytes]:
        row = self.c.execute(select(t.audit_head).where(t.audit_head.c.id == 1)).one()
        return int(row.seq), bytes(row.hash)

    def records(self) -> Iterator[tuple[AuditRecord, bytes]]:
        result = self.c.execution_options(yield_per=5000).execute(
            select(t.audit_log).order_by(t.audit_log.c.seq)
        )
        for r in result:
            record = AuditRecord(
                seq=r.seq,
                at=_aware(r.at),
                event=r.event,
                actor=r.actor,
                subject=r.subject,
                data=bytes(r.data),
            )
            yield record, bytes(r.hash)


class JobRepository(_Repo):
    def ensure(self, name: str, interval_s: int, now: datetime) -> None:
        if self.c.execute(select(t.jobs.c.name).where(t.jobs.c.name == name)).first() is None:
            # Another process may register it at the same moment; either row will do.
            with contextlib.suppress(IntegrityError), self.c.begin_nested():
                self.c.execute(
                    insert(t.jobs).values(name=name, interval_s=interval_s, run_at=now, runs=0)
                )
        else:
            self.c.execute(
                update(t.jobs).where(t.jobs.c.name == name).values(interval_s=interval_s)
            )

    def lease(self, name: str, *, owner: str, now: datetime, lease: timedelta) -> bool:
        """Compare-and-set: exactly one process wins a due job until its lease runs out."""
        x = t.jobs.c
        result = self.c.execute(
            update(t.jobs)
            .where(
                x.name == name,
                x.run_at <= now,
                or_(x.leased_until.is_(None), x.leased_until <= now),
            )
            .values(leased_until=now + lease, lease_owner=owner)
        )
        return result.rowcount == 1

    def finish(
        self, name: str, *, owner: str, now: datetime, error: str | None, next_run_at: datetime
    ) -> None:
        x = t.jobs.c
        self.c.execute(
            update(t.jobs)
            .where(x.name == name, x.lease_owner == owner)
            .values(
                leased_until=None,
                lease_owner=None,
                runs=x.runs + 1,
                last_error=error,
                last_finished_at=now,
                run_at=next_run_at,
            )
        )

    def all(self) -> list[dict[str, object]]:
        return [dict(r._mapping) for r in self.c.execute(select(t.jobs).order_by(t.jobs.c.name))]


class OutboxRepository(_Repo):
    def add(
        self, *, email_id: str, user_id: str, subject: str, body_ciphertext: bytes, now: datetime
    ) -> None:
        self.c.execute(
            insert(t.outbound_email).values(
                id=email_id,
                user_id=user_id,
                subject=subject,
                body_ciphertext=body_ciphertext,
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )

    def due(self, now: datetime, *, limit: int) -> list[QueuedEmail]:
        x = t.outbound_email.c
        rows = self.c.execute(
            select(t.outbound_email)
            .where(x.sent_at.is_(None), x.next_attempt_at <= now)
            .order_by(x.next_attempt_at)
            .limit(limit)
        )
        return [
            QueuedEmail(r.id, r.user_id, r.subject, r.body_ciphertext, r.attempts) for r in rows
        ]

    def sent(self, email_id: str, now: datetime) -> None:
        self.c.execute(
            update(t.outbound_email)
            .where(t.outbound_email.c.id == email_id)
            .values(sent_at=now, attempts=t.outbound_email.c.attempts + 1, last_error=None)
        )

    def failed(self, email_id: str, *, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt; with no ``retry_at`` the message is given up (kept, unsent)."""
        x = t.outbound_email.c
        values: dict[str, object] = {"attempts": x.attempts + 1, "last_error": error[:500]}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        else:
            values["next_attempt_at"] = datetime.max.replace(tzinfo=UTC)
        self.c.execute(update(t.outbound_email).where(x.id == email_id).values(**values))
