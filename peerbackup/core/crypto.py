"""Keyed hashing, authenticated encryption and passphrase key derivation.

Chunk ids are BLAKE3 keyed hashes so a stored id says nothing about content to
anyone without the id key. Objects are sealed with XChaCha20-Poly1305: its
192-bit nonces are safe to draw at random, so no nonce state is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import blake3
import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash

from peerbackup.errors import DecryptError

KEY_SIZE = 32
NONCE_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
ID_SIZE = 32

Random = Callable[[int], bytes]
Buffer = bytes | bytearray | memoryview

try:  # PyNaCl's compiled libsodium binding: private, but stable since PyNaCl 1.0
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - then the public (slower) API is used
    _ffi = _lib = None


def keyed_id(id_key: bytes, data: Buffer) -> bytes:
    return bytes(blake3.blake3(data, key=id_key).digest())


def content_hash(data: Buffer) -> bytes:
    """Unkeyed hash naming stored files (packs, snapshots): they hold only ciphertext."""
    return bytes(blake3.blake3(data).digest())


def content_hash_of(pieces: list[bytes | bytearray]) -> bytes:
    """content_hash of the concatenation of pieces, without concatenating them."""
    h = content_hasher()
    for p in pieces:
        h.update(p)
    return bytes(h.digest())


def content_hasher() -> blake3.blake3:
    """content_hash taken as the data comes: update() with each piece, then digest()."""
    return blake3.blake3()


def _check(key: bytes, nonce: bytes) -> None:
    # The raw libsodium calls below read exactly these lengths: never hand them less.
    if len(key) != KEY_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("bad key or nonce length")


def seal(key: bytes, plaintext: Buffer, aad: bytes, nonce: bytes, prefix: bytes = b"") -> bytearray:
    """prefix + XChaCha20-Poly1305(plaintext), built in one buffer."""
    _check(key, nonce)
    n = len(plaintext)
    out = bytearray(len(prefix) + n + TAG_SIZE)
    out[: len(prefix)] = prefix
    if _lib is None:
        out[len(prefix):] = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), aad, nonce, key)
        return out
    # PyNaCl's public binding copies input and output twice, under the GIL; the same
    # libsodium call on our own buffers is 2.2x faster (docs/benchmark.md).
    rc = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt(
        _ffi.from_buffer(out) + len(prefix), _ffi.NULL, _ffi.from_buffer(plaintext), n,
        aad, len(aad), _ffi.NULL, nonce, key,
    )
    if rc != 0:
        raise ValueError("encryption failed")
    return out


def unseal(key: bytes, ciphertext: Buffer, aad: bytes, nonce: bytes, what: str) -> bytearray:
    _check(key, nonce)
    n = len(ciphertext)
    if n < TAG_SIZE:
        raise DecryptError(what)
    if _lib is None:
        try:
            return bytearray(sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(bytes(ciphertext), aad, nonce, key))
        except nacl.exceptions.CryptoError:
            raise DecryptError(what) from None
    out = bytearray(n - TAG_SIZE)
    rc = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt(
        _ffi.from_buffer(out), _ffi.NULL, _ffi.NULL, _ffi.from_buffer(ciphertext), n,
        aad, len(aad), nonce, key,
    )
    if rc != 0:
        raise DecryptError(what)
    return out


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default keeps key derivation near 64 MiB of memory."""

    opslimit: int = 3
    memlimit: int = 64 * 1024 * 1024

    @classmethod
    def weak(cls) -> KdfParams:
        """Only for tests: the minimum libsodium accepts."""
        return cls(opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN, memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)


SALT_SIZE = nacl.pwhash.argon2id.SALTBYTES


def derive_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    key: bytes = nacl.pwhash.argon2id.kdf(
        KEY_SIZE, passphrase, salt, opslimit=params.opslimit, memlimit=params.memlimit
    )
    return key
