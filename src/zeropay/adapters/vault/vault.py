"""The key vault: a root key rebuilt from custodians' shares, data keys wrapped under it.

Hierarchy::

    root key (256 bits; Shamir-shared among custodians; only ever in process memory)
     +-- purpose keys, one per purpose and version (audit, mail, webhook, general, index)
     +-- per user: a personal key and an instrument key (both crypto-shredded at erasure; the
         instrument key opens only through ``Vault.revealer``) and an AML retention key
         (destroyed when the retention period ends)

Each data key is random, sealed under the root key (``crypto.wrap``) in ``vault_keys``; field
ciphertexts name their key's id, so every version stays readable until it is destroyed.

Processes start sealed. A share given to a process stays in its memory; with the peer secret
(``ZEROPAY_VAULT_PEER_SECRET``) it is also sealed to every other live sealed process's X25519
key (``vault_peers``, rows proven by an HMAC under the secret) and left for it in
``vault_share_drops``, so one submission reaches all of them and each rebuilds the root key
itself. A process that starts later, or a CLI command that needs the keys, gets the root key
sealed to its key by an unsealed process (``vault_transfers``, deleted on pickup, gone after a
minute). Drops and transfers carry an HMAC under the secret over recipient, time and seal
epoch: a row from anyone else, or from before the last seal order, is ignored, and a process
that seals takes a new X25519 key. See the "Key vault" section of README.md for the threat
model.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zeropay.adapters.clock import SystemClock
from zeropay.adapters.vault import crypto
from zeropay.adapters.vault.shares import Share, check_scheme, combine, parse_share, split
from zeropay.adapters.vault.store import (
    ACTIVE,
    DESTROYED,
    KeyCount,
    KeyRecord,
    MemoryVaultStore,
    Peer,
    ShareDrop,
    Transfer,
    VaultMeta,
    VaultStore,
)
from zeropay.domain import bounds
from zeropay.domain.errors import (
    ConfigurationError,
    DetokenizationRefused,
    KeyDestroyed,
    ShareRefused,
    VaultSealed,
    VaultStateConflict,
)
from zeropay.services.ports import Clock

log = logging.getLogger("zeropay.vault")

PERSONAL = "personal"
RETENTION = "retention"
# A payment instrument's number: under a key of its owner's (shredded with the personal key)
# that only the funding adapter's revealer opens (``Vault.revealer``); ``decrypt`` refuses it.
INSTRUMENT = "instrument"
REVEALED_ONLY = frozenset({("instruments", "number")})
SHREDDED = (PERSONAL, INSTRUMENT)
INDEX = "index"
GENERAL = "general"
# Purpose keys exist from ``init``; every one but the blind-index key gets a new version at
# each rotation (a new index key would change every index, so lookups by email would miss).
PURPOSES = (GENERAL, "audit", "mail", "webhook", INDEX)
ROTATED = tuple(p for p in PURPOSES if p != INDEX)
PURPOSE_OF_TABLE = {
    "audit_log": "audit",
    "outbound_email": "mail",
    "webhook_endpoints": "webhook",
    "webhook_secrets": "webhook",
}
ROOT_CHECK = b"zeropay vault root check"
INDEX_INFO = b"zeropay/index/v1/"


@dataclass(frozen=True, slots=True)
class UnsealProgress:
    sealed: bool  # this process, after the share was taken
    received: int  # distinct shares waiting for the quorum (for a sealed process)
    threshold: int
    processes: int  # sealed processes the share was sent to


@dataclass(frozen=True, slots=True)
class Unsealed:
    """How this process got the root key: custodians' shares (who submitted them, in the order
    they came: the last one completed the quorum) or a transfer from another process."""

    by: tuple[str, ...]
    shares: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VaultStatus:
    initialized: bool
    sealed: bool
    development: bool
    vault_id: str | None = None
    shares: int | None = None
    threshold: int | None = None
    generation: int | None = None
    received: int = 0
    keys: list[KeyCount] = field(default_factory=list)
    processes: list[Peer] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "initialized": self.initialized,
            "sealed": self.sealed,
            "development": self.development,
            "vault_id": self.vault_id,
            "shares": self.shares,
            "threshold": self.threshold,
            "key_version": self.generation,
            "shares_received": self.received,
            "keys": [
                {"purpose": k.purpose, "version": k.version, "state": k.state, "count": k.keys}
                for k in self.keys
            ],
            "processes": [
                {
                    "id": p.id,
                    "host": p.host,
                    "pid": p.pid,
                    "sealed": p.sealed,
                    "seen_at": p.seen_at.isoformat(),
                }
                for p in self.processes
            ],
        }


class _KeyCache:
    """Unwrapped data keys by id, bounded, each kept at most ``ttl_s``: a key destroyed by
    another process stops working here within that time."""

    def __init__(self, *, size_max: int, ttl_s: float, monotonic: Callable[[], float]) -> None:
        self._keys: OrderedDict[bytes, tuple[bytes, KeyRecord, float]] = OrderedDict()
        self._current: dict[tuple[str, str], tuple[bytes, float]] = {}
        self._size_max = size_max
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()

    def get(self, key_id: bytes) -> tuple[bytes, KeyRecord] | None:
        with self._lock:
            hit = self._keys.get(key_id)
            if hit is None:
                return None
            if hit[2] < self._monotonic():
                del self._keys[key_id]
                return None
            self._keys.move_to_end(key_id)
            return hit[0], hit[1]

    def put(self, key: bytes, record: KeyRecord) -> None:
        with self._lock:
            self._keys[record.id] = (key, record, self._monotonic() + self._ttl_s)
            self._keys.move_to_end(record.id)
            while len(self._keys) > self._size_max:
                self._keys.popitem(last=False)

    def current(self, purpose: str, subject: str) -> bytes | None:
        with self._lock:
            hit = self._current.get((purpose, subject))
            if hit is None or hit[1] < self._monotonic():
                return None
            return hit[0]

    def set_current(self, record: KeyRecord) -> None:
        with self._lock:
            if len(self._current) >= self._size_max:
                self._current.clear()
            self._current[(record.purpose, record.subject)] = (
                record.id,
                self._monotonic() + self._ttl_s,
            )

    def forget_subject(self, subject: str) -> None:
        with self._lock:
            for key_id in [k for k, v in self._keys.items() if v[1].subject == subject]:
                del self._keys[key_id]
            for pair in [p for p in self._current if p[1] == subject]:
                del self._current[pair]

    def forget_current(self) -> None:
        with self._lock:
            self._current.clear()

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._current.clear()


class Vault:
    """The ``KeyRing`` port, backed by the vault; also what the ``vault`` CLI and API drive."""

    def __init__(
        self,
        store: VaultStore,
        *,
        clock: Clock,
        peer_secret: bytes | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        monotonic: Callable[[], float] = time.monotonic,
        cache_ttl_s: float = bounds.VAULT_KEY_CACHE_TTL_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._peer_secret = peer_secret
        self._random = random_bytes
        self._monotonic = monotonic
        self._cache = _KeyCache(
            size_max=bounds.VAULT_KEY_CACHE_MAX, ttl_s=cache_ttl_s, monotonic=monotonic
        )
        self._lock = threading.RLock()
        self._root: bytes | None = None
        self._meta: VaultMeta | None = None
        self._epoch = 0
        self._epoch_floor = 0  # the highest seal epoch this process has seen: it never goes back
        self._index_keys: dict[str, bytes] = {}
        # Shares given to this process while sealed: kept here, never in the database.
        self._own_shares: dict[int, tuple[Share, str, datetime]] = {}
        self._box_key = crypto.new_box_key()
        self.peer_id = f"peer_{secrets.token_hex(12)}"
        self._started_at = clock.now()
        self._announced_at = 0.0
        self._purged_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Called once this process unseals from shares or a transfer (the audit log).
        self.on_unsealed: Callable[[Unsealed], None] | None = None

    def __repr__(self) -> str:
        return f"Vault(peer={self.peer_id}, sealed={self.sealed})"

    @classmethod
    def ephemeral(cls, clock: Clock | None = None) -> Vault:
        """An unsealed development vault that lives in memory only (unit tests)."""
        vault = cls(MemoryVaultStore(), clock=clock or SystemClock())
        vault.unseal_with(vault.initialize(shares=1, threshold=1, development=True))
        return vault

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def sealed(self) -> bool:
        return self._root is None

    def initialize(self, *, shares: int, threshold: int, development: bool = False) -> list[Share]:
        """Create the root key and the purpose keys, and hand back the shares: the only time
        they exist together. The root key is not kept: this process stays sealed."""
        check_scheme(shares=shares, threshold=threshold)
        if threshold < 2 and not development:
            raise ValueError("a threshold of 1 would let one person unseal alone")
        now = self._clock.now()
        root = self._random(crypto.KEY_BYTES)
        vault_id = f"vlt_{secrets.token_hex(10)}"
        pieces = split(root, shares=shares, threshold=threshold, vault_id=vault_id)
        meta = VaultMeta(
            vault_id=vault_id,
            shares=shares,
            threshold=threshold,
            root_check=crypto.wrap(
                root, ROOT_CHECK, aad=_check_aad(vault_id), random_bytes=self._random
            ),
            commitments=tuple(p.commitment() for p in pieces),
            generation=1,
            seal_epoch=0,
            development=development,
            created_at=now,
        )
        keys = [self._new_key(root, vault_id, purpose, "", 1, now) for purpose in PURPOSES]
        if not self._store.create_meta(meta, keys):
            raise VaultStateConflict("the vault is already initialized")
        self._cache.clear()  # the new keys were cached under a root this process does not keep
        log.info("vault initialized", extra={"vault_id": vault_id, "threshold": threshold})
        return pieces

    def unseal_with(self, shares: Sequence[Share]) -> None:
        """Unseal this process from shares in hand (the development file, tests)."""
        meta = self._require_meta()
        for share in shares:
            _verify_share(meta, share)
        self._adopt(combine(list(shares), threshold=meta.threshold), meta)

    def seal(self) -> None:
        with self._lock:
            self._root = None
            self._index_keys.clear()
            self._own_shares.clear()
            self._cache.clear()
            # A new key pair: whatever was sealed to the old one (a transfer or shares copied
            # before the seal and put back later) opens no more. Announced at the next sync.
            self._box_key = crypto.new_box_key()
            self._announced_at = 0.0
        log.warning("vault sealed in this process", extra={"peer": self.peer_id})

    def seal_everywhere(self) -> None:
        """Every process seals at its next sync (within a second); this one at once."""
        self._require_meta()
        self._store.raise_seal_epoch()
        self.seal()

    def _adopt(self, root: bytes, meta: VaultMeta) -> None:
        try:
            crypto.unwrap(root, meta.root_check, aad=_check_aad(meta.vault_id))
        except crypto.DecryptionFailed as exc:
            raise ShareRefused(
                "the shares rebuild a key that does not open this vault", reason="corrupt"
            ) from exc
        with self._lock:
            self._root = root
            self._meta = meta
            self._epoch = meta.seal_epoch
            self._own_shares.clear()
            self._cache.clear()
            self._index_keys.clear()
        log.info("vault unsealed in this process", extra={"peer": self.peer_id})

    def _require_meta(self) -> VaultMeta:
        meta = self._store.meta()
        if meta is None:
            raise VaultStateConflict("the vault is not initialized: run `zeropay vault init`")
        return meta

    def _require_root(self) -> tuple[bytes, VaultMeta]:
        root, meta = self._root, self._meta
        if root is None or meta is None:
            # No look at the database here: this may run inside a use case's transaction, and
            # on SQLite a write from another connection would wait for that very transaction.
            # The background sync (every second) and ``submit_share`` pick up shares.
            raise VaultSealed("the vault is sealed: key custodians must unseal it")
        return root, meta

    # ---- KeyRing --------------------------------------------------------------------------------

    def encrypt(
        self,
        plaintext: bytes,
        *,
        table: str,
        column: str,
        row_id: str,
        subject: str | None = None,
        retained: bool = False,
    ) -> bytes:
        if retained and not subject:
            raise ValueError("only a subject's data is retained")
        if subject and retained:
            purpose = RETENTION
        elif subject:
            purpose = INSTRUMENT if (table, column) in REVEALED_ONLY else PERSONAL
        else:
            purpose = PURPOSE_OF_TABLE.get(table, GENERAL)
        record, key = self._current_key(purpose, subject or "")
        return crypto.seal_field(
            key,
            record.id,
            plaintext,
            table=table,
            column=column,
            row_id=row_id,
            random_bytes=self._random,
        )

    def decrypt(
        self,
        ciphertext: bytes,
        *,
        table: str,
        column: str,
        row_id: str,
        subject: str | None = None,
    ) -> bytes:
        key, record = self._key_by_id(crypto.field_key_id(ciphertext))
        if record.purpose == INSTRUMENT:
            raise DetokenizationRefused("an instrument's number opens only for the funding adapter")
        return _open(
            key, record, ciphertext, table=table, column=column, row_id=row_id, subject=subject
        )

    def revealer(self) -> Revealer:
        """The one capability that opens instruments' numbers; bootstrap hands it to the
        funding adapter's detokenizer and to nobody else."""
        return Revealer(self)

    def blind_index(self, value: bytes, *, purpose: str) -> bytes:
        if not purpose:
            raise ValueError("a blind index needs a purpose")
        key = self._index_keys.get(purpose)
        if key is None:
            root, meta = self._require_root()
            record = self._store.newest(INDEX, "")
            if record is None or record.version != 1:
                raise VaultStateConflict("the vault has no blind-index key")
            key = crypto.derive(self._unwrap(root, meta, record), INDEX_INFO + purpose.encode())
            self._index_keys[purpose] = key
        return crypto.mac(key, value)

    def destroy_subject(self, subject: str, *, now: datetime) -> int:
        """Crypto-shred. Needs no root key, so it works while the vault is sealed."""
        if not subject:
            raise ValueError("a subject is needed")
        destroyed = sum(self._store.destroy(p, subject, now=now) for p in SHREDDED)
        self._cache.forget_subject(subject)
        log.info("personal key destroyed", extra={"subject": subject, "versions": destroyed})
        return destroyed

    def schedule_retention_end(self, subject: str, *, destroy_after: datetime) -> None:
        self._store.schedule_destruction(RETENTION, subject, at=destroy_after)

    def destroy_due(self, *, now: datetime, limit: int) -> int:
        destroyed = 0
        for record in self._store.due(now=now, limit=limit):
            destroyed += self._store.destroy(record.purpose, record.subject, now=now)
            self._cache.forget_subject(record.subject)
        return destroyed

    # ---- keys -----------------------------------------------------------------------------------

    def _new_key(
        self, root: bytes, vault_id: str, purpose: str, subject: str, version: int, now: datetime
    ) -> KeyRecord:
        key = self._random(crypto.KEY_BYTES)
        key_id = self._random(crypto.KEY_ID_BYTES)
        record = KeyRecord(
            id=key_id,
            purpose=purpose,
            subject=subject,
            version=version,
            wrapped=crypto.wrap(
                root,
                key,
                aad=_key_aad(vault_id, key_id, purpose, subject, version),
                random_bytes=self._random,
            ),
            state=ACTIVE,
            created_at=now,
        )
        if not self._store.in_open_transaction():
            self._cache.put(key, record)
        return record

    def _unwrap(self, root: bytes, meta: VaultMeta, record: KeyRecord) -> bytes:
        if record.state == DESTROYED or record.wrapped is None:
            raise KeyDestroyed("this data was crypto-shredded: its key is destroyed")
        key = crypto.unwrap(
            root,
            record.wrapped,
            aad=_key_aad(meta.vault_id, record.id, record.purpose, record.subject, record.version),
        )
        if not self._store.in_open_transaction():  # that transaction may yet roll back
            self._cache.put(key, record)
        return key

    def _key_by_id(self, key_id: bytes) -> tuple[bytes, KeyRecord]:
        root, meta = self._require_root()
        hit = self._cache.get(key_id)
        if hit is not None:
            return hit
        record = self._store.key(key_id)
        if record is None:
            raise crypto.DecryptionFailed("the ciphertext names a key this vault does not hold")
        return self._unwrap(root, meta, record), record

    def _current_key(
        self, purpose: str, subject: str, *, version_min: int = 1
    ) -> tuple[KeyRecord, bytes]:
        root, meta = self._require_root()
        key_id = self._cache.current(purpose, subject)
        if key_id is not None:
            hit = self._cache.get(key_id)
            if hit is not None and hit[1].version >= version_min:
                return hit[1], hit[0]
        record = self._store.newest(purpose, subject)
        if record is not None and record.state == DESTROYED:
            raise KeyDestroyed("this subject's data was crypto-shredded: its key is destroyed")
        if record is None or record.version < version_min:
            # A subject's first key (or, during rewrap, its key for the current version):
            # committed on its own, before any row it protects. Two processes racing both
            # read the winner back.
            version = meta.generation if subject else max(version_min, 1)
            made = self._new_key(root, meta.vault_id, purpose, subject, version, self._clock.now())
            if self._store.add_key(made):
                record = made
                if subject and self._store.is_destroyed(purpose, subject):
                    # An erasure destroyed the subject's keys between our read and our insert
                    # (a rewrap racing it): the new version goes the same way.
                    self._store.destroy(purpose, subject, now=self._clock.now())
                    raise KeyDestroyed("this subject's data was crypto-shredded")
            else:
                record = self._store.newest(purpose, subject)
                if record is None or record.state == DESTROYED:
                    raise KeyDestroyed("this subject's data key is destroyed")
        key = self._unwrap(root, meta, record)
        if not self._store.in_open_transaction():
            self._cache.set_current(record)
        return record, key

    def rotate(self) -> int:
        """A new version of every rotated purpose key; users' keys follow during rewrap. New
        data uses the new versions at once in this process, within a second in the others."""
        root, _ = self._require_root()
        meta = self._require_meta()
        now = self._clock.now()
        version = meta.generation + 1
        keys = [self._new_key(root, meta.vault_id, p, "", version, now) for p in ROTATED]
        if not self._store.advance_generation(expected=meta.generation, keys=keys, now=now):
            raise VaultStateConflict("another rotation ran at the same time: look at the status")
        with self._lock:
            self._meta = self._store.meta()
            self._cache.forget_current()
        return version

    def reencrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes | None:
        """The same plaintext under the current version of the key it was written with, or
        None when it already is (``vault rewrap`` calls this for every encrypted field)."""
        _, meta = self._require_root()
        key, record = self._key_by_id(crypto.field_key_id(ciphertext))
        generation = self._meta.generation if self._meta is not None else meta.generation
        if record.purpose == INDEX or record.version >= generation:
            return None
        plaintext = crypto.open_field(key, ciphertext, table=table, column=column, row_id=row_id)
        target, target_key = self._current_key(
            record.purpose, record.subject, version_min=generation
        )
        return crypto.seal_field(
            target_key,
            target.id,
            plaintext,
            table=table,
            column=column,
            row_id=row_id,
            random_bytes=self._random,
        )

    def retire_old_versions(self) -> int:
        """After a rewrap found nothing left to re-encrypt: mark every key that has a newer
        version of its own retired (still readable: audit entries keep the key they were
        written with)."""
        self._require_root()
        return self._store.retire_superseded()

    def key_version_of(self, ciphertext: bytes) -> int:
        _, record = self._key_by_id(crypto.field_key_id(ciphertext))
        return record.version

    # ---- status ---------------------------------------------------------------------------------

    def status(self, *, detailed: bool = False) -> VaultStatus:
        """Detailed: with key counts and processes (a scan of every key: operators only)."""
        meta = self._store.meta()
        if meta is None:
            return VaultStatus(initialized=False, sealed=True, development=False)
        now = self._clock.now()
        received = self._received(now) if self.sealed else 0
        return VaultStatus(
            initialized=True,
            sealed=self.sealed,
            development=meta.development,
            vault_id=meta.vault_id,
            shares=meta.shares,
            threshold=meta.threshold,
            generation=meta.generation,
            received=received,
            keys=self._store.counts() if detailed else [],
            processes=self._store.peers(
                seen_since=now - timedelta(seconds=bounds.VAULT_PEER_STALE_S)
            )
            if detailed
            else [],
        )

    # ---- shares and peers -----------------------------------------------------------------------

    def submit_share(self, text: object, *, submitted_by: str) -> UnsealProgress:
        """Check a custodian's share against the vault, keep it in this process's memory (if
        sealed), and, with a peer secret, seal it to every other live sealed process that
        proves the secret, authenticated under it. Each unseals itself once it holds the quorum.
        """
        share = parse_share(text)
        meta = self._require_meta()
        _verify_share(meta, share)
        now = self._clock.now()
        by = submitted_by[:80]
        self._announce(now, force=True)
        targets = 0
        taken = 0
        with self._lock:
            if self._root is None:
                if share.index in self._own_shares or share.index in self._dropped_indices(now):
                    raise ShareRefused(
                        f"share {share.index} was already submitted", reason="duplicate"
                    )
                targets += 1
                self._own_shares[share.index] = (share, by, now)
                taken += 1
        for peer in self._peers_to_serve(now):
            targets += 1
            sealed = crypto.seal_box(
                peer.public_key, share.value, context=_share_context(peer.id, share.index)
            )
            unsigned = ShareDrop(
                share_index=share.index,
                sealed_share=sealed,
                submitted_by=by,
                submitted_at=now,
                seal_epoch=meta.seal_epoch,
                mac=b"",
            )
            drop = replace(unsigned, mac=self._drop_mac(peer.id, unsigned))
            taken += self._store.drop_share(peer.id, drop)
        if targets == 0:
            raise VaultStateConflict("no sealed ZeroPay process is running: nothing to unseal")
        if taken == 0:
            raise ShareRefused(f"share {share.index} was already submitted", reason="duplicate")
        log.info(
            "vault share submitted",
            extra={"index": share.index, "by": by, "processes": targets},
        )
        self.sync()
        return UnsealProgress(
            sealed=self.sealed,
            received=self._received(now),
            threshold=meta.threshold,
            processes=targets,
        )

    def _dropped_indices(self, now: datetime) -> set[int]:
        if self._peer_secret is None:
            return set()
        meta = self._store.meta()
        since = now - timedelta(seconds=bounds.VAULT_SHARE_DROP_TTL_S)
        return {
            d.share_index
            for d in self._store.drops(self.peer_id, since=since)
            if meta is not None and self._genuine_drop(d, meta)
        }

    def _received(self, now: datetime) -> int:
        """Shares waiting for the quorum: in this process, or else for the other processes."""
        if self._root is None:
            return len(set(self._own_shares) | self._dropped_indices(now))
        since = now - timedelta(seconds=bounds.VAULT_SHARE_DROP_TTL_S)
        waiting = [len(self._store.drops(p.id, since=since)) for p in self._peers_to_serve(now)]
        return max(waiting, default=0)

    def _peers_to_serve(self, now: datetime) -> list[Peer]:
        """Other live sealed processes that prove the peer secret (none without a secret)."""
        if self._peer_secret is None:
            return []
        seen_since = now - timedelta(seconds=bounds.VAULT_PEER_STALE_S)
        return [
            p
            for p in self._store.peers(seen_since=seen_since)
            if p.sealed and p.id != self.peer_id and self._trusted(p)
        ]

    def sync(self) -> None:
        """One round: announce this process, then (sealed) collect a transfer or shares, or
        (unsealed) obey a seal order, follow a rotation and send the key to sealed peers."""
        with self._lock:
            meta = self._store.meta()
            if meta is None:
                return
            now = self._clock.now()
            self._epoch_floor = max(self._epoch_floor, meta.seal_epoch)
            if self._root is not None:
                if meta.seal_epoch != self._epoch:
                    self.seal()
                elif self._meta is not None and meta.generation != self._meta.generation:
                    self._meta = meta
                    self._cache.forget_current()
            self._announce(now, force=self._root is None)
            if self._root is None:
                self._collect(meta, now)
            else:
                self._serve_transfers(self._root, now)
            if self._monotonic() - self._purged_at > 60:
                self._purged_at = self._monotonic()
                self._store.purge(
                    peers_before=now - timedelta(seconds=10 * bounds.VAULT_PEER_STALE_S),
                    drops_before=now - timedelta(seconds=bounds.VAULT_SHARE_DROP_TTL_S),
                    now=now,
                )

    def _announce(self, now: datetime, *, force: bool) -> None:
        if not force and self._monotonic() - self._announced_at < bounds.VAULT_PEER_STALE_S / 3:
            return
        public = crypto.public_bytes(self._box_key)
        self._store.save_peer(
            Peer(
                id=self.peer_id,
                public_key=public,
                proof=self._proof(self.peer_id, public),
                host=socket.gethostname(),
                pid=os.getpid(),
                sealed=self._root is None,
                started_at=self._started_at,
                seen_at=now,
            )
        )
        self._announced_at = self._monotonic()

    def _drop_mac(self, to: str, drop: ShareDrop) -> bytes:
        assert self._peer_secret is not None
        return crypto.mac(
            self._peer_secret,
            crypto.length_prefixed(
                b"zeropay/vault/drop/v2",
                to,
                str(drop.share_index),
                str(drop.seal_epoch),
                _micros(drop.submitted_at),
                drop.submitted_by,
                drop.sealed_share,
            ),
        )

    def _transfer_mac(self, to: str, transfer: Transfer) -> bytes:
        assert self._peer_secret is not None
        return crypto.mac(
            self._peer_secret,
            crypto.length_prefixed(
                b"zeropay/vault/transfer/v2",
                to,
                transfer.from_peer,
                str(transfer.seal_epoch),
                _micros(transfer.expires_at),
                transfer.sealed_root,
            ),
        )

    def _proof(self, peer_id: str, public_key: bytes) -> bytes | None:
        if self._peer_secret is None:
            return None
        return crypto.mac(
            self._peer_secret, crypto.length_prefixed(b"zeropay/vault/peer/v1", peer_id, public_key)
        )

    def _trusted(self, peer: Peer) -> bool:
        """Another process that proves it holds the peer secret. Without a peer secret nothing
        leaves this process (each one is unsealed on its own). This process never trusts its
        own row: whoever can write the table could have put another key there."""
        if peer.id == self.peer_id:
            return False
        expected = self._proof(peer.id, peer.public_key)
        return (
            expected is not None
            and peer.proof is not None
            and hmac.compare_digest(expected, peer.proof)
        )

    def _collect(self, meta: VaultMeta, now: datetime) -> None:
        """Unseal from a transfer or from a quorum of shares: shares given to this process, and
        shares other processes left for it. Rows are believed only when authenticated under the
        peer secret and made since the last seal order; anything else is someone's forgery."""
        transfer = self._store.take_transfer(self.peer_id, now=now)
        if transfer is not None and self._genuine_transfer(transfer, meta):
            try:
                root = crypto.open_box(
                    self._box_key, transfer.sealed_root, context=_transfer_context(self.peer_id)
                )
                self._adopt(root, meta)
            except (crypto.DecryptionFailed, ShareRefused):
                log.error("a key transfer did not open or did not fit this vault: ignored")
            else:
                self._store.clear_drops(self.peer_id)
                self._announce(now, force=True)
                self._tell(Unsealed(by=(f"peer:{transfer.from_peer}",), shares=()))
                return
        since = now - timedelta(seconds=bounds.VAULT_SHARE_DROP_TTL_S)
        found: dict[int, tuple[datetime, str, Share]] = {
            index: (at, by, share)
            for index, (share, by, at) in self._own_shares.items()
            if at >= since
        }
        for drop in self._store.drops(self.peer_id, since=since) if self._peer_secret else []:
            if drop.share_index in found or not self._genuine_drop(drop, meta):
                continue
            try:
                value = crypto.open_box(
                    self._box_key,
                    drop.sealed_share,
                    context=_share_context(self.peer_id, drop.share_index),
                )
                share = Share(vault_id=meta.vault_id, index=drop.share_index, value=value)
                _verify_share(meta, share)
            except (crypto.DecryptionFailed, ShareRefused):
                log.error("a share addressed to this process was not valid: ignored")
                continue
            found[drop.share_index] = (drop.submitted_at, drop.submitted_by, share)
        if len(found) < meta.threshold:
            return
        shares = [share for _, _, share in found.values()]
        self._adopt(combine(shares, threshold=meta.threshold), meta)
        self._store.clear_drops(self.peer_id)
        self._announce(now, force=True)
        self._tell(
            Unsealed(
                by=tuple(by for _, by, _ in sorted(found.values(), key=lambda f: f[0])),
                shares=tuple(sorted(found)),
            )
        )

    def _current_epoch(self, epoch: int, meta: VaultMeta) -> bool:
        """Made since the last seal order. The database's epoch only counts when it has not gone
        back below one this process has seen: set back, it would revive rows from before."""
        if meta.seal_epoch < self._epoch_floor:
            log.error("the vault's seal epoch went backwards in the database: ignored")
            return False
        return epoch == meta.seal_epoch

    def _genuine_transfer(self, transfer: Transfer, meta: VaultMeta) -> bool:
        if self._peer_secret is None or not self._current_epoch(transfer.seal_epoch, meta):
            return False
        expected = self._transfer_mac(self.peer_id, transfer)
        if hmac.compare_digest(expected, transfer.mac):
            return True
        log.error("a key transfer not authenticated under the peer secret: ignored")
        return False

    def _genuine_drop(self, drop: ShareDrop, meta: VaultMeta) -> bool:
        if not self._current_epoch(drop.seal_epoch, meta):
            return False
        expected = self._drop_mac(self.peer_id, drop)
        if hmac.compare_digest(expected, drop.mac):
            return True
        log.error("a share drop not authenticated under the peer secret: ignored")
        return False

    def _tell(self, event: Unsealed) -> None:
        """Hand the unseal to whoever records it (bootstrap wires the audit log). A failure to
        record is logged loudly; the keys stay usable."""
        if self.on_unsealed is None:
            return
        try:
            self.on_unsealed(event)
        except Exception:
            log.exception("the unseal of this process could not be recorded")

    def _serve_transfers(self, root: bytes, now: datetime) -> None:
        for peer in self._peers_to_serve(now):
            sealed_root = crypto.seal_box(peer.public_key, root, context=_transfer_context(peer.id))
            unsigned = Transfer(
                sealed_root=sealed_root,
                from_peer=self.peer_id,
                expires_at=now + timedelta(seconds=bounds.VAULT_TRANSFER_TTL_S),
                seal_epoch=self._epoch,
                mac=b"",
            )
            transfer = replace(unsigned, mac=self._transfer_mac(peer.id, unsigned))
            if self._store.put_transfer(peer.id, transfer, now=now):
                log.info("vault key sent to a sealed process", extra={"to": peer.id})

    def start(self, interval_s: float = bounds.VAULT_SYNC_INTERVAL_S) -> None:
        """Sync in a background thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.sync()
                except Exception:  # the database may be down: the next round tries again
                    log.exception("vault sync failed")
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="zeropay-vault", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(Exception):
            self._store.forget_peer(self.peer_id)

    def wait_unsealed(self, timeout_s: float) -> bool:
        """Sync until unsealed or ``timeout_s`` passes (a CLI command that needs the keys)."""
        deadline = self._monotonic() + timeout_s
        while self.sealed and self._monotonic() < deadline:
            self.sync()
            if self.sealed:
                time.sleep(0.2)
        return not self.sealed

    # ---- custodians ----------------------------------------------------------------------------

    def add_custodian(self, name: str) -> str:
        """A credential for the unseal API, shown once; only its SHA-256 is stored."""
        if not name or len(name) > 80 or not name.isprintable():
            raise ValueError("a custodian's name is 1 to 80 printable characters")
        token = f"zpc_{secrets.token_urlsafe(32)}"
        custodian_id = f"cus_{secrets.token_hex(10)}"
        if not self._store.add_custodian(custodian_id, name, _token_hash(token), self._clock.now()):
            raise VaultStateConflict(f"a custodian named {name!r} exists")
        return token

    def custodian(self, token: str) -> str | None:
        """The custodian a bearer token names, or None."""
        if not token.startswith("zpc_") or len(token) > 100:
            return None
        return self._store.custodian_by_token(_token_hash(token))

    # ---- development ----------------------------------------------------------------------------

    def auto_unseal(self, path: Path) -> None:
        """Development only: initialize on first use with one share kept in ``path``, and unseal
        from it. Anyone who can read that file holds every key."""
        log.warning(
            "DEVELOPMENT VAULT: auto-unsealed from %s; whoever reads that file holds every key. "
            "Never use it in production (unset ZEROPAY_VAULT_DEV_FILE and run `zeropay vault "
            "init`).",
            path,
        )
        meta = self._store.meta()
        if meta is None:
            try:
                pieces = self.initialize(shares=1, threshold=1, development=True)
            except VaultStateConflict:
                pieces = []  # another process initialized it first: read its file
            if pieces:
                _write_dev_file(path, pieces)
            meta = self._require_meta()
        if not meta.development:
            raise ConfigurationError(
                "this vault was initialized for production: a development file cannot unseal it"
            )
        self.unseal_with(_read_dev_file(path, meta.vault_id))


class Revealer:
    """Opens what ``Vault.decrypt`` refuses: payment instruments' numbers."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def reveal(
        self, ciphertext: bytes, *, table: str, column: str, row_id: str, subject: str
    ) -> bytes:
        key, record = self._vault._key_by_id(crypto.field_key_id(ciphertext))
        return _open(
            key, record, ciphertext, table=table, column=column, row_id=row_id, subject=subject
        )


