"""The Store contract, held against every backend; then LocalStore's own promises.

The engine only relies on what the Store protocol documents, so every backend
(MemoryStore, LocalStore and the peer store over three real daemons, see conftest.py) must pass the same
suite: add a backend to the `store` fixture's params and it is covered.
"""

from __future__ import annotations

import builtins
import errno
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.crypto import content_hash
from peerbackup.errors import NoSuchObject, ObjectExists, StoreError, StoreFull
from peerbackup.storage import local as local_module
from peerbackup.storage.local import TMP_PREFIX, LocalStore
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import MUTABLE, FileType, Store, open_upload

IMMUTABLE = [t for t in FileType if t not in MUTABLE]
DATA = bytes(range(256)) * 4
NAME = content_hash(DATA).hex()


def named(ftype: FileType, data: bytes = DATA) -> str:
    """The name a writer gives a file: "config" for the one config file, the BLAKE3 hash of
    the bytes for every other immutable kind (the peer store checks it), anything for a lock."""
    if ftype == FileType.CONFIG:
        return "config"
    return "lock-1" if ftype == FileType.LOCK else content_hash(data).hex()


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


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


# ---- conformance: every backend -------------------------------------------------------


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


# ---- LocalStore only ------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "repo")


@pytest.mark.parametrize("name", ["a/b", "/abs", "../escape", "..", ".", "", ".tmp-1234"])
def test_local_rejects_bad_names(local: LocalStore, name: str) -> None:
    # '/' would escape the kind's directory; a leading '.' is reserved for temp files.
    with pytest.raises(StoreError):
        local.put(FileType.INDEX, name, b"x")
    with pytest.raises(StoreError):
        local.get(FileType.INDEX, name)
    with pytest.raises(StoreError):
        local.exists(FileType.INDEX, name)
    with pytest.raises(StoreError):
        local.delete(FileType.INDEX, name)
    assert not (local.root.parent / "escape").exists()


def test_local_rejects_nul_in_name(local: LocalStore) -> None:
    # Regression: a NUL used to pass the name check, so put() failed in os.replace with a
    # bare ValueError and left its temp file behind.
    for call in (
        lambda: local.put(FileType.INDEX, "a\0b", b"x"),
        lambda: local.get(FileType.INDEX, "a\0b"),
        lambda: local.exists(FileType.INDEX, "a\0b"),
    ):
        with pytest.raises(StoreError):
            call()
    assert temp_files(local.root) == []


def test_local_layout(local: LocalStore) -> None:
    local.put(FileType.DATA, "ab12cd", b"pack")
    local.put(FileType.CONFIG, "config", b"cfg")
    local.put(FileType.KEY, "k1", b"key")
    local.put(FileType.INDEX, "i1", b"idx")
    local.put(FileType.SNAPSHOT, "s1", b"snap")
    local.put(FileType.LOCK, "l1", b"lock")
    local.put(FileType.MARK, "m1", b"mark")
    root = local.root
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == [
        "config", "data/ab/ab12cd", "index/i1", "keys/k1", "locks/l1", "marks/m1", "snapshots/s1",
    ]
    assert (root / "data" / "ab" / "ab12cd").read_bytes() == b"pack"
    assert (root / "config").read_bytes() == b"cfg"


def test_local_no_temp_files_after_put(local: LocalStore) -> None:
    for i in range(20):
        local.put(FileType.DATA, f"{i:04x}", bytes(i))
    local.put(FileType.LOCK, "l", b"1")
    local.put(FileType.LOCK, "l", b"2")
    assert temp_files(local.root) == []


def test_local_list_ignores_temp_files_and_strays(local: LocalStore) -> None:
    local.put(FileType.DATA, "ab01", b"x")
    local.put(FileType.INDEX, "i1", b"y")
    (local.root / "data" / "ab" / f"{TMP_PREFIX}dead").write_bytes(b"partial")
    (local.root / "index" / f"{TMP_PREFIX}dead").write_bytes(b"partial")
    (local.root / "index" / "subdir").mkdir()
    (local.root / "data" / "stray-file").write_bytes(b"not in a fan-out dir")
    assert list(local.list(FileType.DATA)) == [("ab01", 1)]
    assert list(local.list(FileType.INDEX)) == [("i1", 1)]


def test_local_without_fsync(tmp_path: Path) -> None:
    s = LocalStore(tmp_path / "repo", fsync=False)
    s.put(FileType.SNAPSHOT, "s", b"data")
    assert s.get(FileType.SNAPSHOT, "s") == b"data"


def test_local_reopen_sees_files(tmp_path: Path) -> None:
    LocalStore(tmp_path / "repo").put(FileType.KEY, "k", b"key")
    again = LocalStore(tmp_path / "repo")
    assert again.get(FileType.KEY, "k") == b"key"
    assert again.location == str(tmp_path / "repo")


# Disk-full: the write or the fsync fails. Nothing may be left behind, neither the temp
# file nor a partial object, and the name must stay free for a later retry.

def _raise_oserror(code: int) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> Any:
        raise OSError(code, os.strerror(code))
    return fail


class _FailingWriter:
    """A file whose write() stores half the data, then reports the disk full."""

    def __init__(self, f: Any, code: int) -> None:
        self._f, self._code = f, code

    def __enter__(self) -> _FailingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()

    def write(self, data: bytes) -> int:
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(self._code, os.strerror(self._code))

    def writelines(self, pieces: list[bytes]) -> None:
        # The first piece makes it to disk, then the disk is full.
        self._f.write(pieces[0])
        self._f.flush()
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)


