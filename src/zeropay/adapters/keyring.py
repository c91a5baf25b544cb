"""A development ``KeyRing`` backed by a key file (the key-vault issue replaces it with Shamir
unsealing behind the same port).

Ciphertext: format byte, 4-byte key version, 96-bit nonce, AES-256-GCM ciphertext and tag.
Associated data binds it to (table, column, row), length-prefixed so no two triples collide.
Field keys are derived per purpose with HKDF-SHA256; blind indexes use a key derived from the
first root key, so they stay stable across rotation.
"""

from __future__ import annotations

import base64
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

from zeropay.domain.errors import InfrastructureError

FORMAT_V1 = 1
NONCE_BYTES = 12


class DecryptionFailed(InfrastructureError):
    code = "decryption_failed"


def _derive(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def _aad(table: str, column: str, row_id: str) -> bytes:
    out = b""
    for part in (table, column, row_id):
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return out


class FileKeyRing:
    def __init__(self, roots: dict[int, bytes], path: Path | None = None) -> None:
        if not roots:
            raise ValueError("a key ring needs at least one key")
        self._roots = dict(roots)
        self._path = path
        self._field = {v: AESGCM(_derive(k, b"zeropay/field/v1")) for v, k in roots.items()}
        first = roots[min(roots)]
        self._index_root = first

    @classmethod
    def ephemeral(cls) -> FileKeyRing:
        return cls({1: secrets.token_bytes(32)})

    @classmethod
    def load_or_create(cls, path: Path) -> FileKeyRing:
        if path.exists():
            data = json.loads(path.read_text())
            roots = {int(v): base64.b64decode(k) for v, k in data["keys"].items()}
            return cls(roots, path)
        ring = cls({1: secrets.token_bytes(32)}, path)
        ring._save()
        return ring

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {
                "warning": "development keys: never use this file in production",
                "keys": {str(v): base64.b64encode(k).decode() for v, k in self._roots.items()},
            }
        )
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(payload)

    @property
    def current_version(self) -> int:
        return max(self._roots)

    def rotate(self) -> int:
        version = self.current_version + 1
        self._roots[version] = secrets.token_bytes(32)
        self._field[version] = AESGCM(_derive(self._roots[version], b"zeropay/field/v1"))
        self._save()
        return version

    def encrypt(self, plaintext: bytes, *, table: str, column: str, row_id: str) -> bytes:
        version = self.current_version
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._field[version].encrypt(nonce, plaintext, _aad(table, column, row_id))
        return bytes([FORMAT_V1]) + version.to_bytes(4, "big") + nonce + sealed

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: str) -> bytes:
        if len(ciphertext) < 5 + NONCE_BYTES + 16 or ciphertext[0] != FORMAT_V1:
            raise DecryptionFailed("ciphertext is malformed")
        version = int.from_bytes(ciphertext[1:5], "big")
        key = self._field.get(version)
        if key is None:
            raise DecryptionFailed(f"key version {version} is not in the key ring")
        nonce = ciphertext[5 : 5 + NONCE_BYTES]
        try:
            return key.decrypt(nonce, ciphertext[5 + NONCE_BYTES :], _aad(table, column, row_id))
        except InvalidTag as exc:
            raise DecryptionFailed("ciphertext failed authentication") from exc

    def blind_index(self, value: bytes, *, purpose: str) -> bytes:
        key = _derive(self._index_root, b"zeropay/index/v1/" + purpose.encode())
        return hmac.new(key, value, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"FileKeyRing(versions={sorted(self._roots)})"
