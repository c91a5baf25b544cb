"""A software WebAuthn authenticator plus client, so tests can run passkey ceremonies.

It takes the options JSON the server sends (py_webauthn's ``options_to_json``) and returns the
``RegistrationResponseJSON`` / ``AuthenticationResponseJSON`` a browser would post back, in the
shape ``webauthn.helpers.parse_*_credential_json`` accepts. Keys are ES256 (P-256) only and
attestation is always ``"none"``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

# WebAuthn L3 §6.1 authenticator data flags.
FLAG_UP = 0x01  # user present
FLAG_UV = 0x04  # user verified
FLAG_AT = 0x40  # attested credential data included
ES256 = -7  # COSE algorithm identifier (RFC 9053)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        """COSE_Key for an EC2 P-256 key (RFC 9053 §7.1): kty 2, alg -7, crv 1, x, y."""
        numbers = self.private_key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: x, -3: y})


class SoftAuthenticator:
    """A platform authenticator holding discoverable P-256 credentials for one RP ID."""

    def __init__(self, rp_id: str = "localhost", origin: str = "http://localhost:8000") -> None:
        self.rp_id = rp_id
        self.origin = origin
        self._credentials: list[SoftCredential] = []

    @property
    def credential_ids(self) -> list[bytes]:
        return [c.credential_id for c in self._credentials]

    def sign_count(self, credential_id: bytes) -> int:
        return self._find(credential_id).sign_count

    def clone(self) -> SoftAuthenticator:
        """A copy with the same keys and counters that then counts on its own (a cloned device)."""
        twin = SoftAuthenticator(self.rp_id, self.origin)
        twin._credentials = [copy.copy(c) for c in self._credentials]  # keys shared, counts not
        return twin

    def create(
        self, options: dict[str, Any], *, user_verified: bool = True, origin: str | None = None
    ) -> dict[str, Any]:
        """navigator.credentials.create(): make a credential, return RegistrationResponseJSON."""
        algs = {p.get("alg") for p in options.get("pubKeyCredParams", [])}
        if algs and ES256 not in algs:
            raise ValueError("the server does not accept ES256 keys")
        excluded = {b64url_decode(c["id"]) for c in options.get("excludeCredentials") or []}
        if excluded & set(self.credential_ids):
            raise ValueError("this authenticator already holds an excluded credential")

        cred = SoftCredential(
            credential_id=os.urandom(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            user_handle=b64url_decode(options["user"]["id"]),
        )
        self._credentials.append(cred)

        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        # WebAuthn L3 §6.5.1 attested credential data: AAGUID (16) | credIdLen (2, BE) | credId |
        # credentialPublicKey (COSE_Key). AAGUID is zero for "none" attestation.
        attested = (
            bytes(16)
            + struct.pack(">H", len(cred.credential_id))
            + cred.credential_id
            + cred.cose_public_key()
        )
        auth_data = self._auth_data(FLAG_AT, user_verified, cred.sign_count) + attested
        # WebAuthn L3 §6.5.4 attestation object; §8.7 "none" format has an empty attStmt.
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        user_verified: bool = True,
        credential_id: bytes | None = None,
        counter: int | None = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.get(): sign the challenge, return AuthenticationResponseJSON.

        The credential is ``credential_id`` if given, else the first one in allowCredentials
        this authenticator holds, else its most recent one (discoverable, usernameless login).
        The counter goes up by one, or is set to ``counter`` (to mimic a cloned authenticator).
        """
        if credential_id is not None:
            cred = self._find(credential_id)
        else:
            allowed = [b64url_decode(c["id"]) for c in options.get("allowCredentials") or []]
            held = [c for a in allowed for c in self._credentials if c.credential_id == a]
            if held:
                cred = held[0]
            elif self._credentials:
                cred = self._credentials[-1]
            else:
                raise LookupError("this authenticator holds no credential")
        cred.sign_count = cred.sign_count + 1 if counter is None else counter

        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = self._auth_data(0, user_verified, cred.sign_count)
        # WebAuthn L3 §6.3.3 step 11: sign authenticatorData || SHA-256(clientDataJSON);
        # §6.5.6: ES256 signatures are ASN.1 DER, not raw r||s.
        signature = cred.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(cred.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _find(self, credential_id: bytes) -> SoftCredential:
        for cred in self._credentials:
            if cred.credential_id == credential_id:
                return cred
        raise KeyError("this authenticator does not hold that credential")

    def _auth_data(self, flags: int, user_verified: bool, sign_count: int) -> bytes:
        """WebAuthn L3 §6.1: rpIdHash (32) | flags (1) | signCount (4, big-endian) | ..."""
        flags |= FLAG_UP | (FLAG_UV if user_verified else 0)
        rp_id_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", sign_count)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        """WebAuthn L3 §5.8.1 CollectedClientData, serialised as the browser would."""
        data = {
            "type": kind,
            "challenge": challenge,
            "origin": origin or self.origin,
            "crossOrigin": False,
        }
        return json.dumps(data, separators=(",", ":")).encode()
