"""The hash-chained audit log: a clean chain verifies and every kind of tampering is named."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeropay.domain.audit import GENESIS_HASH, AuditRecord, ChainBreak, chain_hash, verify_chain
from zeropay.domain.errors import InvariantViolation

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
Entry = tuple[AuditRecord, bytes]


def record(seq: int, **changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "seq": seq,
        "at": T0 + timedelta(seconds=seq),
        "event": "user.login",
        "actor": f"u-{seq}",
        "subject": f"s-{seq}",
        "data": b'{"ip":"192.0.2.%d"}' % seq,
    }
    return AuditRecord(**{**fields, **changes})  # type: ignore[arg-type]


def chain(n: int) -> list[Entry]:
    """``n`` records with the hashes the repository would have stored."""
    entries: list[Entry] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        r = record(seq)
        prev = chain_hash(prev, r)
        entries.append((r, prev))
    return entries


def head_of(entries: list[Entry]) -> tuple[int, bytes]:
    return entries[-1][0].seq, entries[-1][1]


def kinds(breaks: list[ChainBreak]) -> list[tuple[str, int]]:
    return [(b.kind, b.seq) for b in breaks]


# Hashing


def test_chain_hash_is_sha256_sized_and_depends_on_the_previous_hash() -> None:
    r = record(1)
    assert len(chain_hash(GENESIS_HASH, r)) == 32
    assert chain_hash(GENESIS_HASH, r) != chain_hash(b"\x01" * 32, r)


def test_field_boundaries_cannot_be_shifted_without_changing_the_hash() -> None:
    a = record(1, actor="ab", subject="c")
    b = record(1, actor="a", subject="bc")
    assert chain_hash(GENESIS_HASH, a) != chain_hash(GENESIS_HASH, b)


def test_the_same_instant_in_another_time_zone_hashes_the_same() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=2)))
    assert chain_hash(GENESIS_HASH, record(1, at=T0)) == chain_hash(
        GENESIS_HASH, record(1, at=paris)
    )


def test_microseconds_are_part_of_the_hash() -> None:
    later = T0 + timedelta(microseconds=1)
    assert chain_hash(GENESIS_HASH, record(1, at=T0)) != chain_hash(
        GENESIS_HASH, record(1, at=later)
    )


def test_a_naive_time_is_refused_because_it_would_hash_as_local_time() -> None:
    with pytest.raises(InvariantViolation):
        record(1, at=datetime(2024, 5, 1, 12, 0))


def test_the_hash_of_a_known_record_does_not_drift() -> None:
    # Pinned from the first implementation: a new encoding would break every stored chain.
    r = AuditRecord(
        seq=1,
        at=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        event="e",
        actor="a",
        subject="s",
        data=b"d",
    )
    parts = [GENESIS_HASH, b"1", b"2024-01-02T03:04:05.000006Z", b"e", b"a", b"s", b"d"]
    spelled_out = hashlib.sha256(b"".join(len(p).to_bytes(8, "big") + p for p in parts))
    assert chain_hash(GENESIS_HASH, r) == spelled_out.digest()
    assert chain_hash(GENESIS_HASH, r).hex() == PINNED_HASH_HEX


PINNED_HASH_HEX = "22cb2642ee7bbb5ebac1847452111eaa91a748a97d93fcc4b81f311928872264"


# Verification


def test_a_clean_chain_verifies() -> None:
    entries = chain(5)
    assert verify_chain(entries, head=head_of(entries)) == []


def test_an_empty_log_with_the_genesis_head_verifies() -> None:
    assert verify_chain([], head=(0, GENESIS_HASH)) == []


def test_an_edited_middle_entry_is_reported_as_edited_at_its_seq() -> None:
    entries = chain(5)
    r, stored = entries[2]
    entries[2] = (dataclasses.replace(r, event="nothing.happened"), stored)
    assert kinds(verify_chain(entries, head=head_of(entries))) == [("edited", 3)]


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries = chain(5)
    r, _ = entries[2]
    forged = dataclasses.replace(r, actor="someone-else")
    entries[2] = (forged, chain_hash(entries[1][1], forged))
    assert kinds(verify_chain(entries, head=head_of(chain(5)))) == [("edited", 4)]


def test_a_chain_rewritten_to_its_end_is_caught_by_the_head() -> None:
    original = chain(3)
    rewritten: list[Entry] = []
    prev = GENESIS_HASH
    for r, _ in original:
        r = dataclasses.replace(r, data=b"{}") if r.seq == 2 else r
        prev = chain_hash(prev, r)
        rewritten.append((r, prev))
    assert verify_chain(rewritten) == []  # the chain alone cannot tell
    assert kinds(verify_chain(rewritten, head=head_of(original))) == [("edited", 3)]


def test_a_deleted_middle_entry_is_reported_missing_and_nothing_else() -> None:
    entries = chain(5)
    del entries[2]
    breaks = verify_chain(entries, head=head_of(entries))
    assert kinds(breaks) == [("missing", 3)]
    assert "3..3" in breaks[0].message


def test_several_deleted_entries_are_reported_as_one_range() -> None:
    entries = chain(8)
    del entries[2:5]
    breaks = verify_chain(entries)
    assert kinds(breaks) == [("missing", 3)]
    assert "3..5" in breaks[0].message


def test_a_deleted_first_entry_is_missing() -> None:
    entries = chain(3)
    assert kinds(verify_chain(entries[1:])) == [("missing", 1)]


def test_two_swapped_neighbours_are_reported_as_reordered_only() -> None:
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    assert kinds(verify_chain(entries, head=head_of(chain(5)))) == [("reordered", 2)]


def test_two_distant_swapped_entries_are_reported_as_reordered() -> None:
    entries = chain(6)
    entries[1], entries[4] = entries[4], entries[1]
    found = verify_chain(entries, head=head_of(chain(6)))
    assert {b.kind for b in found} == {"reordered"}
    assert {b.seq for b in found} >= {2}


def test_a_repeated_entry_is_reported_as_reordered() -> None:
    entries = chain(3)
    entries.insert(2, entries[1])
    assert kinds(verify_chain(entries)) == [("reordered", 2)]


def test_an_entry_with_seq_below_one_is_reported() -> None:
    entries = chain(2)
    stray = record(0)
    entries.append((stray, chain_hash(GENESIS_HASH, stray)))
    assert kinds(verify_chain(entries)) == [("reordered", 0)]


def test_a_dropped_last_entry_is_reported_as_truncated_by_the_head() -> None:
    entries = chain(5)
    head = head_of(entries)
    assert verify_chain(entries[:-1]) == []  # without the head, a shorter chain looks whole
    breaks = verify_chain(entries[:-1], head=head)
    assert kinds(breaks) == [("truncated", 5)]


def test_an_entirely_deleted_log_is_reported_as_truncated() -> None:
    assert kinds(verify_chain([], head=head_of(chain(3)))) == [("truncated", 3)]


def test_entries_written_past_the_head_are_reported() -> None:
    entries = chain(4)
    assert kinds(verify_chain(entries, head=head_of(entries[:3]))) == [("edited", 4)]


def test_every_break_is_reported_in_seq_order() -> None:
    entries = chain(8)
    r, stored = entries[6]
    entries[6] = (dataclasses.replace(r, subject="x"), stored)  # seq 7 edited
    del entries[4]  # seq 5 missing
    entries[1], entries[2] = entries[2], entries[1]  # seq 2 and 3 swapped
    found = kinds(verify_chain(entries[:-1], head=head_of(chain(8))))
    assert found == [("reordered", 2), ("missing", 5), ("edited", 7), ("truncated", 8)]


FIELD_EDITS = st.one_of(
    st.tuples(st.just("at"), st.integers(min_value=1, max_value=10**12)),
    st.tuples(st.sampled_from(["event", "actor", "subject"]), st.text(max_size=20)),
    st.tuples(st.just("data"), st.binary(max_size=40)),
    st.tuples(st.just("seq_stays"), st.none()),
)


def _edited(r: AuditRecord, field: str, value: object) -> AuditRecord:
    if field == "at":
        assert isinstance(value, int)
        return dataclasses.replace(r, at=r.at + timedelta(microseconds=value))
    if field == "seq_stays":
        return r
    return dataclasses.replace(r, **{field: value})  # type: ignore[arg-type]


@given(
    n=st.integers(min_value=1, max_value=6),
    position=st.integers(min_value=0, max_value=5),
    edit=FIELD_EDITS,
)
def test_any_single_field_edit_is_detected(n: int, position: int, edit: tuple[str, object]) -> None:
    entries = chain(n)
    index = position % n
    r, stored = entries[index]
    changed = _edited(r, *edit)
    entries[index] = (changed, stored)
    breaks = verify_chain(entries, head=head_of(chain(n)))
    if changed == r:
        assert breaks == []
    else:
        assert kinds(breaks) == [("edited", r.seq)]


@given(
    n=st.integers(min_value=1, max_value=6),
    position=st.integers(min_value=0, max_value=5),
    bit=st.integers(min_value=0, max_value=255),
)
def test_any_flipped_bit_of_a_stored_hash_is_detected(n: int, position: int, bit: int) -> None:
    entries = chain(n)
    index = position % n
    r, stored = entries[index]
    tampered = bytearray(stored)
    tampered[bit // 8] ^= 1 << (bit % 8)
    entries[index] = (r, bytes(tampered))
    assert verify_chain(entries, head=head_of(chain(n))) != []


@given(
    n=st.integers(min_value=1, max_value=6),
    position=st.integers(min_value=0, max_value=5),
    new_seq=st.integers(min_value=-3, max_value=10),
)
def test_any_edit_of_a_seq_is_detected(n: int, position: int, new_seq: int) -> None:
    entries = chain(n)
    index = position % n
    r, stored = entries[index]
    entries[index] = (dataclasses.replace(r, seq=new_seq), stored)
    breaks = verify_chain(entries, head=head_of(chain(n)))
    assert (breaks == []) == (new_seq == r.seq)
