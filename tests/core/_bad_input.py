"""Shared by the hostile-input tests (test_bad_input_*.py): fixed keys, a seeded random source, envelopes
sealed normally or by hand (so a header may say anything yet still authenticate), and a bit flip.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from hypothesis import settings

from peerbackup.core import compress
from peerbackup.core.crypto import NONCE_SIZE, seal
from peerbackup.core.keys import KeySet
from peerbackup.core.objects import Kind, seal_object

Rand = Callable[[int], bytes]

FUZZ = settings(max_examples=300, derandomize=True, deadline=None)

KEYS = KeySet(id_key=bytes(range(32)), data_keys={0: b"\x01" * 32}, epoch=0)
OTHER_KEYS = KeySet(id_key=bytes(range(32)), data_keys={0: b"\x02" * 32}, epoch=0)
PASSWORD = b"correct horse battery staple"


def rand_from(seed: int) -> Rand:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def envelope(
    kind: Kind = Kind.DATA, data: bytes = b"x" * 100, ctx: bytes = b"ctx", keys: KeySet = KEYS
) -> bytes:
    return bytes(seal_object(keys, kind, data, ctx, rand_from(7)))


def crafted_envelope(
    version: int = 1, kind: int = Kind.DATA, method: int = compress.NONE, epoch: int = 0,
    payload: bytes = b"payload", ctx: bytes = b"ctx", key: bytes = b"\x01" * 32,
) -> bytes:
    """An envelope sealed by hand, so its header may say anything yet still authenticate."""
    header = struct.pack(">BBBI", version, kind, method, epoch)
    nonce = bytes(NONCE_SIZE)
    return header + nonce + seal(key, payload, header + ctx, nonce)


def flip(data: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)
