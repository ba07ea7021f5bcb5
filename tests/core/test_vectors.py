"""Known-answer vectors: pin the bytes every repository on disk depends on.

Each pinned value was computed once and is checked twice where possible: against
the literal, and against an independent derivation (the underlying library called
directly, or a published test vector). A change here means existing repositories
would no longer read, so it must be deliberate.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable

import blake3
import nacl.bindings as sodium
import nacl.pwhash
import pytest
import zstandard

from peerbackup.core import codec, compress
from peerbackup.core.chunker import Chunker, ChunkerParams, KiB, MiB
from peerbackup.core.crypto import (
    KdfParams,
    content_hash,
    derive_key,
    keyed_id,
    seal,
    unseal,
)
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.core.objects import HEADER_SIZE, OVERHEAD, Kind, open_object, seal_object
from peerbackup.core.pack import MAGIC, TRAILER_SIZE, PackWriter, read_pack
from peerbackup.core.snapshot import Snapshot, Summary
from peerbackup.core.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree
from tests.core._packs import finish_pack

Rand = Callable[[int], bytes]

# Fixed key material for the vectors below (never random, so the bytes are stable).
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


# ---- BLAKE3 keyed ids and content hashes ------------------------------------------------

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


# ---- The sealed-object envelope -------------------------------------------------------

ENVELOPE_PT = random.Random(99).randbytes(1000)  # incompressible: stored raw, stable bytes
ENVELOPE_BLAKE3 = "7b951d459d9e74f86bc1bd89fac9e004c03939e04b6f9228e30ca68b9b830a9d"


def test_envelope_pinned(seeded_rand: Rand) -> None:
    env = seal_object(fixed_keys(), Kind.TREE, ENVELOPE_PT, b"ctx", seeded_rand)
    assert blake3.blake3(env).hexdigest() == ENVELOPE_BLAKE3
    assert len(env) == OVERHEAD + len(ENVELOPE_PT) == 7 + 24 + 1000 + 16


def test_envelope_layout_field_by_field(seeded_rand: Rand) -> None:
    env = bytes(seal_object(fixed_keys(), Kind.TREE, ENVELOPE_PT, b"ctx", seeded_rand))
    assert HEADER_SIZE == 7
    assert env[0] == 1  # envelope version
    assert env[1] == 1  # Kind.TREE
    assert env[2] == compress.NONE == 0  # random data is not worth compressing
    assert env[3:7] == b"\x00\x00\x00\x07"  # key epoch, u32 big endian
    # The nonce is the first draw from the random source.
    nonce = rand_1234()(24)
    assert env[7:31] == nonce
    # Body: XChaCha20-Poly1305 under the epoch's key, header + context as associated data.
    body = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        ENVELOPE_PT, env[:7] + b"ctx", nonce, KEY_E7
    )
    assert env[31:] == body
    assert open_object(fixed_keys(), Kind.TREE, env, b"ctx", "t") == ENVELOPE_PT


def test_envelope_epoch_is_big_endian_u32(seeded_rand: Rand) -> None:
    epoch = 0x01020304
    keys = KeySet(id_key=ID_KEY, data_keys={epoch: KEY_E0}, epoch=epoch)
    env = seal_object(keys, Kind.DATA, b"x", b"", seeded_rand)
    assert env[3:7] == bytes([1, 2, 3, 4])
    assert struct.unpack(">I", env[3:7])[0] == epoch


def test_envelope_compressed_body_is_a_zstd_frame(seeded_rand: Rand) -> None:
    # zstd's exact output may change between library versions, so compressed bytes are
    # not pinned; instead the body is opened by hand and must be a standard zstd frame.
    pt = b"office document text " * 200
    env = bytes(seal_object(fixed_keys(), Kind.DATA, pt, b"blob-id", seeded_rand))
    assert env[2] == compress.ZSTD == 1
    payload = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        env[31:], env[:7] + b"blob-id", env[7:31], KEY_E7
    )
    assert len(payload) < len(pt)
    assert zstandard.ZstdDecompressor().decompress(payload) == pt


@pytest.mark.parametrize(("kind", "value"), [(k, int(k)) for k in Kind])
def test_kind_byte_values(kind: Kind, value: int, seeded_rand: Rand) -> None:
    # The numeric kinds are part of the format.
    assert {Kind.DATA: 0, Kind.TREE: 1, Kind.SNAPSHOT: 2, Kind.INDEX: 3, Kind.PACK_HEADER: 4}[
        kind
    ] == value
    env = seal_object(fixed_keys(), kind, b"abc", b"", seeded_rand)
    assert env[1] == value


# ---- Packs ----------------------------------------------------------------------------

PACK_ID = "de4fcf092b06c72b36772595089b00e9df8c55c4f3e3da2f7d34cec27dbf1bbb"
PACK_LEN = 1843
PACK_HEADER_LEN = 0xBF


def _build_pack(rand: Rand) -> tuple[bytes, bytes, list[tuple[Kind, bytes, bytes]]]:
    keys = fixed_keys()
    w = PackWriter()
    blobs = []
    for i, kind in enumerate([Kind.DATA, Kind.TREE, Kind.DATA]):
        data = random.Random(i).randbytes(500 + i)
        blob_id = keyed_id(ID_KEY, data)
        w.add(kind, blob_id, seal_object(keys, kind, data, blob_id, rand), len(data))
        blobs.append((kind, blob_id, data))
    pack_id, pack = finish_pack(w, keys, rand)
    return pack_id, pack, blobs


def test_pack_pinned(seeded_rand: Rand) -> None:
    pack_id, pack, _ = _build_pack(seeded_rand)
    assert pack_id.hex() == PACK_ID
    assert len(pack) == PACK_LEN
    # A pack is named by the unkeyed BLAKE3 of all its bytes.
    assert blake3.blake3(pack).hexdigest() == PACK_ID


def test_pack_layout(seeded_rand: Rand) -> None:
    _, pack, blobs = _build_pack(seeded_rand)
    assert TRAILER_SIZE == 8
    assert pack[-4:] == MAGIC == b"PBK1"
    (hlen,) = struct.unpack(">I", pack[-8:-4])
    assert hlen == PACK_HEADER_LEN
    header_env = pack[-8 - hlen : -8]
    assert header_env[0] == 1 and header_env[1] == Kind.PACK_HEADER
    header = codec.unpack(
        open_object(fixed_keys(), Kind.PACK_HEADER, header_env, b"pack header", "h")
    )
    # Blobs are laid out back to back from offset 0, in the order they were added.
    offset = 0
    wire = []
    for kind, blob_id, data in blobs:
        length = OVERHEAD + len(data)
        wire.append([int(kind), blob_id, offset, length, len(data)])
        sealed = pack[offset : offset + length]
        assert open_object(fixed_keys(), kind, sealed, blob_id, "b") == data
        offset += length
    assert header == {"v": 1, "blobs": wire}
    assert offset + hlen + TRAILER_SIZE == len(pack)
    entries = read_pack(fixed_keys(), pack, "p")
    assert [e.to_wire() for e in entries] == wire


# ---- Trees, snapshots, key files ------------------------------------------------------

TREE_HEX = (
    "82a17601a56e6f6465739387a16ec40161a174a3646972a16dcd41eda17500a16700a26d7400a27374c420"
    + "11" * 32
    + "88a16ec40162a174a466696c65a16dcd81a4a175cd03e8a167cd03e8a26d74cf17979cfe362a0000a17303"
    "a16391c420" + "00" * 32
    + "87a16ec4016ca174a773796d6c696e6ba16d00a17500a16700a26d7400a16cc40162"
)


def _tree_nodes() -> list[Node]:
    return [
        Node(name="b", type=FILE, mode=0o100644, uid=1000, gid=1000,
             mtime_ns=1_700_000_000_000_000_000, size=3, content=[bytes(32)]),
        Node(name="a", type=DIR, mode=0o40755, subtree=b"\x11" * 32),
        Node(name="l", type=SYMLINK, target="b"),
    ]


def test_tree_encoding_pinned() -> None:
    data = encode_tree(_tree_nodes())
    assert data.hex() == TREE_HEX
    # Built independently: nodes sorted by name bytes, only the fields of each type.
    expected = codec.pack({"v": 1, "nodes": [
        {"n": b"a", "t": "dir", "m": 0o40755, "u": 0, "g": 0, "mt": 0, "st": b"\x11" * 32},
        {"n": b"b", "t": "file", "m": 0o100644, "u": 1000, "g": 1000,
         "mt": 1_700_000_000_000_000_000, "s": 3, "c": [bytes(32)]},
        {"n": b"l", "t": "symlink", "m": 0, "u": 0, "g": 0, "mt": 0, "l": b"b"},
    ]})
    assert data == expected
    assert decode_tree(data) == sorted(_tree_nodes(), key=lambda n: n.name)


SNAPSHOT_BLAKE3 = "417850191a6736b8635f082b2c5283244059963d2cb4dd3a377ee09d2726cf74"


def test_snapshot_encoding_pinned() -> None:
    snap = Snapshot(
        time_ns=1_700_000_000_123_456_789, host="office-pc", user="anna", paths=["/home/anna"],
        tree=bytes(range(32)), tags=["daily"], parent=None,
        summary=Summary(files_new=3, bytes_processed=1234, duration=1.5),
        program="peerbackup 0.1.0",
    )
    data = snap.to_bytes()
    assert len(data) == 331
    assert blake3.blake3(data).hexdigest() == SNAPSHOT_BLAKE3
    obj = codec.unpack(data)
    assert list(obj) == [
        "v", "time", "host", "user", "paths", "tree", "tags", "parent", "summary", "program",
        "extra",
    ]
    assert obj["v"] == 1 and obj["time"] == 1_700_000_000_123_456_789
    assert obj["summary"]["duration"] == 1.5


KEYFILE_BLAKE3 = "59b8e4fa051683066170327b55685884bf9c6e929ec1a60be921e607cb98244a"


def test_keyset_generate_and_keyfile_pinned(seeded_rand: Rand) -> None:
    keys = KeySet.generate(seeded_rand)
    expected_stream = rand_1234()
    assert keys.id_key == expected_stream(32)
    assert keys.data_keys == {0: expected_stream(32)} and keys.epoch == 0
    assert keys.id_key.hex() == "b97f69f75edf35c71fdad37066eae91d14f6ea01456b341770b835e942f549f1"

    kdf = KdfParams.weak()
    kf = KeyFile.create(keys, b"correct horse battery staple", kdf, seeded_rand,
                        1_700_000_000, "host", "user")
    data = kf.to_bytes()
    assert len(data) == 242
    assert blake3.blake3(data).hexdigest() == KEYFILE_BLAKE3

    obj = codec.unpack(data)
    assert obj["v"] == 1
    assert obj["kdf"] == {"alg": "argon2id", "ops": kdf.opslimit, "mem": kdf.memlimit}
    salt, nonce = expected_stream(16), expected_stream(24)
    assert obj["salt"] == salt and obj["nonce"] == nonce
    # The key set is sealed under the Argon2id-derived key with a fixed associated data.
    wrapping = nacl.pwhash.argon2id.kdf(
        32, b"correct horse battery staple", salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit
    )
    plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
        obj["sealed"], b"peerbackup keyfile v1", nonce, wrapping
    )
    assert codec.unpack(plain) == {"id_key": keys.id_key, "data_keys": keys.data_keys, "epoch": 0}
    assert KeyFile.from_bytes(data).open(b"correct horse battery staple") == keys
