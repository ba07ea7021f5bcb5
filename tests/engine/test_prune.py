"""forget and prune: space is freed, and a backup running meanwhile never loses data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.locks import RepoLock
from peerbackup.engine.marks import read_marks
from peerbackup.engine.prune import forget_snapshots, prune
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.storage.store import FileType
from tests.engine.conftest import PW


@pytest.fixture
def repo(small_repo: Repository) -> Repository:
    return small_repo


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.utime(path, (1_600_000_000, 1_600_000_000))


def _restore_equals(repo: Repository, tree: bytes, out: Path, src: Path, names: dict[str, bytes]) -> None:
    stats = Restorer(repo).restore(tree, str(out))
    assert stats.errors == []
    root = out / str(src).lstrip("/")
    for name, data in names.items():
        assert (root / name).read_bytes() == data


def test_prune_deletes_only_unused_packs(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    keep, drop = os.urandom(400_000), os.urandom(400_000)
    _write(src / "keep.bin", keep)
    _write(src / "drop.bin", drop)
    old = Archiver(repo).backup([str(src)]).snapshot
    (src / "drop.bin").unlink()
    new = Archiver(repo).backup([str(src)]).snapshot
    size_before = sum(s for _, s in repo.store.list(FileType.DATA))
    forget_snapshots(repo, [old.id])
    stats = prune(repo)
    assert not stats.deferred
    assert stats.packs_deleted > 0
    size_after = sum(s for _, s in repo.store.list(FileType.DATA))
    assert size_before - size_after >= 350_000  # drop.bin's data is gone
    assert read_marks(repo.store) == []
    assert check(repo, read_data=True).ok
    _restore_equals(repo, new.tree, tmp_path / "out", src, {"keep.bin": keep})


def test_prune_repacks_partly_used_packs(repo: Repository, tmp_path: Path) -> None:
    # Big packs so that both files share packs: the used half must be copied out.
    repo.pack_size = 16 * 1024 * 1024
    src = tmp_path / "src"
    src.mkdir()
    keep, drop = os.urandom(300_000), os.urandom(300_000)
    _write(src / "keep.bin", keep)
    _write(src / "drop.bin", drop)
    old = Archiver(repo).backup([str(src)]).snapshot
    (src / "drop.bin").unlink()
    new = Archiver(repo).backup([str(src)]).snapshot
    forget_snapshots(repo, [old.id])
    stats = prune(repo)
    assert stats.packs_repacked >= 1
    assert check(repo, read_data=True).ok
    _restore_equals(repo, new.tree, tmp_path / "out", src, {"keep.bin": keep})


def test_backup_running_during_prune_loses_nothing(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shared = os.urandom(300_000)
    _write(src / "shared.bin", shared)
    old = Archiver(repo).backup([str(src)]).snapshot
    forget_snapshots(repo, [old.id])
    # A backup that started before the prune (it holds a lock record) may still
    # be about to reference shared.bin's chunks, which prune is condemning.
    with RepoLock(repo.store, "backup"):
        stats = prune(repo)
        assert stats.deferred and stats.packs_marked > 0 and stats.packs_deleted == 0
        assert read_marks(repo.store)
        # A backup opened after the mark must store the condemned data again.
        other = Repository.open(repo.store, PW, cache_root=tmp_path / "cache2", pack_size=64 * 1024)
        snap = Archiver(other).backup([str(src)]).snapshot
        assert snap.summary.bytes_added >= len(shared)
        other.close()
    # The running backup ended: the next prune sweeps, keeping what the new snapshot needs.
    stats = prune(repo)
    assert not stats.deferred and stats.packs_deleted > 0
    assert read_marks(repo.store) == []
    assert check(repo, read_data=True).ok
    _restore_equals(repo, snap.tree, tmp_path / "out", src, {"shared.bin": shared})


def test_sweep_keeps_marked_packs_a_finished_backup_needs(repo: Repository, tmp_path: Path) -> None:
    # A backup that loaded the index before the mark, and finished after it,
    # references condemned blobs: the sweep must notice and keep those packs.
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(300_000)
    _write(src / "f.bin", data)
    old = Archiver(repo).backup([str(src)]).snapshot
    forget_snapshots(repo, [old.id])
    with RepoLock(repo.store, "backup"):
        prune(repo)  # marks everything, sweep deferred
    # Simulate the late snapshot: same tree as before, saved after the mark.
    late = repo.new_snapshot(old.paths, old.tree, [], 1_700_000_000.0)
    repo.save_snapshot(late)
    stats = prune(repo)
    assert stats.packs_kept > 0
    assert check(repo, read_data=True).ok
    _restore_equals(repo, late.tree, tmp_path / "out", src, {"f.bin": data})


def test_a_killed_writers_pack_a_prune_deleted_is_never_written_into_an_index(repo: Repository, tmp_path: Path) -> None:
    # Seen in a soak: an agent killed between storing a pack and writing its index file keeps the pack in its
    # cache as unindexed; another agent's prune deletes the pack; the first agent's next backup or prune wrote
    # it into a new index file: "listed in the index but missing". Invariant: an index file lists only packs
    # the store has.
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a", os.urandom(5000))
    Archiver(repo).backup([str(src)])
    gone = os.urandom(32)
    blob = os.urandom(32)
    repo.index.add_packs([(gone, [BlobEntry(Kind.DATA, blob, 0, 100, 80)])], None)  # the dead writer's cache
    epoch = repo.index.epoch
    repo.recover_unindexed_packs()
    assert gone not in repo.index.pack_ids() and repo.index.lookup(blob) is None
    assert repo.index.epoch != epoch  # blobs left the index: file-cache stamps no longer vouch for them
    assert check(repo, read_data=True).ok
    repo.index.add_packs([(gone, [BlobEntry(Kind.DATA, blob, 0, 100, 80)])], None)
    prune(repo)  # prune starts by the same recovery
    assert check(repo, read_data=True).ok
