"""The software WebAuthn authenticator and DPoP device key agree with the real libraries."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from support.dpop_client import DeviceKey
from support.webauthn_soft import SoftAuthenticator, b64url, b64url_decode
from zeropay.domain.dpop import jwk_thumbprint

ORIGIN = "http://localhost:8000"


def registration_options():
    options = generate_registration_options(
        rp_id="localhost",
        rp_name="ZeroPay",
        user_name="a@example.com",
        user_id=b"user-0001",
        authenticator_selection=AuthenticatorSelectionCriteria(
            user_verification=UserVerificationRequirement.REQUIRED,
            resident_key=ResidentKeyRequirement.REQUIRED,
        ),
    )
    return options, json.loads(options_to_json(options))


def verify_registration(credential, challenge):
    return verify_registration_response(
        credential=credential,
        expected_challenge=challenge,
        expected_origin=ORIGIN,
        expected_rp_id="localhost",
        require_user_verification=True,
    )


def verify_authentication(credential, challenge, public_key, sign_count=0):
    return verify_authentication_response(
        credential=credential,
        expected_challenge=challenge,
        expected_rp_id="localhost",
        expected_origin=ORIGIN,
        credential_public_key=public_key,
        credential_current_sign_count=sign_count,
        require_user_verification=True,
    )


@pytest.fixture
def registered():
    """An authenticator holding one verified credential, and that credential's public key."""
    authenticator = SoftAuthenticator()
    options, options_json = registration_options()
    verified = verify_registration(authenticator.create(options_json), options.challenge)
    return authenticator, verified


def authentication_options(**kwargs):
    options = generate_authentication_options(rp_id="localhost", **kwargs)
    return options, json.loads(options_to_json(options))


def test_a_soft_registration_is_accepted_by_py_webauthn():
    authenticator = SoftAuthenticator()
    options, options_json = registration_options()
    response = authenticator.create(options_json)

    verified = verify_registration(response, options.challenge)
    verify_registration(json.dumps(response), options.challenge)  # the JSON string form too

    assert verified.credential_id == authenticator.credential_ids[0]
    assert verified.user_verified is True
    assert verified.sign_count == 0
    assert verified.fmt == "none"


def test_a_soft_registration_without_user_verification_is_refused():
    options, options_json = registration_options()
    response = SoftAuthenticator().create(options_json, user_verified=False)
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration(response, options.challenge)


def test_a_soft_registration_from_another_origin_is_refused():
    options, options_json = registration_options()
    response = SoftAuthenticator().create(options_json, origin="https://evil.example")
    with pytest.raises(InvalidRegistrationResponse):
        verify_registration(response, options.challenge)


def test_a_soft_discoverable_login_is_accepted_and_counts_to_one(registered):
    authenticator, reg = registered
    options, options_json = authentication_options()  # no allowCredentials: usernameless
    response = authenticator.get(options_json)

    verified = verify_authentication(response, options.challenge, reg.credential_public_key)

    assert verified.new_sign_count == 1
    assert verified.user_verified is True
    assert b64url_decode(response["response"]["userHandle"]) == b"user-0001"


def test_a_soft_login_picks_the_allowed_credential(registered):
    authenticator, reg = registered
    options_json = registration_options()[1]
    authenticator.create(options_json)  # a second, newer credential
    options, options_json = authentication_options(
        allow_credentials=[PublicKeyCredentialDescriptor(id=reg.credential_id)]
    )
    response = authenticator.get(options_json)
    assert response["rawId"] == b64url(reg.credential_id)
    verify_authentication(response, options.challenge, reg.credential_public_key)


def test_a_soft_login_without_user_verification_is_refused(registered):
    authenticator, reg = registered
    options, options_json = authentication_options()
    response = authenticator.get(options_json, user_verified=False)
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication(response, options.challenge, reg.credential_public_key)


def test_a_soft_login_with_a_tampered_challenge_is_refused(registered):
    authenticator, reg = registered
    options, options_json = authentication_options()
    response = authenticator.get(options_json)
    client_data = json.loads(b64url_decode(response["response"]["clientDataJSON"]))
    client_data["challenge"] = b64url(b"another challenge")
    response["response"]["clientDataJSON"] = b64url(json.dumps(client_data).encode())
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication(response, options.challenge, reg.credential_public_key)


def test_a_cloned_soft_authenticator_replays_a_stale_counter(registered):
    authenticator, reg = registered
    twin = authenticator.clone()
    options, options_json = authentication_options()
    first = verify_authentication(
        authenticator.get(options_json), options.challenge, reg.credential_public_key
    )
    assert first.new_sign_count == 1
    assert twin.credential_ids == authenticator.credential_ids

    # The clone counts on its own, so it presents 1 again: not greater than the stored 1.
    options, options_json = authentication_options()
    with pytest.raises(InvalidAuthenticationResponse):
        verify_authentication(
            twin.get(options_json), options.challenge, reg.credential_public_key, 1
        )


def test_a_soft_login_can_be_given_an_explicit_counter(registered):
    authenticator, reg = registered
    options, options_json = authentication_options()
    response = authenticator.get(options_json, counter=7)
    verified = verify_authentication(response, options.challenge, reg.credential_public_key, 6)
    assert verified.new_sign_count == 7
    assert authenticator.sign_count(reg.credential_id) == 7


def test_a_dpop_proof_carries_the_public_key_and_verifies_with_it():
    key = DeviceKey()
    proof = key.proof("post", "https://api.example/v1/payments?x=1#frag", access_token="tok-123")

    header = jwt.get_unverified_header(proof)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert header["jwk"] == key.public_jwk
    assert "d" not in header["jwk"]

    claims = jwt.decode(proof, jwt.PyJWK(header["jwk"]).key, algorithms=["ES256"])
    expected_ath = base64.urlsafe_b64encode(hashlib.sha256(b"tok-123").digest()).rstrip(b"=")
    assert claims["ath"] == expected_ath.decode()
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://api.example/v1/payments"
    assert isinstance(claims["iat"], int)
    assert len(claims["jti"]) >= 22


def test_a_dpop_proof_without_a_token_has_no_ath_and_keeps_given_claims():
    key = DeviceKey()
    proof = key.proof("GET", "https://api.example/v1/me", iat=1_700_000_000.9, jti="j" * 22)
    claims = jwt.decode(
        proof, jwt.PyJWK(key.public_jwk).key, algorithms=["ES256"], options={"verify_iat": False}
    )
    assert "ath" not in claims
    assert claims["iat"] == 1_700_000_000
    assert claims["jti"] == "j" * 22


def test_a_device_keys_jkt_is_the_servers_thumbprint_of_its_public_jwk():
    key = DeviceKey()
    assert key.jkt == jwk_thumbprint(key.public_jwk)
    assert key.jkt != DeviceKey().jkt
    assert len(key.jkt) == 43  # base64url of 32 bytes, no padding
