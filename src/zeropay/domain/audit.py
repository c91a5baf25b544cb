"""Rules of the append-only, hash-chained audit log.

Each entry's hash covers the previous entry's hash and every field of the entry, in an unambiguous
length-prefixed encoding, so editing an entry breaks its link and removing or reordering entries
shows in their sequence numbers. A separate head row records the last sequence number and hash,
so cutting off the tail, which leaves a perfectly linked shorter chain, shows too.

The chain is unkeyed: it proves nothing against someone who can rewrite every row and the head.
It catches partial tampering and, with the head copied elsewhere, rewrites after that copy.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from zeropay.domain.errors import invariant

GENESIS_HASH = bytes(32)
_EDITED = "entry {seq} does not match its stored hash: it, or the hash before it, was changed"

ChainBreakKind = Literal["edited", "missing", "reordered", "truncated"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: datetime
    event: str
    actor: str
    subject: str
    data: bytes  # ciphertext or canonical JSON; ciphertext lets crypto-shredding keep the chain

    def __post_init__(self) -> None:
        # A naive time would be hashed as the host's local time: the same row, two hashes.
        invariant(self.at.utcoffset() is not None, "audit times must be aware datetimes")


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    kind: ChainBreakKind
    message: str


def _field(raw: bytes) -> bytes:
    return len(raw).to_bytes(8, "big") + raw


def _timestamp(at: datetime) -> str:
    # ISO 8601 in UTC with microseconds, e.g. 2024-05-01T12:00:00.000000Z.
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def chain_hash(prev_hash: bytes, record: AuditRecord) -> bytes:
    """SHA-256 over the previous hash and every field, each prefixed with its 8-byte length."""
    digest = hashlib.sha256(_field(prev_hash))
    for part in (
        str(record.seq).encode(),
        _timestamp(record.at).encode(),
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
    """Every break in ``records`` (each with its stored hash), ordered by seq; never raises.

    Streams in constant memory while the log is whole (the repository yields it by seq); only
    gaps are remembered, so a record arriving late fills its gap and counts as ``reordered``
    instead of leaving a ``missing`` behind. A record's link is checked only when its
    predecessor came just before it; otherwise the break already reported covers it.
    ``head`` is the (seq, hash) of the head row: a head past the end means a cut-off tail.
    """
    breaks: list[ChainBreak] = []
    gaps: list[tuple[int, int]] = []  # sorted, disjoint, inclusive ranges of unseen seqs
    last_seq, last_hash = 0, GENESIS_HASH
    for record, stored in records:
        seq = record.seq
        if seq > last_seq:
            if seq == last_seq + 1:
                if chain_hash(last_hash, record) != stored:
                    breaks.append(ChainBreak(seq, "edited", _EDITED.format(seq=seq)))
            else:
                gaps.append((last_seq + 1, seq - 1))
            last_seq, last_hash = seq, stored
        elif _fill_gap(gaps, seq):
            breaks.append(ChainBreak(seq, "reordered", f"entry {seq} came after later entries"))
        else:
            breaks.append(ChainBreak(seq, "reordered", f"entry {seq} is a repeat or below 1"))
    breaks.extend(
        ChainBreak(low, "missing", f"entries {low}..{high} are missing") for low, high in gaps
    )
    if head is not None:
        breaks.extend(_check_head(head, last_seq, last_hash))
    breaks.sort(key=lambda b: b.seq)
    return breaks


def _fill_gap(gaps: list[tuple[int, int]], seq: int) -> bool:
    """Remove ``seq`` from the gap holding it; False when no gap holds it."""
    i = bisect_right(gaps, seq, key=lambda gap: gap[0]) - 1
    if i < 0 or not gaps[i][0] <= seq <= gaps[i][1]:
        return False
    low, high = gaps[i]
    gaps[i : i + 1] = [g for g in ((low, seq - 1), (seq + 1, high)) if g[0] <= g[1]]
    return True


def _check_head(head: tuple[int, bytes], last_seq: int, last_hash: bytes) -> list[ChainBreak]:
    head_seq, head_hash = head
    if head_seq > last_seq:
        return [ChainBreak(head_seq, "truncated", f"head names {head_seq}, log ends at {last_seq}")]
    if head_seq < last_seq:
        message = f"entries {head_seq + 1}..{last_seq} were written without moving the head"
        return [ChainBreak(head_seq + 1, "edited", message)]
    if head_hash != last_hash:
        message = f"entry {last_seq} ends a rewritten chain: its hash differs from the head's"
        return [ChainBreak(last_seq, "edited", message)]
    return []
