"""What a stolen database copy reveals: no password, session token, API key, email address,
phone number, OTP seed, webhook secret or choice of security questions in plaintext or in a
common encoding, and no timing difference between an unknown email and a wrong password."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from sqlalchemy import text

from support import ocra as ocra_app
from support import personal
from support.mfa import signed_up


def _raw_database(container, backend) -> bytes:
    """Every byte the database holds for us: the SQLite file, or a pg_dump of the database."""
    url = container.engine.url
    if backend == "sqlite":
        container.engine.dispose()  # checkpoint the WAL into the file
        path = Path(url.database)
        return path.read_bytes() + (
            path.with_name(path.name + "-wal").read_bytes()
            if path.with_name(path.name + "-wal").exists()
            else b""
        )
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            "--data-only",
            url.database,
        ],
        capture_output=True,
        check=True,
    )
    return dump.stdout


def test_no_secret_or_email_is_stored_in_plaintext(api, container, backend):
    email = "plain.text.hunter@example.com"
    payer = api.payer(email, usd=900)
    merchant = api.merchant()
    token = payer["Authorization"].split()[1]
    key = merchant["Authorization"].split()[1]
    with container.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM sessions")).scalar_one() == 1
    raw = _raw_database(container, backend)
    assert b"Corner Cafe" in raw  # the copy really holds our rows
    for secret in (email, "a long passphrase", token, key, key.split(".", 1)[1]):
        assert secret.encode() not in raw, secret


def test_an_ocra_seed_is_stored_only_encrypted(mfa, backend):
    """The seed of a payment confirmation app is shown once and kept only under the vault's key
    (bound to its row): a database copy holds it in no form the enrollment showed."""
    phone = signed_up(mfa, "ocra.owner@example.com")
    r = phone.call("POST", "/v1/me/factors/ocra", {})
    assert r.status_code == 201, r.text
    made = r.json()
    app = ocra_app.from_enrollment(made)
    code = app.code(app.test_question, mfa.now())
    r = phone.call("POST", f"/v1/me/factors/ocra/{app.id}/confirm", {"code": code})
    assert r.status_code == 204, r.text
    with mfa.container.engine.connect() as c:
        stored = c.execute(
            text("SELECT status, secret_ciphertext FROM authenticators WHERE id = :i"),
            {"i": app.id},
        ).one()
    assert stored.status == "active" and stored.secret_ciphertext  # the copy holds the row
    raw = _raw_database(mfa.container, backend)
    for form in (app.seed, made["seed_hex"].encode(), made["seed_base32"].encode()):
        assert form not in raw, form
    assert app.seed.hex().upper().encode() not in raw


def test_an_unknown_email_costs_the_same_password_work_as_a_wrong_password(
    api, container, monkeypatch
):
    api.payer("known@example.com")
    hasher = container.ctx.hasher
    calls: list[str] = []
    for name in ("verify", "burn"):
        original = getattr(hasher, name)

        def spy(*args, _name=name, _original=original):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(hasher, name, spy)
    body = {"password": "not the password"}
    unknown = api.client.post("/v1/sessions", json={**body, "email": "nobody@example.com"})
    after_unknown = list(calls)
    known = api.client.post("/v1/sessions", json={**body, "email": "known@example.com"})
    after_known = calls[len(after_unknown) :]
    assert unknown.json() == known.json() and unknown.status_code == known.status_code == 401
    # One full argon2 verification each: a real hash for the account, a dummy one otherwise.
    assert after_unknown == ["burn"] and after_known == ["verify"]


def test_a_webhook_signing_secret_is_stored_only_encrypted(api, container, backend):
    """A webhook secret is shown once, at creation or rotation, and kept only under the key
    ring, bound to its row: a database copy holds it in no form the merchant was shown."""
    import base64

    merchant = api.merchant()
    r = api.client.post(
        "/v1/webhook-endpoints", headers=merchant, json={"url": "https://hooks.example.com/zp"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    r = api.client.post(
        f"/v1/webhook-endpoints/{created['id']}/secret-rotations", headers=merchant, json={}
    )
    assert r.status_code == 201, r.text
    with container.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM webhook_secrets")).scalar_one() == 2
    raw = _raw_database(container, backend)
    assert b"hooks.example.com" in raw  # the copy really holds the endpoint
    for secret in (created["secret"], r.json()["secret"]):
        random_part = secret.removeprefix("whsec_")
        assert secret.encode() not in raw and random_part.encode() not in raw
        assert base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4)) not in raw


def _forms(value: bytes) -> set[bytes]:
    """``value`` as it would sit in a database copy unprotected: raw, in hex (pg_dump prints
    bytea as hex, so this also finds it inside a larger binary value), base64 and base32 (how
    seeds are shown), upper and lower case, with and without padding."""
    encoded = {
        value,
        value.hex().encode(),
        base64.b64encode(value),
        base64.urlsafe_b64encode(value),
        base64.b32encode(value),
    }
    return {
        variant
        for e in encoded
        for stripped in (e, e.rstrip(b"="))
        for variant in (stripped, stripped.lower(), stripped.upper())
    }


def test_no_personal_field_seed_secret_or_question_choice_is_in_a_database_copy(mfa, backend):
    """Every field the key vault protects, written through the API, then looked for in the raw
    SQLite file or the pg_dump output in every form the API showed it and the common encodings."""
    phone = "+821055501234"
    payer = personal.payer(
        mfa,
        "vault.hunter@example.com",
        phone=phone,
        answers={"childhood_friend": "jimin park", "first_job_city": "busan"},
    )
    _, secrets = personal.webhook_secrets(mfa)
    with mfa.container.engine.connect() as c:
        sealed = c.execute(
            text("SELECT slot, question_ciphertext FROM security_answers WHERE user_id = :u"),
            {"u": payer.user_id},
        ).all()
    assert [s.slot for s in sealed] == [1, 2]
    # The two ids differ in length (16 and 14 characters): padded, the ciphertexts do not.
    assert len({len(s.question_ciphertext) for s in sealed}) == 1
    raw = _raw_database(mfa.container, backend)
    assert b"Corner Cafe" in raw and payer.user_id.encode() in raw  # the copy holds our rows
    plaintexts = {
        "email": payer.email.encode(),
        "phone": phone.encode(),
        "phone digits": phone.lstrip("+").encode(),
        "phone, national": b"01055501234",
        "TOTP seed": payer.totp_seed,
        "OCRA seed": payer.ocra.seed,
        **{f"question {q}": q.encode() for q in payer.questions},
        **{f"webhook secret {i}": s.encode() for i, s in enumerate(secrets)},
        **{
            f"webhook secret {i}, random part": base64.urlsafe_b64decode(
                part + "=" * (-len(part) % 4)
            )
            for i, part in enumerate(s.removeprefix("whsec_") for s in secrets)
        },
    }
    assert payer.questions == ("childhood_friend", "first_job_city")
    for name, value in plaintexts.items():
        for form in _forms(value):
            assert form not in raw, (name, form)
