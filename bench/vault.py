"""``python -m bench --only vault`` (part of ``make bench``): the key vault's costs on PostgreSQL,
in this process on one thread, each beside a baseline measured in the same run.

1. A scratch PostgreSQL database, migrated, dropped afterwards; a ``Vault`` over the SQL store
   (``SqlVaultStore``, as ``bootstrap.build_vault`` makes it), initialized with 5 shares and
   unsealed with 3.
2. Field encrypt and decrypt, warm: a 24-byte address under one user's key (``KeyRing.encrypt``
   with a subject, as ``users.email_ciphertext``) and a 32-byte secret under a purpose key (no
   subject, as ``webhook_secrets``), once the key is in the vault's cache; each call timed with
   ``perf_counter_ns``, p50/p99 in microseconds. Baseline: ``AESGCM.encrypt``/``decrypt`` of the
   same bytes with associated data of the same length, the ``AESGCM`` object made once (the
   floor) and made per call (as the vault's ``crypto.seal_field`` does).
3. Cold first use of a user key: encrypt for a subject never seen (the vault makes the user's
   key, wraps it under the root key and commits it to ``vault_keys``); and decrypt in a second
   vault, unsealed with other shares and an empty cache, of fields each under another user's
   key (one key read from ``vault_keys`` and unwrapped per field): what another process pays.
4. Blind index (``KeyRing.blind_index`` of an address) per second, beside a raw HMAC-SHA256 of
   the same bytes with a 32-byte key.
5. Rewrap: 100,000 webhook secrets (``--quick``: 5,000) inserted with SQL straight into their
   registered column, each encrypted as the application writes it; then ``vault rotate`` and
   ``rewrap`` over the whole registry, batches of ``VAULT_REWRAP_BATCH`` (the CLI's default):
   fields per second and seconds in total. Baseline in the same run, on the same rows first:
   the same ``rewrap`` walk with a stand-in for the vault that rewrites each field to the same
   bytes with its format byte changed, no crypto (same reads, same ``UPDATE ... WHERE`` per
   row, same batches and passes); ``VACUUM ANALYZE`` before each, untimed. Then the same for
   10,000 users' addresses (``--quick``: 1,000), each under its user's own key, where the rewrap
   also makes each user's new key version (one ``vault_keys`` insert per user).
6. Payment instruments, 2,000 cards (``--quick``: 200), ten per payer: tokenize
   (``services.instruments.add``: blind index, number and display sealed, one transaction with
   its audit entry and notice) and detokenize (``adapters.funding.Detokenizer`` in a transaction
   of its own: two rate counters, one decrypt, one audit entry; its limits raised, as production
   allows 6,000 reads a minute), in microseconds and per second, beside one-row UPDATE and
   COMMIT; cryptogram verification (``domain.instruments.verify_cryptogram``) per second, alone
   and with the device key decrypted from the vault first (as a charge does), beside a raw
   HMAC-SHA256 of the same canonical bytes.
7. Memory: this process's peak RSS at the end.

Figures are printed, never asserted. Results are merged into ``var/bench.json`` under ``"vault"``
(``--quick``: var/bench-quick.json).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import platform
import resource
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from bench.results import merge
from bench.serving import percentile
from zeropay.adapters.clock import SystemClock
from zeropay.adapters.funding import Detokenizer
from zeropay.adapters.passwords import Argon2PasswordHasher
from zeropay.adapters.sql import tables as t
from zeropay.adapters.sql.database import make_engine
from zeropay.adapters.sql.encrypted import ENCRYPTED_COLUMNS
from zeropay.adapters.sql.migrate import migrate
from zeropay.adapters.vault.rewrap import RewrapReport, rewrap
from zeropay.adapters.vault.shares import Share
from zeropay.adapters.vault.store import SqlVaultStore, vault_engine
from zeropay.adapters.vault.vault import Vault
from zeropay.bootstrap import build
from zeropay.config import Settings
from zeropay.domain import bounds
from zeropay.domain.instruments import (
    TokenUse,
    canonical_use,
    cryptogram,
    parse_card,
    verify_cryptogram,
)
from zeropay.domain.money import Money, currency
from zeropay.services import audit, instruments

KEY = "vault"
OUT = Path("var/bench.json")
QUICK_OUT = Path("var/bench-quick.json")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
ADDRESS = b"someone.typical@example.com"[:24]
SECRET = secrets.token_bytes(32)
INSERT_CHUNK = 5_000


@dataclass(frozen=True)
class Plan:
    warmup: int  # calls before each timed loop: caches, first imports
    calls: int  # timed calls per figure
    cold: int  # new users (cold encrypt) and fields under other users' keys (cold decrypt)
    rewrap_fields: int  # webhook secrets
    rewrap_users: int  # users' addresses, each under its own key
    tokenize: int  # cards added (ten per payer), then as many detokenizations


FULL = Plan(
    warmup=2_000,
    calls=20_000,
    cold=2_000,
    rewrap_fields=100_000,
    rewrap_users=10_000,
    tokenize=2_000,
)
QUICK = Plan(
    warmup=200, calls=2_000, cold=200, rewrap_fields=5_000, rewrap_users=1_000, tokenize=200
)


def _log(message: str) -> None:
    print(f"[bench vault {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _us(samples_ns: list[int]) -> dict[str, Any]:
    """p50/p99/mean in microseconds, and calls per second of the timed time."""
    total = sum(samples_ns)
    return {
        "count": len(samples_ns),
        "p50_us": round((percentile(samples_ns, 50) or 0) / 1e3, 2),
        "p99_us": round((percentile(samples_ns, 99) or 0) / 1e3, 2),
        "mean_us": round(total / len(samples_ns) / 1e3, 2),
        "per_s": round(len(samples_ns) / (total / 1e9)),
    }


def _timed(calls: int, warmup: int, one: Callable[[int], object]) -> dict[str, Any]:
    for i in range(warmup):
        one(i)
    samples = []
    for i in range(calls):
        started = time.perf_counter_ns()
        one(i)
        samples.append(time.perf_counter_ns() - started)
    return _us(samples)


def _rate(calls: int, one: Callable[[int], object]) -> int:
    """Calls per second of a loop timed as a whole (no per-call clock reads), best of three."""
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for i in range(calls):
            one(i)
        best = max(best, calls / (time.perf_counter() - started))
    return round(best)


# ---- the database -------------------------------------------------------------------------------


@contextmanager
def _scratch_database() -> Iterator[tuple[Engine, str, str]]:
    raw = os.environ.get("ZEROPAY_TEST_POSTGRES_URL") or DEFAULT_PG
    admin_url = make_url(raw.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"zp_bench_vault_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        version = str(c.execute(text("SHOW server_version")).scalar_one())
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        migrate(engine)
        yield engine, url, version
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _vacuum(engine: Engine, table: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text(f"VACUUM ANALYZE {table}"))


def _vault(engine: Engine, shares: list[Share] | None = None) -> tuple[Vault, list[Share]]:
    """A vault over ``engine``: the one that initializes (5 shares) when ``shares`` is None,
    else another process's, unsealed with the last three."""
    vault = Vault(SqlVaultStore(vault_engine(engine)), clock=SystemClock())
    if shares is None:
        shares = vault.initialize(shares=5, threshold=3)
        vault.unseal_with(shares[:3])
    else:
        vault.unseal_with(shares[2:])
    return vault, shares


