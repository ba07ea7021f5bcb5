"""LocalStore's own promises beyond the Store contract (test_store_conformance.py): the names it refuses,
its layout on disk, no temporary file left behind, and a full disk or another I/O error said as
StoreFull or StoreError, whatever step of a write or an upload it strikes.
"""

from __future__ import annotations

import builtins
import errno
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from peerbackup.errors import NoSuchObject, StoreError, StoreFull
from peerbackup.storage import local as local_module
from peerbackup.storage.local import TMP_PREFIX, LocalStore
from peerbackup.storage.store import FileType, open_upload
from tests.storage._stores import DATA, NAME, named


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


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
