"""SQL repositories. They read and write inside the caller's transaction and never commit.

Every read that a write depends on takes a row lock (``FOR UPDATE``; SQLite already holds its
write lock from ``BEGIN IMMEDIATE``), and every balance change is also a conditional UPDATE, so
the database refuses an overdraft even if the Python check were wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.database import RetryTransaction
from zeropay.domain.errors import InsufficientFunds, InvariantViolation, NotFound
from zeropay.domain.ledger import (
    Account,
    AccountKind,
    Balance,
    BalanceChange,
    Transfer,
    TransferKind,
)
from zeropay.domain.lockout import FactorState
from zeropay.domain.money import Money, currency
from zeropay.domain.payments import CaptureMethod, Payment, PaymentStatus
from zeropay.domain.records import ApiKey, Notification, Refund, User
from zeropay.domain.sessions import AuthMethod, Session

# Ids this platform makes: a short type prefix and 26 Crockford base32 characters (see
# ``AppContext.new_id``).
OUR_ID = re.compile(r"[a-z]{2,4}_[0-9a-z]{26}")


# The payment path's statements, built once: constructing SQLAlchemy expressions per call costs
# more than PostgreSQL spends running them.
_A = t.ledger_accounts.c
_ACCOUNT_BY_ID = select(t.ledger_accounts).where(_A.id == bindparam("account_id"))
_ACCOUNTS_BY_IDS = select(t.ledger_accounts).where(
    _A.id.in_(bindparam("account_ids", expanding=True))
)
_BUMP = (
    update(t.ledger_accounts)
    .where(_A.id == bindparam("account_id"))
    .values(
        debits_posted=_A.debits_posted + bindparam("d_dp"),
        credits_posted=_A.credits_posted + bindparam("d_cp"),
        debits_pending=_A.debits_pending + bindparam("d_dpe"),
        credits_pending=_A.credits_pending + bindparam("d_cpe"),
    )
)
# The conditional form is the database's own overdraft check: it changes the row only when the
# account can cover what this change takes from it.
_BUMP_LIMITED = _BUMP.where(
    _A.credits_posted - _A.debits_posted - _A.debits_pending >= bindparam("spend")
)
_INSERT_TRANSFER = insert(t.ledger_transfers)
_P = t.payments.c
_PAYMENT_BY_ID = select(t.payments).where(_P.id == bindparam("payment_id"))
_SAVE_PAYMENT = (
    update(t.payments)
    .where(
        _P.id == bindparam("b_id"),
        _P.status == bindparam("b_status"),
        _P.amount_refunded_minor == bindparam("b_refunded"),
    )
    .values(
        status=bindparam("n_status"),
        payer_id=bindparam("n_payer_id"),
        amount_captured_minor=bindparam("n_amount_captured_minor"),
        amount_refunded_minor=bindparam("n_amount_refunded_minor"),
        spend_period=bindparam("n_spend_period"),
        hold_seq=bindparam("n_hold_seq"),
        updated_at=bindparam("n_updated_at"),
    )
)
_S = t.spend_counters.c
_SPEND_KEY = (
    _S.user_id == bindparam("k_user"),
    _S.currency == bindparam("k_currency"),
    _S.period == bindparam("k_period"),
)
_SPEND_ADD = (
    update(t.spend_counters)
    .where(*_SPEND_KEY, _S.amount_minor + bindparam("amount") <= bindparam("limit"))
    .values(amount_minor=_S.amount_minor + bindparam("amount"))
)
_SESSION_BY_TOKEN = select(t.sessions).where(t.sessions.c.token_hash == bindparam("token_hash"))


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every datetime we stored was UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    out = aware(value)
    assert out is not None
    return out


def _is_unique_violation(exc: IntegrityError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate == "23505" or "UNIQUE constraint failed" in str(exc.orig)


class _Repo:
    def __init__(self, connection: Connection) -> None:
        self.c = connection
        self._locking = connection.dialect.name == "postgresql"

    def _for_update(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update() if self._locking else stmt


# ---- ledger -----------------------------------------------------------------------------------


def _account(row: Row) -> Account:
    return Account(
        id=row.id,
        kind=AccountKind(row.kind),
        currency=currency(row.currency),
        balance=Balance(
            row.debits_posted, row.credits_posted, row.debits_pending, row.credits_pending
        ),
    )


def _transfer(row: Row) -> Transfer:
    return Transfer(
        id=row.id,
        kind=TransferKind(row.kind),
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount=Money(row.amount_minor, currency(row.currency)),
        code=row.code,
        created_at=_aware(row.created_at),
        pending_id=row.pending_id,
        expires_at=aware(row.expires_at),
        reference=row.reference,
    )


def account_id_for(kind: AccountKind, owner_id: str, currency_code: str) -> str:
    """Deterministic, so concurrent first uses of one account agree on its id."""
    return f"{kind.value[:3]}_{currency_code}_{owner_id}"[:40]


class LedgerRepository(_Repo):
    def account(self, account_id: str) -> Account:
        row = self.c.execute(_ACCOUNT_BY_ID, {"account_id": account_id}).first()
        if row is None:
            raise NotFound("no such account", account_id=account_id)
        return _account(row)

    def find_account(self, kind: AccountKind, owner_id: str, currency_code: str) -> Account | None:
        account_id = account_id_for(kind, owner_id, currency_code)
        row = self.c.execute(_ACCOUNT_BY_ID, {"account_id": account_id}).first()
        return None if row is None else _account(row)

    def find_accounts(self, *wanted: tuple[AccountKind, str, str]) -> list[Account | None]:
        """Several accounts in one round trip, in the order asked; None where one is missing."""
        ids = [account_id_for(*w) for w in wanted]
        found = {r.id: _account(r) for r in self.c.execute(_ACCOUNTS_BY_IDS, {"account_ids": ids})}
        return [found.get(i) for i in ids]

    def accounts_of(self, owner_id: str) -> list[Account]:
        rows = self.c.execute(
            select(t.ledger_accounts)
            .where(t.ledger_accounts.c.owner_id == owner_id)
            .order_by(t.ledger_accounts.c.currency)
        )
        return [_account(r) for r in rows]

    def open_account(
        self, kind: AccountKind, owner_id: str, currency_code: str, now: datetime
    ) -> Account:
        found = self.find_account(kind, owner_id, currency_code)
        if found is not None:
            return found
        account_id = account_id_for(kind, owner_id, currency_code)
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.ledger_accounts).values(
                        id=account_id,
                        kind=kind.value,
                        owner_id=owner_id,
                        currency=currency_code,
                        debits_posted=0,
                        credits_posted=0,
                        debits_pending=0,
                        credits_pending=0,
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            if not _is_unique_violation(exc):
                raise
        return self.account(account_id)

    def transfer(self, transfer_id: str) -> Transfer | None:
        row = self.c.execute(
            select(t.ledger_transfers).where(t.ledger_transfers.c.id == transfer_id)
        ).first()
        return None if row is None else _transfer(row)

    def resolution_of(self, hold_id: str) -> Transfer | None:
        row = self.c.execute(
            select(t.ledger_transfers).where(t.ledger_transfers.c.pending_id == hold_id)
        ).first()
        return None if row is None else _transfer(row)

    def apply(self, transfer: Transfer, change: BalanceChange, *, debit_limited: bool) -> None:
        """Write one transfer and its balance change.

        The transfer row goes first, so a duplicate id is found before any account is locked;
        the accounts follow in id order, so two transfers between the same accounts in opposite
        directions cannot deadlock, and the (often hot) account rows stay locked only from here
        to the commit.
        """
        try:
            self.c.execute(
                _INSERT_TRANSFER,
                {
                    "id": transfer.id,
                    "kind": transfer.kind.value,
                    "debit_account_id": transfer.debit_account_id,
                    "credit_account_id": transfer.credit_account_id,
                    "currency": transfer.amount.currency.code,
                    "amount_minor": transfer.amount.amount_minor,
                    "code": transfer.code,
                    "pending_id": transfer.pending_id,
                    "expires_at": transfer.expires_at,
                    "reference": transfer.reference,
                    "created_at": transfer.created_at,
                },
            )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                # Another transaction wrote this transfer id (or resolved this hold) first.
                # Run the use case again: it will find that transfer and answer from it.
                raise RetryTransaction() from exc
            raise InvariantViolation(f"ledger constraint refused transfer {transfer.id}") from exc
        sides = sorted(
            [
                (transfer.debit_account_id, change.debit, debit_limited),
                (transfer.credit_account_id, change.credit, False),
            ]
        )
        for account_id, delta, limited in sides:
            self._bump(account_id, delta, limited=limited)

    def _bump(self, account_id: str, delta: Balance, *, limited: bool) -> None:
        params = {
            "account_id": account_id,
            "d_dp": delta.debits_posted,
            "d_cp": delta.credits_posted,
            "d_dpe": delta.debits_pending,
            "d_cpe": delta.credits_pending,
        }
        if limited:
            params["spend"] = delta.debits_posted + delta.debits_pending - delta.credits_posted
        try:
            result = self.c.execute(_BUMP_LIMITED if limited else _BUMP, params)
        except IntegrityError as exc:
            raise InvariantViolation(
                f"balance constraint refused a change to {account_id}"
            ) from exc
        if result.rowcount != 1:
            if limited:
                raise InsufficientFunds("insufficient funds", account_id=account_id)
            raise NotFound("no such account", account_id=account_id)

    def history(
        self, account_ids: Sequence[str], *, limit: int, before_seq: int | None = None
    ) -> list[tuple[int, Transfer]]:
        x = t.ledger_transfers.c
        stmt = select(t.ledger_transfers).where(
            or_(x.debit_account_id.in_(account_ids), x.credit_account_id.in_(account_ids))
        )
        if before_seq is not None:
            stmt = stmt.where(x.seq < before_seq)
        rows = self.c.execute(stmt.order_by(x.seq.desc()).limit(limit))
        return [(r.seq, _transfer(r)) for r in rows]

    def expired_holds(self, now: datetime, *, limit: int) -> list[Transfer]:
        x = t.ledger_transfers.c
        resolved = t.ledger_transfers.alias("resolved")
        stmt = (
            select(t.ledger_transfers)
            .where(x.kind == TransferKind.PENDING.value, x.expires_at <= now)
            .where(~select(resolved.c.seq).where(resolved.c.pending_id == x.id).exists())
            .order_by(x.expires_at)
            .limit(limit)
        )
        return [_transfer(r) for r in self.c.execute(stmt)]

    def all_accounts(self) -> Iterator[Account]:
        for row in self.c.execute(select(t.ledger_accounts).order_by(t.ledger_accounts.c.id)):
            yield _account(row)

    def all_transfers(self) -> Iterator[Transfer]:
        result = self.c.execution_options(yield_per=5000).execute(
            select(t.ledger_transfers).order_by(t.ledger_transfers.c.seq)
        )
        for row in result:
            yield _transfer(row)


# ---- payments ---------------------------------------------------------------------------------


def _payment(row: Row) -> Payment:
    return Payment(
        id=row.id,
        merchant_id=row.merchant_id,
        amount=Money(row.amount_minor, currency(row.currency)),
        description=row.description,
        reference=row.reference,
        capture_method=CaptureMethod(row.capture_method),
        status=PaymentStatus(row.status),
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
        payer_id=row.payer_id,
        amount_captured_minor=row.amount_captured_minor,
        amount_refunded_minor=row.amount_refunded_minor,
        spend_period=row.spend_period,
        series_ref=row.series_ref,
        hold_seq=row.hold_seq,
    )


def _payment_values(p: Payment) -> dict[str, object]:
    return {
        "status": p.status.value,
        "payer_id": p.payer_id,
        "amount_captured_minor": p.amount_captured_minor,
        "amount_refunded_minor": p.amount_refunded_minor,
        "spend_period": p.spend_period,
        "hold_seq": p.hold_seq,
        "updated_at": p.updated_at,
    }


def _refund(row: Row) -> Refund:
    return Refund(
        id=row.id,
        payment_id=row.payment_id,
        amount=Money(row.amount_minor, currency(row.currency)),
        reason=row.reason,
        transfer_id=row.transfer_id,
        created_at=_aware(row.created_at),
    )


class PaymentRepository(_Repo):
    def add(self, p: Payment) -> None:
        self.c.execute(
            insert(t.payments).values(
                id=p.id,
                merchant_id=p.merchant_id,
                amount_minor=p.amount.amount_minor,
                currency=p.amount.currency.code,
                description=p.description,
                reference=p.reference,
                capture_method=p.capture_method.value,
                series_ref=p.series_ref,
                created_at=p.created_at,
                **_payment_values(p),
            )
        )

    def get(self, payment_id: str, *, lock: bool = False) -> Payment | None:
        if not OUR_ID.fullmatch(payment_id):
            return None  # not one of ours; never hand arbitrary bytes to the database
        stmt = self._for_update(_PAYMENT_BY_ID) if lock else _PAYMENT_BY_ID
        row = self.c.execute(stmt, {"payment_id": payment_id}).first()
        return None if row is None else _payment(row)

    def save(self, before: Payment, after: Payment) -> None:
        """Write a transition; the WHERE clause re-checks the state it was computed from."""
        params = {
            "b_id": before.id,
            "b_status": before.status.value,
            "b_refunded": before.amount_refunded_minor,
            **{f"n_{k}": v for k, v in _payment_values(after).items()},
        }
        if self.c.execute(_SAVE_PAYMENT, params).rowcount != 1:
            raise RetryTransaction()

    def list_for_merchant(
        self, merchant_id: str, *, limit: int, starting_after: Payment | None
    ) -> list[Payment]:
        x = t.payments.c
        stmt = select(t.payments).where(x.merchant_id == merchant_id)
        if starting_after is not None:
            stmt = stmt.where(
                or_(
                    x.created_at < starting_after.created_at,
                    and_(x.created_at == starting_after.created_at, x.id < starting_after.id),
                )
            )
        rows = self.c.execute(stmt.order_by(x.created_at.desc(), x.id.desc()).limit(limit))
        return [_payment(r) for r in rows]

    def paid_since(
        self, payer_id: str, currency_code: str, since: datetime, *, other_than: str
    ) -> int:
        """What ``payer_id`` paid or holds in ``currency_code`` since ``since`` (payments that
        moved or reserved money, last changed then or later), ``other_than`` one payment."""
        x = t.payments.c
        moved = ("requires_action", "in_review", "authorized", "succeeded")
        total = self.c.execute(
            select(func.coalesce(func.sum(x.amount_minor), 0)).where(
                x.payer_id == payer_id,
                x.currency == currency_code,
                x.status.in_(moved),
                x.updated_at >= since,
                x.id != other_than,
            )
        ).scalar_one()
        return int(total)

    def add_refund(self, refund: Refund) -> None:
        self.c.execute(
            insert(t.refunds).values(
                id=refund.id,
                payment_id=refund.payment_id,
                amount_minor=refund.amount.amount_minor,
                currency=refund.amount.currency.code,
                reason=refund.reason,
                transfer_id=refund.transfer_id,
                created_at=refund.created_at,
            )
        )

    def refunds_of(self, payment_id: str) -> list[Refund]:
        rows = self.c.execute(
            select(t.refunds)
            .where(t.refunds.c.payment_id == payment_id)
            .order_by(t.refunds.c.created_at, t.refunds.c.id)
        )
        return [_refund(r) for r in rows]


class SpendRepository(_Repo):
    def spent(self, user_id: str, currency_code: str, period: str) -> int:
        x = t.spend_counters.c
        row = self.c.execute(
            select(x.amount_minor).where(
                x.user_id == user_id, x.currency == currency_code, x.period == period
            )
        ).first()
        return 0 if row is None else int(row.amount_minor)

    def add(
        self, user_id: str, currency_code: str, period: str, amount_minor: int, *, limit: int
    ) -> bool:
        """Count ``amount_minor`` against the month; False, changing nothing, past ``limit``."""
        x = t.spend_counters.c
        key = (x.user_id == user_id, x.currency == currency_code, x.period == period)
        params = {
            "k_user": user_id,
            "k_currency": currency_code,
            "k_period": period,
            "amount": amount_minor,
            "limit": limit,
        }
        if self.c.execute(_SPEND_ADD, params).rowcount == 1:
            return True
        # Either the month's row does not exist yet, or the limit would be passed. Another
        # transaction may have created the row since our UPDATE looked, so decide on the row
        # itself, locked, rather than on the UPDATE's view.
        row = self.c.execute(self._for_update(select(x.amount_minor).where(*key))).first()
        if row is not None:
            if row.amount_minor + amount_minor > limit:
                return False
            self.c.execute(
                update(t.spend_counters)
                .where(*key)
                .values(amount_minor=x.amount_minor + amount_minor)
            )
            return True
        if amount_minor > limit:
            return False
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.spend_counters).values(
                        user_id=user_id,
                        currency=currency_code,
                        period=period,
                        amount_minor=amount_minor,
                    )
                )
        except IntegrityError as exc:
            raise RetryTransaction() from exc
        return True

    def give_back(self, user_id: str, currency_code: str, period: str, amount_minor: int) -> None:
        x = t.spend_counters.c
        self.c.execute(
            update(t.spend_counters)
            .where(x.user_id == user_id, x.currency == currency_code, x.period == period)
            .values(
                amount_minor=func.max(x.amount_minor - amount_minor, 0)
                if self.c.dialect.name == "sqlite"
                else func.greatest(x.amount_minor - amount_minor, 0)
            )
        )


# ---- accounts, sessions, merchants ------------------------------------------------------------


class AccountRepository(_Repo):
    def add_user(
        self,
        *,
        user_id: str,
        email_index: bytes,
        email_ciphertext: bytes,
        password_hash: str,
        now: datetime,
    ) -> bool:
        """False when the email index is taken."""
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.users).values(
                        id=user_id,
                        email_index=email_index,
                        email_ciphertext=email_ciphertext,
                        password_hash=password_hash,
                        status="active",
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                return False
            raise
        return True

    def user_by_email_index(self, email_index: bytes) -> User | None:
        row = self.c.execute(select(t.users).where(t.users.c.email_index == email_index)).first()
        return None if row is None else self._user(row)

    def user(self, user_id: str) -> User | None:
        row = self.c.execute(select(t.users).where(t.users.c.id == user_id)).first()
        return None if row is None else self._user(row)

    @staticmethod
    def _user(row: Row) -> User:
        return User(
            row.id,
            row.email_ciphertext,
            row.password_hash,
            row.status,
            _aware(row.created_at),
            aware(row.email_verified_at),
        )

    def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self.c.execute(
            update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash)
        )

    def set_status(self, user_id: str, status: str, *, was: str) -> bool:
        """Move an account from ``was`` to ``status`` (active <-> frozen); False if it was not."""
        x = t.users.c
        moved = self.c.execute(
            update(t.users).where(x.id == user_id, x.status == was).values(status=status)
        )
        return moved.rowcount == 1

    def password_changed(self, user_id: str, password_hash: str, now: datetime) -> None:
        self.c.execute(
            update(t.users)
            .where(t.users.c.id == user_id)
            .values(password_hash=password_hash, password_changed_at=now)
        )

    def mark_email_verified(self, user_id: str, now: datetime) -> None:
        x = t.users.c
        self.c.execute(
            update(t.users)
            .where(x.id == user_id, x.email_verified_at.is_(None))
            .values(email_verified_at=now)
        )

    def lock_factor_state(self, user_id: str, factor: str, now: datetime) -> FactorState:
        """The factor's failure count, its row locked until commit. The row is created first when
        missing, so the very first failures of a factor also queue on one lock (a FOR UPDATE
        that finds no row locks nothing, and two first failures would both count one)."""
        x = t.factor_states.c
        fresh = {"failures": 0, "locks": 0, "locked_until": None, "locked_permanently": 0}
        upsert = pg_insert if self._locking else sqlite_insert
        self.c.execute(
            upsert(t.factor_states)
            .values(user_id=user_id, factor=factor, updated_at=now, **fresh)
            .on_conflict_do_nothing(index_elements=["user_id", "factor"])
        )
        stmt = select(t.factor_states).where(x.user_id == user_id, x.factor == factor)
        row = self.c.execute(self._for_update(stmt)).one()
        return FactorState(
            failures=row.failures,
            locks=row.locks,
            locked_until=aware(row.locked_until),
            locked_permanently=bool(row.locked_permanently),
        )

    def save_factor_state(
        self, user_id: str, factor: str, state: FactorState, now: datetime
    ) -> None:
        """Write the state of a factor read with ``lock_factor_state`` in this transaction."""
        x = t.factor_states.c
        self.c.execute(
            update(t.factor_states)
            .where(x.user_id == user_id, x.factor == factor)
            .values(
                failures=state.failures,
                locks=state.locks,
                locked_until=state.locked_until,
                locked_permanently=int(state.locked_permanently),
                updated_at=now,
            )
        )

    def notify(
        self, *, notification_id: str, user_id: str, kind: str, body: str, now: datetime
    ) -> None:
        self.c.execute(
            insert(t.notifications).values(
                id=notification_id, user_id=user_id, kind=kind, body=body, created_at=now
            )
        )

    def notifications(self, user_id: str, *, limit: int) -> list[Notification]:
        x = t.notifications.c
        rows = self.c.execute(
            select(t.notifications)
            .where(x.user_id == user_id)
            .order_by(x.created_at.desc(), x.id.desc())
            .limit(limit)
        )
        return [Notification(r.id, r.kind, r.body, _aware(r.created_at)) for r in rows]


def _session(row: Row) -> Session:
    methods = tuple(
        AuthMethod(m["factor"], datetime.fromisoformat(m["at"])) for m in json.loads(row.methods)
    )
    return Session(
        id=row.id,
        user_id=row.user_id,
        created_at=_aware(row.created_at),
        last_seen_at=_aware(row.last_seen_at),
        expires_at=_aware(row.expires_at),
        idle_timeout_s=row.idle_timeout_s,
        methods=methods,
        revoked_at=aware(row.revoked_at),
        jkt=row.jkt,
        device_id=row.device_id,
    )


class SessionRepository(_Repo):
    def add(self, session: Session, *, token_hash: bytes, user_agent: str | None) -> None:
        self.c.execute(
            insert(t.sessions).values(
                id=session.id,
                token_hash=token_hash,
                user_id=session.user_id,
                created_at=session.created_at,
                last_seen_at=session.last_seen_at,
                expires_at=session.expires_at,
                idle_timeout_s=session.idle_timeout_s,
                methods=json.dumps(
                    [{"factor": m.factor, "at": m.at.isoformat()} for m in session.methods]
                ),
                revoked_at=None,
                user_agent=user_agent,
                jkt=session.jkt,
                device_id=session.device_id,
            )
        )

    def add_methods(self, session_id: str, methods: tuple[AuthMethod, ...]) -> None:
        """Replace the session's methods (a step-up appends to them; the caller holds the
        whole list)."""
        self.c.execute(
            update(t.sessions)
            .where(t.sessions.c.id == session_id)
            .values(
                methods=json.dumps([{"factor": m.factor, "at": m.at.isoformat()} for m in methods])
            )
        )

    def revoke_all(self, user_id: str, now: datetime, *, keep: str | None = None) -> int:
        x = t.sessions.c
        stmt = update(t.sessions).where(x.user_id == user_id, x.revoked_at.is_(None))
        if keep is not None:
            stmt = stmt.where(x.id != keep)
        return self.c.execute(stmt.values(revoked_at=now)).rowcount

    def revoke_device(self, device_id: str, now: datetime) -> int:
        x = t.sessions.c
        return self.c.execute(
            update(t.sessions)
            .where(x.device_id == device_id, x.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount

    def by_token_hash(self, token_hash: bytes) -> Session | None:
        row = self.c.execute(_SESSION_BY_TOKEN, {"token_hash": token_hash}).first()
        return None if row is None else _session(row)

    def get(self, session_id: str) -> Session | None:
        row = self.c.execute(select(t.sessions).where(t.sessions.c.id == session_id)).first()
        return None if row is None else _session(row)

    def touch(self, session_id: str, now: datetime) -> None:
        self.c.execute(
            update(t.sessions).where(t.sessions.c.id == session_id).values(last_seen_at=now)
        )

    def revoke(self, session_id: str, now: datetime) -> bool:
        x = t.sessions.c
        result = self.c.execute(
            update(t.sessions)
            .where(x.id == session_id, x.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return result.rowcount == 1

    def of_user(
        self, user_id: str, now: datetime, *, limit: int
    ) -> list[tuple[Session, str | None]]:
        x = t.sessions.c
        rows = self.c.execute(
            select(t.sessions)
            .where(x.user_id == user_id, x.revoked_at.is_(None), x.expires_at > now)
            .order_by(x.created_at.desc())
            .limit(limit)
        )
        return [(_session(r), r.user_agent) for r in rows]


class MerchantRepository(_Repo):
    def add(self, merchant_id: str, name: str, now: datetime, *, mcc: str | None = None) -> None:
        self.c.execute(
            insert(t.merchants).values(id=merchant_id, name=name, created_at=now, mcc=mcc)
        )

    def mcc(self, merchant_id: str) -> str | None:
        found = self.c.execute(
            select(t.merchants.c.mcc).where(t.merchants.c.id == merchant_id)
        ).scalar_one_or_none()
        return None if found is None else str(found)

    def name(self, merchant_id: str) -> str | None:
        row = self.c.execute(
            select(t.merchants.c.name).where(t.merchants.c.id == merchant_id)
        ).first()
        return None if row is None else str(row.name)

    def add_api_key(self, key: ApiKey) -> None:
        self.c.execute(
            insert(t.api_keys).values(
                id=key.id,
                merchant_id=key.merchant_id,
                secret_hash=key.secret_hash,
                scopes=" ".join(sorted(key.scopes)),
                label=key.label,
                created_at=key.created_at,
                revoked_at=None,
            )
        )

    def api_key(self, key_id: str) -> ApiKey | None:
        if not OUR_ID.fullmatch(key_id):
            return None
        row = self.c.execute(select(t.api_keys).where(t.api_keys.c.id == key_id)).first()
        if row is None:
            return None
        return ApiKey(
            row.id,
            row.merchant_id,
            row.secret_hash,
            frozenset(row.scopes.split()),
            row.label,
            _aware(row.created_at),
            aware(row.revoked_at),
        )

    def api_keys(self, merchant_id: str) -> list[ApiKey]:
        rows = self.c.execute(
            select(t.api_keys.c.id)
            .where(t.api_keys.c.merchant_id == merchant_id)
            .order_by(t.api_keys.c.created_at)
        )
        return [k for r in rows if (k := self.api_key(r.id)) is not None]

    def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        x = t.api_keys.c
        return (
            self.c.execute(
                update(t.api_keys)
                .where(x.id == key_id, x.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            == 1
        )
