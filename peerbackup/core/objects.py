"""The sealed-object envelope shared by blobs, trees, snapshots and indexes.

    version u8 | kind u8 | compression u8 | key epoch u32 BE | nonce[24] | ciphertext+tag

The first seven bytes travel in the clear (a reader needs the epoch to pick the
key) and are authenticated as associated data together with a context: a
blob's id, or the kind of file. So a blob cannot be swapped for another, an
index cannot be replayed as a snapshot, and a flipped header bit is caught.
"""

from __future__ import annotations

import enum
import struct

from peerbackup.core import compress
from peerbackup.core.crypto import NONCE_SIZE, TAG_SIZE, Buffer, Random, seal, unseal
from peerbackup.core.keys import KeySet
from peerbackup.errors import FormatError, UnsupportedVersion

ENVELOPE_VERSION = 1
_HEADER = struct.Struct(">BBBI")
HEADER_SIZE = _HEADER.size
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
MAX_PLAINTEXT = 256 * 1024 * 1024


class Kind(enum.IntEnum):
    DATA = 0
    TREE = 1
    SNAPSHOT = 2
    INDEX = 3
    PACK_HEADER = 4


def seal_object(
    keys: KeySet, kind: Kind, plaintext: Buffer, context: bytes, rand: Random,
    level: int = compress.DEFAULT_LEVEL,
) -> bytearray:
    method, payload = compress.compress(plaintext, level)
    header = _HEADER.pack(ENVELOPE_VERSION, kind, method, keys.epoch)
    nonce = rand(NONCE_SIZE)
    return seal(keys.current, payload, header + context, nonce, prefix=header + nonce)


def open_object(
    keys: KeySet, kind: Kind, envelope: Buffer, context: bytes, what: str
) -> bytes | bytearray:
    if len(envelope) < OVERHEAD:
        raise FormatError(what, f"truncated ({len(envelope)} bytes)")
    header = bytes(envelope[:HEADER_SIZE])
    version, got_kind, method, epoch = _HEADER.unpack(header)
    if version > ENVELOPE_VERSION:
        raise UnsupportedVersion(what, version, ENVELOPE_VERSION)
    if got_kind != kind:
        raise FormatError(what, f"expected a {kind.name.lower()} object, found kind {got_kind}")
    nonce = bytes(envelope[HEADER_SIZE:HEADER_SIZE + NONCE_SIZE])
    body = memoryview(envelope)[HEADER_SIZE + NONCE_SIZE:]
    payload = unseal(keys.data_key(epoch), body, header + context, nonce, what)
    return compress.decompress(method, payload, MAX_PLAINTEXT, what)
