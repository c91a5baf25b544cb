"""SQL stores for authentication: flows, bound devices, authenticators, replay records.

Every "accept once" rule is a single conditional statement, so it holds across processes: a TOTP
step is accepted only by ``UPDATE ... WHERE last_step < :step``, a recovery code only by
``UPDATE ... WHERE used_at IS NULL``, a DPoP ``jti`` only by an INSERT the primary key lets through
once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.repositories import _aware, _is_unique_violation, _Repo, aware
from zeropay.domain.authenticators import Authenticator, AuthenticatorKind, Device
from zeropay.domain.device_classes import DeviceClass
from zeropay.domain.factors import Factor
from zeropay.domain.flows import Flow, FlowState
from zeropay.domain.policy import AccessPoint
from zeropay.domain.sessions import AuthMethod
from zeropay.services.ports import StoredAnswer, StoredFlow


def _methods_json(methods: tuple[AuthMethod, ...]) -> str:
    return json.dumps([{"factor": m.factor, "at": m.at.isoformat()} for m in methods])


def methods_from_json(raw: str) -> tuple[AuthMethod, ...]:
    return tuple(AuthMethod(m["factor"], datetime.fromisoformat(m["at"])) for m in json.loads(raw))


# ---- flows ------------------------------------------------------------------------------------


def _stored_flow(row: Row) -> StoredFlow:
    flow = Flow(
        id=row.id,
        point=AccessPoint(row.point),
        user_id=row.user_id,
        state=FlowState(row.state),
        paths=tuple(tuple(Factor(f) for f in p) for p in json.loads(row.paths)),
        done=methods_from_json(row.done),
        attempts_left=row.attempts_left,
        issued_at=_aware(row.issued_at),
        expires_at=_aware(row.expires_at),
        binding=json.loads(row.binding),
    )
    return StoredFlow(
        flow=flow,
        challenge=row.challenge,
        code_hash=row.code_hash,
        code_factor=row.code_factor,
        code_expires_at=aware(row.code_expires_at),
        code_sends=row.code_sends,
        approval_code=row.approval_code,
        approved_by=row.approved_by,
        approval_state=row.approval_state,
    )


def _flow_values(stored: StoredFlow, now: datetime) -> dict[str, object]:
    f = stored.flow
    return {
        "point": f.point.value,
        "user_id": f.user_id,
        "state": f.state.value,
        "paths": json.dumps([[x.value for x in p] for p in f.paths]),
        "done": _methods_json(f.done),
        "attempts_left": f.attempts_left,
        "issued_at": f.issued_at,
        "expires_at": f.expires_at,
        "binding": json.dumps(dict(f.binding), sort_keys=True),
        "challenge": stored.challenge,
        "code_hash": stored.code_hash,
        "code_factor": stored.code_factor,
        "code_expires_at": stored.code_expires_at,
        "code_sends": stored.code_sends,
        "approval_code": stored.approval_code,
        "approved_by": stored.approved_by,
        "approval_state": stored.approval_state,
        "updated_at": now,
    }


class FlowRepository(_Repo):
    def add(self, stored: StoredFlow, now: datetime) -> None:
        self.c.execute(insert(t.auth_flows).values(id=stored.flow.id, **_flow_values(stored, now)))

    def get(self, flow_id: str, *, lock: bool = False) -> StoredFlow | None:
        stmt = select(t.auth_flows).where(t.auth_flows.c.id == flow_id)
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _stored_flow(row)

    def save(self, stored: StoredFlow, now: datetime) -> None:
        self.c.execute(
            update(t.auth_flows)
            .where(t.auth_flows.c.id == stored.flow.id)
            .values(**_flow_values(stored, now))
        )

    def consume_code(self, flow_id: str, *, factor: str, code_hash: bytes, now: datetime) -> bool:
        """Use the code in play once: one conditional UPDATE, so two processes cannot both
        accept it, and an expired code is never accepted."""
        x = t.auth_flows.c
        result = self.c.execute(
            update(t.auth_flows)
            .where(
                x.id == flow_id,
                x.code_factor == factor,
                x.code_hash == code_hash,
                x.code_expires_at > now,
            )
            .values(code_hash=None, code_expires_at=None, updated_at=now)
        )
        return result.rowcount == 1

    def claim_step(self, flow_id: str, now: datetime, until: datetime) -> bool:
        """Take the flow's turn to check an answer, once: a conditional UPDATE, so of answers
        sent at once by any number of processes one is checked and the others are turned away
        before they cost an attempt. A turn left by a crashed process lapses at ``until``."""
        x = t.auth_flows.c
        result = self.c.execute(
            update(t.auth_flows)
            .where(x.id == flow_id, or_(x.busy_until.is_(None), x.busy_until <= now))
            .values(busy_until=until)
        )
        return result.rowcount == 1

    def release_step(self, flow_id: str, until: datetime) -> None:
        """Give the turn back -- only the turn taken with ``until``: a check that outlived its
        lease must not free the turn another answer has taken since."""
        x = t.auth_flows.c
        self.c.execute(
            update(t.auth_flows)
            .where(x.id == flow_id, x.busy_until == until)
            .values(busy_until=None)
        )

    def consume_challenge(self, flow_id: str, challenge: bytes) -> bool:
        """A WebAuthn challenge answers one ceremony; a second answer to it is a replay."""
        x = t.auth_flows.c
        result = self.c.execute(
            update(t.auth_flows)
            .where(x.id == flow_id, x.challenge == challenge)
            .values(challenge=None)
        )
        return result.rowcount == 1

    def awaiting_approval(self, user_id: str, now: datetime, *, limit: int) -> list[StoredFlow]:
        x = t.auth_flows.c
        rows = self.c.execute(
            select(t.auth_flows)
            .where(
                x.user_id == user_id,
                x.state == "active",
                x.approval_state == "requested",
                x.expires_at > now,
            )
            .order_by(x.issued_at.desc())
            .limit(limit)
        )
        return [_stored_flow(r) for r in rows]

    def purge_expired(self, before: datetime, *, limit: int) -> int:
        x = t.auth_flows.c
        ids = select(x.id).where(x.expires_at < before).limit(limit).scalar_subquery()
        return self.c.execute(delete(t.auth_flows).where(x.id.in_(ids))).rowcount


# ---- devices ----------------------------------------------------------------------------------


def _device(row: Row) -> Device:
    return Device(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        platform=row.platform,
        jkt=row.jkt,
        public_jwk=row.public_jwk,
        status=row.status,
        created_at=_aware(row.created_at),
        last_seen_at=_aware(row.last_seen_at),
        reduced_until=aware(row.reduced_until),
        removed_at=aware(row.removed_at),
        device_class=DeviceClass(row.device_class),
    )


class DeviceRepository(_Repo):
    def add(self, device: Device) -> None:
        self.c.execute(
            insert(t.devices).values(
                id=device.id,
                user_id=device.user_id,
                name=device.name,
                platform=device.platform,
                jkt=device.jkt,
                public_jwk=device.public_jwk,
                status=device.status,
                created_at=device.created_at,
                last_seen_at=device.last_seen_at,
                reduced_until=device.reduced_until,
                removed_at=None,
                device_class=device.device_class.value,
            )
        )

    def get(self, device_id: str) -> Device | None:
        row = self.c.execute(select(t.devices).where(t.devices.c.id == device_id)).first()
        return None if row is None else _device(row)

    def by_jkt(self, jkt: str) -> Device | None:
        row = self.c.execute(select(t.devices).where(t.devices.c.jkt == jkt)).first()
        return None if row is None else _device(row)

    def of_user(self, user_id: str) -> list[Device]:
        x = t.devices.c
        rows = self.c.execute(
            select(t.devices)
            .where(x.user_id == user_id, x.status == "active")
            .order_by(x.created_at)
        )
        return [_device(r) for r in rows]

    def touch(self, device_id: str, now: datetime) -> None:
        self.c.execute(
            update(t.devices).where(t.devices.c.id == device_id).values(last_seen_at=now)
        )

    def remove(self, device_id: str, now: datetime) -> bool:
        x = t.devices.c
        result = self.c.execute(
            update(t.devices)
            .where(x.id == device_id, x.status == "active")
            .values(status="removed", removed_at=now)
        )
        return result.rowcount == 1


# ---- authenticators, recovery codes, security answers -------------------------------------------


def _authenticator(row: Row) -> Authenticator:
    return Authenticator(
        id=row.id,
        user_id=row.user_id,
        kind=AuthenticatorKind(row.kind),
        label=row.label,
        status=row.status,
        created_at=_aware(row.created_at),
        secret_ciphertext=row.secret_ciphertext,
        credential_id=row.credential_id,
        public_key=row.public_key,
        sign_count=row.sign_count,
        clone_signals=row.clone_signals,
        last_step=row.last_step,
        device_id=row.device_id,
        last_used_at=aware(row.last_used_at),
        pending_secret=row.pending_secret,
        pending_expires_at=aware(row.pending_expires_at),
        ocra_suite=row.ocra_suite,
    )


class AuthenticatorRepository(_Repo):
    def add(self, authenticator: Authenticator) -> bool:
        """False when the WebAuthn credential id is already registered (to anyone)."""
        a = authenticator
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.authenticators).values(
                        id=a.id,
                        user_id=a.user_id,
                        kind=a.kind.value,
                        label=a.label,
                        status=a.status,
                        secret_ciphertext=a.secret_ciphertext,
                        credential_id=a.credential_id,
                        public_key=a.public_key,
                        sign_count=a.sign_count,
                        clone_signals=0,
                        last_step=a.last_step,
                        device_id=a.device_id,
                        pending_secret=a.pending_secret,
                        pending_expires_at=a.pending_expires_at,
                        ocra_suite=a.ocra_suite,
                        created_at=a.created_at,
                    )
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False
            raise
        return True

    def get(self, authenticator_id: str, *, lock: bool = False) -> Authenticator | None:
        stmt = select(t.authenticators).where(t.authenticators.c.id == authenticator_id)
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _authenticator(row)

    def by_credential_id(self, credential_id: bytes) -> Authenticator | None:
        x = t.authenticators.c
        row = self.c.execute(
            select(t.authenticators).where(x.credential_id == credential_id, x.status == "active")
        ).first()
        return None if row is None else _authenticator(row)

    def of_user(self, user_id: str, *, pending: bool = False) -> list[Authenticator]:
        x = t.authenticators.c
        states = ("active", "pending") if pending else ("active",)
        rows = self.c.execute(
            select(t.authenticators)
            .where(x.user_id == user_id, x.status.in_(states))
            .order_by(x.created_at)
        )
        return [_authenticator(r) for r in rows]

    def activate(
        self,
        authenticator_id: str,
        now: datetime,
        *,
        credential_id: bytes | None = None,
        public_key: bytes | None = None,
        sign_count: int = 0,
        last_step: int | None = None,
        label: str | None = None,
        device_id: str | None = None,
    ) -> bool:
        """Pending to active, once: the confirmation that wins a race is the only one."""
        x = t.authenticators.c
        values: dict[str, object] = {
            "status": "active",
            "last_used_at": now,
            "pending_secret": None,
            "pending_expires_at": None,
            "last_step": last_step,
        }
        if label is not None:
            values["label"] = label
        if device_id is not None:
            values["device_id"] = device_id  # a device PIN set before its device was bound
        if credential_id is not None:
            values.update(credential_id=credential_id, public_key=public_key, sign_count=sign_count)
        try:
            with self.c.begin_nested():
                result = self.c.execute(
                    update(t.authenticators)
                    .where(x.id == authenticator_id, x.status == "pending")
                    .values(**values)
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False  # that credential id is registered already
            raise
        return result.rowcount == 1

    def remove(self, authenticator_id: str, now: datetime) -> bool:
        x = t.authenticators.c
        result = self.c.execute(
            update(t.authenticators)
            .where(x.id == authenticator_id, x.status.in_(("active", "pending")))
            .values(status="removed", removed_at=now, secret_ciphertext=None)
        )
        return result.rowcount == 1

    def accept_totp_step(self, authenticator_id: str, step: int, now: datetime) -> bool:
        """Record ``step`` as used; False when it, or a later step, was used already -- by this
        process or any other (RFC 6238 §5.2: a verifier must not accept a code twice)."""
        x = t.authenticators.c
        result = self.c.execute(
            update(t.authenticators)
            .where(
                x.id == authenticator_id,
                or_(x.last_step.is_(None), x.last_step < step),
            )
            .values(last_step=step, last_used_at=now)
        )
        return result.rowcount == 1

    def record_passkey_use(
        self, authenticator_id: str, *, sign_count: int, clone_signal: bool, now: datetime
    ) -> None:
        x = t.authenticators.c
        values: dict[str, object] = {"last_used_at": now}
        if clone_signal:
            values["clone_signals"] = x.clone_signals + 1
        else:
            values["sign_count"] = sign_count
        self.c.execute(update(t.authenticators).where(x.id == authenticator_id).values(**values))

    def replace_recovery_codes(self, user_id: str, hashes: list[bytes], now: datetime) -> int:
        """Put these codes in place of the user's codes (none: remove them); the number of
        codes there were before."""
        gone = self.c.execute(
            delete(t.recovery_codes).where(t.recovery_codes.c.user_id == user_id)
        ).rowcount
        if hashes:
            self.c.execute(
                insert(t.recovery_codes),
                [{"user_id": user_id, "code_hash": h, "created_at": now} for h in hashes],
            )
        return gone

    def use_recovery_code(self, user_id: str, code_hash: bytes, now: datetime) -> bool:
        x = t.recovery_codes.c
        result = self.c.execute(
            update(t.recovery_codes)
            .where(and_(x.user_id == user_id, x.code_hash == code_hash, x.used_at.is_(None)))
            .values(used_at=now)
        )
        return result.rowcount == 1

    def recovery_codes_left(self, user_id: str) -> int:
        x = t.recovery_codes.c
        rows = self.c.execute(
            select(x.code_hash).where(x.user_id == user_id, x.used_at.is_(None))
        ).all()
        return len(rows)

    def set_security_answers(
        self, user_id: str, answers: Sequence[StoredAnswer], now: datetime
    ) -> int:
        """Put these answers in place of the user's answers (none: remove them); the number of
        answers there were before."""
        x = t.security_answers.c
        gone = self.c.execute(delete(t.security_answers).where(x.user_id == user_id)).rowcount
        if answers:
            self.c.execute(
                insert(t.security_answers),
                [
                    {
                        "user_id": user_id,
                        "slot": a.slot,
                        "question_ciphertext": a.question_ciphertext,
                        "answer_hash": a.answer_hash,
                        "created_at": now,
                    }
                    for a in answers
                ],
            )
        return gone

    def security_answers(self, user_id: str) -> list[StoredAnswer]:
        x = t.security_answers.c
        rows = self.c.execute(
            select(x.slot, x.question_ciphertext, x.answer_hash)
            .where(x.user_id == user_id)
            .order_by(x.slot)
        ).all()
        return [
            StoredAnswer(user_id, r.slot, bytes(r.question_ciphertext), r.answer_hash) for r in rows
        ]


# ---- replay records and rate counters -----------------------------------------------------------


class ReplayRepository(_Repo):
    def first_use(self, jkt: str, jti: str, expires_at: datetime) -> bool:
        """True the first time a (key, jti) pair is seen; False for every replay."""
        stmt = (
            (pg_insert if self._locking else sqlite_insert)(t.dpop_proofs)
            .values(jkt=jkt, jti=jti, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["jkt", "jti"])
            .returning(t.dpop_proofs.c.jti)  # psycopg reports no rowcount for this statement
        )
        return self.c.execute(stmt).first() is not None

    def hit(self, key: str, window_start: datetime, expires_at: datetime) -> int:
        """Count one event in a fixed window; the count after it, in one atomic statement."""
        x = t.rate_counters.c
        stmt = (
            (pg_insert if self._locking else sqlite_insert)(t.rate_counters)
            .values(key=key, window_start=window_start, count=1, expires_at=expires_at)
            .on_conflict_do_update(
                index_elements=["key", "window_start"], set_={"count": x.count + 1}
            )
            .returning(t.rate_counters.c.count)
        )
        count: int = self.c.execute(stmt).scalar_one()
        return count

    def purge(self, now: datetime, *, limit: int) -> int:
        """Forget proofs and counters whose window has closed: they can no longer matter."""
        removed = 0
        for table in (t.dpop_proofs, t.rate_counters):
            removed += self.c.execute(delete(table).where(table.c.expires_at < now)).rowcount
        return removed
