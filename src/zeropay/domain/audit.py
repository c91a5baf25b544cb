"""Rules of the append-only, hash-chained audit log.

Each entry's hash covers the previous entry's hash and every field of the entry, in an unambiguous
length-prefixed encoding, so editing, removing or reordering any entry breaks every later link.
A separate head row records the last sequence number and hash, so cutting off the tail shows too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS_HASH = bytes(32)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    event: str
    actor: str
    subject: str
    data: bytes  # ciphertext, so crypto-shredding later never breaks the chain


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    kind: str  # edited | missing | reordered | truncated
    message: str


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(8, "big") + raw


def chain_hash(prev_hash: bytes, record: AuditRecord) -> bytes:
    at = record.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    digest = hashlib.sha256(_field(prev_hash))
    for part in (
        str(record.seq).encode(),
        at.encode(),
        record.event.encode(),
        record.actor.encode(),
        record.subject.encode(),
        record.data,
    ):
        digest.update(_field(part))
    return digest.digest()


def verify_chain(
    records: Iterable[tuple[AuditRecord, bytes]], *, head: tuple[int, bytes] | None = None
) -> list[ChainBreak]:
    """Every break in the chain; never raises."""
    breaks: list[ChainBreak] = []
    prev_hash = GENESIS_HASH
    prev_seq = 0
    last: tuple[int, bytes] = (0, GENESIS_HASH)
    for record, stored in records:
        if record.seq <= prev_seq:
            breaks.append(ChainBreak(record.seq, "reordered", f"seq {record.seq} after {prev_seq}"))
        elif record.seq != prev_seq + 1:
            breaks.append(
                ChainBreak(record.seq, "missing", f"entries {prev_seq + 1}..{record.seq - 1} gone")
            )
        if chain_hash(prev_hash, record) != stored:
            breaks.append(ChainBreak(record.seq, "edited", "hash does not match the entry"))
        prev_hash = stored
        prev_seq = max(prev_seq, record.seq)
        last = (record.seq, stored)
    if head is not None and head != last:
        breaks.append(
            ChainBreak(head[0], "truncated", f"head names seq {head[0]}, log ends at {last[0]}")
        )
    return breaks
