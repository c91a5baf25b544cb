"""Where the vault keeps what may be stored: its shape, wrapped data keys, and the mailboxes
through which shares and the root key reach sealed processes.

``SqlVaultStore`` runs each call in its own short transaction on its own connections, never inside
a use case's unit of work: a key created for a new user is committed before the user's row, and
on SQLite the vault's reads do not queue behind a use case's write lock (its engine opens
deferred transactions; the application's opens ``BEGIN IMMEDIATE``). ``MemoryVaultStore`` is the
same contract in memory, for unit tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.database import open_transaction

T = TypeVar("T")

ACTIVE = "active"
RETIRED = "retired"
DESTROYED = "destroyed"


@dataclass(frozen=True, slots=True)
class VaultMeta:
    vault_id: str
    shares: int
    threshold: int
    root_check: bytes
    commitments: tuple[bytes, ...]  # commitment of share i at position i - 1
    generation: int
    seal_epoch: int
    development: bool
    created_at: datetime
    rotated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: bytes
    purpose: str
    subject: str  # '' for a purpose key
    version: int
    wrapped: bytes | None
    state: str
    created_at: datetime
    destroy_after: datetime | None = None
    destroyed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    public_key: bytes
    proof: bytes | None
    host: str
    pid: int
    sealed: bool
    started_at: datetime
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class ShareDrop:
    share_index: int
    sealed_share: bytes
    submitted_by: str
    submitted_at: datetime
    seal_epoch: int
    mac: bytes  # under the peer secret: a row written by anyone else is ignored


@dataclass(frozen=True, slots=True)
class Transfer:
    sealed_root: bytes
    from_peer: str
    expires_at: datetime
    seal_epoch: int
    mac: bytes  # under the peer secret


@dataclass(frozen=True, slots=True)
class KeyCount:
    purpose: str
    version: int
    state: str
    keys: int


class VaultStore(Protocol):
    def in_open_transaction(self) -> bool: ...

    def meta(self) -> VaultMeta | None: ...

    def create_meta(self, meta: VaultMeta, keys: list[KeyRecord]) -> bool:
        """Store the vault's shape and its first keys at once; False if one already exists."""
        ...

    def advance_generation(
        self, *, expected: int, keys: list[KeyRecord], now: datetime
    ) -> bool: ...

    def raise_seal_epoch(self) -> int: ...

    def key(self, key_id: bytes) -> KeyRecord | None: ...

    def newest(self, purpose: str, subject: str) -> KeyRecord | None:
        """The highest version of (purpose, subject), whatever its state."""
        ...

    def add_key(self, record: KeyRecord) -> bool:
        """False when (purpose, subject, version) exists already (another process won)."""
        ...

    def destroy(self, purpose: str, subject: str, *, now: datetime) -> int: ...

    def is_destroyed(self, purpose: str, subject: str) -> bool:
        """Whether any version of (purpose, subject) was destroyed."""
        ...

    def schedule_destruction(self, purpose: str, subject: str, *, at: datetime) -> int: ...

    def due(self, *, now: datetime, limit: int) -> list[KeyRecord]: ...

    def retire_superseded(self) -> int:
        """Mark retired every active key that has a newer version of the same purpose and
        subject; returns how many."""
        ...

    def counts(self) -> list[KeyCount]: ...

    def save_peer(self, peer: Peer) -> None: ...

    def peers(self, *, seen_since: datetime) -> list[Peer]: ...

    def forget_peer(self, peer_id: str) -> None: ...

    def drop_share(self, peer_id: str, drop: ShareDrop) -> bool:
        """False when this peer already holds a share with that index."""
        ...

    def drops(self, peer_id: str, *, since: datetime) -> list[ShareDrop]: ...

    def clear_drops(self, peer_id: str) -> None: ...

    def put_transfer(self, peer_id: str, transfer: Transfer, *, now: datetime) -> bool: ...

    def take_transfer(self, peer_id: str, *, now: datetime) -> Transfer | None: ...

    def purge(self, *, peers_before: datetime, drops_before: datetime, now: datetime) -> None: ...

    def add_custodian(self, custodian_id: str, name: str, token_hash: bytes, now: datetime) -> bool:
        """False when a custodian of that name exists."""
        ...

    def custodian_by_token(self, token_hash: bytes) -> str | None:
        """The name of the active custodian holding that token."""
        ...


