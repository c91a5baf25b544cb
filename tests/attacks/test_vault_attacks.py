"""Someone who can write the database but does not hold the peer secret, against vault processes
on a real database (SQLite and PostgreSQL): each ``Vault`` here is built as ``bootstrap`` builds
a server's, on the test database, and the attacker writes rows with plain SQL.

The attacker knows the code (it is open source): the formats of drops and transfers, their
contexts, how their MACs are laid out. What they lack is the peer secret and the custodians'
shares. And, on SQLite, the vault's work inside an application's open transaction: a user's
first key is made there without waiting, and a rollback leaves no key behind that a later
ciphertext could be sealed under.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from zeropay.adapters.clock import FixedClock
from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.vault import crypto
from zeropay.adapters.vault.shares import Share, combine
from zeropay.adapters.vault.store import MemoryVaultStore, Peer, SqlVaultStore, vault_engine
from zeropay.adapters.vault.vault import Vault
from zeropay.bootstrap import Container, build_vault
from zeropay.domain.errors import VaultSealed
from zeropay.services import audit

SECRET = b"the servers' peer secret, 32 bytes or more"
GUESSED = b"the attacker's best guess at that secret.."
SHARES = 5
THRESHOLD = 3


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = make_engine(database_url)
    yield built
    built.dispose()  # the vaults' own engines go with it


def process(engine: Engine, clock: FixedClock, *, store: SqlVaultStore | None = None) -> Vault:
    """A server process's vault, as ``bootstrap.build_vault`` makes it, with the peer secret."""
    return Vault(store or SqlVaultStore(vault_engine(engine)), clock=clock, peer_secret=SECRET)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(text(sql), params).all())


def write(engine: Engine, sql: str, **params: Any) -> None:
    """What the attacker can do: any write, committed."""
    with engine.begin() as c:
        c.execute(text(sql), params)


def share_context(peer_id: str, index: int) -> bytes:
    return crypto.length_prefixed(b"share", peer_id, str(index))


def transfer_context(peer_id: str) -> bytes:
    return crypto.length_prefixed(b"transfer", peer_id)


