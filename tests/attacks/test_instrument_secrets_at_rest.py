"""What a stolen database copy reveals of payment instruments: a card number and a phone number
written through the API, the tokens that name them, the device's cryptogram key and the display
forms appear in no form in the raw SQLite file or the pg_dump output -- before and after a charge
reads the number back, and after the instrument is removed."""

from __future__ import annotations

from sqlalchemy import text
from test_secrets_at_rest import _forms, _raw_database

from support.instruments import on_file, unb64url

CARD_TYPED = "4242 4242 4242 4242"
PHONE_TYPED = "010-9876-5432"  # national, dialled in KR


def _plaintexts(f, phone) -> dict[str, bytes]:
    return {
        "card": b"4242424242424242",
        "card, as typed": CARD_TYPED.encode(),
        "card, dashed": b"4242-4242-4242-4242",
        "phone, E.164": b"+821098765432",
        "phone, digits": b"821098765432",
        "phone, national digits": b"01098765432",
        "phone, as typed": PHONE_TYPED.encode(),
        "card display": "Visa •••• 4242".encode(),
        "phone display": "+82 ••••••5432".encode(),
        "payer token": f.token.encode(),
        "merchant token": f.merchant_token.encode(),
        "phone token": phone["token"].encode(),
    }


def _secret_bytes(f, phone) -> dict[str, bytes]:
    """The random parts behind what the API showed: tokens' bytes and the devices' keys."""
    out = {
        name: unb64url(token.split("_", 1)[1])
        for name, token in (
            ("payer token", f.token),
            ("merchant token", f.merchant_token),
            ("phone token", phone["token"]),
        )
    }
    for ref, key in f.wallet.keys.items():
        out[f"cryptogram key of {ref[:8]}"] = key
    return out


def test_no_number_token_or_key_of_an_instrument_is_in_a_database_copy(mfa, backend):
    f = on_file(mfa, "vault.hunter@example.com", number=CARD_TYPED)
    phone = f.wallet.add_phone(PHONE_TYPED, "KR")
    f.wallet.grant(phone["token"], f.merchant.id)
    f.wallet.provision(phone["token"])
    r = f.charge(f.body(1250))  # the funding adapter reads the number back
    assert r.status_code == 201, r.text
    with mfa.container.engine.connect() as c:
        stored = c.execute(text("SELECT kind, number_ciphertext FROM instruments")).all()
    assert sorted(s.kind for s in stored) == ["card", "carrier"]
    assert all(s.number_ciphertext for s in stored)  # the copy holds the sealed numbers

    raw = _raw_database(mfa.container, backend)
    assert b"Corner Cafe" in raw and f.instrument["id"].encode() in raw  # it holds our rows
    for name, plain in _plaintexts(f, phone).items():
        assert plain not in raw, name
        assert plain.hex().encode() not in raw, name  # pg_dump prints bytea as hex
    for name, secret in _secret_bytes(f, phone).items():
        for form in _forms(secret):
            assert form not in raw, name


def test_a_removed_instrument_leaves_no_number_behind(mfa, backend):
    f = on_file(mfa, "leaver@example.com", number=CARD_TYPED)
    r = f.wallet.phone.call("DELETE", f"/v1/me/instruments/{f.token}")
    assert r.status_code == 204, r.text
    with mfa.container.engine.connect() as c:
        row = c.execute(text("SELECT number_ciphertext, display_ciphertext FROM instruments")).one()
    assert row == (None, None)
    raw = _raw_database(mfa.container, backend)
    for plain in (b"4242424242424242", CARD_TYPED.encode(), b"4242424242424242".hex().encode()):
        assert plain not in raw