def _failing_open(code: int) -> Callable[..., Any]:
    def fake_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        # The caller (LocalStore.put) uses the result as a context manager.
        f = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115
        return _FailingWriter(f, code) if "w" in mode else f
    return fake_open


def _assert_nothing_left(local: LocalStore, ftype: FileType, name: str) -> None:
    assert temp_files(local.root) == []
    assert not local.exists(ftype, name)
    assert list(local.list(ftype)) == []
    # The name is still free: a retry after freeing space succeeds.
    local.put(ftype, name, DATA)
    assert local.get(ftype, name) == DATA


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_local_full_on_fsync(local: LocalStore, monkeypatch: pytest.MonkeyPatch,
                             code: int) -> None:
    local.put(FileType.INDEX, "before", b"x")  # directories exist already
    monkeypatch.setattr(os, "fsync", _raise_oserror(code))
    with pytest.raises(StoreFull) as info:
        local.put(FileType.DATA, NAME, DATA)
    assert "data/" + NAME in str(info.value)
    monkeypatch.undo()
    _assert_nothing_left(local, FileType.DATA, NAME)


@pytest.mark.parametrize("pieces", [False, True], ids=["bytes", "pieces"])
@pytest.mark.parametrize("fsync", [True, False])
def test_local_full_on_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             fsync: bool, pieces: bool) -> None:
    local = LocalStore(tmp_path / "repo", fsync=fsync)
    # LocalStore calls the built-in open: shadow it in the module's globals only.
    monkeypatch.setattr(local_module, "open", _failing_open(errno.ENOSPC), raising=False)
    with pytest.raises(StoreFull):
        local.put(FileType.SNAPSHOT, "snap", [DATA[:100], DATA[100:]] if pieces else DATA)
    assert isinstance(StoreFull("x"), StoreError)  # callers catching StoreError see it too
    monkeypatch.undo()
    _assert_nothing_left(local, FileType.SNAPSHOT, "snap")


def test_local_other_write_error_is_store_error(local: LocalStore,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "open", _failing_open(errno.EIO), raising=False)
    with pytest.raises(StoreError) as info:
        local.put(FileType.KEY, "k", DATA)
    assert not isinstance(info.value, StoreFull)
    monkeypatch.undo()
    _assert_nothing_left(local, FileType.KEY, "k")


def test_local_full_on_replace_of_lock(local: LocalStore,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A failed refresh of a mutable file keeps the old content whole.
    local.put(FileType.LOCK, "l", b"old lock")
    monkeypatch.setattr(os, "fsync", _raise_oserror(errno.ENOSPC))
    with pytest.raises(StoreFull):
        local.put(FileType.LOCK, "l", b"new lock")
    monkeypatch.undo()
    assert local.get(FileType.LOCK, "l") == b"old lock"
    assert temp_files(local.root) == []


def test_local_ranged_get_survives_short_reads(local: LocalStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # pread may return fewer bytes than asked (network mounts); get() must keep reading.
    big = random.Random(5).randbytes(100_000)
    local.put(FileType.DATA, NAME, big)
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: real_pread(fd, min(n, 777), off))
    assert local.get(FileType.DATA, NAME) == big
    assert local.get(FileType.DATA, NAME, 1234, 50_000) == big[1234:51234]
    assert local.get(FileType.DATA, NAME, 99_990, 100) == big[99_990:]


def test_local_read_error_is_store_error(local: LocalStore) -> None:
    # A directory where a file should be: reading fails, but not as "missing".
    (local.root / "index" / "i1").mkdir(parents=True)
    with pytest.raises(StoreError) as info:
        local.get(FileType.INDEX, "i1")
    assert not isinstance(info.value, NoSuchObject)


def test_local_upload_streams_to_a_temp_file(local: LocalStore) -> None:
    # The point of an upload: the bytes are on disk as they come, not held until the commit.
    up = open_upload(local, FileType.DATA)
    up.write(DATA)
    (tmp,) = temp_files(local.root)
    assert tmp.read_bytes() == DATA
    up.write(DATA)
    assert tmp.stat().st_size == 2 * len(DATA)
    up.commit(named(FileType.DATA, DATA * 2))
    assert temp_files(local.root) == []
    assert local.get(FileType.DATA, named(FileType.DATA, DATA * 2)) == DATA * 2


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
@pytest.mark.parametrize("at", ["write", "fsync"])
def test_local_upload_full_leaves_nothing(local: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                          code: int, at: str) -> None:
    up = open_upload(local, FileType.DATA)
    up.write(DATA[:10])
    monkeypatch.setattr(os, at, _raise_oserror(code))
    with pytest.raises(StoreFull):
        if at == "write":
            up.write(DATA[10:])
        else:
            up.commit(NAME)
    monkeypatch.undo()
    # The upload is over: a later piece would land at offset 0 of a new file.
    with pytest.raises(StoreError):
        up.write(DATA[10:])
    with pytest.raises(StoreError):
        up.commit(NAME)
    up.abort()
    _assert_nothing_left(local, FileType.DATA, NAME)


def test_local_upload_other_error_is_store_error(local: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    up = open_upload(local, FileType.DATA)
    monkeypatch.setattr(os, "write", _raise_oserror(errno.EIO))
    with pytest.raises(StoreError) as info:
        up.write(DATA)
    assert not isinstance(info.value, StoreFull)
    monkeypatch.undo()
    _assert_nothing_left(local, FileType.DATA, NAME)
