"""Known-answer vectors of the primitives every repository on disk depends on: BLAKE3 keyed ids and
content hashes, XChaCha20-Poly1305, Argon2id, and the chunker's boundaries.

Each pinned value was computed once and is checked twice where possible: against
the literal, and against an independent derivation (the underlying library called
directly, or a published test vector). A change here means existing repositories
would no longer read, so it must be deliberate.
"""

from __future__ import annotations

import io
import random

import blake3
import nacl.bindings as sodium
import nacl.pwhash
import pytest

from peerbackup.core.chunker import Chunker, ChunkerParams, KiB, MiB
from peerbackup.core.crypto import (
    KdfParams,
    content_hash,
    derive_key,
    keyed_id,
    seal,
    unseal,
)
from tests.core._vectors import ID_KEY, KEY_E0

# Published BLAKE3 test vectors (github.com/BLAKE3-team/BLAKE3, test_vectors.json):
# key "whats the Elvish word for friend", input byte i = i % 251; first 32 bytes of output.
ELVISH_KEY = b"whats the Elvish word for friend"


def _vector_input(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@pytest.mark.parametrize(
    ("n", "keyed", "unkeyed"),
    [
        (
            0,
            "92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26",
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        ),
        (
            1,
            "6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b",
            "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
        ),
        (
            1024,
            "75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4",
            "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
        ),
    ],
)
def test_blake3_published_vectors(n: int, keyed: str, unkeyed: str) -> None:
    data = _vector_input(n)
    assert keyed_id(ELVISH_KEY, data).hex() == keyed
    assert content_hash(data).hex() == unkeyed


def test_keyed_id_pinned_and_matches_blake3() -> None:
    data = b"peerbackup chunk id vector"
    expected = "b977211e209d856d5db7bf3eae99c22f546f82192a209bf462f06bacc286a225"
    got = keyed_id(ID_KEY, data)
    assert got.hex() == blake3.blake3(data, key=ID_KEY).hexdigest()
    assert got.hex() == expected
    assert len(got) == 32
    # memoryview input (the chunker hands out views) gives the same id.
    assert keyed_id(ID_KEY, memoryview(data)) == got


def test_keyed_id_depends_on_key_and_differs_from_content_hash() -> None:
    data = b"same content"
    other_key = bytes(31) + b"\x01"
    assert keyed_id(ID_KEY, data) != keyed_id(other_key, data)
    # A stored id must reveal nothing without the key: it is not the plain hash.
    assert keyed_id(ID_KEY, data) != content_hash(data)
    assert content_hash(data).hex() == blake3.blake3(data).hexdigest()


# ---- XChaCha20-Poly1305 ---------------------------------------------------------------

# draft-irtf-cfrg-xchacha-03, appendix A.3.1 (AEAD_XChaCha20_Poly1305 test vector).
XCHACHA_KEY = bytes(range(0x80, 0xA0))
XCHACHA_NONCE = bytes(range(0x40, 0x58))
XCHACHA_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
XCHACHA_PT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
XCHACHA_CT = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e"
)
XCHACHA_TAG = bytes.fromhex("c0875924c1c7987947deafd8780acf49")


def test_seal_matches_draft_vector_and_libsodium() -> None:
    ct = seal(XCHACHA_KEY, XCHACHA_PT, XCHACHA_AAD, XCHACHA_NONCE)
    assert ct == XCHACHA_CT + XCHACHA_TAG
    direct = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        XCHACHA_PT, XCHACHA_AAD, XCHACHA_NONCE, XCHACHA_KEY
    )
    assert ct == direct
    assert unseal(XCHACHA_KEY, ct, XCHACHA_AAD, XCHACHA_NONCE, "vector") == XCHACHA_PT


def test_seal_pinned_with_project_key() -> None:
    nonce = bytes(24)
    ct = seal(KEY_E0, b"hello peerbackup", b"aad", nonce)
    assert ct == sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        b"hello peerbackup", b"aad", nonce, KEY_E0
    )
    assert ct.hex() == "059f445e4b2f46b25ab7285ed3480eb6505fe10c38ef77f2a8eb0b6b84e3f0f5"
    assert len(ct) == 16 + 16


# ---- Argon2id key derivation ----------------------------------------------------------


def test_derive_key_pinned_and_matches_libsodium() -> None:
    salt = bytes(range(16))
    params = KdfParams.weak()
    key = derive_key(b"password", salt, params)
    assert key == nacl.pwhash.argon2id.kdf(
        32, b"password", salt, opslimit=params.opslimit, memlimit=params.memlimit
    )
    assert key.hex() == "3a008963c65f7ffa7331a90babd1fd17ea9f03bd05356b857ceb43f7b7080adc"


# ---- Chunker boundaries ---------------------------------------------------------------

