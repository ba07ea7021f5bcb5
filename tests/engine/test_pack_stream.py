"""Packs are streamed to the store as they fill (Store uploads), not held whole in memory."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

from peerbackup.core.crypto import KdfParams
from peerbackup.core.objects import Kind
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.packstream import STREAM_WRITE
from peerbackup.engine.repository import Repository
from peerbackup.errors import StoreFull
from peerbackup.storage.local import TMP_PREFIX, LocalStore
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import FileType
from tests.helpers import SMALL_CHUNKS

PW = b"pw"


def _open(store: LocalStore | MemoryStore, tmp_path: Path, pack_size: int = 1 << 20) -> Repository:
    Repository.init(store, PW, kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
    return Repository.open(store, PW, cache_root=tmp_path / "cache", pack_size=pack_size, level=0)


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


def test_a_filling_pack_is_on_disk_not_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "repo", fsync=False)
    repo = _open(store, tmp_path, pack_size=8 * STREAM_WRITE)
    writes: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    rng = random.Random(3)
    blobs = [rng.randbytes(20_000) for _ in range(200)]
    sealed = sum(repo.add_blob(Kind.DATA, b)[1] for b in blobs)
    (tmp,) = _temp_files(store.root)
    # Every sealed blob is written as it comes, gathered into writes of about STREAM_WRITE bytes:
    # less than one such write of the filling pack is in memory.
    assert sealed - STREAM_WRITE < tmp.stat().st_size <= sealed
    assert len(writes) <= sealed // STREAM_WRITE and min(writes) >= STREAM_WRITE
    assert list(store.list(FileType.DATA)) == []  # and nothing is a pack before it is finished
    repo.flush()
    assert _temp_files(store.root) == []
    assert [repo.load_blob(Kind.DATA, repo.blob_id(b)) for b in blobs] == blobs
    repo.close()


def test_full_packs_are_named_by_their_hash_and_read_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo", fsync=False)
    repo = _open(store, tmp_path, pack_size=64 * 1024)
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(4)
    for i in range(30):
        (src / f"f{i}").write_bytes(rng.randbytes(rng.randint(0, 40_000)))
    Archiver(repo).backup([str(src)])
    assert len(list(store.list(FileType.DATA))) > 5
    assert check(repo, read_data=True).ok  # names are the packs' hashes, headers list the blobs
    assert _temp_files(store.root) == []
    repo.close()


def test_a_store_without_uploads_gets_whole_packs(tmp_path: Path) -> None:
    store = MemoryStore()
    repo = _open(store, tmp_path, pack_size=64 * 1024)
    blobs = [bytes([i]) * 30_000 for i in range(1, 9)]
    for b in blobs:
        repo.add_blob(Kind.DATA, b)
    repo.flush()
    assert len(list(store.list(FileType.DATA))) >= 2
    assert [repo.load_blob(Kind.DATA, repo.blob_id(b)) for b in blobs] == blobs
    assert check(repo, read_data=True).ok
    repo.close()


def test_a_full_disk_mid_pack_fails_the_backup_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "repo", fsync=False)
    repo = _open(store, tmp_path, pack_size=8 * STREAM_WRITE)
    repo.add_blob(Kind.DATA, os.urandom(STREAM_WRITE))  # one write of the pack
    real_write = os.write
    calls = {"n": 0}

    def full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreFull):
        repo.add_blob(Kind.DATA, os.urandom(STREAM_WRITE))
    # The pack lost a piece: nothing more may be written after the gap, nor the pack stored.
    with pytest.raises(StoreFull):
        repo.add_blob(Kind.DATA, b"third blob" * 100)
    with pytest.raises(StoreFull):
        repo.flush()
    monkeypatch.undo()
    repo.close()
    assert _temp_files(store.root) == []
    assert list(store.list(FileType.DATA)) == []


def test_close_after_a_failed_backup_removes_the_unfinished_pack(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "repo", fsync=False)
    repo = _open(store, tmp_path, pack_size=8 * STREAM_WRITE)
    repo.add_blob(Kind.DATA, os.urandom(STREAM_WRITE))
    assert len(_temp_files(store.root)) == 1
    repo.close()  # no flush: the backup stopped
    assert _temp_files(store.root) == []
    assert list(store.list(FileType.DATA)) == []
