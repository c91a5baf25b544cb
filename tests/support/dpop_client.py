"""The device side of DPoP (RFC 9449): a P-256 key that signs proofs for each request."""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from zeropay.domain.dpop import jwk_thumbprint

from .webauthn_soft import b64url


class DeviceKey:
    """A device-bound P-256 key pair; only the public half ever leaves it."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_jwk(self) -> dict[str, str]:
        """RFC 7518 §6.2.1 EC public key: coordinates as fixed 32-byte base64url, no padding."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    @property
    def jkt(self) -> str:
        """RFC 7638 thumbprint of the public key, as the server computes it."""
        return jwk_thumbprint(self.public_jwk)

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        iat: int | float | None = None,
        jti: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """An RFC 9449 §4.2 DPoP proof JWT for one request (the ``DPoP`` header value)."""
        parts = urlsplit(url)
        payload: dict[str, str | int] = {
            "jti": jti if jti is not None else secrets.token_urlsafe(16),  # 22 chars
            "htm": method.upper(),
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),  # no query/frag
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            # §4.2: ath = base64url(SHA-256(ASCII access token)) when presenting a token.
            payload["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        if nonce is not None:
            payload["nonce"] = nonce  # §8: a server-provided nonce
        headers = {"typ": "dpop+jwt", "jwk": self.public_jwk}  # §4.2: public key only, no "d"
        return jwt.encode(payload, self.private_key, algorithm="ES256", headers=headers)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 with SHA-256 over ``data``, DER-encoded."""
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