DEFAULT_LENGTHS_20MIB = [
    1521776, 1829765, 1437770, 868991, 872719, 1109923, 1225334,
    1184684, 2045085, 2247893, 1211105, 3234358, 1205375, 976742,
]

SMALL_LENGTHS_1MIB = [
    6699, 4027, 12849, 9683, 8391, 9419, 12215, 10902, 2899, 13847, 2705, 2837, 15093,
    5828, 15666, 13638, 13187, 10389, 8641, 3350, 8251, 2243, 2441, 9167, 5486, 9461,
    11672, 10233, 15970, 3490, 10092, 8143, 10783, 6214, 9051, 5064, 13384, 6349, 13562,
    5529, 14763, 5331, 7647, 12057, 14907, 7163, 12840, 9406, 3385, 9610, 8988, 14688,
    8772, 9453, 9138, 10602, 12671, 13774, 10452, 13056, 13409, 7661, 8847, 9395, 8835,
    11119, 8193, 19774, 9051, 9271, 16650, 9445, 6228, 9268, 14288, 9556, 5286, 14980,
    7343, 11670, 9404, 11090, 6057, 2398, 2619, 9516, 11869, 15705, 7497, 14687, 11745,
    2628, 6022, 11323, 8950, 8440, 12855, 12330, 9485, 18505, 6183, 10518, 10263, 8238,
    3994, 10875, 2268, 9087, 17365, 8776, 62,
]


def _check_chunks(params: ChunkerParams, buf: bytes, expected: list[int]) -> None:
    chunker = Chunker(params)
    # Chunks may be memoryviews into a shared buffer: copy them for comparison.
    chunks = [bytes(c) for c in chunker.chunks(io.BytesIO(buf))]
    assert [len(c) for c in chunks] == expected
    assert b"".join(chunks) == buf
    # Every chunk but the tail respects the bounds.
    assert all(params.min_size <= len(c) <= params.max_size for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= params.max_size


def test_chunker_default_params_20mib() -> None:
    buf = random.Random(1).randbytes(20 * MiB)
    _check_chunks(ChunkerParams(), buf, DEFAULT_LENGTHS_20MIB)


def test_chunker_small_params_1mib() -> None:
    buf = random.Random(1).randbytes(1 * MiB)
    params = ChunkerParams(min_size=2 * KiB, avg_size=8 * KiB, max_size=64 * KiB)
    _check_chunks(params, buf, SMALL_LENGTHS_1MIB)


@pytest.mark.parametrize("block_size", [4096, 8 * KiB, 64 * KiB - 1, 100_000, 4 * MiB])
@pytest.mark.parametrize("size_hint", [-1, 0, 777, MiB - 1, MiB, 2 * MiB])
def test_chunker_stream_cuts_independent_of_block_size(block_size: int, size_hint: int) -> None:
    # chunks() reads a file block by block and carries each block's last (possibly forced)
    # cut into the next: any block size and any (even wrong) size hint must give the cuts
    # of the whole buffer, else the same file chunks differently from run to run.
    buf = random.Random(1).randbytes(1 * MiB)
    params = ChunkerParams(min_size=2 * KiB, avg_size=8 * KiB, max_size=64 * KiB)
    chunker = Chunker(params, block_size=block_size)
    got = [bytes(c) for c in chunker.chunks(io.BytesIO(buf), size_hint=size_hint)]
    assert [len(c) for c in got] == SMALL_LENGTHS_1MIB
    assert b"".join(got) == buf


@pytest.mark.parametrize("block_size", [1 * MiB, 3 * MiB + 7])
def test_chunker_default_params_blocks_smaller_than_max_chunk(block_size: int) -> None:
    # Blocks smaller than max_size (8 MiB): a chunk may span several blocks.
    buf = random.Random(1).randbytes(20 * MiB)
    got = Chunker(ChunkerParams(), block_size=block_size).chunks(io.BytesIO(buf))
    assert [len(c) for c in got] == DEFAULT_LENGTHS_20MIB


def test_chunker_empty_input() -> None:
    chunker = Chunker(ChunkerParams(min_size=2 * KiB, avg_size=8 * KiB, max_size=64 * KiB))
    assert list(chunker.chunks(io.BytesIO(b""))) == []


def test_chunker_boundaries_are_content_defined() -> None:
    # Inserting bytes at the front shifts only the first few boundaries: later chunks
    # re-synchronise and are byte-identical, which is what makes deduplication work.
    buf = random.Random(1).randbytes(1 * MiB)
    params = ChunkerParams(min_size=2 * KiB, avg_size=8 * KiB, max_size=64 * KiB)
    chunker = Chunker(params)
    before = list(chunker.chunks(io.BytesIO(buf)))
    after = list(chunker.chunks(io.BytesIO(b"inserted!" + buf)))
    shared = {bytes(c) for c in before} & {bytes(c) for c in after}
    assert len(shared) >= len(before) - 3