def _open(
    key: bytes,
    record: KeyRecord,
    ciphertext: bytes,
    *,
    table: str,
    column: str,
    row_id: str,
    subject: str | None,
) -> bytes:
    # A caller that knows whose data the row holds says so: a ciphertext whose row was moved to
    # another owner (its user column rewritten) then fails, though it still opens.
    if subject is not None and record.subject != subject:
        raise crypto.DecryptionFailed("the ciphertext is not this subject's")
    return crypto.open_field(key, ciphertext, table=table, column=column, row_id=row_id)


def _verify_share(meta: VaultMeta, share: Share) -> None:
    if share.vault_id != meta.vault_id:
        raise ShareRefused("the share belongs to another vault", reason="wrong_vault")
    if not 1 <= share.index <= len(meta.commitments):
        raise ShareRefused("no share has that index in this vault", reason="corrupt")
    if not hmac.compare_digest(share.commitment(), meta.commitments[share.index - 1]):
        raise ShareRefused(f"share {share.index} is not the one issued", reason="corrupt")


def _micros(at: datetime) -> str:
    """A time as whole microseconds since the epoch: the same however the database hands the
    zone back."""
    return str((at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def _token_hash(token: str) -> bytes:
    # 256 random bits: a fast hash makes a stolen table useless, as for session tokens.
    return hashlib.sha256(token.encode()).digest()


def _check_aad(vault_id: str) -> bytes:
    return crypto.length_prefixed(b"zeropay/vault/check/v1", vault_id)


def _key_aad(vault_id: str, key_id: bytes, purpose: str, subject: str, version: int) -> bytes:
    return crypto.length_prefixed(
        b"zeropay/vault/key/v1", vault_id, key_id, purpose, subject, str(version)
    )


def _share_context(peer_id: str, index: int) -> bytes:
    return crypto.length_prefixed(b"share", peer_id, str(index))


def _transfer_context(peer_id: str) -> bytes:
    return crypto.length_prefixed(b"transfer", peer_id)


def _write_dev_file(path: Path, pieces: list[Share]) -> None:
    payload = json.dumps(
        {
            "warning": "development vault: whoever reads this file holds every key",
            "vault_id": pieces[0].vault_id,
            "shares": [p.text() for p in pieces],
        },
        indent=2,
    ).encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _read_dev_file(path: Path, vault_id: str) -> list[Share]:
    """The file's shares once it names this vault; a second process that lost the race to
    initialize waits here for the winner to write it."""
    for _ in range(100):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("vault_id") == vault_id:
            return [parse_share(text) for text in data.get("shares", [])]
        time.sleep(0.1)
    raise ConfigurationError(
        f"the development vault file {path} does not hold this database's vault {vault_id}: "
        "delete the database to start a new development vault"
    )
