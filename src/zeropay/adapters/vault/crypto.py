"""The vault's three cryptographic shapes, each with its associated data spelled once.

- **Field ciphertext** (format 2): ``0x02 ‖ key id (16) ‖ nonce (12) ‖ AES-256-GCM(ct ‖ tag)``.
  The associated data is the header (format and key id) followed by the length-prefixed
  (table, column, row), so a ciphertext moved to another row, column or table fails, and so does
  one whose key id was swapped.
- **Wrapped key**: a data key sealed under the root key with AES-256-GCM; the associated data
  names the key (vault, key id, purpose, subject, version), so a wrapped key copied onto another
  key's row does not unwrap.
- **Sealed box** (ECIES over X25519): ``ephemeral public key (32) ‖ nonce (12) ‖ AES-256-GCM``
  with a key from HKDF-SHA256 over the shared secret, salted with both public keys. Shares travel
  this way to a custodian's key, to a sealed server process, and the root key travels this way
  from an unsealed process to a sealed one.

Random 96-bit nonces: NIST SP 800-38D §8.3 allows 2**32 encryptions under one key; data keys are
per user or per purpose and rotate, far below that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from zeropay.domain.errors import InfrastructureError

FIELD_FORMAT = 2
KEY_ID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
FIELD_HEADER_BYTES = 1 + KEY_ID_BYTES + NONCE_BYTES
X25519_BYTES = 32
BOX_INFO = b"zeropay/vault/box/v1"

RandomBytes = Callable[[int], bytes]


class DecryptionFailed(InfrastructureError):
    code = "decryption_failed"


def length_prefixed(*parts: str | bytes) -> bytes:
    """Each part prefixed with its 4-byte length, so ("a", "bc") and ("ab", "c") differ."""
    out = bytearray()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


# ---- field ciphertexts --------------------------------------------------------------------------


def field_key_id(ciphertext: bytes) -> bytes:
    """The id of the data key a field ciphertext was written under."""
    if len(ciphertext) < FIELD_HEADER_BYTES + TAG_BYTES or ciphertext[0] != FIELD_FORMAT:
        raise DecryptionFailed("ciphertext is malformed")
    return ciphertext[1 : 1 + KEY_ID_BYTES]


def seal_field(
    key: bytes,
    key_id: bytes,
    plaintext: bytes,
    *,
    table: str,
    column: str,
    row_id: str,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> bytes:
    header = bytes([FIELD_FORMAT]) + key_id
    nonce = random_bytes(NONCE_BYTES)
    aad = header + length_prefixed(table, column, row_id)
    return header + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_field(key: bytes, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes:
    key_id = field_key_id(ciphertext)
    header = ciphertext[: 1 + KEY_ID_BYTES]
    nonce = ciphertext[1 + KEY_ID_BYTES : FIELD_HEADER_BYTES]
    aad = header + length_prefixed(table, column, row_id)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext[FIELD_HEADER_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionFailed("ciphertext failed authentication", key_id=key_id.hex()) from exc


# ---- wrapped keys -------------------------------------------------------------------------------


def wrap(root: bytes, key: bytes, *, aad: bytes, random_bytes: RandomBytes) -> bytes:
    nonce = random_bytes(NONCE_BYTES)
    return nonce + AESGCM(root).encrypt(nonce, key, aad)


def unwrap(root: bytes, wrapped: bytes, *, aad: bytes) -> bytes:
    if len(wrapped) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("wrapped key is malformed")
    try:
        return AESGCM(root).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionFailed("wrapped key failed authentication") from exc


def derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(key)


def mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


# ---- sealed boxes (ECIES, X25519) ---------------------------------------------------------------


def new_box_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=ephemeral + recipient,
        info=BOX_INFO + b"/" + context,
    ).derive(shared)


def seal_box(recipient_public: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt to an X25519 public key; only its private key opens it. ``context`` names what
    the box is for (and for whom), so a box made for one purpose does not open as another."""
    if len(recipient_public) != X25519_BYTES:
        raise ValueError("an X25519 public key is 32 bytes")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    key = _box_key(shared, ephemeral_public, recipient_public, context)
    nonce = secrets.token_bytes(NONCE_BYTES)
    return ephemeral_public + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_box(private: X25519PrivateKey, box: bytes, *, context: bytes) -> bytes:
    if len(box) < X25519_BYTES + NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("sealed box is malformed")
    ephemeral_public = box[:X25519_BYTES]
    nonce = box[X25519_BYTES : X25519_BYTES + NONCE_BYTES]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _box_key(shared, ephemeral_public, public_bytes(private), context)
        return AESGCM(key).decrypt(nonce, box[X25519_BYTES + NONCE_BYTES :], context)
    except (InvalidTag, ValueError) as exc:
        raise DecryptionFailed("sealed box failed authentication") from exc


def load_public_key(pem: bytes) -> bytes:
    """A custodian's X25519 public key from PEM, as raw bytes."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, X25519PublicKey):
        raise ValueError("a custodian key must be an X25519 public key")
    return public_bytes(key)


def load_private_key(pem: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise ValueError("a custodian key must be an X25519 private key")
    return key