# ---- field encryption ---------------------------------------------------------------------------


def _aad(table: str, column: str, row_id: str) -> bytes:
    """Associated data as long as the vault's: format byte, key id, length-prefixed place."""
    place = b"".join(
        len(p).to_bytes(4, "big") + p for p in (table.encode(), column.encode(), row_id.encode())
    )
    return bytes(17) + place


def fields(vault: Vault, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    where = {"table": "users", "column": "email", "row_id": "usr_01benchmarkrow000000000"}
    secret_where = {"table": "webhook_secrets", "column": "secret", "row_id": "whs_01bench"}
    _log(f"field encrypt/decrypt, warm: {plan.calls} timed calls each")
    out["encrypt_user_key"] = _timed(
        plan.calls,
        plan.warmup,
        lambda _: vault.encrypt(ADDRESS, subject="usr_bench", **where),
    )
    sealed = vault.encrypt(ADDRESS, subject="usr_bench", **where)
    out["decrypt_user_key"] = _timed(
        plan.calls, plan.warmup, lambda _: vault.decrypt(sealed, **where)
    )
    out["encrypt_purpose_key"] = _timed(
        plan.calls, plan.warmup, lambda _: vault.encrypt(SECRET, **secret_where)
    )
    sealed_secret = vault.encrypt(SECRET, **secret_where)
    out["decrypt_purpose_key"] = _timed(
        plan.calls, plan.warmup, lambda _: vault.decrypt(sealed_secret, **secret_where)
    )

    key = secrets.token_bytes(32)
    aad = _aad(**where)
    once = AESGCM(key)
    nonce = secrets.token_bytes(12)
    raw = once.encrypt(nonce, ADDRESS, aad)
    out["baseline_aesgcm_encrypt"] = _timed(
        plan.calls, plan.warmup, lambda _: once.encrypt(secrets.token_bytes(12), ADDRESS, aad)
    )
    out["baseline_aesgcm_decrypt"] = _timed(
        plan.calls, plan.warmup, lambda _: once.decrypt(nonce, raw, aad)
    )
    out["baseline_aesgcm_encrypt_new_object"] = _timed(
        plan.calls,
        plan.warmup,
        lambda _: AESGCM(key).encrypt(secrets.token_bytes(12), ADDRESS, aad),
    )
    out["baseline_aesgcm_decrypt_new_object"] = _timed(
        plan.calls, plan.warmup, lambda _: AESGCM(key).decrypt(nonce, raw, aad)
    )
    return out


def cold(vault: Vault, shares: list[Share], engine: Engine, plan: Plan) -> dict[str, Any]:
    """First use of a user's key: made and committed (encrypt), or read and unwrapped by a
    process that has not seen it (decrypt)."""
    _log(f"cold first use of a user key: {plan.cold} new users")
    stored: list[tuple[bytes, str]] = []

    def first_encrypt(i: int) -> None:
        row_id = f"usr_cold{i:08d}"
        stored.append(
            (
                vault.encrypt(
                    ADDRESS, table="users", column="email", row_id=row_id, subject=row_id
                ),
                row_id,
            )
        )

    encrypt = _timed(plan.cold, 0, first_encrypt)
    other, _ = _vault(engine, shares)

    def first_decrypt(i: int) -> None:
        ciphertext, row_id = stored[i]
        other.decrypt(ciphertext, table="users", column="email", row_id=row_id)

    decrypt = _timed(plan.cold, 0, first_decrypt)
    return {"encrypt_new_user_key": encrypt, "decrypt_key_not_cached": decrypt}


def blind_index(vault: Vault, plan: Plan) -> dict[str, Any]:
    _log(f"blind index: {plan.calls} calls, best of three")
    values = [f"payer{i}@example.com".encode() for i in range(plan.calls)]
    vault.blind_index(values[0], purpose="user.email")  # derive the index key once
    key = secrets.token_bytes(32)
    return {
        "blind_index_per_s": _rate(
            plan.calls, lambda i: vault.blind_index(values[i], purpose="user.email")
        ),
        "baseline_hmac_sha256_per_s": _rate(
            plan.calls, lambda i: hmac.new(key, values[i], hashlib.sha256).digest()
        ),
    }


# ---- rewrap -------------------------------------------------------------------------------------


class NoCrypto:
    """What ``rewrap`` asks of the vault, without crypto: each field becomes the same bytes with
    its format byte changed (0), and one already changed is left alone, as a field already under
    the current version is. The baseline walk: the rewrap's reads, writes, batches and passes."""

    def sync(self) -> None:
        return None

    def reencrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes | None:
        return None if ciphertext[0] == 0 else b"\x00" + ciphertext[1:]

    def retire_old_versions(self) -> int:
        return 0


def _restore_format_byte(engine: Engine, table: str, column: str) -> None:
    with engine.begin() as c:
        c.execute(
            text(f"UPDATE {table} SET {column} = overlay({column} placing '\\x02'::bytea from 1)")
        )


def _insert(engine: Engine, table: Any, count: int, row: Callable[[int], dict[str, Any]]) -> None:
    """``count`` rows made by ``row(i)``, inserted ``INSERT_CHUNK`` at a time."""
    for start in range(0, count, INSERT_CHUNK):
        rows = [row(i) for i in range(start, min(count, start + INSERT_CHUNK))]
        with engine.begin() as c:
            c.execute(insert(table), rows)


def _insert_secrets(vault: Vault, engine: Engine, count: int) -> None:
    now = datetime.now(UTC)
    with engine.begin() as c:
        c.execute(insert(t.merchants).values(id="mer_bench", name="Bench", created_at=now))
        c.execute(
            insert(t.webhook_endpoints).values(
                id="whe_bench",
                merchant_id="mer_bench",
                url="https://hooks.example.com/bench",
                status="active",
                created_at=now,
            )
        )

    def secret(i: int) -> dict[str, Any]:
        row_id = f"whs_bench{i:09d}"
        sealed = vault.encrypt(SECRET, table="webhook_secrets", column="secret", row_id=row_id)
        return {
            "id": row_id,
            "endpoint_id": "whe_bench",
            "secret_ciphertext": sealed,
            "created_at": now,
            "expires_at": None,
        }

    _insert(engine, t.webhook_secrets, count, secret)


def _insert_users(vault: Vault, engine: Engine, count: int, prefix: str = "usr_bench") -> None:
    now = datetime.now(UTC)

    def user(i: int) -> dict[str, Any]:
        user_id = f"{prefix}{i:09d}"
        sealed = vault.encrypt(
            ADDRESS, table="users", column="email", row_id=user_id, subject=user_id
        )
        return {
            "id": user_id,
            "email_index": secrets.token_bytes(32),
            "email_ciphertext": sealed,
            "password_hash": "not a hash: benchmark row",
            "status": "active",
            "created_at": now,
        }

    _insert(engine, t.users, count, user)


def _walk(vault: Any, engine: Engine, table: str) -> tuple[float, RewrapReport]:
    """``rewrap`` over the registry's entry for ``table``: the figure is that column's."""
    columns = [c for c in ENCRYPTED_COLUMNS if c.table.name == table]
    started = time.perf_counter()
    report = rewrap(vault, engine, columns, batch=bounds.VAULT_REWRAP_BATCH)
    return time.perf_counter() - started, report


def _rewrap_one(vault: Vault, engine: Engine, table: str, column: str) -> dict[str, Any]:
    """Baseline walk, restore, then rotate and the real rewrap, over what the database holds."""
    with engine.connect() as c:
        fields_ = c.execute(select(func.count()).select_from(t.metadata.tables[table])).scalar_one()
    _vacuum(engine, table)
    baseline_s, baseline = _walk(NoCrypto(), engine, table)
    _restore_format_byte(engine, table, column)
    _vacuum(engine, table)
    version = vault.rotate()
    seconds, report = _walk(vault, engine, table)
    return {
        "fields": fields_,
        "key_version": version,
        "seconds": round(seconds, 2),
        "fields_per_s": round(report.rewrapped / seconds),
        "report": report.as_dict(),
        "baseline_no_crypto_seconds": round(baseline_s, 2),
        "baseline_no_crypto_fields_per_s": round(baseline.rewrapped / baseline_s),
        "baseline_report": baseline.as_dict(),
    }


def rewrap_secrets(vault: Vault, engine: Engine, plan: Plan) -> dict[str, Any]:
    _log(f"rewrap: inserting {plan.rewrap_fields} webhook secrets (untimed)")
    _insert_secrets(vault, engine, plan.rewrap_fields)
    _log("rewrap: baseline walk without crypto, then rotate and rewrap")
    return _rewrap_one(vault, engine, "webhook_secrets", "secret_ciphertext")


def rewrap_users(vault: Vault, engine: Engine, plan: Plan) -> dict[str, Any]:
    _log(f"rewrap: inserting {plan.rewrap_users} users, each with a key of their own (untimed)")
    _insert_users(vault, engine, plan.rewrap_users)
    _log("rewrap: baseline walk without crypto, then rotate and rewrap (a new key per user)")
    return _rewrap_one(vault, engine, "users", "email_ciphertext")


# ---- tokenization -------------------------------------------------------------------------------


def _card_number(i: int) -> str:
    """A 16-digit Visa-like test number with its Luhn check digit, different for each ``i``."""
    body = f"4{i:014d}"
    total = 0
    for position, digit in enumerate(reversed(body)):
        d = int(digit) * (2 if position % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def _floor(engine: Engine, user_id: str) -> None:
    """What BEGIN, one write and COMMIT cost on this server, whatever the statements."""
    with engine.begin() as c:
        c.execute(text("UPDATE users SET status = status WHERE id = :u"), {"u": user_id})


def tokenization(vault: Vault, engine: Engine, database_url: str, plan: Plan) -> dict[str, Any]:
    """Tokenize (``services.instruments.add``: blind index, two fields sealed, one transaction
    with its audit entry and notice), detokenize (``adapters.funding.Detokenizer`` in its own
    transaction: two rate counters, one decrypt, one audit entry) and cryptogram verification
    (``domain.instruments.verify_cryptogram``, and with the device key decrypted first, as a
    charge does), each beside a baseline."""
    settings = Settings(
        database_url=database_url, jobs_enabled=False, risk_enabled=False, log_level="warning"
    )
    container = build(
        settings, keyring=vault, engine=engine, hasher=Argon2PasswordHasher.cheap_for_tests()
    )
    ctx = container.ctx
    per_user = bounds.INSTRUMENTS_PER_USER_MAX
    users = -(-plan.tokenize // per_user)
    _insert_users(vault, engine, users, prefix="usr_tok")
    _log(f"tokenize: {plan.tokenize} cards for {users} payers, {per_user} each")
    now = ctx.now()
    added: list[str] = []

    def tokenize(i: int) -> None:
        card = parse_card(_card_number(i), 12, now.year + 3, now=now)
        made = instruments.add(ctx, user_id=f"usr_tok{i // per_user:09d}", new=card)
        added.append(made.instrument.id)

    out: dict[str, Any] = {"tokenize": _timed(plan.tokenize, 0, tokenize)}
    out["baseline_one_row_write"] = _timed(
        plan.tokenize, 0, lambda i: _floor(engine, f"usr_tok{i // per_user:09d}")
    )
    # The platform allows 6,000 reads a minute (bounds.DETOKENIZE_OVERALL_MAX): raised here so
    # the mechanism's own cost is what is measured.
    detokenizer = Detokenizer(
        vault.revealer(), actor="funding:bench", per_instrument_max=10**9, overall_max=10**9
    )

    def detokenize(i: int) -> None:
        def work(uow: Any) -> str:
            instrument = uow.instruments.get(added[i % len(added)])
            return detokenizer.detokenize(
                uow,
                instrument,
                purpose="bench",
                reference=f"chg_bench{i}",
                now=ctx.now(),
                audit=partial(audit.record, ctx, uow),
            )

        ctx.run(work)

    _log(f"detokenize: {plan.tokenize} reads")
    out["detokenize"] = _timed(plan.tokenize, plan.warmup // 10, detokenize)

    _log(f"cryptogram verification: {plan.calls} calls, best of three")
    key = secrets.token_bytes(32)
    uses = [
        TokenUse(
            token=f"mtok_{secrets.token_urlsafe(32)}",
            amount=Money(1250 + i, currency("EUR")),
            merchant_id="mer_01benchmerchant",
            counter=i + 1,
        )
        for i in range(plan.calls)
    ]
    presented = [cryptogram(key, use) for use in uses]
    sealed_key = vault.encrypt(key, table="instrument_device_keys", column="key", row_id="idk_b")

    def verify_with_stored_key(i: int) -> None:
        device_key = vault.decrypt(
            sealed_key, table="instrument_device_keys", column="key", row_id="idk_b"
        )
        verify_cryptogram(
            use=uses[i], presented=presented[i], expected_key=device_key, last_counter=i
        )

    canonical = [canonical_use(use) for use in uses]
    out["cryptogram_verify_per_s"] = _rate(
        plan.calls,
        lambda i: verify_cryptogram(
            use=uses[i], presented=presented[i], expected_key=key, last_counter=i
        ),
    )
    out["cryptogram_verify_with_key_decrypt_per_s"] = _rate(plan.calls, verify_with_stored_key)
    out["baseline_hmac_sha256_of_canonical_per_s"] = _rate(
        plan.calls, lambda i: hmac.new(key, canonical[i], hashlib.sha256).digest()
    )
    out["detokenize_limits"] = "raised to 10**9 (production: 20/min per instrument, 6000/min)"
    return out


# ---- main ---------------------------------------------------------------------------------------


def run(*, quick: bool, out: Path | None = None) -> int:
    plan = QUICK if quick else FULL
    out = out or (QUICK_OUT if quick else OUT)
    started = time.monotonic()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with _scratch_database() as (engine, database_url, pg_version):
        vault, shares = _vault(engine)
        record: dict[str, Any] = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": quick,
            "plan": asdict(plan),
            "fields": fields(vault, plan),
            "cold": cold(vault, shares, engine, plan),
            "blind_index": blind_index(vault, plan),
            "rewrap_webhook_secrets": rewrap_secrets(vault, engine, plan),
        }
        record["rewrap_users"] = rewrap_users(vault, engine, plan)
        record["tokenization"] = tokenization(vault, engine, database_url, plan)
    record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    record["environment"] = {
        "python": platform.python_version(),
        "postgresql": pg_version,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_before,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": "one thread, not pinned; PostgreSQL and other work share the machine",
    }
    record["wall_seconds"] = round(time.monotonic() - started, 1)
    merge(out, KEY, record)
    print()
    print(_table(record))
    print(f"written to {out} under {KEY!r} ({record['wall_seconds']}s wall)")
    return 0


def _row(label: str, p: dict[str, Any]) -> str:
    return f"  {label:<52}{p['p50_us']:>9}{p['p99_us']:>9}{p['mean_us']:>9}{p['per_s']:>10}"


def _rewrap_lines(label: str, r: dict[str, Any]) -> list[str]:
    return [
        f"  {label}: {r['fields']} fields, {r['report']['rewrapped']} rewrapped in "
        f"{r['seconds']} s = {r['fields_per_s']} fields/s ({r['report']['passes']} passes)",
        f"    baseline, same walk without crypto: {r['baseline_no_crypto_seconds']} s = "
        f"{r['baseline_no_crypto_fields_per_s']} fields/s",
    ]


def _tokenization_lines(k: dict[str, Any]) -> list[str]:
    return [
        "payment instruments (microseconds per call)",
        _row("tokenize a card (instruments.add, one transaction)", k["tokenize"]),
        _row("detokenize (counted, decrypted, audited; one tx)", k["detokenize"]),
        _row("baseline: one-row UPDATE and COMMIT", k["baseline_one_row_write"]),
        f"  cryptogram verification: {k['cryptogram_verify_per_s']}/s; with the device key "
        f"decrypted first: {k['cryptogram_verify_with_key_decrypt_per_s']}/s; baseline "
        f"HMAC-SHA256 of the canonical bytes: {k['baseline_hmac_sha256_of_canonical_per_s']}/s",
        f"  detokenization limits {k['detokenize_limits']}",
    ]


def _table(r: dict[str, Any]) -> str:
    f, c = r["fields"], r["cold"]
    lines = [
        "key vault on PostgreSQL, one thread in process (microseconds per call)",
        f"  {'':<52}{'p50 us':>9}{'p99 us':>9}{'mean us':>9}{'per s':>10}",
        _row("encrypt, user key, warm cache", f["encrypt_user_key"]),
        _row("decrypt, user key, warm cache", f["decrypt_user_key"]),
        _row("encrypt, purpose key, warm cache", f["encrypt_purpose_key"]),
        _row("decrypt, purpose key, warm cache", f["decrypt_purpose_key"]),
        _row("baseline AESGCM encrypt, same bytes (object once)", f["baseline_aesgcm_encrypt"]),
        _row("baseline AESGCM decrypt, same bytes (object once)", f["baseline_aesgcm_decrypt"]),
        _row("baseline AESGCM encrypt (object per call)", f["baseline_aesgcm_encrypt_new_object"]),
        _row("baseline AESGCM decrypt (object per call)", f["baseline_aesgcm_decrypt_new_object"]),
        _row("cold: encrypt for a new user (key made, committed)", c["encrypt_new_user_key"]),
        _row("cold: decrypt, key not cached (read, unwrapped)", c["decrypt_key_not_cached"]),
        f"  blind index: {r['blind_index']['blind_index_per_s']}/s; baseline HMAC-SHA256 of the "
        f"same bytes: {r['blind_index']['baseline_hmac_sha256_per_s']}/s",
        *_rewrap_lines("rewrap webhook secrets (purpose key)", r["rewrap_webhook_secrets"]),
        *_rewrap_lines("rewrap users' addresses (a key per user)", r["rewrap_users"]),
        *_tokenization_lines(r["tokenization"]),
        f"  peak RSS of this process: {r['peak_rss_mb']} MB",
        f"  load average {r['environment']['load_average_at_start']} at start, "
        f"{r['environment']['load_average_at_end']} at end ({r['environment']['cpus']} CPUs)",
    ]
    return "\n".join(lines)