# ---- SQL ----------------------------------------------------------------------------------------


def vault_engine(engine: Engine) -> Engine:
    """A small engine of the vault's own on the application's database, disposed with it.

    Its own pool: a use case holds one of the application's connections while it asks for a
    key, so keys drawn from the same pool could leave every thread waiting for a connection
    that only another waiting thread would return. On SQLite its transactions are deferred,
    so a key read does not queue behind a use case's ``BEGIN IMMEDIATE`` write lock.
    """
    if engine.dialect.name == "sqlite":
        separate = create_engine(engine.url, connect_args={"timeout": 30})

        @event.listens_for(separate, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    else:
        separate = create_engine(
            engine.url,
            pool_size=2,
            max_overflow=6,
            pool_recycle=1800,
            isolation_level="READ COMMITTED",
        )

    @event.listens_for(engine, "engine_disposed")
    def _with_the_application(_engine: Engine) -> None:
        separate.dispose()

    return separate


class SqlVaultStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    def in_open_transaction(self) -> bool:
        """True while a call would run inside the caller's (uncommitted) SQLite transaction:
        what it reads or makes there must not be cached, since that transaction may roll back."""
        return self._ambient() is not None

    def _ambient(self) -> Connection | None:
        if not self._sqlite:
            return None  # PostgreSQL: the vault's own connection never waits on the caller
        connection = open_transaction()
        if connection is None or connection.engine.url.database != self._engine.url.database:
            return None
        return connection

    def _run(self, work: Callable[[Connection], T]) -> T:
        ambient = self._ambient()
        if ambient is not None:
            # SQLite, inside a use case's transaction, which holds the database's write lock:
            # work there (a savepoint, so a refused insert leaves that transaction intact).
            with ambient.begin_nested():
                return work(ambient)
        with self._engine.begin() as connection:
            return work(connection)

    # -- meta

    def meta(self) -> VaultMeta | None:
        row = self._run(lambda c: c.execute(select(t.vault_meta)).first())
        if row is None:
            return None
        return VaultMeta(
            vault_id=row.vault_id,
            shares=row.shares,
            threshold=row.threshold,
            root_check=bytes(row.root_check),
            commitments=tuple(bytes.fromhex(h) for h in json.loads(row.share_commitments)),
            generation=row.generation,
            seal_epoch=row.seal_epoch,
            development=bool(row.development),
            created_at=_aware(row.created_at),
            rotated_at=None if row.rotated_at is None else _aware(row.rotated_at),
        )

    def create_meta(self, meta: VaultMeta, keys: list[KeyRecord]) -> bool:
        def work(c: Connection) -> None:
            c.execute(
                insert(t.vault_meta).values(
                    id=1,
                    vault_id=meta.vault_id,
                    shares=meta.shares,
                    threshold=meta.threshold,
                    root_check=meta.root_check,
                    share_commitments=json.dumps([h.hex() for h in meta.commitments]),
                    generation=meta.generation,
                    seal_epoch=meta.seal_epoch,
                    development=int(meta.development),
                    created_at=meta.created_at,
                )
            )
            for record in keys:
                c.execute(insert(t.vault_keys).values(**_key_values(record)))

        try:
            self._run(work)
        except IntegrityError:
            return False
        return True

    def advance_generation(self, *, expected: int, keys: list[KeyRecord], now: datetime) -> bool:
        def work(c: Connection) -> bool:
            moved = c.execute(
                update(t.vault_meta)
                .where(t.vault_meta.c.generation == expected)
                .values(generation=expected + 1, rotated_at=now)
            ).rowcount
            if moved != 1:
                return False
            for record in keys:
                c.execute(insert(t.vault_keys).values(**_key_values(record)))
            return True

        return self._run(work)

    def raise_seal_epoch(self) -> int:
        def work(c: Connection) -> int:
            c.execute(update(t.vault_meta).values(seal_epoch=t.vault_meta.c.seal_epoch + 1))
            # Nothing sent before the order may unseal anyone after it.
            c.execute(delete(t.vault_transfers))
            c.execute(delete(t.vault_share_drops))
            return int(c.execute(select(t.vault_meta.c.seal_epoch)).scalar_one())

        return self._run(work)

    # -- keys

    def key(self, key_id: bytes) -> KeyRecord | None:
        row = self._run(
            lambda c: c.execute(select(t.vault_keys).where(t.vault_keys.c.id == key_id)).first()
        )
        return None if row is None else _key(row)

    def newest(self, purpose: str, subject: str) -> KeyRecord | None:
        query = (
            select(t.vault_keys)
            .where(t.vault_keys.c.purpose == purpose, t.vault_keys.c.subject == subject)
            .order_by(t.vault_keys.c.version.desc())
            .limit(1)
        )
        row = self._run(lambda c: c.execute(query).first())
        return None if row is None else _key(row)

    def add_key(self, record: KeyRecord) -> bool:
        try:
            self._run(lambda c: c.execute(insert(t.vault_keys).values(**_key_values(record))))
        except IntegrityError:
            return False
        return True

    def destroy(self, purpose: str, subject: str, *, now: datetime) -> int:
        statement = (
            update(t.vault_keys)
            .where(
                t.vault_keys.c.purpose == purpose,
                t.vault_keys.c.subject == subject,
                t.vault_keys.c.state != DESTROYED,
            )
            .values(wrapped=None, state=DESTROYED, destroyed_at=now)
        )
        return int(self._run(lambda c: c.execute(statement).rowcount))

    def is_destroyed(self, purpose: str, subject: str) -> bool:
        k = t.vault_keys.c
        query = (
            select(k.id)
            .where(k.purpose == purpose, k.subject == subject, k.state == DESTROYED)
            .limit(1)
        )
        return self._run(lambda c: c.execute(query).first()) is not None

    def schedule_destruction(self, purpose: str, subject: str, *, at: datetime) -> int:
        statement = (
            update(t.vault_keys)
            .where(
                t.vault_keys.c.purpose == purpose,
                t.vault_keys.c.subject == subject,
                t.vault_keys.c.state != DESTROYED,
            )
            .values(destroy_after=at)
        )
        return int(self._run(lambda c: c.execute(statement).rowcount))

    def due(self, *, now: datetime, limit: int) -> list[KeyRecord]:
        query = (
            select(t.vault_keys)
            .where(t.vault_keys.c.destroy_after <= now, t.vault_keys.c.state != DESTROYED)
            .order_by(t.vault_keys.c.destroy_after)
            .limit(limit)
        )
        return [_key(r) for r in self._run(lambda c: c.execute(query).all())]

    def retire_superseded(self) -> int:
        newer = t.vault_keys.alias("newer")
        k = t.vault_keys.c
        statement = (
            update(t.vault_keys)
            .where(
                k.state == ACTIVE,
                select(newer.c.id)
                .where(
                    newer.c.purpose == k.purpose,
                    newer.c.subject == k.subject,
                    newer.c.version > k.version,
                )
                .exists(),
            )
            .values(state=RETIRED)
        )
        return int(self._run(lambda c: c.execute(statement).rowcount))

    def counts(self) -> list[KeyCount]:
        k = t.vault_keys.c
        query = (
            select(k.purpose, k.version, k.state, func.count())
            .group_by(k.purpose, k.version, k.state)
            .order_by(k.purpose, k.version, k.state)
        )
        return [
            KeyCount(purpose=p, version=v, state=s, keys=n)
            for p, v, s, n in self._run(lambda c: c.execute(query).all())
        ]

    # -- peers and their mailboxes

    def save_peer(self, peer: Peer) -> None:
        values = {
            "public_key": peer.public_key,
            "proof": peer.proof,
            "host": peer.host[:255],
            "pid": peer.pid,
            "sealed": int(peer.sealed),
            "started_at": peer.started_at,
            "seen_at": peer.seen_at,
        }

        def work(c: Connection) -> None:
            changed = c.execute(
                update(t.vault_peers).where(t.vault_peers.c.id == peer.id).values(**values)
            ).rowcount
            if changed == 0:
                c.execute(insert(t.vault_peers).values(id=peer.id, **values))

        self._run(work)

    def peers(self, *, seen_since: datetime) -> list[Peer]:
        query = (
            select(t.vault_peers)
            .where(t.vault_peers.c.seen_at >= seen_since)
            .order_by(t.vault_peers.c.started_at)
        )
        return [
            Peer(
                id=r.id,
                public_key=bytes(r.public_key),
                proof=None if r.proof is None else bytes(r.proof),
                host=r.host,
                pid=r.pid,
                sealed=bool(r.sealed),
                started_at=_aware(r.started_at),
                seen_at=_aware(r.seen_at),
            )
            for r in self._run(lambda c: c.execute(query).all())
        ]

    def forget_peer(self, peer_id: str) -> None:
        def work(c: Connection) -> None:
            c.execute(delete(t.vault_share_drops).where(t.vault_share_drops.c.peer_id == peer_id))
            c.execute(delete(t.vault_transfers).where(t.vault_transfers.c.peer_id == peer_id))
            c.execute(delete(t.vault_peers).where(t.vault_peers.c.id == peer_id))

        self._run(work)

    def drop_share(self, peer_id: str, drop: ShareDrop) -> bool:
        try:
            self._run(
                lambda c: c.execute(
                    insert(t.vault_share_drops).values(
                        peer_id=peer_id,
                        share_index=drop.share_index,
                        sealed_share=drop.sealed_share,
                        submitted_by=drop.submitted_by,
                        submitted_at=drop.submitted_at,
                        seal_epoch=drop.seal_epoch,
                        mac=drop.mac,
                    )
                )
            )
        except IntegrityError:
            return False
        return True

    def drops(self, peer_id: str, *, since: datetime) -> list[ShareDrop]:
        d = t.vault_share_drops.c
        query = (
            select(
                d.share_index,
                d.sealed_share,
                d.submitted_by,
                d.submitted_at,
                d.seal_epoch,
                d.mac,
            )
            .where(d.peer_id == peer_id, d.submitted_at >= since)
            .order_by(d.share_index)
        )
        return [
            ShareDrop(
                share_index=r.share_index,
                sealed_share=bytes(r.sealed_share),
                submitted_by=r.submitted_by,
                submitted_at=_aware(r.submitted_at),
                seal_epoch=r.seal_epoch,
                mac=bytes(r.mac),
            )
            for r in self._run(lambda c: c.execute(query).all())
        ]

    def clear_drops(self, peer_id: str) -> None:
        self._run(
            lambda c: c.execute(
                delete(t.vault_share_drops).where(t.vault_share_drops.c.peer_id == peer_id)
            )
        )

    def put_transfer(self, peer_id: str, transfer: Transfer, *, now: datetime) -> bool:
        try:
            self._run(
                lambda c: c.execute(
                    insert(t.vault_transfers).values(
                        peer_id=peer_id,
                        sealed_root=transfer.sealed_root,
                        from_peer=transfer.from_peer,
                        created_at=now,
                        expires_at=transfer.expires_at,
                        seal_epoch=transfer.seal_epoch,
                        mac=transfer.mac,
                    )
                )
            )
        except IntegrityError:
            return False
        return True

    def take_transfer(self, peer_id: str, *, now: datetime) -> Transfer | None:
        def work(c: Connection) -> Transfer | None:
            tr = t.vault_transfers.c
            row = c.execute(
                select(tr.sealed_root, tr.from_peer, tr.expires_at, tr.seal_epoch, tr.mac).where(
                    tr.peer_id == peer_id
                )
            ).first()
            if row is None:
                return None
            c.execute(delete(t.vault_transfers).where(tr.peer_id == peer_id))
            if _aware(row.expires_at) < now:
                return None
            return Transfer(
                sealed_root=bytes(row.sealed_root),
                from_peer=row.from_peer,
                expires_at=_aware(row.expires_at),
                seal_epoch=row.seal_epoch,
                mac=bytes(row.mac),
            )

        return self._run(work)

    def purge(self, *, peers_before: datetime, drops_before: datetime, now: datetime) -> None:
        def work(c: Connection) -> None:
            c.execute(delete(t.vault_transfers).where(t.vault_transfers.c.expires_at < now))
            c.execute(
                delete(t.vault_share_drops).where(t.vault_share_drops.c.submitted_at < drops_before)
            )
            gone = select(t.vault_peers.c.id).where(t.vault_peers.c.seen_at < peers_before)
            c.execute(delete(t.vault_share_drops).where(t.vault_share_drops.c.peer_id.in_(gone)))
            c.execute(delete(t.vault_transfers).where(t.vault_transfers.c.peer_id.in_(gone)))
            c.execute(delete(t.vault_peers).where(t.vault_peers.c.seen_at < peers_before))

        self._run(work)

    def add_custodian(self, custodian_id: str, name: str, token_hash: bytes, now: datetime) -> bool:
        try:
            self._run(
                lambda c: c.execute(
                    insert(t.vault_custodians).values(
                        id=custodian_id, name=name, token_hash=token_hash, created_at=now
                    )
                )
            )
        except IntegrityError:
            return False
        return True

    def custodian_by_token(self, token_hash: bytes) -> str | None:
        cu = t.vault_custodians.c
        query = select(cu.name).where(cu.token_hash == token_hash, cu.revoked_at.is_(None))
        name = self._run(lambda c: c.execute(query).scalar_one_or_none())
        return None if name is None else str(name)


def _aware(at: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every time we store is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _key_values(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "purpose": record.purpose,
        "subject": record.subject,
        "version": record.version,
        "wrapped": record.wrapped,
        "state": record.state,
        "created_at": record.created_at,
        "destroy_after": record.destroy_after,
        "destroyed_at": record.destroyed_at,
    }


def _key(row: Any) -> KeyRecord:
    return KeyRecord(
        id=bytes(row.id),
        purpose=row.purpose,
        subject=row.subject,
        version=row.version,
        wrapped=None if row.wrapped is None else bytes(row.wrapped),
        state=row.state,
        created_at=row.created_at,
        destroy_after=row.destroy_after,
        destroyed_at=row.destroyed_at,
    )


# ---- memory -------------------------------------------------------------------------------------


class MemoryVaultStore:
    """The same contract without a database (unit tests); one lock makes each call atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: VaultMeta | None = None
        self._keys: dict[bytes, KeyRecord] = {}
        self._peers: dict[str, Peer] = {}
        self._drops: dict[str, dict[int, ShareDrop]] = {}
        self._transfers: dict[str, Transfer] = {}
        self._custodians: dict[bytes, str] = {}

    def meta(self) -> VaultMeta | None:
        return self._meta

    def create_meta(self, meta: VaultMeta, keys: list[KeyRecord]) -> bool:
        with self._lock:
            if self._meta is not None:
                return False
            self._meta = meta
            for record in keys:
                self._keys[record.id] = record
            return True

    def advance_generation(self, *, expected: int, keys: list[KeyRecord], now: datetime) -> bool:
        with self._lock:
            if self._meta is None or self._meta.generation != expected:
                return False
            self._meta = replace(self._meta, generation=expected + 1, rotated_at=now)
            for record in keys:
                self._keys[record.id] = record
            return True

    def in_open_transaction(self) -> bool:
        return False

    def raise_seal_epoch(self) -> int:
        with self._lock:
            assert self._meta is not None
            self._meta = replace(self._meta, seal_epoch=self._meta.seal_epoch + 1)
            self._transfers.clear()
            self._drops.clear()
            return self._meta.seal_epoch

    def key(self, key_id: bytes) -> KeyRecord | None:
        return self._keys.get(key_id)

    def newest(self, purpose: str, subject: str) -> KeyRecord | None:
        matching = [k for k in self._keys.values() if k.purpose == purpose and k.subject == subject]
        return max(matching, key=lambda k: k.version, default=None)

    def add_key(self, record: KeyRecord) -> bool:
        with self._lock:
            for k in self._keys.values():
                if (k.purpose, k.subject, k.version) == (
                    record.purpose,
                    record.subject,
                    record.version,
                ):
                    return False
            self._keys[record.id] = record
            return True

    def _update(
        self, match: Callable[[KeyRecord], bool], change: Callable[[KeyRecord], KeyRecord]
    ) -> int:
        with self._lock:
            hits = [k for k in self._keys.values() if match(k)]
            for k in hits:
                self._keys[k.id] = change(k)
            return len(hits)

    def destroy(self, purpose: str, subject: str, *, now: datetime) -> int:
        return self._update(
            lambda k: (k.purpose, k.subject) == (purpose, subject) and k.state != DESTROYED,
            lambda k: replace(k, wrapped=None, state=DESTROYED, destroyed_at=now),
        )

    def is_destroyed(self, purpose: str, subject: str) -> bool:
        return any(
            (k.purpose, k.subject, k.state) == (purpose, subject, DESTROYED)
            for k in self._keys.values()
        )

    def schedule_destruction(self, purpose: str, subject: str, *, at: datetime) -> int:
        return self._update(
            lambda k: (k.purpose, k.subject) == (purpose, subject) and k.state != DESTROYED,
            lambda k: replace(k, destroy_after=at),
        )

    def due(self, *, now: datetime, limit: int) -> list[KeyRecord]:
        hits = [
            k
            for k in self._keys.values()
            if k.destroy_after is not None and k.destroy_after <= now and k.state != DESTROYED
        ]
        return sorted(hits, key=lambda k: k.destroy_after or now)[:limit]

    def retire_superseded(self) -> int:
        newest: dict[tuple[str, str], int] = {}
        for k in self._keys.values():
            pair = (k.purpose, k.subject)
            newest[pair] = max(newest.get(pair, 0), k.version)
        return self._update(
            lambda k: k.state == ACTIVE and k.version < newest[(k.purpose, k.subject)],
            lambda k: replace(k, state=RETIRED),
        )

    def counts(self) -> list[KeyCount]:
        tally: dict[tuple[str, int, str], int] = {}
        for k in self._keys.values():
            tally[(k.purpose, k.version, k.state)] = (
                tally.get((k.purpose, k.version, k.state), 0) + 1
            )
        return [KeyCount(p, v, s, n) for (p, v, s), n in sorted(tally.items())]

    def save_peer(self, peer: Peer) -> None:
        with self._lock:
            self._peers[peer.id] = peer

    def peers(self, *, seen_since: datetime) -> list[Peer]:
        return sorted(
            (p for p in self._peers.values() if p.seen_at >= seen_since),
            key=lambda p: p.started_at,
        )

    def forget_peer(self, peer_id: str) -> None:
        with self._lock:
            self._peers.pop(peer_id, None)
            self._drops.pop(peer_id, None)
            self._transfers.pop(peer_id, None)

    def drop_share(self, peer_id: str, drop: ShareDrop) -> bool:
        with self._lock:
            box = self._drops.setdefault(peer_id, {})
            if drop.share_index in box:
                return False
            box[drop.share_index] = drop
            return True

    def drops(self, peer_id: str, *, since: datetime) -> list[ShareDrop]:
        box = self._drops.get(peer_id, {})
        return [d for _, d in sorted(box.items()) if d.submitted_at >= since]

    def clear_drops(self, peer_id: str) -> None:
        with self._lock:
            self._drops.pop(peer_id, None)

    def put_transfer(self, peer_id: str, transfer: Transfer, *, now: datetime) -> bool:
        with self._lock:
            if peer_id in self._transfers:
                return False
            self._transfers[peer_id] = transfer
            return True

    def take_transfer(self, peer_id: str, *, now: datetime) -> Transfer | None:
        with self._lock:
            transfer = self._transfers.pop(peer_id, None)
        return None if transfer is None or transfer.expires_at < now else transfer

    def purge(self, *, peers_before: datetime, drops_before: datetime, now: datetime) -> None:
        with self._lock:
            for peer_id in [p.id for p in self._peers.values() if p.seen_at < peers_before]:
                self._peers.pop(peer_id)
                self._drops.pop(peer_id, None)
                self._transfers.pop(peer_id, None)
            for box in self._drops.values():
                for index in [i for i, d in box.items() if d.submitted_at < drops_before]:
                    box.pop(index)
            for peer_id in [p for p, tr in self._transfers.items() if tr.expires_at < now]:
                self._transfers.pop(peer_id)

    def add_custodian(self, custodian_id: str, name: str, token_hash: bytes, now: datetime) -> bool:
        with self._lock:
            if name in self._custodians.values():
                return False
            self._custodians[token_hash] = name
            return True

    def custodian_by_token(self, token_hash: bytes) -> str | None:
        return self._custodians.get(token_hash)
