"""Smoke: the default policy end to end (sign up, bind, passkey login, TOTP)."""

from __future__ import annotations


def test_sign_up_bind_and_log_in_with_a_passkey(mfa):
    phone = mfa.device()
    mfa.sign_up(phone, "ana@example.com")
    r = mfa.bind(phone, "ana@example.com")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["session"]["device_bound"] and body["device"]["name"] == "Pixel 9"
    r = phone.call("GET", "/v1/me")
    assert r.status_code == 200, r.text
    phone.token = None
    r = mfa.passkey_login(phone, "ana@example.com")
    assert r.status_code == 201, r.text
    phone.token = r.json()["token"]
    assert r.json()["session"]["aal"] == 2
    app = mfa.enroll_totp(phone)
    assert app.now()
