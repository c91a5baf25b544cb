"""The development key ring: field encryption bound to its place, rotation, blind indexes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from zeropay.adapters import keyring
from zeropay.adapters.keyring import DecryptionFailed, FileKeyRing
from zeropay.domain.errors import InfrastructureError, KeyUnavailable

PLACE = {"table": "users", "column": "email", "row_id": "u-1"}


@pytest.fixture
def ring() -> FileKeyRing:
    return FileKeyRing.ephemeral()


def test_a_field_decrypts_where_it_was_encrypted(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"ada@example.com", **PLACE)
    assert ring.decrypt(sealed, **PLACE) == b"ada@example.com"


def test_an_empty_field_round_trips(ring: FileKeyRing) -> None:
    assert ring.decrypt(ring.encrypt(b"", **PLACE), **PLACE) == b""


def test_ciphertext_has_format_byte_version_nonce_and_tag(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"abc", **PLACE)
    assert sealed[0] == 1
    assert int.from_bytes(sealed[1:5], "big") == 1
    assert len(sealed) == 1 + 4 + 12 + 3 + 16


def test_each_encryption_uses_a_fresh_nonce(ring: FileKeyRing) -> None:
    nonces = {ring.encrypt(b"same", **PLACE)[5:17] for _ in range(50)}
    assert len(nonces) == 50


@pytest.mark.parametrize(
    "moved",
    [
        {"table": "merchants"},
        {"column": "name"},
        {"row_id": "u-2"},
    ],
    ids=["other_table", "other_column", "other_row"],
)
def test_ciphertext_moved_to_another_place_fails_to_decrypt(
    ring: FileKeyRing, moved: dict[str, str]
) -> None:
    sealed = ring.encrypt(b"secret", **PLACE)
    with pytest.raises(DecryptionFailed):
        ring.decrypt(sealed, **{**PLACE, **moved})


def test_associated_data_is_length_prefixed_so_shifted_boundaries_fail(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"secret", table="a", column="bc", row_id="d")
    with pytest.raises(DecryptionFailed):
        ring.decrypt(sealed, table="ab", column="c", row_id="d")
    with pytest.raises(DecryptionFailed):
        ring.decrypt(sealed, table="a", column="b", row_id="cd")


def test_every_flipped_bit_of_a_ciphertext_is_detected(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"ada", **PLACE)
    for i in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[i] ^= bit
            with pytest.raises(DecryptionFailed):
                ring.decrypt(bytes(tampered), **PLACE)


def test_a_truncated_ciphertext_is_refused_at_every_length(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"ada", **PLACE)
    for length in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            ring.decrypt(sealed[:length], **PLACE)


def test_a_ciphertext_under_an_unknown_version_is_refused(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"ada", **PLACE)
    with pytest.raises(DecryptionFailed, match="version 7"):
        ring.decrypt(sealed[:1] + (7).to_bytes(4, "big") + sealed[5:], **PLACE)


def test_a_failed_tag_is_chained_to_the_underlying_error(ring: FileKeyRing) -> None:
    sealed = ring.encrypt(b"ada", **PLACE)
    with pytest.raises(DecryptionFailed) as caught:
        ring.decrypt(sealed[:-1] + bytes([sealed[-1] ^ 1]), **PLACE)
    assert caught.value.__cause__ is not None
    assert isinstance(caught.value, InfrastructureError)
    assert caught.value.code == "decryption_failed"


def test_another_ring_cannot_decrypt(ring: FileKeyRing) -> None:
    with pytest.raises(DecryptionFailed):
        FileKeyRing.ephemeral().decrypt(ring.encrypt(b"ada", **PLACE), **PLACE)


def test_after_rotation_new_ciphertexts_use_the_new_version_and_old_ones_still_read(
    ring: FileKeyRing,
) -> None:
    old = ring.encrypt(b"before", **PLACE)
    assert ring.rotate() == 2
    new = ring.encrypt(b"after", **PLACE)
    assert int.from_bytes(new[1:5], "big") == 2
    assert ring.decrypt(old, **PLACE) == b"before"
    assert ring.decrypt(new, **PLACE) == b"after"


def test_blind_index_is_deterministic_32_bytes_and_separates_purposes(ring: FileKeyRing) -> None:
    first = ring.blind_index(b"ada@example.com", purpose="user.email")
    assert len(first) == 32
    assert ring.blind_index(b"ada@example.com", purpose="user.email") == first
    assert ring.blind_index(b"bob@example.com", purpose="user.email") != first
    assert ring.blind_index(b"ada@example.com", purpose="merchant.email") != first


def test_blind_index_is_keyed_so_another_ring_gives_another_index(ring: FileKeyRing) -> None:
    other = FileKeyRing.ephemeral()
    assert other.blind_index(b"x", purpose="p") != ring.blind_index(b"x", purpose="p")


def test_blind_index_is_stable_across_rotation(ring: FileKeyRing) -> None:
    before = ring.blind_index(b"ada@example.com", purpose="user.email")
    ring.rotate()
    assert ring.blind_index(b"ada@example.com", purpose="user.email") == before


def test_repr_shows_no_key_material(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = FileKeyRing.load_or_create(path)
    encoded = json.loads(path.read_text())["keys"]["1"]
    assert encoded not in repr(ring)
    assert "versions=[1]" in repr(ring)


def test_load_or_create_makes_an_owner_only_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "dev" / "keys.json"
    FileKeyRing.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(json.loads(path.read_text())["keys"]) == 1
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary left over


def test_a_reloaded_ring_reads_what_the_first_one_wrote(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = FileKeyRing.load_or_create(path)
    sealed = first.encrypt(b"ada", **PLACE)
    again = FileKeyRing.load_or_create(path)
    assert again.decrypt(sealed, **PLACE) == b"ada"
    assert again.blind_index(b"x", purpose="p") == first.blind_index(b"x", purpose="p")


def test_rotation_is_persisted_and_keeps_the_old_versions(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = FileKeyRing.load_or_create(path)
    old = ring.encrypt(b"before", **PLACE)
    ring.rotate()
    new = ring.encrypt(b"after", **PLACE)
    reloaded = FileKeyRing.load_or_create(path)
    assert reloaded.current_version == 2
    assert reloaded.decrypt(old, **PLACE) == b"before"
    assert reloaded.decrypt(new, **PLACE) == b"after"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_rotation_that_cannot_be_saved_leaves_the_ring_on_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    ring = FileKeyRing.load_or_create(path)

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keyring.os, "replace", disk_full)
    with pytest.raises(OSError):
        ring.rotate()
    monkeypatch.undo()
    assert ring.current_version == 1
    assert FileKeyRing.load_or_create(path).decrypt(ring.encrypt(b"x", **PLACE), **PLACE) == b"x"
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_load_or_create_keeps_the_file_of_a_worker_that_created_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    winner = FileKeyRing.load_or_create(path)
    sealed = winner.encrypt(b"ada", **PLACE)
    # The loser checked before the winner wrote, so it believes the file is missing.
    monkeypatch.setattr(Path, "exists", lambda _self: False)
    loser = FileKeyRing.load_or_create(path)
    assert loser.decrypt(sealed, **PLACE) == b"ada"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "{}",
        '{"keys": []}',
        '{"keys": {"1": "not base64!"}}',
        '{"keys": {"1": "c2hvcnQ="}}',
        '{"keys": {"2": "' + "A" * 43 + '="}}',
        '{"keys": {"one": "' + "A" * 43 + '="}}',
    ],
    ids=["not_json", "no_keys", "keys_not_a_map", "bad_base64", "short_key", "no_v1", "bad_v"],
)
def test_a_corrupt_key_file_raises_key_unavailable(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeyUnavailable):
        FileKeyRing.load_or_create(path)
