"""Known-answer vectors of the on-disk formats: the sealed-object envelope, packs, trees, snapshots and
key files, pinned byte for byte and field by field.

Each pinned value was computed once; test_vectors_primitives.py pins the primitives beneath them. A
change here means existing repositories would no longer read, so it must be deliberate.
"""

from __future__ import annotations

import random
import struct

import blake3
import nacl.bindings as sodium
import nacl.pwhash
import pytest
import zstandard

from peerbackup.core import codec, compress
from peerbackup.core.crypto import (
    KdfParams,
    keyed_id,
)
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.core.objects import HEADER_SIZE, OVERHEAD, Kind, open_object, seal_object
from peerbackup.core.pack import MAGIC, TRAILER_SIZE, PackWriter, read_pack
from peerbackup.core.snapshot import Snapshot, Summary
from peerbackup.core.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree
from tests.core._packs import finish_pack
from tests.core._vectors import ID_KEY, KEY_E0, KEY_E7, Rand, fixed_keys, rand_1234

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
