"""Shared by the known-answer vector tests: fixed key material (never random, so the bytes are stable)
and the same byte stream as conftest's seeded_rand, for an independent expectation.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from peerbackup.core.keys import KeySet

Rand = Callable[[int], bytes]

# Fixed key material for the vectors (never random, so the bytes are stable).
ID_KEY = bytes(range(32))
KEY_E0 = bytes(range(32, 64))
KEY_E7 = bytes(range(64, 96))


def fixed_keys() -> KeySet:
    # Epoch 7 is current: the header must carry 7, not 0.
    return KeySet(id_key=ID_KEY, data_keys={0: KEY_E0, 7: KEY_E7}, epoch=7)


def rand_1234() -> Rand:
    """The same byte stream as conftest's seeded_rand, for an independent expectation."""
    rng = random.Random(1234)
    return lambda n: rng.randbytes(n)
