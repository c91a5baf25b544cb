"""Attacks on the device PIN of an older phone (README: Older phones): the thief who copied the
phone's software key guesses the PIN in parallel, and the thief of a database copy looks for it.

The PIN is 8 digits; what stands between a copied key and the account is the lockout: at most 5
guesses ever reach the hash before the PIN locks, however many are sent at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from support.mfa import Mfa
from support.older_phones import PIN, phone, pin_login, register_with_pin
from zeropay.adapters.passwords import Argon2PasswordHasher

EMAIL = "old.phone@example.com"
FLOW_ATTEMPTS = 5  # PSD2 RTS Art. 4(3)(b)


def _race(call: Any, n: int) -> list[Any]:
    barrier = threading.Barrier(n)

    def go(i: int) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(go, range(n)))


def _software_phone(mfa: Mfa) -> Any:
    device = phone(mfa, "software")
    mfa.sign_up(device, EMAIL)
    assert register_with_pin(mfa, device, EMAIL).status_code == 201
    return device


def test_forty_parallel_pin_guesses_with_a_copied_key_reach_the_hash_at_most_five_times(
    mfa, clock, monkeypatch
):
    owner = _software_phone(mfa)
    thief = mfa.device("Thief's laptop", "linux")
    thief.key = owner.key  # a software key copied off the phone
    flows = []
    for _ in range(8):  # 8 flows x 5 attempts
        r = mfa.start(thief, "login", email=EMAIL)
        assert r.status_code == 201, r.text
        r = mfa.step(thief, r.json()["id"], "device_key")
        assert r.status_code == 200 and r.json()["flow"]["next"] == ["pin"], r.text
        flows.append(r.json()["flow"]["id"])
    checked: list[str] = []
    lock = threading.Lock()
    real_verify = Argon2PasswordHasher.verify

    def counting(self: Any, encoded: str, secret: str) -> None:
        with lock:
            checked.append(secret)
        real_verify(self, encoded, secret)

    monkeypatch.setattr(Argon2PasswordHasher, "verify", counting)
    guesses = [f"{n:08d}" for n in range(10_000_000, 10_000_040)]
    answers = _race(lambda i: mfa.step(thief, flows[i % len(flows)], "pin", pin=guesses[i]), 40)
    statuses = Counter(a.status_code for a in answers)
    # Each is refused: checked and wrong, locked, or turned away while its flow was busy.
    assert set(statuses) <= {401, 409} and statuses[401] >= len(flows), statuses
    assert 1 <= len(checked) <= FLOW_ATTEMPTS, len(checked)
    seen = len(checked)
    # Locked: even the right PIN, from the copied key, never reaches the hash.
    clock.advance(seconds=30)
    assert pin_login(mfa, thief, EMAIL, PIN).status_code == 401
    assert len(checked) == seen
    # The owner was told (the lock alert is in the inbox).
    r = owner.call("GET", "/v1/me/notifications")
    assert any(n["kind"] == "factor.locked" for n in r.json()["data"]), r.text


def test_a_database_copy_holds_the_pin_neither_in_plaintext_nor_as_a_bare_hash(mfa):
    device = _software_phone(mfa)
    with mfa.container.engine.connect() as c:
        rows = c.execute(
            text("SELECT secret_ciphertext, device_id FROM authenticators WHERE kind = 'pin'")
        ).all()
    assert len(rows) == 1 and rows[0].device_id is not None
    sealed = bytes(rows[0].secret_ciphertext)
    # An argon2id hash of an 8-digit PIN could be brute-forced offline (10^8 guesses): it is
    # kept only encrypted under the user's key, which erasure destroys.
    assert not sealed.startswith(b"$argon2") and b"argon2" not in sealed
    assert PIN.encode() not in sealed
    r = device.call("GET", "/v1/me/export")
    assert r.status_code == 200 and PIN not in r.text and "$argon2" not in r.text
