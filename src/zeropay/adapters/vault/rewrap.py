"""``vault rewrap``: re-encrypt every field under the current key versions, online.

Each registered column (``adapters.sql.encrypted.ENCRYPTED_COLUMNS``) is walked in primary-key
order, a batch at a time: the batch is read, re-encrypted in memory, then written in one short
transaction with ``UPDATE ... WHERE key = :key AND column = :old``, so a row that a use case
rewrote meanwhile (already under the current key) is left as it is. Nothing stops serving
while it runs: every version stays readable until the pass is complete, and only then is every
key with a newer version (purpose keys and users' keys) marked retired (still readable; audit
entries keep theirs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select, tuple_, update

from zeropay.adapters.sql.database import run_in_transaction
from zeropay.adapters.sql.encrypted import EncryptedColumn
from zeropay.adapters.vault.vault import Vault
from zeropay.domain import bounds
from zeropay.domain.errors import KeyDestroyed

PASSES_MAX = 3  # a field rewritten under an old key by a process that had not yet seen the
# rotation (at most a second) is picked up by the next pass


@dataclass
class RewrapReport:
    fields: int = 0  # non-empty encrypted fields seen (last pass)
    rewrapped: int = 0  # re-encrypted, over all passes
    shredded: int = 0  # under a destroyed key, left as it is (last pass)
    changed: int = 0  # rewritten by the application between read and write: read again
    passes: int = 0
    retired: int = 0  # superseded key versions marked retired at the end

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def rewrap(
    vault: Vault,
    engine: Engine,
    columns: Sequence[EncryptedColumn],
    *,
    batch: int = bounds.VAULT_REWRAP_BATCH,
) -> RewrapReport:
    if not 1 <= batch <= 10_000:
        raise ValueError("a batch is 1 to 10,000 rows")
    vault.sync()  # follow a rotation made by another process
    report = RewrapReport()
    for _ in range(PASSES_MAX):
        report.passes += 1
        report.fields = 0
        report.shredded = 0
        before = report.rewrapped
        changed = report.changed
        for column in columns:
            if column.rewrap:
                _column(vault, engine, column, batch, report)
        if report.rewrapped == before and report.changed == changed:
            report.retired = vault.retire_old_versions()
            break
    return report


def _column(
    vault: Vault, engine: Engine, column: EncryptedColumn, batch: int, report: RewrapReport
) -> None:
    table = column.table
    key = [table.c[name] for name in column.key]
    data = table.c[column.column]
    after: tuple[Any, ...] | None = None
    while True:
        query = select(table).where(data.is_not(None)).order_by(*key).limit(batch)
        if after is not None:
            query = query.where(tuple_(*key) > tuple_(*after))
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            return
        after = tuple(getattr(rows[-1], name) for name in column.key)
        writes = []
        for row in rows:
            old = bytes(getattr(row, column.column))
            report.fields += 1
            try:
                new = vault.reencrypt(
                    old, table=table.name, column=column.aad_column, row_id=column.row_id(row)
                )
            except KeyDestroyed:
                report.shredded += 1
                continue
            if new is not None:
                writes.append(({name: getattr(row, name) for name in column.key}, old, new))
        if writes:

            def write(connection: Any, pending: list[Any] = writes) -> int:
                done = 0
                for where, old, new in pending:
                    statement = (
                        update(table)
                        .where(*(table.c[name] == value for name, value in where.items()))
                        .where(data == old)
                        .values({column.column: new})
                    )
                    done += connection.execute(statement).rowcount
                return done

            done = run_in_transaction(engine, write)
            report.rewrapped += done
            report.changed += len(writes) - done
        if len(rows) < batch:
            return
