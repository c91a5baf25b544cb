"""DPoP proof checks (RFC 9449) and JWK thumbprints (RFC 7638), without any crypto library.

The signature is checked by ``services.device_keys``; this module checks what the proof says:
that it is fresh, single-use, made for this method and this URL, for this access token, with the
key the session is bound to. A stolen session token is useless without the device's key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

from zeropay.domain.errors import InvalidInput, ProofInvalid

# RFC 7638 §3.2: the required members of each key type, the only ones hashed.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# Members that would make a JWK a private key: a proof must never carry one.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise InvalidInput("unsupported key type", field="jwk", reason="kty")
    if any(not isinstance(jwk.get(m), str) or not jwk.get(m) for m in members):
        raise InvalidInput("the key lacks a required member", field="jwk", reason="members")
    if _PRIVATE_MEMBERS & set(jwk):
        raise InvalidInput(
            "a public key only, never the private part", field="jwk", reason="private"
        )
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url(SHA-256(ASCII token))."""
    return b64url(hashlib.sha256(token.encode("ascii", errors="replace")).digest())


_DEFAULT_PORTS = {"http": 80, "https": 443}


def htu_of(url: str) -> str:
    """RFC 9449 §4.3 with RFC 3986 §6 normalisation: the target URI without query and fragment,
    scheme and host lower-cased, a default port dropped."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


@dataclass(frozen=True, slots=True)
class DPoPClaims:
    """What a proof's header and payload said, after its signature was verified."""

    jkt: str  # thumbprint of the header's ``jwk``, the key that signed the proof
    jti: str
    htm: str
    htu: str
    iat: datetime
    ath: str | None


def verify_dpop_claims(
    claims: DPoPClaims,
    *,
    expected_method: str,
    expected_urls: Collection[str],
    expected_jkt: str | None,
    expected_ath: str | None,
    now: datetime,
    window_s: int,
) -> DPoPClaims:
    """RFC 9449 §4.3 steps 8-12, in order; the ``jti`` is recorded by the caller (step 11)."""
    if not 16 <= len(claims.jti) <= 128:
        raise ProofInvalid("the DPoP proof's jti is missing or too short", reason="jti")
    if claims.htm != expected_method.upper():
        raise ProofInvalid("the DPoP proof was made for another method", reason="htm")
    if htu_of(claims.htu) not in {htu_of(url) for url in expected_urls}:
        raise ProofInvalid("the DPoP proof was made for another URL", reason="htu")
    # Otherwise a proof captured once could be used for ever.
    if abs(now - claims.iat) > timedelta(seconds=window_s):
        raise ProofInvalid("the DPoP proof is too old or from the future", reason="iat")
    if expected_ath is not None and claims.ath != expected_ath:
        raise ProofInvalid("the DPoP proof was made for another access token", reason="ath")
    if expected_jkt is not None and claims.jkt != expected_jkt:
        raise ProofInvalid("the DPoP proof is signed by another key", reason="jkt")
    return claims
