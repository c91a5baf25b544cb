"""DPoP proofs (RFC 9449): the signature checked with PyJWT, the claims by ``domain.dpop``, the
``jti`` recorded once in the database, so a proof replayed to another process is refused too."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from zeropay.domain import bounds
from zeropay.domain.dpop import DPoPClaims, jwk_thumbprint, verify_dpop_claims
from zeropay.domain.errors import InvalidInput, ProofInvalid
from zeropay.services.context import AppContext, UnitOfWork

ALGORITHMS = ["ES256"]  # the browser's WebCrypto P-256 keys and phone secure elements


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    claims: DPoPClaims
    jwk: dict[str, Any]

    @property
    def jkt(self) -> str:
        return self.claims.jkt

    def jwk_json(self) -> str:
        return json.dumps(self.jwk, sort_keys=True, separators=(",", ":"))


def _signature_checked(proof: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """RFC 9449 §4.3 steps 2-7: one well-formed JWS, typ dpop+jwt, an asymmetric algorithm, a
    public key in the header, and a signature that key made."""
    if not proof or len(proof) > bounds.DPOP_PROOF_LENGTH_MAX or proof.count(".") != 2:
        raise ProofInvalid("the DPoP proof is not a compact JWS", reason="malformed")
    try:
        header = jwt.get_unverified_header(proof)
    except jwt.PyJWTError:
        raise ProofInvalid("the DPoP proof is not a compact JWS", reason="malformed") from None
    if header.get("typ") != "dpop+jwt":
        raise ProofInvalid("the DPoP proof's typ must be dpop+jwt", reason="typ")
    if header.get("alg") not in ALGORITHMS:
        raise ProofInvalid("the DPoP proof must be signed with ES256", reason="alg")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ProofInvalid("the DPoP proof must carry a P-256 public key", reason="jwk")
    try:
        jkt = jwk_thumbprint(jwk)
        key = jwt.PyJWK(jwk, algorithm="ES256").key
        # Time is ours to check, with our clock: PyJWT's own iat/exp checks are off.
        claims = jwt.decode(
            proof,
            key=key,
            algorithms=ALGORITHMS,
            options={
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except InvalidInput:
        raise ProofInvalid("the DPoP proof's key is not a public P-256 key", reason="jwk") from None
    except jwt.PyJWTError:
        raise ProofInvalid(
            "the DPoP proof's signature does not verify", reason="signature"
        ) from None
    public = {k: jwk[k] for k in ("kty", "crv", "x", "y")}
    return public, claims, jkt


def _claims(payload: dict[str, Any], jkt: str) -> DPoPClaims:
    iat = payload.get("iat")
    fields = (payload.get("jti"), payload.get("htm"), payload.get("htu"))
    if not all(isinstance(f, str) for f in fields) or not isinstance(iat, int | float):
        raise ProofInvalid("the DPoP proof lacks jti, htm, htu or iat", reason="claims")
    ath = payload.get("ath")
    try:
        issued = datetime.fromtimestamp(float(iat), UTC)
    except (OverflowError, ValueError, OSError):
        raise ProofInvalid("the DPoP proof's iat is not a time", reason="iat") from None
    return DPoPClaims(
        jkt=jkt,
        jti=str(payload["jti"]),
        htm=str(payload["htm"]),
        htu=str(payload["htu"]),
        iat=issued,
        ath=ath if isinstance(ath, str) else None,
    )


def verify_proof(
    ctx: AppContext,
    proof: str | None,
    *,
    method: str,
    path: str,
    expected_jkt: str | None = None,
    expected_ath: str | None = None,
) -> VerifiedProof:
    if proof is None:
        raise ProofInvalid("send a DPoP proof in the DPoP header", reason="missing")
    jwk, payload, jkt = _signature_checked(proof)
    window_s = ctx.policy.dpop_iat_window_s
    claims = verify_dpop_claims(
        _claims(payload, jkt),
        expected_method=method,
        # This server's own origins, never the request's Host header (the client's to choose).
        expected_urls=[origin + path for origin in ctx.public_origins],
        expected_jkt=expected_jkt,
        expected_ath=expected_ath,
        now=ctx.now(),
        window_s=window_s,
    )
    # RFC 9449 §11.1: the jti is accepted once. The record outlives the iat window, after which
    # the proof would be refused as stale anyway.
    expires_at = claims.iat + timedelta(seconds=2 * window_s)

    def record(uow: UnitOfWork) -> bool:
        return uow.replay.first_use(jkt, claims.jti, expires_at)

    if not ctx.read(record):
        raise ProofInvalid("this DPoP proof was used before", reason="replayed")
    return VerifiedProof(claims=claims, jwk=jwk)


TXN_SIGNATURE_BYTES = 64  # ES256 as WebCrypto makes it: r || s, 32 bytes each (IEEE P1363)


def verify_transaction_signature(public_jwk_json: str, data: bytes, signature: object) -> None:
    """The bound device key's signature over the canonical transaction data
    (``domain.dynamic_linking.canonical``): ECDSA P-256 with SHA-256, r || s, base64url. The
    key is the device's own (its DPoP key; in a browser a non-extractable WebCrypto key that
    signs with ``crypto.subtle.sign({name: "ECDSA", hash: "SHA-256"}, key, data)``)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if not isinstance(signature, str) or len(signature) > 128:
        raise ProofInvalid("the signature is base64url text", reason="malformed")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except (ValueError, binascii.Error):
        raise ProofInvalid("the signature is base64url text", reason="malformed") from None
    if len(raw) != TXN_SIGNATURE_BYTES:
        raise ProofInvalid("an ES256 signature has 64 bytes (r || s)", reason="malformed")
    key = jwt.PyJWK(json.loads(public_jwk_json), algorithm="ES256").key
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ProofInvalid(
            "the device's signature does not match this transaction", reason="signature"
        ) from None
