"""Hostile and damaged input: every decoder fails with one of our own errors.

Repository files come from disks and, later, from peers: nothing read back may
crash with a stray KeyError, struct.error or library exception. Integrity damage
is DecryptError or FormatError; a file from a newer program is UnsupportedVersion.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import codec, compress
from peerbackup.core.chunker import ChunkerParams, KiB, MiB
from peerbackup.core.crypto import NONCE_SIZE, KdfParams, keyed_id, seal
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.core.objects import HEADER_SIZE, OVERHEAD, Kind, open_object, seal_object
from peerbackup.core.pack import MAX_HEADER, PackWriter, read_pack
from peerbackup.core.snapshot import Snapshot
from peerbackup.core.tree import decode_tree, is_safe_name
from peerbackup.errors import (
    DecryptError,
    FormatError,
    IntegrityError,
    UnsupportedVersion,
    WrongPassword,
)
from tests.core._packs import finish_pack

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


# ---- envelope tampering ---------------------------------------------------------------


@pytest.mark.parametrize("data", [b"x" * 100, random.Random(3).randbytes(100)],
                         ids=["compressed", "raw"])
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_is_detected(data: bytes, mask: int) -> None:
    env = envelope(data=data)
    assert open_object(KEYS, Kind.DATA, env, b"ctx", "blob") == data
    for pos in range(len(env)):
        bad = flip(env, pos, mask)
        with pytest.raises((DecryptError, FormatError, UnsupportedVersion)) as info:
            open_object(KEYS, Kind.DATA, bad, b"ctx", "blob")
        err = info.value
        # Which error is raised is fixed by the byte that was hit.
        if pos == 0:
            # The version is read before anything can be authenticated (a newer format may
            # lay out the rest differently), so a higher version reads as "upgrade".
            assert isinstance(err, UnsupportedVersion if bad[0] > 1 else DecryptError)
        elif pos == 1:
            assert isinstance(err, FormatError) and "kind" in str(err)
        elif pos == 2:
            assert isinstance(err, DecryptError)  # compression byte: authenticated header
        elif pos < HEADER_SIZE:
            assert isinstance(err, FormatError) and "epoch" in str(err)
        else:
            assert isinstance(err, DecryptError)  # nonce, ciphertext or tag


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=5))
def test_random_tampering_only_raises_our_errors(flips: list[tuple[int, int]]) -> None:
    env = envelope()
    bad = bytearray(env)
    for pos, mask in flips:
        bad[pos % len(env)] ^= mask
    if bytes(bad) == env:
        return  # two flips cancelled out
    with pytest.raises((DecryptError, FormatError, UnsupportedVersion)) as info:
        open_object(KEYS, Kind.DATA, bytes(bad), b"ctx", "blob")
    if isinstance(info.value, UnsupportedVersion):
        assert bad[0] > 1


@pytest.mark.parametrize("sealed_as", list(Kind))
@pytest.mark.parametrize("opened_as", list(Kind))
def test_wrong_kind_is_format_error(sealed_as: Kind, opened_as: Kind) -> None:
    env = envelope(kind=sealed_as)
    if sealed_as == opened_as:
        assert open_object(KEYS, opened_as, env, b"ctx", "o") == b"x" * 100
    else:
        with pytest.raises(FormatError, match="expected a"):
            open_object(KEYS, opened_as, env, b"ctx", "o")


def test_wrong_context_is_decrypt_error() -> None:
    # A blob is bound to its id: a pack entry pointing at another blob's bytes is caught.
    id_a = keyed_id(KEYS.id_key, b"a")
    id_b = keyed_id(KEYS.id_key, b"b")
    env = envelope(data=b"a", ctx=id_a)
    assert open_object(KEYS, Kind.DATA, env, id_a, "blob") == b"a"
    for ctx in (id_b, b"", id_a[:-1], id_a + b"\x00"):
        with pytest.raises(DecryptError):
            open_object(KEYS, Kind.DATA, env, ctx, "blob")


def test_unknown_epoch_is_format_error() -> None:
    rotated = KEYS.rotated(rand_from(1))
    env = envelope(keys=rotated)  # sealed under epoch 1
    assert env[3:7] == b"\x00\x00\x00\x01"
    with pytest.raises(FormatError, match="epoch 1"):
        open_object(KEYS, Kind.DATA, env, b"ctx", "o")  # KEYS only knows epoch 0


def test_wrong_key_is_decrypt_error() -> None:
    with pytest.raises(DecryptError):
        open_object(OTHER_KEYS, Kind.DATA, envelope(), b"ctx", "o")


def test_truncated_or_extended_envelope() -> None:
    env = envelope()
    for n in range(len(env)):
        exc = FormatError if n < OVERHEAD else DecryptError
        with pytest.raises(exc):
            open_object(KEYS, Kind.DATA, env[:n], b"ctx", "o")
    with pytest.raises(DecryptError):
        open_object(KEYS, Kind.DATA, env + b"\x00", b"ctx", "o")


@pytest.mark.parametrize("version", [2, 3, 255])
def test_newer_envelope_version(version: int) -> None:
    # Checked first: a newer envelope is reported as such even with an unknown epoch and
    # a body this version cannot authenticate.
    env = crafted_envelope(version=version, epoch=99)
    with pytest.raises(UnsupportedVersion) as info:
        open_object(KEYS, Kind.DATA, env, b"ctx", "blob")
    assert info.value.args == ("blob", version, 1)


def test_authenticated_unknown_compression_is_format_error() -> None:
    env = crafted_envelope(method=7)
    with pytest.raises(FormatError, match="compression method 7"):
        open_object(KEYS, Kind.DATA, env, b"ctx", "o")


def test_authenticated_corrupt_zstd_is_format_error() -> None:
    frame = zstandard.ZstdCompressor().compress(b"abc" * 100)
    for payload in (b"not zstd at all", frame[:-4], b""):
        env = crafted_envelope(method=compress.ZSTD, payload=payload)
        with pytest.raises(FormatError, match="zstd"):
            open_object(KEYS, Kind.DATA, env, b"ctx", "o")


def test_decompress_unknown_method() -> None:
    with pytest.raises(FormatError):
        compress.decompress(2, b"abc", 3, "c")


def test_decompress_rejects_output_longer_than_raw_length() -> None:
    method, payload = compress.compress(b"a" * 1000)
    assert method == compress.ZSTD
    with pytest.raises(FormatError):
        compress.decompress(method, payload, 10, "c")


# ---- packs ----------------------------------------------------------------------------


def make_pack(n: int = 3) -> bytes:
    rand = rand_from(11)
    w = PackWriter()
    for i in range(n):
        data = bytes([i]) * 300
        blob_id = keyed_id(KEYS.id_key, data)
        w.add(Kind.DATA, blob_id, seal_object(KEYS, Kind.DATA, data, blob_id, rand), len(data))
    return finish_pack(w, KEYS, rand)[1]


def pack_with_header(header: Any, body: bytes = b"", kind: Kind = Kind.PACK_HEADER,
                     ctx: bytes = b"pack header") -> bytes:
    sealed = seal_object(KEYS, kind, codec.pack(header), ctx, rand_from(3))
    return body + sealed + struct.pack(">I", len(sealed)) + b"PBK1"


def test_pack_tampering_in_header_or_trailer() -> None:
    pack = make_pack()
    hlen = struct.unpack(">I", pack[-8:-4])[0]
    start = len(pack) - 8 - hlen
    for pos in range(start, len(pack)):
        bad = flip(pack, pos, 0x01)
        allowed: tuple[type[Exception], ...] = (DecryptError, FormatError)
        if pos == start or len(pack) - 8 <= pos < len(pack) - 4:
            # The header envelope's version byte, or a damaged header length that makes
            # the header start elsewhere: whatever byte lands first reads as the version.
            # (A reader can tell such damage by the pack's name, its content hash.)
            allowed = (*allowed, UnsupportedVersion)
        with pytest.raises(allowed):
            read_pack(KEYS, bad, "pack")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[:-4] + b"PBK2", "bad magic"),
        (lambda p: p[:7], "truncated"),
        (lambda p: b"", "truncated"),
        (lambda p: p[:-8] + struct.pack(">I", len(p)) + b"PBK1", "truncated"),
        (lambda p: p[:-8] + struct.pack(">I", MAX_HEADER + 1) + b"PBK1", "too large"),
        (lambda p: p[:-8] + struct.pack(">I", 0) + b"PBK1", "truncated"),
    ],
)
def test_pack_bad_trailer(mutate: Callable[[bytes], bytes], message: str) -> None:
    with pytest.raises(FormatError, match=message):
        read_pack(KEYS, mutate(make_pack()), "pack")


def test_pack_header_wrong_context_or_kind() -> None:
    with pytest.raises(DecryptError):
        read_pack(KEYS, pack_with_header({"v": 1, "blobs": []}, ctx=b"index"), "pack")
    with pytest.raises(FormatError, match="expected a pack_header"):
        read_pack(KEYS, pack_with_header({"v": 1, "blobs": []}, kind=Kind.INDEX), "pack")


def test_pack_newer_version() -> None:
    with pytest.raises(UnsupportedVersion):
        read_pack(KEYS, pack_with_header({"v": 2, "blobs": []}), "pack")


ID = b"\x05" * 32


@pytest.mark.parametrize(
    "header",
    [
        [],
        {"blobs": []},
        {"v": "1", "blobs": []},
        {"v": True, "blobs": []},
        {"v": 1},
        {"v": 1, "blobs": {}},
        {"v": 1, "blobs": [[0, ID, 0, 10]]},
        {"v": 1, "blobs": [[0, ID, 0, 10, 10, 0]]},
        {"v": 1, "blobs": [(0, ID, 0, 10, 10)]},  # a tuple packs as a list: this one is fine
        {"v": 1, "blobs": [[2, ID, 0, 10, 10]]},  # snapshots never live in packs
        {"v": 1, "blobs": [[4, ID, 0, 10, 10]]},
        {"v": 1, "blobs": [[0, ID[:31], 0, 10, 10]]},
        {"v": 1, "blobs": [[0, "id", 0, 10, 10]]},
        {"v": 1, "blobs": [[0, ID, -1, 10, 10]]},
        {"v": 1, "blobs": [[0, ID, 0, -10, 10]]},
        {"v": 1, "blobs": [[0, ID, True, 10, 10]]},
        {"v": 1, "blobs": [[0, ID, 0, 10.0, 10]]},
        {"v": 1, "blobs": [[0, ID, 95, 10, 10]]},  # runs past the 100-byte body
    ],
)
def test_pack_bad_header(header: Any) -> None:
    pack = pack_with_header(header, body=bytes(100))
    if header == {"v": 1, "blobs": [(0, ID, 0, 10, 10)]}:
        assert [e.to_wire() for e in read_pack(KEYS, pack, "pack")] == [[0, ID, 0, 10, 10]]
        return
    with pytest.raises(FormatError):
        read_pack(KEYS, pack, "pack")


def test_pack_entry_may_end_exactly_at_header() -> None:
    pack = pack_with_header({"v": 1, "blobs": [[0, ID, 90, 10, 10]]}, body=bytes(100))
    assert read_pack(KEYS, pack, "pack")[0].offset == 90


# ---- msgpack --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # the one byte msgpack never uses
        b"\x92\x01",  # array of 2 with one element
        b"\x01\x02",  # trailing data after a complete object
        b"\xd9\x05ab",  # str8 shorter than declared
        b"\xa2\xff\xfe",  # str that is not UTF-8
        b"\x81\x90\x01",  # map with an unhashable (array) key
        b"\xdd\xff\xff\xff\xff",  # array32 declaring 4 G elements: capped, not allocated
        b"\xc6\xff\xff\xff\xff",  # bin32 declaring 4 GiB
        b"\x91" * 100_000 + b"\xc0",  # nesting deeper than any recursion limit
    ],
)
def test_malformed_msgpack_is_format_error(data: bytes) -> None:
    with pytest.raises(FormatError, match="not valid msgpack"):
        codec.unpack(data, "thing")


@FUZZ
@given(st.binary(max_size=200))
def test_unpack_garbage_only_raises_format_error(data: bytes) -> None:
    try:
        codec.unpack(data)
    except FormatError:
        pass


@FUZZ
@given(st.binary(max_size=200))
def test_decoders_on_garbage_only_raise_our_errors(data: bytes) -> None:
    decoders: list[Callable[[], object]] = [
        lambda: decode_tree(data),
        lambda: Snapshot.from_bytes(data, "ab" * 32),
        lambda: KeyFile.from_bytes(data),
        lambda: read_pack(KEYS, data, "pack"),
        lambda: open_object(KEYS, Kind.DATA, data, b"ctx", "blob"),
    ]
    for decode in decoders:
        try:
            decode()
        except (IntegrityError, UnsupportedVersion):
            pass


def test_unpack_map_and_field() -> None:
    with pytest.raises(FormatError, match="expected a map"):
        codec.unpack_map(codec.pack([1, 2]), "x")
    obj = {"i": 1, "b": True, "s": "str"}
    assert codec.field(obj, "i", int, "x") == 1
    with pytest.raises(FormatError, match="missing field 'nope'"):
        codec.field(obj, "nope", int, "x")
    with pytest.raises(FormatError, match="type bool"):
        codec.field(obj, "b", int, "x")  # bool is an int to Python, not to the format
    with pytest.raises(FormatError, match="type str"):
        codec.field(obj, "s", bytes, "x")


# ---- trees ----------------------------------------------------------------------------

GOOD_NODE: dict[str, Any] = {"n": b"f", "t": "file", "m": 0o644, "u": 0, "g": 0, "mt": 0,
                             "s": 1, "c": [b"\x00" * 32]}


def test_tree_newer_version() -> None:
    with pytest.raises(UnsupportedVersion):
        decode_tree(codec.pack({"v": 3, "nodes": []}))  # 2: holes (engine/sparse.py)
    assert decode_tree(codec.pack({"v": 1, "nodes": [GOOD_NODE]}))[0].name == "f"


@pytest.mark.parametrize(
    "changes",
    [
        {"t": "door"},
        {"t": b"file"},
        {"t": None},
        {"n": "f"},  # names travel as bytes
        {"n": None},
        {"m": "644"},
        {"m": True},
        {"u": 1.0},
        {"mt": None},
        {"s": "1"},
        {"c": b"\x00" * 32},
        {"c": [b"\x00" * 31]},
        {"c": ["0" * 32]},
        {"t": "dir", "st": b"\x00" * 31},
        {"t": "dir", "st": None},
        {"t": "dir"},  # no subtree at all
        {"t": "symlink"},  # no target
        {"t": "symlink", "l": "target"},
        {"t": "chardev"},  # no rdev
        {"t": "blockdev", "rd": "8:1"},
        {"hl": [2, 3]},
        {"hl": [2, 3, "4"]},
        {"hl": 2},
        {"x": [b"k", b"v"]},
        {"x": {"k": b"v"}},
        {"x": {b"k": "v"}},
    ],
)
def test_tree_rejects_bad_nodes(changes: dict[str, Any]) -> None:
    node = {**GOOD_NODE, **changes}
    node = {k: v for k, v in node.items() if not (k in ("s", "c") and node["t"] != "file")}
    with pytest.raises(FormatError):
        decode_tree(codec.pack({"v": 1, "nodes": [node]}))


@pytest.mark.parametrize("missing", ["n", "t", "m", "u", "g", "mt", "s", "c"])
def test_tree_rejects_missing_fields(missing: str) -> None:
    node = {k: v for k, v in GOOD_NODE.items() if k != missing}
    with pytest.raises(FormatError, match=repr(missing)):
        decode_tree(codec.pack({"v": 1, "nodes": [node]}))


@pytest.mark.parametrize(
    "tree",
    [[], {"v": 1}, {"v": 1, "nodes": {}}, {"v": 1, "nodes": [[]]}, {"v": 1, "nodes": ["f"]},
     {"nodes": []}, {"v": "1", "nodes": []}],
)
def test_tree_rejects_bad_structure(tree: Any) -> None:
    with pytest.raises(FormatError):
        decode_tree(codec.pack(tree))


@pytest.mark.parametrize("name", ["", ".", "..", "/", "a/b", "/etc", "../x", "a\0b", "\0"])
def test_unsafe_names(name: str) -> None:
    assert not is_safe_name(name)


@pytest.mark.parametrize(
    "name", ["a", "...", ".hidden", "a..b", "..a", "a b", "\\", "C:", "\udcff", "日本語"]
)
def test_safe_names(name: str) -> None:
    # Only what can escape a directory on this system is refused.
    assert is_safe_name(name)


# ---- snapshots ------------------------------------------------------------------------

GOOD_SNAP: dict[str, Any] = {"v": 1, "time": 1, "host": "h", "user": "u", "paths": ["/p"],
                             "tree": b"\x00" * 32}


def test_snapshot_minimal_and_newer_version() -> None:
    snap = Snapshot.from_bytes(codec.pack(GOOD_SNAP), "ab" * 32)
    assert snap.tags == [] and snap.parent is None and snap.extra == {}
    with pytest.raises(UnsupportedVersion):
        Snapshot.from_bytes(codec.pack({**GOOD_SNAP, "v": 2}), "ab" * 32)


@pytest.mark.parametrize(
    "changes",
    [
        {"tree": b"\x00" * 31},
        {"tree": "00" * 32},
        {"paths": "/p"},
        {"paths": [b"/p"]},
        {"tags": "daily"},
        {"tags": [1]},
        {"parent": 5},
        {"extra": ["a"]},
        {"time": 1.5},
        {"time": True},
        {"host": None},
        {"v": None},
    ],
)
def test_snapshot_rejects_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Snapshot.from_bytes(codec.pack({**GOOD_SNAP, **changes}), "ab" * 32)


@pytest.mark.parametrize("missing", ["v", "time", "host", "user", "paths", "tree"])
def test_snapshot_rejects_missing_fields(missing: str) -> None:
    obj = {k: v for k, v in GOOD_SNAP.items() if k != missing}
    with pytest.raises(FormatError):
        Snapshot.from_bytes(codec.pack(obj), "ab" * 32)


# ---- keys -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyfile_bytes() -> bytes:
    kf = KeyFile.create(KEYS, PASSWORD, KdfParams.weak(), rand_from(5), 0, "host", "user")
    return kf.to_bytes()


def test_keyfile_wrong_passphrase(keyfile_bytes: bytes) -> None:
    kf = KeyFile.from_bytes(keyfile_bytes)
    assert kf.open(PASSWORD) == KEYS
    for wrong in (b"", b"correct horse battery stapl", PASSWORD + b" "):
        with pytest.raises(WrongPassword):
            kf.open(wrong)


def test_keyfile_tampered_seal_or_nonce(keyfile_bytes: bytes) -> None:
    # A damaged key file cannot be told from a wrong passphrase: both fail to unseal.
    obj = codec.unpack(keyfile_bytes)
    for field in ("sealed", "nonce"):
        bad = dict(obj, **{field: flip(obj[field], 0, 1)})
        with pytest.raises(WrongPassword):
            KeyFile.from_bytes(codec.pack(bad)).open(PASSWORD)


def test_keyfile_newer_version(keyfile_bytes: bytes) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises(UnsupportedVersion) as info:
        KeyFile.from_bytes(codec.pack({**obj, "v": 2}))
    assert info.value.args == ("key file", 2, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"kdf": {"alg": "scrypt", "ops": 1, "mem": 8192}},
        {"kdf": {"alg": "argon2id", "ops": "1", "mem": 8192}},
        {"kdf": {"alg": "argon2id", "mem": 8192}},
        {"kdf": "argon2id"},
        {"salt": "salt"},
        {"nonce": None},
        {"sealed": []},
        {"host": 1},
        {"created": "now"},
        {"v": "1"},
    ],
)
def test_keyfile_rejects_bad_fields(keyfile_bytes: bytes, changes: dict[str, Any]) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises(FormatError):
        KeyFile.from_bytes(codec.pack({**obj, **changes}))


@pytest.mark.parametrize(
    "changes",
    [{"salt": b"short"}, {"kdf": {"alg": "argon2id", "ops": 0, "mem": 8192}}],
    ids=["short-salt", "zero-opslimit"],
)
def test_keyfile_bad_kdf_input_is_our_error(keyfile_bytes: bytes, changes: dict[str, Any]) -> None:
    obj = codec.unpack(keyfile_bytes)
    with pytest.raises((FormatError, WrongPassword)):
        KeyFile.from_bytes(codec.pack({**obj, **changes})).open(PASSWORD)


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        {"data_keys": {0: b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}},
        {"id_key": b"i" * 31, "data_keys": {0: b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 31}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {"0": b"k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: "k" * 32}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}, "epoch": 1},
        {"id_key": b"i" * 32, "data_keys": {}, "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": [b"k" * 32], "epoch": 0},
        {"id_key": b"i" * 32, "data_keys": {0: b"k" * 32}, "epoch": False},
    ],
)
def test_keyset_from_wire_rejects(wire: Any) -> None:
    with pytest.raises(FormatError):
        KeySet.from_wire(wire)


# ---- chunker parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        ChunkerParams(min_size=32, avg_size=1 * KiB, max_size=2 * KiB),  # min below 64
        ChunkerParams(min_size=8 * KiB, avg_size=4 * KiB, max_size=16 * KiB),  # min > avg
        ChunkerParams(min_size=1 * KiB, avg_size=8 * KiB, max_size=4 * KiB),  # avg > max
        ChunkerParams(min_size=2 * MiB, avg_size=3 * MiB, max_size=8 * MiB),
        ChunkerParams(min_size=1 * MiB, avg_size=5 * MiB, max_size=8 * MiB),
        ChunkerParams(min_size=1 * MiB, avg_size=2 * MiB, max_size=17 * MiB),
    ],
)
def test_chunker_params_validate(params: ChunkerParams) -> None:
    with pytest.raises(FormatError):
        params.validate()
    ChunkerParams().validate()  # the defaults are fine
