"""A development ``KeyRing`` backed by a key file (the key-vault issue replaces it with Shamir
unsealing behind the same port).

Ciphertext: format byte, 4-byte big-endian key version, 96-bit nonce, AES-256-GCM ciphertext and
tag. Associated data binds it to (table, column, row), length-prefixed so no two triples collide.
Field keys are derived from each root key with HKDF-SHA256; blind indexes use a key derived from
the version 1 root key, so they stay stable across rotation.

The file holds every root key in plaintext: it is for development only. Processes read it once,
so after ``rotate`` other running processes cannot read the new version until they restart.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from zeropay.domain.errors import InfrastructureError, KeyUnavailable

FORMAT_V1 = 1
VERSION_BYTES = 4
# Random 96-bit nonces: NIST SP 800-38D §8.3 allows 2**32 encryptions per key, far above what a
# development key sees between rotations.
NONCE_BYTES = 12
TAG_BYTES = 16
ROOT_KEY_BYTES = 32
HEADER_BYTES = 1 + VERSION_BYTES + NONCE_BYTES
INDEX_ROOT_VERSION = 1
FIELD_INFO = b"zeropay/field/v1"
INDEX_INFO_PREFIX = b"zeropay/index/v1/"


class DecryptionFailed(InfrastructureError):
    code = "decryption_failed"


def _derive(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def _aad(table: str, column: str, row_id: str) -> bytes:
    """Each part prefixed with its 4-byte length, so ("a", "bc") and ("ab", "c") differ."""
    out = bytearray()
    for part in (table, column, row_id):
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


class FileKeyRing:
    def __init__(self, roots: dict[int, bytes], path: Path | None = None) -> None:
        if INDEX_ROOT_VERSION not in roots:
            raise KeyUnavailable("the key ring has no version 1 key, which blind indexes need")
        for version, root in roots.items():
            if version < 1 or len(root) != ROOT_KEY_BYTES:
                raise KeyUnavailable(f"key version {version} is malformed")
        self._roots = dict(roots)
        self._path = path
        self._field = {v: AESGCM(_derive(k, FIELD_INFO)) for v, k in roots.items()}

    @classmethod
    def ephemeral(cls) -> FileKeyRing:
        """A ring with one random key that lives only in memory (tests)."""
        return cls({INDEX_ROOT_VERSION: secrets.token_bytes(ROOT_KEY_BYTES)})

    @classmethod
    def load_or_create(cls, path: Path) -> FileKeyRing:
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fresh = {INDEX_ROOT_VERSION: secrets.token_bytes(ROOT_KEY_BYTES)}
            # Two workers starting together must not each create a key: the first file wins.
            with contextlib.suppress(FileExistsError):
                _write_atomically(path, _encode(fresh), replace=False)
        return cls(_decode(path), path)

    @property
    def current_version(self) -> int:
        return max(self._roots)

    def rotate(self) -> int:
        """Add a new current version and persist it; old ciphertexts stay readable."""
        version = self.current_version + 1
        roots = {**self._roots, version: secrets.token_bytes(ROOT_KEY_BYTES)}
        if self._path is not None:
            # Persist before use: a key that encrypted data but never reached the file would
            # make that data unreadable after a restart.
            _write_atomically(self._path, _encode(roots), replace=True)
        self._roots = roots
        self._field[version] = AESGCM(_derive(roots[version], FIELD_INFO))
        return version

    def encrypt(
        self,
        plaintext: bytes,
        *,
        table: str,
        column: str,
        row_id: str,
        subject: str | None = None,
        retained: bool = False,
    ) -> bytes:
        del subject, retained  # one key for everything: the vault (adapters.vault) has subjects
        version = self.current_version
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._field[version].encrypt(nonce, plaintext, _aad(table, column, row_id))
        return bytes([FORMAT_V1]) + version.to_bytes(VERSION_BYTES, "big") + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes:
        if len(ciphertext) < HEADER_BYTES + TAG_BYTES or ciphertext[0] != FORMAT_V1:
            raise DecryptionFailed("ciphertext is malformed")
        version = int.from_bytes(ciphertext[1 : 1 + VERSION_BYTES], "big")
        key = self._field.get(version)
        if key is None:
            raise DecryptionFailed(f"key version {version} is not in the key ring")
        nonce = ciphertext[1 + VERSION_BYTES : HEADER_BYTES]
        try:
            return key.decrypt(nonce, ciphertext[HEADER_BYTES:], _aad(table, column, row_id))
        except InvalidTag as exc:
            raise DecryptionFailed("ciphertext failed authentication") from exc

    def blind_index(self, value: bytes, *, purpose: str) -> bytes:
        if not purpose:
            raise ValueError("a blind index needs a purpose")
        root = self._roots[INDEX_ROOT_VERSION]
        key = _derive(root, INDEX_INFO_PREFIX + purpose.encode())
        return hmac.new(key, value, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"FileKeyRing(versions={sorted(self._roots)}, path={self._path})"


def _encode(roots: dict[int, bytes]) -> bytes:
    return json.dumps(
        {
            "warning": "development keys: never use this file in production",
            "keys": {str(v): base64.b64encode(k).decode() for v, k in sorted(roots.items())},
        },
        indent=2,
    ).encode()


def _decode(path: Path) -> dict[int, bytes]:
    try:
        keys = json.loads(path.read_bytes())["keys"]
        return {int(v): base64.b64decode(k, validate=True) for v, k in keys.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyUnavailable(f"cannot read the key file {path}") from exc


def _write_atomically(path: Path, payload: bytes, *, replace: bool) -> None:
    """Write a 0600 file next to ``path``, then move it into place in one step, so a crash never
    leaves a half-written key file. With ``replace=False`` an existing file raises
    ``FileExistsError`` and is left alone."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # fails if path exists, unlike rename
        _fsync_directory(path.parent)
    finally:
        temp.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    """Make the new directory entry durable: without it a crash can lose a renamed file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
