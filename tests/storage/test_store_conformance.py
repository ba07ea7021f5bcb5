"""The Store contract, held against every backend: files put, read, ranged, listed and deleted, the kinds
that are immutable, and uploads streamed piece by piece and named at the end.

The engine only relies on what the Store protocol documents, so every backend
(MemoryStore, LocalStore and the peer store over three real daemons, see conftest.py) must pass the same
suite: add a backend to the `store` fixture's params and it is covered. LocalStore's own promises, beyond
the contract, are in test_local_store.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbackup.errors import NoSuchObject, ObjectExists
from peerbackup.storage.local import LocalStore
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import MUTABLE, FileType, Store, open_upload
from tests.storage._stores import DATA, NAME, named

IMMUTABLE = [t for t in FileType if t not in MUTABLE]


@pytest.fixture(params=["memory", "local", pytest.param("peer", marks=pytest.mark.slow)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    # The annotation makes mypy check every backend against the protocol.
    if request.param == "peer":
        office = request.getfixturevalue("peer_office")
        conn = office.store()
        try:
            yield conn.store
        finally:
            conn.close()
        return
    s: Store = MemoryStore() if request.param == "memory" else LocalStore(tmp_path / "repo")
    yield s


@pytest.mark.parametrize("ftype", list(FileType))
def test_put_get_size_exists_delete(store: Store, ftype: FileType) -> None:
    name = named(ftype)
    assert not store.exists(ftype, name)
    store.put(ftype, name, DATA)
    assert store.exists(ftype, name)
    assert store.get(ftype, name) == DATA
    assert store.size(ftype, name) == len(DATA)
    assert list(store.list(ftype)) == [(name, len(DATA))]
    store.delete(ftype, name)
    assert not store.exists(ftype, name)
    assert list(store.list(ftype)) == []
    with pytest.raises(NoSuchObject):
        store.get(ftype, name)


def test_empty_file(store: Store) -> None:
    name = named(FileType.INDEX, b"")
    store.put(FileType.INDEX, name, b"")
    assert store.get(FileType.INDEX, name) == b""
    assert store.size(FileType.INDEX, name) == 0
    assert list(store.list(FileType.INDEX)) == [(name, 0)]


def test_put_accepts_bytearray_and_keeps_a_copy(store: Store) -> None:
    buf = bytearray(b"pack bytes")
    name = named(FileType.DATA, bytes(buf))
    store.put(FileType.DATA, name, buf)
    buf[:] = b"XXXXXXXXXX"  # the caller reuses its buffer
    assert store.get(FileType.DATA, name) == b"pack bytes"


def test_put_accepts_list_of_pieces(store: Store) -> None:
    # A pack is handed over as its pieces; the store keeps their concatenation.
    pieces = [b"blob one|", b"", b"blob two|", b"header|", b"\x00\x00\x00\x07PBK1"]
    joined = b"".join(pieces)
    name = named(FileType.DATA, joined)
    store.put(FileType.DATA, name, pieces)
    assert store.get(FileType.DATA, name) == joined
    assert store.size(FileType.DATA, name) == len(joined)
    assert store.get(FileType.DATA, name, 9, 9) == b"blob two|"
    store.put(FileType.INDEX, named(FileType.INDEX, b""), [])
    assert store.get(FileType.INDEX, named(FileType.INDEX, b"")) == b""
    with pytest.raises(ObjectExists):
        store.put(FileType.DATA, name, [joined[:5], joined[5:]])


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, None), (0, 10), (10, 20), (1000, 24), (1023, 1), (0, 0), (500, None),
        (1000, 100),  # runs past the end: the tail
        (1024, None), (1024, 5), (5000, 10), (5000, None),  # starts at or past the end
    ],
)
def test_ranged_get(store: Store, offset: int, length: int | None) -> None:
    store.put(FileType.DATA, NAME, DATA)
    end = None if length is None else offset + length
    assert store.get(FileType.DATA, NAME, offset, length) == DATA[offset:end]
    assert store.get(FileType.DATA, NAME, offset=offset, length=length) == DATA[offset:end]


@pytest.mark.parametrize("ftype", IMMUTABLE)
def test_immutable_kinds(store: Store, ftype: FileType) -> None:
    name = named(ftype, b"first")
    store.put(ftype, name, b"first")
    # Even identical content is refused; the config (the one name not made from the bytes)
    # refuses other bytes too.
    for data in ([b"second", b"first"] if ftype == FileType.CONFIG else [b"first"]):
        with pytest.raises(ObjectExists):
            store.put(ftype, name, data)
    assert store.get(ftype, name) == b"first"
    # Deleting frees the name.
    store.delete(ftype, name)
    again = b"third" if ftype == FileType.CONFIG else b"first"
    store.put(ftype, name, again)
    assert store.get(ftype, name) == again


def test_lock_is_replaceable(store: Store) -> None:
    assert FileType.LOCK in MUTABLE
    store.put(FileType.LOCK, "lock1", b"owner pid 1, t=0")
    store.put(FileType.LOCK, "lock1", b"owner pid 1, t=30 refreshed")
    assert store.get(FileType.LOCK, "lock1") == b"owner pid 1, t=30 refreshed"
    assert list(store.list(FileType.LOCK)) == [("lock1", 27)]


@pytest.mark.parametrize("ftype", list(FileType))
def test_missing_file(store: Store, ftype: FileType) -> None:
    name = named(ftype)
    with pytest.raises(NoSuchObject):
        store.get(ftype, name)
    with pytest.raises(NoSuchObject):
        store.get(ftype, name, 10, 5)
    with pytest.raises(NoSuchObject):
        store.size(ftype, name)
    assert not store.exists(ftype, name)
    store.delete(ftype, name)  # deleting a missing file is not an error
    store.delete(ftype, name)


def test_list_returns_exactly_the_files_of_a_kind(store: Store) -> None:
    contents = [b"1", b"22", b"333", b""]
    for data in contents:
        store.put(FileType.DATA, named(FileType.DATA, data), data)
    index = b"index with the same name as a pack"
    store.put(FileType.INDEX, named(FileType.INDEX, index), index)
    store.put(FileType.SNAPSHOT, named(FileType.SNAPSHOT, b"snap"), b"snap")
    store.put(FileType.SNAPSHOT, named(FileType.SNAPSHOT, b"snap2"), b"snap2")
    store.put(FileType.CONFIG, "config", b"cfg")

    assert sorted(store.list(FileType.DATA)) == sorted((named(FileType.DATA, d), len(d)) for d in contents)
    assert sorted(store.list(FileType.INDEX)) == [(named(FileType.INDEX, index), 34)]
    assert sorted(store.list(FileType.SNAPSHOT)) == sorted([(named(FileType.SNAPSHOT, b"snap"), 4),
                                                            (named(FileType.SNAPSHOT, b"snap2"), 5)])
    assert list(store.list(FileType.CONFIG)) == [("config", 3)]
    for empty in (FileType.KEY, FileType.LOCK, FileType.MARK):
        assert list(store.list(empty)) == []


def test_fresh_store_lists_nothing(store: Store) -> None:
    for ftype in FileType:
        assert list(store.list(ftype)) == []


def test_kinds_are_separate_namespaces(store: Store) -> None:
    same = named(FileType.INDEX, b"same bytes")
    store.put(FileType.INDEX, same, b"same bytes")
    store.put(FileType.SNAPSHOT, same, b"same bytes")
    store.delete(FileType.INDEX, same)
    assert store.get(FileType.SNAPSHOT, same) == b"same bytes"
    assert list(store.list(FileType.INDEX)) == []


def test_delete_during_list(store: Store) -> None:
    # prune deletes while it walks a listing.
    for i in range(10):
        store.put(FileType.DATA, named(FileType.DATA, bytes([i])), bytes([i]))
    for name, _ in store.list(FileType.DATA):
        store.delete(FileType.DATA, name)
    assert list(store.list(FileType.DATA)) == []


# ---- uploads: a file streamed piece by piece, named at the end (open_upload) ----------


@pytest.mark.parametrize("ftype", list(FileType))
def test_upload_stores_the_pieces_under_the_name_given_at_commit(store: Store, ftype: FileType) -> None:
    pieces: list[bytes | bytearray] = [DATA[:100], b"", bytearray(DATA[100:700]), DATA[700:]]
    up = open_upload(store, ftype)
    for p in pieces:
        up.write(p)
    assert list(store.list(ftype)) == []  # nothing is visible before the commit
    up.commit(named(ftype))
    assert store.get(ftype, named(ftype)) == DATA
    assert list(store.list(ftype)) == [(named(ftype), len(DATA))]
    assert store.get(ftype, named(ftype), 90, 20) == DATA[90:110]


def test_upload_of_nothing_is_an_empty_file(store: Store) -> None:
    up = open_upload(store, FileType.INDEX)
    up.commit(named(FileType.INDEX, b""))
    assert store.get(FileType.INDEX, named(FileType.INDEX, b"")) == b""


@pytest.mark.parametrize("ftype", IMMUTABLE)
def test_upload_refuses_a_taken_name_and_leaves_nothing(store: Store, ftype: FileType) -> None:
    store.put(ftype, named(ftype), DATA)
    up = open_upload(store, ftype)
    up.write(DATA)
    with pytest.raises(ObjectExists):
        up.commit(named(ftype))
    up.abort()  # after a failed commit: harmless
    assert store.get(ftype, named(ftype)) == DATA
    assert list(store.list(ftype)) == [(named(ftype), len(DATA))]


def test_upload_aborted_leaves_nothing(store: Store) -> None:
    up = open_upload(store, FileType.DATA)
    up.write(DATA)
    up.abort()
    up.abort()
    assert list(store.list(FileType.DATA)) == []
    assert not store.exists(FileType.DATA, NAME)


def test_uploads_interleaved_stay_apart(store: Store) -> None:
    # A backup fills a data pack and a tree pack at once.
    a, b = open_upload(store, FileType.DATA), open_upload(store, FileType.DATA)
    other = bytes(reversed(DATA))
    for i in range(0, len(DATA), 256):
        a.write(DATA[i:i + 256])
        b.write(other[i:i + 256])
    b.commit(named(FileType.DATA, other))
    a.commit(NAME)
    assert store.get(FileType.DATA, NAME) == DATA
    assert store.get(FileType.DATA, named(FileType.DATA, other)) == other
