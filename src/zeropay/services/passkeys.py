"""WebAuthn ceremonies on top of py_webauthn, with user verification required: the passkey is
the biometric, performed on the device; the server never sees biometric data.

py_webauthn checks type, challenge, origin, RP ID hash, UP, UV and the signature (WebAuthn L3
§7.1, §7.2). The signature counter is checked here rather than by the library, so that a counter
that does not increase is *recorded* as a clone signal for the risk engine, not only refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidCBORData,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from zeropay.domain import bounds
from zeropay.domain.errors import AuthenticationFailed, InvalidInput
from zeropay.services.context import RelyingParty

CHALLENGE_BYTES = 32
TIMEOUT_MS = 120_000
_BAD_RESPONSE = (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
    InvalidJSONStructure,
    InvalidCBORData,
    ValueError,
    KeyError,
    TypeError,
)


@dataclass(frozen=True, slots=True)
class NewPasskey:
    credential_id: bytes
    public_key: bytes
    sign_count: int


@dataclass(frozen=True, slots=True)
class Assertion:
    credential_id: bytes
    sign_count: int


def registration_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    user_id: str,
    user_name: str,
    exclude: list[bytes],
) -> dict[str, Any]:
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=user_id.encode(),
        user_name=user_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
    )
    out: dict[str, Any] = json.loads(options_to_json(options))
    return out


def authentication_options(
    rp: RelyingParty, *, challenge: bytes, allow: list[bytes]
) -> dict[str, Any]:
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allow],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    out: dict[str, Any] = json.loads(options_to_json(options))
    return out


def parse_credential(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput("credential must be an object", field="credential")
    if len(json.dumps(raw)) > bounds.WEBAUTHN_RESPONSE_BYTES_MAX:
        raise InvalidInput("credential is too large", field="credential")
    raw_id = raw.get("rawId", raw.get("id"))
    if not isinstance(raw_id, str):
        raise InvalidInput("credential has no id", field="credential")
    try:
        credential_id = base64url_to_bytes(raw_id)
    except ValueError:
        raise InvalidInput("credential id is not base64url", field="credential") from None
    if not 1 <= len(credential_id) <= bounds.CREDENTIAL_ID_BYTES_MAX:
        raise InvalidInput("credential id has the wrong length", field="credential")
    return raw


def credential_id_of(credential: dict[str, Any]) -> bytes:
    """The id ``parse_credential`` already checked."""
    return base64url_to_bytes(str(credential.get("rawId", credential.get("id"))))


def verify_registration(
    rp: RelyingParty, credential: dict[str, Any], *, expected_challenge: bytes
) -> NewPasskey:
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_verification=True,
        )
    except _BAD_RESPONSE:
        raise AuthenticationFailed("the passkey could not be verified") from None
    return NewPasskey(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
    )


def verify_assertion(
    rp: RelyingParty,
    credential: dict[str, Any],
    *,
    expected_challenge: bytes,
    public_key: bytes,
) -> Assertion:
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=public_key,
            credential_current_sign_count=0,  # the counter is judged by the caller
            require_user_verification=True,
        )
    except _BAD_RESPONSE:
        raise AuthenticationFailed("the passkey could not be verified") from None
    return Assertion(credential_id=verified.credential_id, sign_count=verified.new_sign_count)


def encode_id(credential_id: bytes) -> str:
    return bytes_to_base64url(credential_id)


def challenge_of(credential: dict[str, Any]) -> bytes | None:
    """The challenge an assertion claims to answer (from its clientDataJSON), before anything
    is verified; None when it cannot be read. Only to tell *which* transaction a proof is
    about: the verification that follows decides whether it is genuine."""
    response = credential.get("response")
    raw = response.get("clientDataJSON") if isinstance(response, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        client_data = json.loads(base64url_to_bytes(raw))
        challenge = client_data.get("challenge") if isinstance(client_data, dict) else None
        return base64url_to_bytes(challenge) if isinstance(challenge, str) else None
    except ValueError:
        return None
