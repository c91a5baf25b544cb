"""SQL store of tokenized payment instruments: instruments, merchant grants, device cryptogram
keys, charges, and the sandbox carrier's monthly totals.

Lookups by token go through the token's SHA-256 and are scoped to the owner (or, for a merchant
token, checked against the merchant by the caller); only active rows are found, so a removed
instrument or a revoked token looks exactly like one that never existed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.database import RetryTransaction
from zeropay.adapters.sql.repositories import OUR_ID, _aware, _is_unique_violation, _Repo, aware
from zeropay.domain.instruments import (
    Charge,
    ChargeStatus,
    DeviceKey,
    Expiry,
    Grant,
    Instrument,
    InstrumentKind,
)
from zeropay.domain.lockout import FactorState
from zeropay.domain.money import Money, currency

_I = t.instruments.c
_G = t.instrument_grants.c
_K = t.instrument_device_keys.c
_C = t.charges.c


def _instrument(row: Row[Any]) -> Instrument:
    expiry = None
    if row.exp_month is not None and row.exp_year is not None:
        expiry = Expiry(month=row.exp_month, year=row.exp_year)
    return Instrument(
        id=row.id,
        user_id=row.user_id,
        kind=InstrumentKind(row.kind),
        status=row.status,
        created_at=_aware(row.created_at),
        number_ciphertext=row.number_ciphertext,
        display_ciphertext=row.display_ciphertext,
        brand=row.brand,
        expiry=expiry,
        removed_at=aware(row.removed_at),
    )


def _grant(row: Row[Any]) -> Grant:
    return Grant(
        id=row.id,
        instrument_id=row.instrument_id,
        merchant_id=row.merchant_id,
        status=row.status,
        created_at=_aware(row.created_at),
        revoked_at=aware(row.revoked_at),
    )


def _device_key(row: Row[Any]) -> DeviceKey:
    return DeviceKey(
        id=row.id,
        instrument_id=row.instrument_id,
        device_id=row.device_id,
        user_id=row.user_id,
        status=row.status,
        created_at=_aware(row.created_at),
        key_ciphertext=row.key_ciphertext,
        last_counter=int(row.last_counter),
        lockout=FactorState(
            failures=row.failures,
            locks=row.locks,
            locked_until=aware(row.locked_until),
            locked_permanently=bool(row.locked_permanently),
        ),
        last_used_at=aware(row.last_used_at),
    )


def _charge(row: Row[Any]) -> Charge:
    return Charge(
        id=row.id,
        merchant_id=row.merchant_id,
        grant_id=row.grant_id,
        instrument_id=row.instrument_id,
        device_key_id=row.device_key_id,
        kind=InstrumentKind(row.kind),
        amount=Money(int(row.amount_minor), currency(row.currency)),
        counter=int(row.counter),
        status=ChargeStatus(row.status),
        created_at=_aware(row.created_at),
        decline_code=row.decline_code,
        transfer_id=row.transfer_id,
    )


class InstrumentRepository(_Repo):
    # ---- instruments ----------------------------------------------------------------------------

    def lock_owner(self, user_id: str) -> None:
        self.c.execute(self._for_update(select(t.users.c.id).where(t.users.c.id == user_id)))

    def active_count(self, user_id: str) -> int:
        count: int = self.c.execute(
            select(func.count()).where(_I.user_id == user_id, _I.status == "active")
        ).scalar_one()
        return count

    def by_number_index(self, user_id: str, number_index: bytes) -> Instrument | None:
        row = self.c.execute(
            select(t.instruments).where(_I.user_id == user_id, _I.number_index == number_index)
        ).first()
        return None if row is None else _instrument(row)

    def add(self, instrument: Instrument, *, token_hash: bytes, number_index: bytes) -> bool:
        expiry = instrument.expiry
        try:
            with self.c.begin_nested():
                self.c.execute(
                    insert(t.instruments).values(
                        id=instrument.id,
                        user_id=instrument.user_id,
                        kind=instrument.kind.value,
                        token_hash=token_hash,
                        number_index=number_index,
                        number_ciphertext=instrument.number_ciphertext,
                        display_ciphertext=instrument.display_ciphertext,
                        brand=instrument.brand,
                        exp_month=expiry.month if expiry else None,
                        exp_year=expiry.year if expiry else None,
                        status=instrument.status,
                        created_at=instrument.created_at,
                    )
                )
        except IntegrityError as exc:
            if not _is_unique_violation(exc):
                raise
            return False  # the (owner, number index) pair: this payer holds the number already
        return True

    def of_user(self, user_id: str) -> list[Instrument]:
        rows = self.c.execute(
            select(t.instruments)
            .where(_I.user_id == user_id, _I.status == "active")
            .order_by(_I.created_at, _I.id)
        )
        return [_instrument(r) for r in rows]

    def find(
        self, user_id: str, *, token_hash: bytes | None, instrument_id: str | None, lock: bool
    ) -> Instrument | None:
        stmt = select(t.instruments).where(_I.user_id == user_id, _I.status == "active")
        if token_hash is not None:
            stmt = stmt.where(_I.token_hash == token_hash)
        elif instrument_id is not None and OUR_ID.fullmatch(instrument_id):
            stmt = stmt.where(_I.id == instrument_id)
        else:
            return None
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _instrument(row)

    def get(self, instrument_id: str) -> Instrument | None:
        row = self.c.execute(select(t.instruments).where(_I.id == instrument_id)).first()
        return None if row is None else _instrument(row)

    def remove(self, instrument_id: str, now: datetime) -> bool:
        removed = self.c.execute(
            update(t.instruments)
            .where(_I.id == instrument_id, _I.status == "active")
            .values(
                status="removed",
                removed_at=now,
                number_ciphertext=None,
                display_ciphertext=None,
                number_index=None,  # the payer may add the number again
            )
        ).rowcount
        if removed != 1:
            return False
        self.c.execute(
            update(t.instrument_grants)
            .where(_G.instrument_id == instrument_id, _G.status == "active")
            .values(status="revoked", revoked_at=now)
        )
        self.c.execute(
            update(t.instrument_device_keys)
            .where(_K.instrument_id == instrument_id, _K.status == "active")
            .values(status="removed", removed_at=now, key_ciphertext=None)
        )
        return True

    # ---- merchant grants ------------------------------------------------------------------------

    def add_grant(self, grant: Grant, *, token_hash: bytes) -> None:
        self.c.execute(
            insert(t.instrument_grants).values(
                id=grant.id,
                instrument_id=grant.instrument_id,
                merchant_id=grant.merchant_id,
                token_hash=token_hash,
                status=grant.status,
                created_at=grant.created_at,
            )
        )

    def grants_of(self, instrument_id: str) -> list[Grant]:
        rows = self.c.execute(
            select(t.instrument_grants)
            .where(_G.instrument_id == instrument_id, _G.status == "active")
            .order_by(_G.created_at, _G.id)
        )
        return [_grant(r) for r in rows]

    def grant_by_token_hash(self, token_hash: bytes, *, lock: bool) -> Grant | None:
        stmt = select(t.instrument_grants).where(
            _G.token_hash == token_hash, _G.status == "active"
        )
        row = self.c.execute(self._for_update(stmt) if lock else stmt).first()
        return None if row is None else _grant(row)

    def revoke_grant(self, instrument_id: str, grant_id: str, now: datetime) -> bool:
        result = self.c.execute(
            update(t.instrument_grants)
            .where(
                _G.id == grant_id, _G.instrument_id == instrument_id, _G.status == "active"
            )
            .values(status="revoked", revoked_at=now)
        )
        return result.rowcount == 1

    # ---- device cryptogram keys -----------------------------------------------------------------

    def add_device_key(self, key: DeviceKey) -> None:
        self.c.execute(
            insert(t.instrument_device_keys).values(
                id=key.id,
                instrument_id=key.instrument_id,
                device_id=key.device_id,
                user_id=key.user_id,
                key_ciphertext=key.key_ciphertext,
                last_counter=key.last_counter,
                failures=0,
                locks=0,
                locked_until=None,
                locked_permanently=0,
                status=key.status,
                created_at=key.created_at,
            )
        )

    def remove_device_keys(self, instrument_id: str, device_id: str, now: datetime) -> int:
        result = self.c.execute(
            update(t.instrument_device_keys)
            .where(
                _K.instrument_id == instrument_id,
                _K.device_id == device_id,
                _K.status == "active",
            )
            .values(status="removed", removed_at=now, key_ciphertext=None)
        )
        return int(result.rowcount)

    def device_keys_of(self, instrument_id: str, *, lock: bool) -> list[DeviceKey]:
        d = t.devices.c
        # A key dies with its device: an unbound device's key is never tried again.
        bound = select(d.id).where(d.id == _K.device_id, d.status == "active").exists()
        stmt = (
            select(t.instrument_device_keys)
            .where(_K.instrument_id == instrument_id, _K.status == "active", bound)
            .order_by(_K.id)
        )
        if lock and self._locking:
            stmt = stmt.with_for_update(of=t.instrument_device_keys)
        return [_device_key(r) for r in self.c.execute(stmt)]

    def save_key_lockout(self, key_id: str, state: FactorState) -> None:
        self.c.execute(
            update(t.instrument_device_keys)
            .where(_K.id == key_id)
            .values(
                failures=state.failures,
                locks=state.locks,
                locked_until=state.locked_until,
                locked_permanently=int(state.locked_permanently),
            )
        )

    def advance_counter(self, key_id: str, counter: int, now: datetime) -> bool:
        result = self.c.execute(
            update(t.instrument_device_keys)
            .where(_K.id == key_id, _K.status == "active", _K.last_counter < counter)
            .values(last_counter=counter, last_used_at=now)
        )
        return result.rowcount == 1

    # ---- charges --------------------------------------------------------------------------------

    def add_charge(self, charge: Charge) -> None:
        try:
            self._insert_charge(charge)
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                # The (key, counter) pair: another charge took this counter first. Run the use
                # case again; it then finds the counter spent and refuses the cryptogram.
                raise RetryTransaction() from exc
            raise

    def _insert_charge(self, charge: Charge) -> None:
        self.c.execute(
            insert(t.charges).values(
                id=charge.id,
                merchant_id=charge.merchant_id,
                grant_id=charge.grant_id,
                instrument_id=charge.instrument_id,
                device_key_id=charge.device_key_id,
                kind=charge.kind.value,
                amount_minor=charge.amount.amount_minor,
                currency=charge.amount.currency.code,
                counter=charge.counter,
                status=charge.status.value,
                decline_code=charge.decline_code,
                transfer_id=charge.transfer_id,
                created_at=charge.created_at,
            )
        )

    def charge(self, merchant_id: str, charge_id: str) -> Charge | None:
        if not OUR_ID.fullmatch(charge_id):
            return None  # not one of ours; never hand arbitrary bytes to the database
        row = self.c.execute(
            select(t.charges).where(_C.id == charge_id, _C.merchant_id == merchant_id)
        ).first()
        return None if row is None else _charge(row)

    # ---- the sandbox carrier's monthly totals ---------------------------------------------------

    def add_carrier_spend(
        self, user_id: str, currency_code: str, period: str, amount_minor: int, *, limit: int
    ) -> bool:
        x = t.carrier_billing_totals.c
        # The month's row exists before the conditional UPDATE reads it: a second first charge
        # of the month waits on the first one's insert, then sees its total.
        self.c.execute(
            (pg_insert if self._locking else sqlite_insert)(t.carrier_billing_totals)
            .values(user_id=user_id, currency=currency_code, period=period, amount_minor=0)
            .on_conflict_do_nothing()
        )
        result = self.c.execute(
            update(t.carrier_billing_totals)
            .where(
                x.user_id == user_id,
                x.currency == currency_code,
                x.period == period,
                x.amount_minor + amount_minor <= limit,
            )
            .values(amount_minor=x.amount_minor + amount_minor)
        )
        return result.rowcount == 1
