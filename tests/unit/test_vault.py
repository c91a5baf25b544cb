"""The vault with its in-memory store: Shamir unsealing, field encryption, rotation, shredding,
and two processes sharing an unseal through the store."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from zeropay.adapters.vault import crypto
from zeropay.adapters.vault.shares import Share, combine, parse_share
from zeropay.adapters.vault.store import MemoryVaultStore, ShareDrop, Transfer
from zeropay.adapters.vault.vault import Vault
from zeropay.domain.errors import (
    KeyDestroyed,
    ShareRefused,
    VaultSealed,
    VaultStateConflict,
)

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
SECRET = b"a peer secret of at least thirty-two bytes"


class Clock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


def fresh(store: MemoryVaultStore | None = None, *, secret: bytes | None = None) -> Vault:
    return Vault(store or MemoryVaultStore(), clock=Clock(), peer_secret=secret)


@pytest.fixture
def initialized() -> tuple[Vault, list[Share]]:
    vault = fresh()
    return vault, vault.initialize(shares=5, threshold=3)


def where(row: str = "usr_1") -> dict[str, str]:
    return {"table": "users", "column": "email", "row_id": row}


# ---- shares -------------------------------------------------------------------------------------


def test_every_subset_of_three_shares_unseals(initialized: tuple[Vault, list[Share]]) -> None:
    vault, shares = initialized
    roots = {combine(list(c), threshold=3) for c in itertools.combinations(shares, 3)}
    assert len(roots) == 1  # all ten subsets rebuild the same key
    vault.unseal_with(shares[2:])
    assert not vault.sealed


def test_two_shares_of_a_three_share_threshold_are_refused(
    initialized: tuple[Vault, list[Share]],
) -> None:
    vault, shares = initialized
    with pytest.raises(ShareRefused) as refused:
        vault.unseal_with(shares[:2])
    assert refused.value.details["reason"] == "too_few"
    assert vault.sealed


def test_a_corrupted_share_is_detected_before_it_is_used(
    initialized: tuple[Vault, list[Share]],
) -> None:
    vault, shares = initialized
    flipped = bytes([shares[0].value[0] ^ 1]) + shares[0].value[1:]
    corrupted = Share(vault_id=shares[0].vault_id, index=1, value=flipped)
    with pytest.raises(ShareRefused) as refused:
        vault.unseal_with([corrupted, shares[1], shares[2]])
    assert refused.value.details["reason"] == "corrupt"
    assert vault.sealed


def test_a_mistyped_share_fails_its_checksum(initialized: tuple[Vault, list[Share]]) -> None:
    _, shares = initialized
    text = shares[0].text()
    i = text.index(":", len("zeropay-share-v1:") + 1) + 4
    typo = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    with pytest.raises(ShareRefused) as refused:
        parse_share(typo)
    assert refused.value.details["reason"] == "checksum"
    assert parse_share(f"  {text}\n") == shares[0]


def test_a_share_given_twice_is_refused(initialized: tuple[Vault, list[Share]]) -> None:
    vault, shares = initialized
    with pytest.raises(ShareRefused) as refused:
        vault.unseal_with([shares[0], shares[0], shares[1]])
    assert refused.value.details["reason"] == "duplicate"


def test_a_share_of_another_vault_is_refused(initialized: tuple[Vault, list[Share]]) -> None:
    vault, shares = initialized
    other = fresh().initialize(shares=5, threshold=3)
    with pytest.raises(ShareRefused) as refused:
        vault.unseal_with([other[0], shares[1], shares[2]])
    assert refused.value.details["reason"] == "wrong_vault"


def test_a_vault_is_initialized_once_and_one_person_cannot_hold_it() -> None:
    vault = fresh()
    with pytest.raises(ValueError):
        vault.initialize(shares=3, threshold=1)
    vault.initialize(shares=3, threshold=2)
    with pytest.raises(VaultStateConflict):
        vault.initialize(shares=3, threshold=2)


# ---- sealed -------------------------------------------------------------------------------------


def test_a_sealed_vault_refuses_every_operation_that_needs_a_key(
    initialized: tuple[Vault, list[Share]],
) -> None:
    vault, shares = initialized
    with pytest.raises(VaultSealed):
        vault.encrypt(b"x", **where())
    with pytest.raises(VaultSealed):
        vault.blind_index(b"x", purpose="user.email")
    vault.unseal_with(shares[:3])
    sealed_later = vault.encrypt(b"ana@example.com", **where())
    vault.seal()
    with pytest.raises(VaultSealed):
        vault.decrypt(sealed_later, **where())
    vault.unseal_with(shares[1:4])
    assert vault.decrypt(sealed_later, **where()) == b"ana@example.com"


# ---- fields -------------------------------------------------------------------------------------


@pytest.fixture
def vault() -> Vault:
    return Vault.ephemeral(clock=Clock())


def test_a_ciphertext_moved_to_another_row_column_or_table_fails(vault: Vault) -> None:
    ciphertext = vault.encrypt(b"ana@example.com", **where(), subject="usr_1")
    assert vault.decrypt(ciphertext, **where()) == b"ana@example.com"
    for moved in (
        {"table": "users", "column": "email", "row_id": "usr_2"},
        {"table": "users", "column": "phone", "row_id": "usr_1"},
        {"table": "merchants", "column": "email", "row_id": "usr_1"},
    ):
        with pytest.raises(crypto.DecryptionFailed):
            vault.decrypt(ciphertext, **moved)


def test_a_tampered_ciphertext_fails_at_every_byte(vault: Vault) -> None:
    ciphertext = vault.encrypt(b"secret seed", **where())
    for i in range(len(ciphertext)):
        tampered = bytearray(ciphertext)
        tampered[i] ^= 0x01
        with pytest.raises(crypto.DecryptionFailed):
            vault.decrypt(bytes(tampered), **where())


def test_a_ciphertext_relabelled_with_another_key_id_fails(vault: Vault) -> None:
    mine = vault.encrypt(b"one", **where(), subject="usr_1")
    theirs = vault.encrypt(b"two", **where(), subject="usr_2")
    swapped = mine[:1] + theirs[1:17] + mine[17:]
    with pytest.raises(crypto.DecryptionFailed):
        vault.decrypt(swapped, **where())


def test_each_user_has_a_key_of_their_own(vault: Vault) -> None:
    a = vault.encrypt(b"x", **where(), subject="usr_1")
    b = vault.encrypt(b"x", **where(), subject="usr_2")
    general = vault.encrypt(b"x", **where())
    assert len({crypto.field_key_id(c) for c in (a, b, general)}) == 3
    assert crypto.field_key_id(a) == crypto.field_key_id(
        vault.encrypt(b"y", **where(), subject="usr_1")
    )


def test_blind_indexes_are_stable_and_separated_by_purpose(vault: Vault) -> None:
    first = vault.blind_index(b"ana@example.com", purpose="user.email")
    assert vault.blind_index(b"ana@example.com", purpose="user.email") == first
    assert vault.blind_index(b"ana@example.com", purpose="other") != first
    vault.rotate()
    assert vault.blind_index(b"ana@example.com", purpose="user.email") == first


# ---- rotation and rewrap ------------------------------------------------------------------------


def test_after_rotation_old_data_stays_readable_and_reencrypts_under_the_new_version(
    vault: Vault,
) -> None:
    old_user = vault.encrypt(b"ana@example.com", **where(), subject="usr_1")
    old_general = vault.encrypt(b"whsec", table="webhook_endpoints", column="s", row_id="we_1")
    assert vault.rotate() == 2
    assert vault.decrypt(old_user, **where()) == b"ana@example.com"
    assert vault.key_version_of(vault.encrypt(b"new", table="t", column="c", row_id="r")) == 2
    new_user = vault.reencrypt(old_user, **where())
    assert new_user is not None and vault.key_version_of(new_user) == 2
    assert vault.decrypt(new_user, **where()) == b"ana@example.com"
    assert vault.reencrypt(new_user, **where()) is None  # already current
    new_general = vault.reencrypt(old_general, table="webhook_endpoints", column="s", row_id="we_1")
    assert new_general is not None
    assert vault.decrypt(new_general, table="webhook_endpoints", column="s", row_id="we_1") == (
        b"whsec"
    )
    # The user's new key is still the user's: shredding it covers the rewrapped data.
    vault.destroy_subject("usr_1", now=NOW)
    with pytest.raises(KeyDestroyed):
        vault.decrypt(new_user, **where())


# ---- crypto-shredding ---------------------------------------------------------------------------


def test_destroying_a_users_key_makes_their_data_unreadable_and_spares_others(
    vault: Vault,
) -> None:
    ana = vault.encrypt(b"ana", **where("usr_1"), subject="usr_1")
    bo = vault.encrypt(b"bo", **where("usr_2"), subject="usr_2")
    kept = vault.encrypt(b"ana", **where("usr_1"), subject="usr_1", retained=True)
    assert vault.destroy_subject("usr_1", now=NOW) == 1
    with pytest.raises(KeyDestroyed):
        vault.decrypt(ana, **where("usr_1"))
    with pytest.raises(KeyDestroyed):  # nothing new is written under an erased subject
        vault.encrypt(b"again", **where("usr_1"), subject="usr_1")
    assert vault.decrypt(bo, **where("usr_2")) == b"bo"
    assert vault.decrypt(kept, **where("usr_1")) == b"ana"  # AML retention key is separate
    vault.schedule_retention_end("usr_1", destroy_after=NOW + timedelta(days=5 * 365))
    assert vault.destroy_due(now=NOW + timedelta(days=365), limit=10) == 0
    assert vault.decrypt(kept, **where("usr_1")) == b"ana"
    assert vault.destroy_due(now=NOW + timedelta(days=5 * 365 + 1), limit=10) == 1
    with pytest.raises(KeyDestroyed):
        vault.decrypt(kept, **where("usr_1"))


def test_a_key_destroyed_by_another_process_stops_working_when_its_cache_expires() -> None:
    store = MemoryVaultStore()
    ticks = [0.0]
    one = Vault(store, clock=Clock(), monotonic=lambda: ticks[0], cache_ttl_s=60)
    shares = one.initialize(shares=2, threshold=2)
    one.unseal_with(shares)
    other = Vault(store, clock=Clock(), monotonic=lambda: ticks[0], cache_ttl_s=60)
    other.unseal_with(shares)
    ciphertext = one.encrypt(b"ana", **where(), subject="usr_1")
    assert other.decrypt(ciphertext, **where()) == b"ana"
    one.destroy_subject("usr_1", now=NOW)
    ticks[0] = 61.0
    with pytest.raises(KeyDestroyed):
        other.decrypt(ciphertext, **where())


# ---- several processes --------------------------------------------------------------------------


def test_one_submission_of_each_share_unseals_every_sealed_process() -> None:
    store = MemoryVaultStore()
    setup = fresh(store, secret=SECRET)
    shares = setup.initialize(shares=5, threshold=3)
    first, second = fresh(store, secret=SECRET), fresh(store, secret=SECRET)
    first.sync()
    second.sync()
    progress = first.submit_share(shares[0].text(), submitted_by="alice")
    assert (progress.received, progress.threshold, progress.processes) == (1, 3, 2)
    with pytest.raises(ShareRefused) as duplicate:
        second.submit_share(shares[0].text(), submitted_by="alice again")
    assert duplicate.value.details["reason"] == "duplicate"
    second.submit_share(shares[3].text(), submitted_by="bob")
    assert first.sealed and second.sealed
    done = second.submit_share(shares[4].text(), submitted_by="carol")
    assert not done.sealed
    first.sync()
    assert not first.sealed
    ciphertext = first.encrypt(b"x", **where())
    assert second.decrypt(ciphertext, **where()) == b"x"


def test_a_process_that_starts_later_gets_the_key_from_an_unsealed_one() -> None:
    store = MemoryVaultStore()
    running = fresh(store, secret=SECRET)
    running.unseal_with(running.initialize(shares=3, threshold=2)[:2])
    late = fresh(store, secret=SECRET)
    late.sync()  # announces itself, sealed
    assert late.sealed
    running.sync()  # sees a sealed peer that proves the secret: sends the key
    late.sync()
    assert not late.sealed


def test_a_peer_that_cannot_prove_the_secret_gets_neither_key_nor_shares() -> None:
    store = MemoryVaultStore()
    running = fresh(store, secret=SECRET)
    shares = running.initialize(shares=3, threshold=2)
    running.unseal_with(shares[:2])
    intruder = fresh(store, secret=b"a guessed secret that is long enough!")
    intruder.sync()
    running.sync()
    intruder.sync()
    assert intruder.sealed
    sealed_honest = fresh(store, secret=SECRET)
    sealed_honest.sync()
    sealed_honest.submit_share(shares[0].text(), submitted_by="alice")
    assert store.drops(intruder.peer_id, since=NOW - timedelta(hours=1)) == []


def test_without_a_peer_secret_no_process_sends_the_key() -> None:
    store = MemoryVaultStore()
    running = fresh(store)
    running.unseal_with(running.initialize(shares=3, threshold=2)[:2])
    late = fresh(store)
    late.sync()
    running.sync()
    late.sync()
    assert late.sealed


def test_a_seal_order_reaches_every_process() -> None:
    store = MemoryVaultStore()
    one, two = fresh(store, secret=SECRET), fresh(store, secret=SECRET)
    shares = one.initialize(shares=3, threshold=2)
    one.unseal_with(shares[:2])
    two.unseal_with(shares[1:])
    one.seal_everywhere()
    assert one.sealed
    two.sync()
    assert two.sealed
    with pytest.raises(VaultSealed):
        two.encrypt(b"x", **where())


def test_each_process_that_unseals_tells_who_completed_the_quorum() -> None:
    store = MemoryVaultStore()
    clock = Clock()
    first = Vault(store, clock=clock, peer_secret=SECRET)
    shares = first.initialize(shares=3, threshold=2)
    heard: list[object] = []
    first.on_unsealed = heard.append
    first.sync()
    first.submit_share(shares[2].text(), submitted_by="custodian:ana")
    clock.at += timedelta(seconds=5)
    first.submit_share(shares[0].text(), submitted_by="custodian:bo")
    late = Vault(store, clock=clock, peer_secret=SECRET)
    late.on_unsealed = heard.append
    late.sync()
    first.sync()
    late.sync()
    assert [(e.by, e.shares) for e in heard] == [  # type: ignore[attr-defined]
        (("custodian:ana", "custodian:bo"), (1, 3)),
        ((f"peer:{first.peer_id}",), ()),
    ]


# ---- someone who can write the database, without the peer secret --------------------------------


def test_a_peer_row_rewritten_with_another_key_does_not_redirect_the_shares() -> None:
    store = MemoryVaultStore()
    server = fresh(store, secret=SECRET)
    shares = server.initialize(shares=3, threshold=2)
    server.sync()
    attacker = crypto.new_box_key()
    row = next(
        p for p in store.peers(seen_since=NOW - timedelta(hours=1)) if p.id == server.peer_id
    )
    store.save_peer(replace(row, public_key=crypto.public_bytes(attacker)))
    server.submit_share(shares[0].text(), submitted_by="custodian:ana")
    # The share stayed in the server's memory: nothing in the database opens with the key the
    # attacker put in the row.
    assert store.drops(server.peer_id, since=NOW - timedelta(hours=1)) == []
    server.submit_share(shares[1].text(), submitted_by="custodian:bo")
    assert not server.sealed


def test_forged_share_drops_and_transfers_are_ignored() -> None:
    store = MemoryVaultStore()
    server = fresh(store, secret=SECRET)
    server.initialize(shares=3, threshold=2)
    server.sync()
    # The attacker makes a vault of their own, writes its shape over ours (commitments, root
    # check) and plants its shares and root key for the server.
    other_store = MemoryVaultStore()
    theirs = fresh(other_store).initialize(shares=3, threshold=2)
    store._meta = other_store.meta()
    me = next(p for p in store.peers(seen_since=NOW - timedelta(hours=1)) if p.id == server.peer_id)
    for share in theirs[:2]:
        sealed = crypto.seal_box(
            me.public_key,
            share.value,
            context=crypto.length_prefixed(b"share", me.id, str(share.index)),
        )
        store.drop_share(
            me.id,
            ShareDrop(share.index, sealed, "custodian:eve", NOW, seal_epoch=0, mac=bytes(32)),
        )
    root = combine(theirs[:2], threshold=2)  # their real root: it opens their root check
    sealed_root = crypto.seal_box(
        me.public_key, root, context=crypto.length_prefixed(b"transfer", me.id)
    )
    store.put_transfer(
        me.id,
        Transfer(sealed_root, "peer_eve", NOW + timedelta(minutes=1), seal_epoch=0, mac=bytes(32)),
        now=NOW,
    )
    server.sync()
    assert server.sealed


def test_a_transfer_sent_before_a_seal_order_does_not_unseal_anyone_after_it() -> None:
    store = MemoryVaultStore()
    running = fresh(store, secret=SECRET)
    running.unseal_with(running.initialize(shares=3, threshold=2)[:2])
    starting = fresh(store, secret=SECRET)
    starting.sync()  # announces itself sealed
    running.sync()  # leaves it the key
    running.seal_everywhere()  # before it was picked up
    starting.sync()
    assert starting.sealed and running.sealed
