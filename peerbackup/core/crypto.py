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


def keyed_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    return bytes(blake3.blake3(data, key=id_key).digest())


def content_hash(data: bytes | memoryview) -> bytes:
    """Unkeyed hash naming stored files (packs, snapshots): they hold only ciphertext."""
    return bytes(blake3.blake3(data).digest())


def content_hash_of(pieces: list[bytes]) -> bytes:
    """content_hash of the concatenation of pieces, without concatenating them."""
    h = blake3.blake3()
    for p in pieces:
        h.update(p)
    return bytes(h.digest())


def seal(key: bytes, plaintext: bytes | memoryview, aad: bytes, nonce: bytes) -> bytes:
    ct: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(plaintext), aad, nonce, key)
    return ct


def unseal(key: bytes, ciphertext: bytes | memoryview, aad: bytes, nonce: bytes, what: str) -> bytes:
    try:
        pt: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            bytes(ciphertext), aad, nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise DecryptError(what) from None
    return pt


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
