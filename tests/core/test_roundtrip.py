"""Property tests: everything the core writes, it reads back unchanged.

derandomize=True makes Hypothesis draw the same examples on every run, so a
failure here is reproducible and the suite stays deterministic.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import codec, compress
from peerbackup.core.crypto import content_hash, keyed_id
from peerbackup.core.keys import KeySet
from peerbackup.core.objects import OVERHEAD, Kind, open_object, seal_object
from peerbackup.core.pack import PackWriter, read_pack
from peerbackup.core.snapshot import Snapshot, Summary
from peerbackup.core.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FILE,
    SYMLINK,
    TYPES,
    Node,
    decode_tree,
    encode_tree,
)
from tests.core._packs import finish_pack

Rand = Callable[[int], bytes]

FAST = settings(max_examples=60, derandomize=True, deadline=None)
SLOW = settings(max_examples=25, derandomize=True, deadline=None)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
ids = st.binary(min_size=32, max_size=32)


def make_rand(seed: int) -> Rand:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


# ---- codec ----------------------------------------------------------------------------

# Values msgpack maps one to one: no tuples (they come back as lists), no NaN (NaN != NaN).
msgpack_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False) | st.text() | st.binary()
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text() | st.integers(-(2**63), 2**63 - 1) | st.binary(), inner,
                      max_size=5),
    max_leaves=20,
)


@FAST
@given(msgpack_values)
def test_codec_roundtrip(value: Any) -> None:
    data = codec.pack(value)
    assert isinstance(data, bytes)
    assert codec.unpack(data) == value
    assert codec.unpack(memoryview(data)) == value


# ---- trees ----------------------------------------------------------------------------

# File names: any text but '/' and NUL, or arbitrary non-UTF-8 bytes decoded the way
# os.fsdecode hands them to us (surrogate escapes). codec="utf-8" keeps lone surrogates
# out of the text strategy: no file system can hand those to us.
text_names = st.text(
    st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=20
)
byte_names = (
    st.binary(min_size=1, max_size=20)
    .filter(lambda b: b"/" not in b and b"\0" not in b)
    .map(os.fsdecode)
)
names = text_names | byte_names
xattr_names = (
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=12)
    | st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b).map(os.fsdecode)
)
targets = st.text(max_size=30) | st.binary(max_size=30).map(os.fsdecode)


@st.composite
def nodes(draw: st.DrawFn, name: str | None = None) -> Node:
    ntype = draw(st.sampled_from(TYPES))
    node = Node(
        name=draw(names) if name is None else name,
        type=ntype,
        mode=draw(st.integers(0, 0o177777)),
        uid=draw(u32),
        gid=draw(u32),
        mtime_ns=draw(i64),
        xattrs=draw(st.dictionaries(xattr_names, st.binary(max_size=40), max_size=3)),
    )
    # Only the fields a type stores on the wire are set: the others are not kept.
    if ntype == FILE:
        node.size = draw(u64)
        node.content = draw(st.lists(ids, max_size=4))
        # Holes: sorted, apart, inside the file (tree version 2).
        cuts = sorted(set(draw(st.lists(st.integers(0, node.size), max_size=6))))
        node.holes = [(x, y - x) for x, y in zip(cuts[::2], cuts[1::2], strict=False)]
    elif ntype == DIR:
        node.subtree = draw(ids)
    elif ntype == SYMLINK:
        node.target = draw(targets)
    elif ntype in (CHARDEV, BLOCKDEV):
        node.rdev = draw(u64)
    # Hard-link fields are recorded only when there is more than one link.
    if draw(st.booleans()):
        node.links = draw(st.integers(2, 2**32))
        node.dev = draw(u64)
        node.inode = draw(u64)
    return node


def _name_key(n: Node) -> bytes:
    return os.fsencode(n.name)


@FAST
@given(st.lists(nodes(), max_size=8, unique_by=_name_key))
def test_tree_roundtrip(tree: list[Node]) -> None:
    data = encode_tree(tree)
    assert decode_tree(data) == sorted(tree, key=_name_key)


@FAST
@given(st.lists(nodes(), min_size=2, max_size=6, unique_by=_name_key), st.randoms())
def test_tree_encoding_ignores_input_order(tree: list[Node], rnd: random.Random) -> None:
    # Entries are sorted by name bytes, so the same directory always gives the same bytes
    # (and so the same tree id: unchanged directories deduplicate).
    shuffled = list(tree)
    rnd.shuffle(shuffled)
    assert encode_tree(shuffled) == encode_tree(tree)


@pytest.mark.parametrize("ntype", TYPES)
def test_tree_roundtrip_every_type(ntype: str) -> None:
    # Pin one example of each type explicitly, with every optional field in use.
    node = Node(name=os.fsdecode(b"caf\xe9"), type=ntype, mode=0o644, uid=1, gid=2, mtime_ns=-5,
                xattrs={"user.k": b"v", os.fsdecode(b"user.\xff"): b""}, links=3, dev=4, inode=5)
    if ntype == FILE:
        node.size, node.content = 10, [b"\x01" * 32, b"\x02" * 32]
    elif ntype == DIR:
        node.subtree = b"\x03" * 32
    elif ntype == SYMLINK:
        node.target = os.fsdecode(b"../t\xfe")
    elif ntype in (CHARDEV, BLOCKDEV):
        node.rdev = 0x0801
    (back,) = decode_tree(encode_tree([node]))
    assert back == node
    assert os.fsencode(back.name) == b"caf\xe9"
    assert (back.links, back.dev, back.inode) == (3, 4, 5)
    assert back.xattrs == node.xattrs


# ---- snapshots ------------------------------------------------------------------------

summaries = st.builds(
    Summary,
    **{f: st.integers(0, 2**63 - 1) for f in Summary().__dict__ if f != "duration"},
    duration=st.floats(min_value=0, max_value=1e9, allow_nan=False),
)
snapshots = st.builds(
    Snapshot,
    time_ns=i64,
    host=st.text(max_size=20),
    user=st.text(max_size=20),
    paths=st.lists(st.text(max_size=30), max_size=4),
    tree=ids,
    tags=st.lists(st.text(max_size=10), max_size=4),
    parent=st.none() | st.text(min_size=1, max_size=64),
    summary=summaries,
    program=st.text(max_size=20),
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    id=st.text(st.characters(min_codepoint=ord("0"), max_codepoint=ord("f")), max_size=64),
)


@FAST
@given(snapshots)
def test_snapshot_roundtrip(snap: Snapshot) -> None:
    back = Snapshot.from_bytes(snap.to_bytes(), snap.id)
    assert back == snap


# ---- keys -----------------------------------------------------------------------------


@st.composite
def keysets(draw: st.DrawFn) -> KeySet:
    # Epochs stay well below 2**32 so that a rotation still fits the u32 header field.
    data_keys = draw(st.dictionaries(st.integers(0, 2**31), ids, min_size=1, max_size=4))
    epoch = draw(st.sampled_from(sorted(data_keys)))
    return KeySet(id_key=draw(ids), data_keys=data_keys, epoch=epoch)


@FAST
@given(keysets())
def test_keyset_wire_roundtrip(keys: KeySet) -> None:
    wire = codec.unpack(codec.pack(keys.to_wire()))
    assert KeySet.from_wire(wire) == keys


@SLOW
@given(keysets(), st.binary(max_size=200), st.integers(0, 2**32))
def test_rotated_keys_open_old_objects(keys: KeySet, data: bytes, seed: int) -> None:
    rand = make_rand(seed)
    old = seal_object(keys, Kind.DATA, data, b"ctx", rand)
    rotated = keys.rotated(rand)
    assert rotated.id_key == keys.id_key  # ids, hence deduplication, survive rotation
    assert rotated.epoch == max(keys.data_keys) + 1
    new = seal_object(rotated, Kind.DATA, data, b"ctx", rand)
    assert int.from_bytes(new[3:7], "big") == rotated.epoch
    assert open_object(rotated, Kind.DATA, old, b"ctx", "old") == data
    assert open_object(rotated, Kind.DATA, new, b"ctx", "new") == data


# ---- envelopes ------------------------------------------------------------------------

# Compressible (a repeated pattern) and incompressible (random) plaintexts.
compressible = st.builds(
    lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(64, 500)
)
plaintexts = compressible | st.binary(max_size=2000)


@FAST
@given(keysets(), st.sampled_from(list(Kind)), plaintexts, st.binary(max_size=40),
       st.sampled_from([0, 1, compress.DEFAULT_LEVEL, 19]), st.integers(0, 2**32))
def test_seal_open_roundtrip(
    keys: KeySet, kind: Kind, data: bytes, context: bytes, level: int, seed: int
) -> None:
    env = seal_object(keys, kind, data, context, make_rand(seed), level=level)
    assert env[0] == 1 and env[1] == kind
    assert int.from_bytes(env[3:7], "big") == keys.epoch
    method = env[2]
    if method == compress.NONE:
        assert len(env) == OVERHEAD + len(data)
    else:
        assert method == compress.ZSTD and level > 0
        assert len(env) < OVERHEAD + len(data)
    assert open_object(keys, kind, env, context, "obj") == data
    assert open_object(keys, kind, memoryview(env), context, "obj") == data


@SLOW
@given(st.sampled_from(list(Kind)), st.integers(1, 5), st.integers(0, 2**32))
def test_seal_compresses_repetitive_data(kind: Kind, level: int, seed: int) -> None:
    keys = KeySet.generate(make_rand(seed))
    data = b"the same line of an office document\n" * 100
    env = seal_object(keys, kind, data, b"", make_rand(seed + 1), level=level)
    assert env[2] == compress.ZSTD
    assert len(env) < len(data) // 4
    assert open_object(keys, kind, env, b"", "obj") == data


# ---- packs ----------------------------------------------------------------------------


@SLOW
@given(
    keysets(),
    st.lists(st.tuples(st.sampled_from([Kind.DATA, Kind.TREE]), plaintexts), max_size=8),
    st.integers(0, 2**32),
)
def test_pack_roundtrip(keys: KeySet, blobs: list[tuple[Kind, bytes]], seed: int) -> None:
    rand = make_rand(seed)
    w = PackWriter()
    for kind, data in blobs:
        blob_id = keyed_id(keys.id_key, data)
        w.add(kind, blob_id, seal_object(keys, kind, data, blob_id, rand), len(data))
    written = list(w.entries)
    pack_id, pack = finish_pack(w, keys, rand)
    assert pack_id == content_hash(pack)
    entries = read_pack(keys, pack, "pack")
    assert entries == written
    for entry, (kind, data) in zip(entries, blobs, strict=True):
        assert entry.kind == kind and entry.raw_length == len(data)
        sealed = pack[entry.offset : entry.offset + entry.length]
        assert open_object(keys, kind, sealed, entry.id, "blob") == data
    assert len(w) == 0  # finish() hands the buffer over and starts afresh


# ---- compression ----------------------------------------------------------------------


@FAST
@given(plaintexts, st.integers(-1, 9))
def test_compress_roundtrip_never_grows(data: bytes, level: int) -> None:
    method, payload = compress.compress(data, level)
    assert len(payload) <= len(data)
    if method == compress.NONE:
        assert payload == data
    else:
        assert method == compress.ZSTD
        # Only stored compressed when it saves at least MIN_SAVING.
        assert len(payload) <= len(data) * (1 - compress.MIN_SAVING)
    assert compress.decompress(method, payload, len(data), "c") == data
    assert compress.decompress(method, payload, 1024 * 1024, "c") == data


@FAST
@given(st.binary(max_size=63), st.integers(1, 9))
def test_compress_skips_tiny_inputs(data: bytes, level: int) -> None:
    assert compress.compress(data, level) == (compress.NONE, data)
