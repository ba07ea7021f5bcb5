"""Hostile and damaged packs (core/pack.py): a tampered header or trailer, a newer version, bad entries.

Like every test_bad_input_*.py module: nothing read back may crash with a library's own exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.crypto import keyed_id
from peerbackup.core.objects import Kind, seal_object
from peerbackup.core.pack import MAX_HEADER, PackWriter, read_pack
from peerbackup.errors import (
    DecryptError,
    FormatError,
    UnsupportedVersion,
)
from tests.core._bad_input import KEYS, flip, rand_from
from tests.core._packs import finish_pack


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
