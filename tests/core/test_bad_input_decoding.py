"""Hostile and damaged metadata: msgpack garbage, trees and snapshots (core/codec.py, core/tree.py,
core/snapshot.py) fail with one of our own errors, and unsafe file names are refused.

Like every test_bad_input_*.py module: nothing read back may crash with a library's own exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core.keys import KeyFile
from peerbackup.core.objects import Kind, open_object
from peerbackup.core.pack import read_pack
from peerbackup.core.snapshot import Snapshot
from peerbackup.core.tree import decode_tree, is_safe_name
from peerbackup.errors import (
    FormatError,
    IntegrityError,
    UnsupportedVersion,
)
from tests.core._bad_input import FUZZ, KEYS


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
