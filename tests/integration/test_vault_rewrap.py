"""Rotation and rewrap over data written through the API, on SQLite and PostgreSQL.

Every registered column (``adapters.sql.encrypted.ENCRYPTED_COLUMNS``) holds data written the
way payers and merchants write it (``support.personal``: an address, TOTP, OCRA and SMS factors,
security questions, mail, webhook secrets, an erased user's retained address, the audit log).
After ``rotate`` and ``rewrap`` every field is under the new key version and opens to what it
held before; the audit log keeps its ciphertexts (its hash chain covers them) and still opens;
an erased user's fields stay shredded; a second rewrap writes nothing; and a field the
application rewrites while the rewrap runs keeps the application's value.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from support import personal
from support.mfa import Device, Mfa, bound
from zeropay.adapters.clock import FixedClock
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS
from zeropay.adapters.vault.rewrap import RewrapReport, rewrap
from zeropay.adapters.vault.vault import ROTATED, Vault
from zeropay.domain.errors import KeyDestroyed
from zeropay.services import audit, erasure

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
BATCH = 3  # small, so every column takes several batches and keyset pages


def _vault(mfa: Mfa) -> Vault:
    vault = mfa.container.vault
    assert vault is not None
    return vault


def _rewrap(mfa: Mfa, batch: int = BATCH) -> RewrapReport:
    return rewrap(_vault(mfa), mfa.container.engine, ENCRYPTED_COLUMNS, batch=batch)


def _fields(mfa: Mfa) -> dict[str, personal.Field]:
    return {field.where: field for field in personal.stored_fields(mfa)}


def _open(mfa: Mfa, fields: dict[str, personal.Field]) -> dict[str, bytes | None]:
    """Each field's plaintext; None for one whose key was destroyed (an erased user's)."""
    out: dict[str, bytes | None] = {}
    for where, field in fields.items():
        try:
            out[where] = field.open(_vault(mfa))
        except KeyDestroyed:
            out[where] = None
    return out


def _versions(mfa: Mfa, fields: dict[str, personal.Field]) -> dict[str, int]:
    """The key version of each field that still opens."""
    vault = _vault(mfa)
    out = {}
    for where, field in fields.items():
        try:
            out[where] = vault.key_version_of(field.ciphertext)
        except KeyDestroyed:
            continue
    return out


def _key_states(mfa: Mfa) -> Counter[tuple[str, bool, int, str]]:
    """(purpose, whether it belongs to a user, version, state) -> keys."""
    with mfa.container.engine.connect() as c:
        rows = c.execute(text("SELECT purpose, subject, version, state FROM vault_keys")).all()
    return Counter((r.purpose, r.subject != "", r.version, r.state) for r in rows)


@pytest.fixture
def written(mfa: Mfa) -> dict[str, Any]:
    """Two payers with every kind of personal data, one of them erased; a merchant's webhook
    secrets. What the tests compare against."""
    kept = personal.payer(mfa, "kept@example.com", phone="+821055501111")
    gone = personal.payer(
        mfa,
        "gone@example.com",
        phone="+821055502222",
        answers={"first_concert": "the beatles", "favourite_teacher": "Mrs Kim"},
    )
    _, secrets = personal.webhook_secrets(mfa)
    erasure.erase_user(mfa.container.ctx, gone.user_id, by="cli:test")
    return {"kept": kept, "gone": gone, "secrets": secrets}


def test_after_rotate_and_rewrap_every_field_is_under_the_new_version_and_opens_the_same(
    mfa: Mfa, written: dict[str, Any]
) -> None:
    vault = _vault(mfa)
    before = _fields(mfa)
    plain = _open(mfa, before)
    held = {where.split("[", 1)[0] for where in before}
    for column in ENCRYPTED_COLUMNS:
        name = f"{column.table.name}.{column.column}"
        assert name in held, f"{name} holds nothing: write data for it in this test"
    assert set(_versions(mfa, before).values()) == {1}
    shredded = {where for where, value in plain.items() if value is None}
    assert shredded, "the erased user's fields are part of the test"

    assert vault.rotate() == 2
    report = _rewrap(mfa)

    after = _fields(mfa)
    assert after.keys() == before.keys()  # nothing added, nothing lost
    assert _open(mfa, after) == plain
    versions = _versions(mfa, after)
    rewrapped = 0
    for where, field in after.items():
        if where in shredded:
            # An erased user's field cannot be re-encrypted: it stays as it was, unreadable.
            assert field.ciphertext == before[where].ciphertext, where
        elif field.column.rewrap:
            assert versions[where] == 2, where
            assert field.ciphertext != before[where].ciphertext, where
            rewrapped += 1
        else:
            # The audit log: its hash chain covers each ciphertext, so it keeps the old version.
            assert field.ciphertext == before[where].ciphertext, where
            assert versions[where] == 1, where
    assert report.rewrapped == rewrapped
    assert report.changed == 0
    assert audit.verify(mfa.container.ctx).breaks == []
    # The payer's data is still theirs through the API: the address (and its blind index).
    r = written["kept"].device.call("GET", "/v1/me")
    assert r.status_code == 200 and r.json()["email"] == "kept@example.com", r.text
    assert erasure.retained_email(mfa.container.ctx, written["gone"].user_id) == "gone@example.com"


def test_old_versions_stay_readable_until_the_rewrap_finishes_and_are_retired_after_it(
    mfa: Mfa, written: dict[str, Any]
) -> None:
    vault = _vault(mfa)
    before = _fields(mfa)
    plain = _open(mfa, before)
    vault.rotate()
    # Between rotation and rewrap: old data opens, new data goes under the new version.
    assert _open(mfa, _fields(mfa)) == plain
    _, fresh = personal.webhook_secrets(mfa, name="Second Cafe")
    new_secrets = [
        f
        for f in personal.stored_fields(mfa)
        if f.column.table.name == "webhook_secrets" and f.where not in before
    ]
    assert sorted(f.open(vault) for f in new_secrets) == sorted(s.encode() for s in fresh)
    assert {vault.key_version_of(f.ciphertext) for f in new_secrets} == {2}
    states = _key_states(mfa)
    assert all(states[(p, False, 1, "active")] == 1 for p in ROTATED)

    report = _rewrap(mfa)

    states = _key_states(mfa)
    for purpose in ROTATED:
        assert states[(purpose, False, 1, "retired")] == 1, purpose
        assert states[(purpose, False, 2, "active")] == 1, purpose
    # Users' keys too: each user's version 1 is retired once the rewrap made their version 2.
    users_retired = states[("personal", True, 1, "retired")]
    assert users_retired == states[("personal", True, 2, "active")] > 0
    assert states[("personal", True, 1, "active")] == 0
    assert report.retired == len(ROTATED) + sum(
        n for (_, user, _, state), n in states.items() if user and state == "retired"
    )
    assert states[("index", False, 1, "active")] == 1  # a new index key would change every index
    # Retired is still readable: the audit entries were written under the old versions.
    audit_fields = {w: f for w, f in _fields(mfa).items() if not f.column.rewrap}
    versions = _versions(mfa, audit_fields)
    assert {v for w, v in versions.items() if w in before} == {1}
    assert {v for w, v in versions.items() if w not in before} == {2}  # written after rotate
    assert audit.verify(mfa.container.ctx).breaks == []


def test_the_rewrap_report_counts_each_shredded_field_once(
    mfa: Mfa, written: dict[str, Any]
) -> None:
    """What an operator reads from ``zeropay vault rewrap``: the fields left as they are because
    their key was destroyed. Each is one field, however many passes the rewrap made."""
    fields = _fields(mfa)
    shredded = [w for w, v in _open(mfa, fields).items() if v is None and fields[w].column.rewrap]
    assert shredded
    _vault(mfa).rotate()
    report = _rewrap(mfa)
    assert report.passes == 2  # one that re-encrypted, one that found nothing left
    assert report.shredded == len(shredded), report


def test_the_retention_key_version_a_rewrap_made_ends_with_the_retention_period(
    mfa: Mfa, written: dict[str, Any], clock: FixedClock
) -> None:
    """The rewrap re-encrypts an erased user's retained address under a new version of their
    retention key, made after the erasure scheduled the old one's destruction. When the AML
    period ends, that new version must go too: otherwise the address outlives its period."""
    gone = written["gone"].user_id
    ctx = mfa.container.ctx
    _vault(mfa).rotate()
    _rewrap(mfa)
    retained = [f for f in personal.stored_fields(mfa) if f.column.table.name == "aml_retention"]
    assert [_vault(mfa).key_version_of(f.ciphertext) for f in retained] == [2]
    assert erasure.retained_email(ctx, gone) == "gone@example.com"
    clock.advance(days=ctx.durations.aml_retention_days + 1)
    assert erasure.end_retention(ctx) >= 2
    with pytest.raises(KeyDestroyed):
        erasure.retained_email(ctx, gone)


def test_a_rewrap_run_twice_writes_nothing_the_second_time(
    mfa: Mfa, written: dict[str, Any]
) -> None:
    nothing_yet = _rewrap(mfa)  # before any rotation there is nothing to re-encrypt
    assert (nothing_yet.rewrapped, nothing_yet.changed, nothing_yet.passes) == (0, 0, 1)
    _vault(mfa).rotate()
    first = _rewrap(mfa)
    assert first.rewrapped > 0
    stored = {where: f.ciphertext for where, f in _fields(mfa).items()}

    second = _rewrap(mfa)

    assert (second.rewrapped, second.changed, second.passes, second.retired) == (0, 0, 1, 0)
    assert second.fields == first.fields
    assert {where: f.ciphertext for where, f in _fields(mfa).items()} == stored


def _questions_of(mfa: Mfa, user_id: str) -> set[str]:
    """The security questions a payer chose, as stored (decrypted, padding removed)."""
    chosen = set()
    for field in personal.stored_fields(mfa):
        if field.column.table.name == "security_answers" and field.subject == user_id:
            chosen.add(field.open(_vault(mfa)).rstrip(b"\0").decode())
    return chosen


def _choose(device: Device, chosen: dict[str, str]) -> None:
    r = device.call("PUT", "/v1/me/security-questions", {"answers": chosen})
    assert r.status_code == 204, r.text


OTHER_ANSWERS = {"first_job_city": "Busan", "childhood_friend": "Minji"}


def test_a_field_the_application_rewrites_between_the_rewraps_read_and_write_keeps_its_value(
    mfa: Mfa, written: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrap reads a batch, re-encrypts it, then writes each field only where it still
    holds what was read. Here the payer changes their security questions in that gap: had the
    rewrap written by key alone, it would bring the old questions back."""
    kept = written["kept"]
    vault = _vault(mfa)
    assert _questions_of(mfa, kept.user_id) == set(personal.ANSWERS)
    reencrypt = vault.reencrypt
    raced = []

    def payer_writes_in_the_gap(ciphertext: bytes, **where: str) -> bytes | None:
        if where["table"] == "security_answers" and not raced:
            raced.append(where["row_id"])
            _choose(kept.device, OTHER_ANSWERS)
        return reencrypt(ciphertext, **where)

    monkeypatch.setattr(vault, "reencrypt", payer_writes_in_the_gap)
    vault.rotate()
    report = _rewrap(mfa, batch=1)

    assert raced
    assert report.changed >= 1
    assert _questions_of(mfa, kept.user_id) == set(OTHER_ANSWERS)
    fields = _fields(mfa)
    versions = _versions(mfa, fields)
    assert {versions[w] for w, f in fields.items() if f.column.rewrap and w in versions} == {2}