def micros(at: datetime) -> str:
    return str((at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def forged_drop_mac(to: str, index: int, epoch: int, at: datetime, by: str, sealed: bytes) -> bytes:
    """The drop MAC laid out as the code lays it out, under the attacker's guess."""
    return crypto.mac(
        GUESSED,
        crypto.length_prefixed(
            b"zeropay/vault/drop/v2", to, str(index), str(epoch), micros(at), by, sealed
        ),
    )


def transfer_mac(
    secret: bytes, to: str, sender: str, epoch: int, expires: datetime, sealed: bytes
) -> bytes:
    return crypto.mac(
        secret,
        crypto.length_prefixed(
            b"zeropay/vault/transfer/v2", to, sender, str(epoch), micros(expires), sealed
        ),
    )


def public_key_of(engine: Engine, peer_id: str) -> bytes:
    [row] = rows(engine, "SELECT public_key FROM vault_peers WHERE id = :id", id=peer_id)
    return bytes(row.public_key)


def epoch(engine: Engine) -> int:
    return int(rows(engine, "SELECT seal_epoch FROM vault_meta")[0].seal_epoch)


def mailboxes(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every waiting share drop and key transfer: (peer_id, index, sealed) and (peer_id, sealed)."""
    drops = rows(engine, "SELECT peer_id, share_index, sealed_share FROM vault_share_drops")
    transfers = rows(engine, "SELECT peer_id, sealed_root FROM vault_transfers")
    return drops, transfers


def where(row: str = "usr_1") -> dict[str, str]:
    return {"table": "users", "column": "email", "row_id": row}


# ---- (a) a server's own peer row rewritten with the attacker's key ------------------------------


class RewrittenAfterEveryAnnounce(SqlVaultStore):
    """The attacker wins every race: right after the target process writes its peer row, the
    row's public key is the attacker's."""

    def __init__(self, engine: Engine, *, attacker_public: bytes) -> None:
        super().__init__(vault_engine(engine))
        self.target = ""
        self._app_engine = engine
        self._attacker_public = attacker_public

    def save_peer(self, peer: Peer) -> None:
        super().save_peer(peer)
        if peer.id == self.target:
            write(
                self._app_engine,
                "UPDATE vault_peers SET public_key = :key WHERE id = :id",
                key=self._attacker_public,
                id=peer.id,
            )


def test_a_servers_peer_row_rewritten_with_the_attackers_key_gets_no_share_the_attacker_opens(
    engine: Engine, clock: FixedClock
) -> None:
    attacker = crypto.new_box_key()
    store = RewrittenAfterEveryAnnounce(engine, attacker_public=crypto.public_bytes(attacker))
    server = process(engine, clock, store=store)
    store.target = server.peer_id
    shares = server.initialize(shares=SHARES, threshold=THRESHOLD)
    other = process(engine, clock)  # another worker, sealed, whose row nobody touched
    server.sync()
    other.sync()
    assert public_key_of(engine, server.peer_id) == crypto.public_bytes(attacker)

    for custodian, share in zip(("ana", "bo"), shares[:2], strict=True):
        server.submit_share(share.text(), submitted_by=f"custodian:{custodian}")
    drops, transfers = mailboxes(engine)
    # The mechanism ran: each share waits for the other worker, sealed to its real key.
    assert sorted((d.peer_id, d.share_index) for d in drops) == [
        (other.peer_id, 1),
        (other.peer_id, 2),
    ]
    for drop in drops:
        for peer_id in (drop.peer_id, server.peer_id):
            with pytest.raises(crypto.DecryptionFailed):
                crypto.open_box(
                    attacker,
                    bytes(drop.sealed_share),
                    context=share_context(peer_id, drop.share_index),
                )
    assert transfers == []
    # The shares the server kept in its memory count: a third unseals it.
    assert server.submit_share(shares[2].text(), submitted_by="custodian:cy").sealed is False
    server.sync()  # an unsealed server sends the key on: never under the attacker's key
    _, transfers = mailboxes(engine)
    assert [tr.peer_id for tr in transfers] == [other.peer_id]
    for row in transfers:
        with pytest.raises(crypto.DecryptionFailed):
            crypto.open_box(attacker, bytes(row.sealed_root), context=transfer_context(row.peer_id))


# ---- (b) the attacker's own vault in vault_meta, their shares and root planted ------------------


def _their_vault(clock: FixedClock) -> tuple[Any, list[Share]]:
    """A vault the attacker made: its shape and its shares, so its root opens its root check."""
    store = MemoryVaultStore()
    pieces = Vault(store, clock=clock).initialize(shares=SHARES, threshold=2)
    meta = store.meta()
    assert meta is not None
    return meta, pieces


def test_a_sealed_server_given_the_attackers_vault_shares_and_root_stays_sealed(
    engine: Engine, clock: FixedClock
) -> None:
    server = process(engine, clock)
    server.initialize(shares=SHARES, threshold=THRESHOLD)
    server.sync()
    meta, theirs = _their_vault(clock)
    write(
        engine,
        "UPDATE vault_meta SET vault_id = :vault_id, shares = :shares, threshold = :threshold, "
        "root_check = :root_check, share_commitments = :commitments",
        vault_id=meta.vault_id,
        shares=meta.shares,
        threshold=meta.threshold,
        root_check=meta.root_check,
        commitments=json.dumps([c.hex() for c in meta.commitments]),
    )
    target = server.peer_id
    key = public_key_of(engine, target)
    now, current = clock.now(), epoch(engine)
    with engine.begin() as c:
        for share in theirs[:2]:
            sealed = crypto.seal_box(key, share.value, context=share_context(target, share.index))
            c.execute(
                text(
                    "INSERT INTO vault_share_drops (peer_id, share_index, sealed_share, "
                    "submitted_by, submitted_at, seal_epoch, mac) "
                    "VALUES (:peer, :index, :sealed, 'custodian:eve', :at, :epoch, :mac)"
                ),
                {
                    "peer": target,
                    "index": share.index,
                    "sealed": sealed,
                    "at": now,
                    "epoch": current,
                    "mac": forged_drop_mac(
                        target, share.index, current, now, "custodian:eve", sealed
                    ),
                },
            )
    root = combine(theirs[:2], threshold=2)  # their root: it opens their root check
    _plant_transfer(engine, clock, target, root, secret=GUESSED)
    server.sync()
    assert server.sealed
    assert server.status().received == 0  # the planted shares count for nothing either
    with pytest.raises(VaultSealed):
        server.encrypt(b"x", **where())

    # The same transfer authenticated under the real secret would have been taken: the forgery
    # was perfect but for the MAC, so the MAC is what kept the server sealed.
    _plant_transfer(engine, clock, target, root, secret=SECRET)
    server.sync()
    assert not server.sealed


def _plant_transfer(
    engine: Engine, clock: FixedClock, target: str, root: bytes, *, secret: bytes
) -> None:
    sealed = crypto.seal_box(public_key_of(engine, target), root, context=transfer_context(target))
    current = epoch(engine)
    expires = clock.now() + timedelta(seconds=60)
    write(engine, "DELETE FROM vault_transfers WHERE peer_id = :peer", peer=target)
    write(
        engine,
        "INSERT INTO vault_transfers (peer_id, sealed_root, from_peer, created_at, expires_at, "
        "seal_epoch, mac) VALUES (:peer, :sealed, 'peer_eve', :now, :expires, :epoch, :mac)",
        peer=target,
        sealed=sealed,
        now=clock.now(),
        expires=expires,
        epoch=current,
        mac=transfer_mac(secret, target, "peer_eve", current, expires, sealed),
    )


# ---- (c) the attacker's own peer rows -----------------------------------------------------------


def test_a_peer_row_the_attacker_registers_is_sent_no_share_and_no_key(
    engine: Engine, clock: FixedClock
) -> None:
    first = process(engine, clock)
    shares = first.initialize(shares=SHARES, threshold=THRESHOLD)
    second = process(engine, clock)
    first.sync()
    second.sync()
    attacker = crypto.public_bytes(crypto.new_box_key())
    honest_proof = rows(engine, "SELECT proof FROM vault_peers WHERE id = :id", id=second.peer_id)
    registered = {
        "peer_evil_without_proof": None,
        "peer_evil_with_guessed_proof": crypto.mac(
            GUESSED, crypto.length_prefixed(b"zeropay/vault/peer/v1", "peer_evil_2", attacker)
        ),
        # A real proof, copied from an honest row: it names that row's id and key, not these.
        "peer_evil_with_copied_proof": bytes(honest_proof[0].proof),
    }
    for peer_id, proof in registered.items():
        write(
            engine,
            "INSERT INTO vault_peers (id, public_key, proof, host, pid, sealed, started_at, "
            "seen_at) VALUES (:id, :key, :proof, 'evil', 666, 1, :now, :now)",
            id=peer_id,
            key=attacker,
            proof=proof,
            now=clock.now(),
        )

    for custodian, share in zip(("ana", "bo", "cy"), shares[:THRESHOLD], strict=True):
        first.submit_share(share.text(), submitted_by=f"custodian:{custodian}")
    drops, _ = mailboxes(engine)
    assert {d.peer_id for d in drops} == {second.peer_id}  # the honest worker, and only it
    second.sync()
    assert not first.sealed and not second.sealed

    late = process(engine, clock)  # a process that starts after the unseal
    late.sync()
    first.sync()
    _, transfers = mailboxes(engine)
    assert {tr.peer_id for tr in transfers} == {late.peer_id}
    second.sync()
    _, transfers = mailboxes(engine)
    assert {tr.peer_id for tr in transfers} == {late.peer_id}
    late.sync()
    assert not late.sealed


# ---- (d) what was sent before a seal order ------------------------------------------------------


def _unsealed_and_starting(engine: Engine, clock: FixedClock) -> tuple[Vault, Vault, Any]:
    """An unsealed server and a sealed one it has just left the key for; the transfer row as a
    reader of the database saw it before anyone picked it up."""
    running = process(engine, clock)
    running.unseal_with(running.initialize(shares=SHARES, threshold=THRESHOLD)[:THRESHOLD])
    starting = process(engine, clock)
    starting.sync()  # announces itself sealed
    running.sync()  # leaves it the key
    [copied] = rows(
        engine, "SELECT * FROM vault_transfers WHERE peer_id = :id", id=starting.peer_id
    )
    return running, starting, copied


def test_a_transfer_waiting_when_the_seal_order_comes_does_not_unseal_anyone_after_it(
    engine: Engine, clock: FixedClock
) -> None:
    running, starting, copied = _unsealed_and_starting(engine, clock)
    running.seal_everywhere()
    assert mailboxes(engine) == ([], [])  # the order deleted it
    # The attacker puts the copy back as it was.
    _put_back(engine, copied)
    starting.sync()
    assert starting.sealed and running.sealed


def test_a_transfer_put_back_after_a_seal_order_with_the_epoch_set_back_does_not_unseal(
    engine: Engine, clock: FixedClock
) -> None:
    running, starting, copied = _unsealed_and_starting(engine, clock)
    before = epoch(engine)
    running.seal_everywhere()
    starting.sync()
    assert starting.sealed
    # Two hours on, a writer of the database sets the seal epoch back to what it was when the
    # copied transfer was made and puts the copy back, fresh: its MAC covers neither its time
    # nor its expiry, and the process still has the key it was sealed to.
    clock.advance(hours=2)
    write(engine, "UPDATE vault_meta SET seal_epoch = :epoch", epoch=before)
    _put_back(engine, copied, expires_at=clock.now() + timedelta(seconds=60))
    starting.sync()
    assert starting.sealed, "a seal order was undone by a database writer without the secret"
    running.sync()
    assert running.sealed


def test_share_drops_put_back_after_a_seal_order_with_the_epoch_set_back_do_not_unseal(
    engine: Engine, clock: FixedClock
) -> None:
    """Drops wait in the database until the quorum is met, up to an hour: any backup taken
    while custodians unseal holds them."""
    receiving = process(engine, clock)
    shares = receiving.initialize(shares=SHARES, threshold=THRESHOLD)
    worker = process(engine, clock)
    receiving.sync()
    worker.sync()
    for custodian, share in zip(("ana", "bo", "cy"), shares[:THRESHOLD], strict=True):
        receiving.submit_share(share.text(), submitted_by=f"custodian:{custodian}")
    copied = rows(engine, "SELECT * FROM vault_share_drops WHERE peer_id = :id", id=worker.peer_id)
    assert len(copied) == THRESHOLD
    worker.sync()
    assert not worker.sealed
    before = epoch(engine)
    receiving.seal_everywhere()
    worker.sync()
    assert worker.sealed
    clock.advance(hours=2)  # the drops' hour is long over: their MAC does not cover their time
    write(engine, "UPDATE vault_meta SET seal_epoch = :epoch", epoch=before)
    with engine.begin() as c:
        for row in copied:
            c.execute(
                text(
                    "INSERT INTO vault_share_drops (peer_id, share_index, sealed_share, "
                    "submitted_by, submitted_at, seal_epoch, mac) VALUES (:peer_id, "
                    ":share_index, :sealed_share, :submitted_by, :at, :seal_epoch, :mac)"
                ),
                {**row._asdict(), "at": clock.now()},
            )
    worker.sync()
    assert worker.sealed, "a seal order was undone by a database writer without the secret"


def _put_back(engine: Engine, copied: Any, **changed: Any) -> None:
    values = {**copied._asdict(), **changed}
    write(
        engine,
        "INSERT INTO vault_transfers (peer_id, sealed_root, from_peer, created_at, expires_at, "
        "seal_epoch, mac) VALUES (:peer_id, :sealed_root, :from_peer, :created_at, :expires_at, "
        ":seal_epoch, :mac)",
        **values,
    )


# ---- SQLite: a user's first key inside an application transaction -------------------------------


class Rollback(Exception):
    """Raised inside a unit of work to roll it back."""


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_users_first_key_is_made_inside_an_open_transaction_and_a_rollback_leaves_none_in_use(
    container: Container,
) -> None:
    """On SQLite the use case's transaction holds the write lock. A first key made on a second
    connection would wait for it (30 s, then "database is locked"); made inside it, it goes
    when the transaction rolls back, so it must not outlive it in the vault's cache: a
    ciphertext sealed later under that cached key would name a key no database holds, and
    would stop opening as soon as the cache forgot it (another process, a restart, 60 s)."""
    ctx, vault = container.ctx, container.vault
    assert vault is not None and container.settings.vault_dev_file is not None

    ctx.run(lambda uow: audit.record(ctx, uow, "x", actor="usr_new", subject="s"))

    seen: list[bytes] = []

    def doomed(uow: Any) -> None:
        audit.record(ctx, uow, "x", actor="usr_gone", subject="s")
        # A second field of the same user in the same transaction finds the key made there.
        seen.append(vault.encrypt(b"inside", **where("usr_gone"), subject="usr_gone"))
        assert vault.decrypt(seen[0], **where("usr_gone")) == b"inside"
        raise Rollback

    with pytest.raises(Rollback):
        ctx.run(doomed)
    assert rows(container.engine, "SELECT id FROM vault_keys WHERE subject = 'usr_gone'") == []
    # What was sealed under the rolled-back key names a key that no longer exists anywhere.
    with pytest.raises(crypto.DecryptionFailed):
        vault.decrypt(seen[0], **where("usr_gone"))

    # Later, inside a transaction that commits (the key made there again) and outside any:
    # both must open for a process with an empty cache, and for this one once its cache is
    # cleared; so must the first user's entry, whose key was made inside its transaction.
    ctx.run(lambda uow: audit.record(ctx, uow, "y", actor="usr_gone", subject="s"))
    later = vault.encrypt(b"later", **where("usr_gone"), subject="usr_gone")
    other = build_vault(container.settings, container.engine)
    vault.seal()
    vault.auto_unseal(container.settings.vault_dev_file)
    with container.engine.connect() as c:
        entries = c.execute(select(t.audit_log).order_by(t.audit_log.c.seq)).all()
    assert [(e.event, e.actor) for e in entries] == [("x", "usr_new"), ("y", "usr_gone")]
    for reader in (other, vault):
        assert reader.decrypt(later, **where("usr_gone")) == b"later"
        for entry in entries:
            at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)  # SQLite: naive
            row_id = audit.data_row_id(actor=entry.actor, subject=entry.subject, at=at)
            opened = reader.decrypt(
                bytes(entry.data), table="audit_log", column="data", row_id=row_id
            )
            assert opened == b"{}"
