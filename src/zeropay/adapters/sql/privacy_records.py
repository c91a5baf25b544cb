"""SQL store for the privacy center: a user's rows of every table in the data inventory, with
secrets left in the database (``HIDDEN``) and ciphertexts handed out with what opens them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, select

from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS, EncryptedColumn
from zeropay.adapters.sql.inventory import INVENTORY, OWNED_BY, Personal, Shown
from zeropay.adapters.sql.repositories import _aware, _Repo
from zeropay.services.ports import HIDDEN, HeldRows, InventoriedField, Sealed


class PrivacyRepository(_Repo):
    def held(self, user_id: str, *, rows_max: int) -> list[HeldRows]:
        out = []
        for table, fields in _tables():
            stmt = (
                select(table)
                .where(OWNED_BY[table.name](user_id))
                .order_by(*table.primary_key.columns)
                .limit(rows_max + 1)
            )
            rows = self.c.execute(stmt).all()
            out.append(
                HeldRows(
                    table=table.name,
                    fields=tuple(_told(p) for p in fields),
                    rows=tuple(tuple(_value(p, row) for p in fields) for row in rows[:rows_max]),
                    truncated=len(rows) > rows_max,
                )
            )
        return out


_SEALED: dict[tuple[str, str], EncryptedColumn] = {
    (e.table.name, e.column): e for e in ENCRYPTED_COLUMNS
}


def _tables() -> list[tuple[Table, list[Personal]]]:
    """The inventory grouped by table, in the order it is declared."""
    grouped: dict[str, tuple[Table, list[Personal]]] = {}
    for p in INVENTORY:
        grouped.setdefault(p.table.name, (p.table, []))[1].append(p)
    return list(grouped.values())


def _told(p: Personal) -> InventoriedField:
    return InventoriedField(
        table=p.table.name,
        column=p.column,
        name=p.name,
        purpose=p.purpose,
        basis=p.basis.value,
        retention=p.retention,
        setting=p.setting,
        encrypted=p.encrypted,
        shown=p.shown is Shown.VALUE,
    )


def _value(p: Personal, row: Any) -> object:
    raw = getattr(row, p.column)
    if raw is None:
        return None
    if p.shown is Shown.HIDDEN:
        return HIDDEN
    sealed = _SEALED.get((p.table.name, p.column))
    if sealed is not None:
        return Sealed(
            ciphertext=bytes(raw),
            table=p.table.name,
            column=sealed.aad_column,
            row_id=sealed.row_id(row),
            subject=sealed.subject(row),
        )
    if hasattr(raw, "tzinfo"):
        return _aware(raw)  # SQLite hands back naive UTC datetimes
    return raw