def _sign_up(mfa: Mfa, email: str) -> None:
    r = mfa.device().call("POST", "/v1/users", {"email": email, "password": "a long passphrase"})
    assert r.status_code == 201, r.text


@POSTGRES_ONLY
def test_writes_made_from_many_threads_while_a_rewrap_runs_are_not_lost(
    mfa: Mfa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Payers change their security questions over and over and new payers sign up, from
    threads, while ``rewrap`` runs in small batches: afterwards each payer's questions are the
    last ones they were told were saved, every new address opens, and every field is under the
    new version. The rewrap dawdles over security questions, so that writes land between its
    reads and its writes (the deterministic case is the test above)."""
    payers = []
    for i in range(6):
        device = bound(mfa, f"writer{i}@example.com")
        _choose(device, personal.ANSWERS)
        payers.append(device)
    for i in range(120):  # work for the rewrap: an address, a mailed code, audit entries each
        _sign_up(mfa, f"ballast{i}@example.com")
    vault = _vault(mfa)
    reencrypt = vault.reencrypt

    def dawdling(ciphertext: bytes, **where: str) -> bytes | None:
        if where["table"] == "security_answers":
            time.sleep(0.005)
        return reencrypt(ciphertext, **where)

    monkeypatch.setattr(vault, "reencrypt", dawdling)
    vault.rotate()
    done = threading.Event()
    pairs = [personal.ANSWERS, OTHER_ANSWERS]
    saved: dict[int, dict[str, str]] = {}

    def writer(i: int) -> int:
        rounds = 0
        while not done.is_set() and rounds < 200:  # bounded whatever the rewrap does
            chosen = pairs[(rounds + 1) % 2]
            _choose(payers[i], chosen)
            saved[i] = chosen
            rounds += 1
        return rounds

    signed_up: list[str] = []

    def newcomer() -> int:
        while not done.is_set() and len(signed_up) < 60:
            email = f"newcomer{len(signed_up)}@example.com"
            _sign_up(mfa, email)
            signed_up.append(email)
        return len(signed_up)

    # Security questions first: a payer's rows are still under the old version when read only
    # until the rewrap makes that payer's new key (from their first row it meets).
    first = [c for c in ENCRYPTED_COLUMNS if c.table.name == "security_answers"]
    columns = first + [c for c in ENCRYPTED_COLUMNS if c not in first]

    def rewrapper() -> RewrapReport:
        try:
            return rewrap(vault, mfa.container.engine, columns, batch=2)
        finally:
            done.set()

    calls: list[Callable[[], Any]] = [
        rewrapper,
        newcomer,
        *(lambda i=i: writer(i) for i in range(6)),
    ]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = [f.result() for f in [pool.submit(c) for c in calls]]
    report = results[0]
    assert all(rounds > 0 for rounds in results[2:]), results  # they really ran alongside

    for i, device in enumerate(payers):
        user_id = device.call("GET", "/v1/me").json()["id"]
        assert _questions_of(mfa, user_id) == set(saved[i]), i
    fields = _fields(mfa)
    emails = {v for v in _open(mfa, fields).values() if v is not None}
    for email in signed_up:
        assert email.encode() in emails
    versions = _versions(mfa, fields)
    stale = [w for w, f in fields.items() if f.column.rewrap and versions.get(w) != 2]
    assert stale == [], (stale[:5], report)
