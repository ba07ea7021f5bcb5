"""Backup and restore through the engine on real files: fidelity, incrementals, dedup."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from peerbackup.core.objects import Kind
from peerbackup.engine import fsmeta
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.excludes import Excluder
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.walk import walk
from peerbackup.errors import TargetNotEmpty
from peerbackup.storage.filecache import FileCache
from peerbackup.storage.store import FileType
from tests.helpers import OLD, make_tree, snapshot_of


def restored_root(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_restore_reproduces_contents_and_metadata(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    result = Archiver(small_repo).backup([str(src)])
    assert result.errors == []
    stats = Restorer(small_repo).restore(result.snapshot.tree, str(tmp_path / "out"))
    assert stats.errors == []
    out = restored_root(tmp_path / "out", src)
    assert snapshot_of(out) == snapshot_of(src)
    # The hard link is a link again, not a second copy.
    assert os.stat(out / "hardlink").st_ino == os.stat(out / "dir1" / "file1.dat").st_ino
    assert check(small_repo, read_data=True).ok


def test_second_backup_skips_unchanged_files_and_stores_nothing(
    small_repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    first = Archiver(small_repo).backup([str(src)]).snapshot
    packs = {n for n, _ in small_repo.store.list(FileType.DATA)}
    second = Archiver(small_repo).backup([str(src)]).snapshot
    assert second.summary.files_new == 0 and second.summary.files_changed == 0
    assert second.summary.bytes_read == 0
    assert second.summary.bytes_stored == 0
    assert second.tree == first.tree  # identical content gives identical tree ids
    assert second.parent == first.id
    assert {n for n, _ in small_repo.store.list(FileType.DATA)} == packs


def test_incremental_backup_after_edits(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    first = Archiver(small_repo).backup([str(src)]).snapshot
    edited = src / "dir1" / "file1.dat"
    data = bytearray(edited.read_bytes())
    data[len(data) // 2: len(data) // 2 + 10] = b"X" * 10
    edited.write_bytes(bytes(data))
    os.utime(edited, (1_700_000_000, 1_700_000_000))
    (src / "dir3" / "new.txt").write_bytes(b"new file")
    (src / "dir0" / "copy.dat").unlink()
    second = Archiver(small_repo).backup([str(src)]).snapshot
    s = second.summary
    assert s.files_changed == 2  # the edit, and its hard link seen again under another name
    assert s.files_new == 1
    # Content-defined chunks: an edit in the middle stores a few chunks, not the file.
    assert 0 < s.bytes_added < len(data) / 2
    for snap, expect_new in ((first, False), (second, True)):
        out = tmp_path / f"out-{snap.short_id}"
        Restorer(small_repo).restore(snap.tree, str(out))
        root = restored_root(out, src)
        assert (root / "dir3" / "new.txt").exists() == expect_new
        assert (root / "dir0" / "copy.dat").exists() != expect_new
    assert (restored_root(tmp_path / f"out-{second.short_id}", src) / "dir1" / "file1.dat"
            ).read_bytes() == bytes(data)


def test_dedup_across_snapshots_and_sources(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    first = Archiver(small_repo).backup([str(src)]).snapshot
    clone = tmp_path / "clone"
    subprocess.run(["cp", "-a", str(src), str(clone)], check=True)
    second = Archiver(small_repo).backup([str(clone)]).snapshot
    assert second.summary.files_new > 20
    assert second.summary.data_blobs_added == 0  # every chunk was already stored
    assert first.summary.bytes_stored > 0


def test_file_cache_is_verified_against_the_index(small_repo: Repository, tmp_path: Path) -> None:
    # If the cache names chunks the repository lost, the file is read again, not trusted.
    src = tmp_path / "src"
    make_tree(src, files=6)
    Archiver(small_repo).backup([str(src)])
    small_repo.index.clear()
    for name, _ in list(small_repo.store.list(FileType.DATA)):
        small_repo.store.delete(FileType.DATA, name)
    for name, _ in list(small_repo.store.list(FileType.INDEX)):
        small_repo.store.delete(FileType.INDEX, name)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    # Only the empty file (it names no chunk) and, when its twin was stored first in
    # this same run, copy.dat may be taken from the cache; everything else is read.
    assert snap.summary.files_unmodified <= 2
    assert snap.summary.files_changed >= 9
    out = tmp_path / "out"
    assert Restorer(small_repo).restore(snap.tree, str(out)).errors == []
    assert snapshot_of(restored_root(out, src)) == snapshot_of(src)


def test_excludes(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=8)
    snap = Archiver(small_repo, excludes=Excluder(["*.sh", "dir1", f"{src}/dir2/sub"])).backup(
        [str(src)]).snapshot
    paths = {p for p, _ in walk(small_repo, snap.tree)}
    base = str(src)
    assert f"{base}/script.sh" not in paths
    assert f"{base}/dir1" not in paths
    assert f"{base}/dir2" in paths and f"{base}/dir2/sub" not in paths
    assert f"{base}/dir0/sub/file0.dat" in paths


def test_restore_include_only_selected_paths(small_repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, files=8)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    out = tmp_path / "out"
    Restorer(small_repo).restore(snap.tree, str(out), includes=[f"{src}/dir0"])
    root = restored_root(out, src)
    assert (root / "dir0" / "sub" / "file0.dat").read_bytes() == (src / "dir0" / "sub" / "file0.dat").read_bytes()
    assert not (root / "dir1").exists()
    assert not (root / "empty").exists()


def test_restore_refuses_non_empty_target_unless_overwrite(
    small_repo: Repository, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_tree(src, files=4)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("keep me")
    with pytest.raises(TargetNotEmpty):
        Restorer(small_repo).restore(snap.tree, str(out))
    assert (out / "precious").read_text() == "keep me"
    stats = Restorer(small_repo, overwrite=True).restore(snap.tree, str(out))
    assert stats.errors == []
    assert snapshot_of(restored_root(out, src)) == snapshot_of(src)


def test_restore_of_more_files_than_descriptors(small_repo: Repository, tmp_path: Path) -> None:
    # A restore must not hold every output file open at once.
    import resource

    src = tmp_path / "src"
    src.mkdir()
    for i in range(400):
        (src / f"f{i:03d}.txt").write_bytes(b"x" * i)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Room for what the test process holds already (other tests' repositories) plus 100: a restore
    # that held its 400 output files open would run out.
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 100, hard))
    try:
        stats = Restorer(small_repo).restore(snap.tree, str(tmp_path / "out"))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert stats.errors == []
    assert stats.files == 400
    out = restored_root(tmp_path / "out", src)
    assert all((out / f"f{i:03d}.txt").read_bytes() == b"x" * i for i in range(400))


def test_no_change_backup_queries_the_caches_per_directory_not_per_file(
    small_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(40):
            (src / f"d{d}" / f"f{i}").write_bytes(b"%d-%d " % (d, i) * (i + 1))
            os.utime(src / f"d{d}" / f"f{i}", (1_600_000_000, 1_600_000_000))
    Archiver(small_repo).backup([str(src)])
    queries: list[str] = []
    opened = small_repo.file_cache

    def traced() -> FileCache:
        fc = opened()
        fc._db.set_trace_callback(queries.append)
        return fc

    monkeypatch.setattr(small_repo, "file_cache", traced)
    small_repo.index._reader.set_trace_callback(queries.append)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    assert snap.summary.files_unmodified == 120 and snap.summary.bytes_read == 0
    lookups = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    # One per directory (src's ancestors included: its cache entries; its files' chunks were
    # verified in this index epoch and its tree is asked about with the others), and a few to
    # open the caches. One per file would be 240; one per directory and tree twice as many.
    dirs = len(src.parts) + 3
    assert len(lookups) <= dirs + 4, lookups


def test_no_change_backup_takes_xattrs_from_the_file_cache(
    small_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"f{i}").write_bytes(b"x" * i)
    os.setxattr(src / "f3", "user.tag", b"blue")
    for i in range(10):
        os.utime(src / f"f{i}", (1_600_000_000, 1_600_000_000))
    Archiver(small_repo).backup([str(src)])
    listed: list[str] = []
    real = os.listxattr

    def counting(path: str, *, follow_symlinks: bool = True) -> list[str]:
        listed.append(os.path.basename(path))
        return real(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(os, "listxattr", counting)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    assert snap.summary.files_unmodified == 10
    assert not any(n.startswith("f") for n in listed)  # only the directories were asked
    xattrs = {p.rsplit("/", 1)[1]: n.xattrs for p, n in walk(small_repo, snap.tree) if "/f" in p}
    assert xattrs["f3"] == {"user.tag": b"blue"} and xattrs["f4"] == {}
    # Changing an attribute changes the file's ctime: the next backup reads it again.
    os.setxattr(src / "f3", "user.tag", b"green")
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    assert listed.count("f3") == 1 and snap.summary.files_unmodified == 9
    xattrs = {p.rsplit("/", 1)[1]: n.xattrs for p, n in walk(small_repo, snap.tree) if "/f" in p}
    assert xattrs["f3"] == {"user.tag": b"green"}


def test_small_chunks_are_hashed_by_the_workers_not_the_scanning_thread(
    small_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a tree of small files the scanning thread is the bottleneck and the workers wait.
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(b"%d" % (i % 30) * 1000)  # ten contents twice: dedup still works
    hashed_by: list[str] = []
    real = small_repo.blob_id

    def blob_id(data: bytes | bytearray | memoryview) -> bytes:
        hashed_by.append(threading.current_thread().name)
        return real(data)

    monkeypatch.setattr(small_repo, "blob_id", blob_id)
    snap = Archiver(small_repo).backup([str(src)]).snapshot
    assert hashed_by.count(threading.main_thread().name) <= len(src.parts) + 1  # the trees only
    assert sum(n.startswith("chunk") for n in hashed_by) == 40
    assert snap.summary.data_blobs_added == 30
    out = tmp_path / "out"
    Restorer(small_repo).restore(snap.tree, str(out))
    assert snapshot_of(restored_root(out, src)) == snapshot_of(src)


def test_small_files_are_opened_and_read_by_the_workers_large_ones_by_the_scanning_thread(
    small_repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One thread reading every small file was the bottleneck of a first backup of many small files.
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    small = {f"s{i}": os.urandom(i * 97) for i in range(30)}  # up to one chunk (min_size 4096), empty too
    for name, data in small.items():
        (src / "d" / name).write_bytes(data)
    (src / "large").write_bytes(os.urandom(200_000))
    for f in [src / "large", *(src / "d").iterdir()]:
        os.utime(f, ns=(OLD * 10**9, OLD * 10**9))  # not racy: the file cache may trust them
    opened_by: dict[str, str] = {}
    real = fsmeta.open_for_read

    def open_for_read(path: str) -> int:
        opened_by[os.path.basename(path)] = threading.current_thread().name
        return real(path)

    monkeypatch.setattr("peerbackup.engine.backup.open_for_read", open_for_read)
    result = Archiver(small_repo).backup([str(src)])
    assert result.errors == []
    assert {n for n, t in opened_by.items() if t.startswith("chunk")} == set(small)
    assert opened_by["large"] == threading.main_thread().name
    assert result.snapshot.summary.bytes_read == sum(map(len, small.values())) + 200_000
    out = tmp_path / "out"
    Restorer(small_repo).restore(result.snapshot.tree, str(out))
    assert snapshot_of(restored_root(out, src)) == snapshot_of(src)
    # and the file cache learnt them: nothing is read again
    opened_by.clear()
    again = Archiver(small_repo).backup([str(src)]).snapshot
    assert opened_by == {} and again.summary.files_unmodified == len(small) + 1


def test_file_cache_is_verified_again_after_the_index_lost_blobs_behind_its_back(
    small_repo: Repository, tmp_path: Path
) -> None:
    # Adversarial: the packs and index files of a backup go away (another machine's prune, a
    # restore of the repository from an older copy) and the local index cache is deleted too, so
    # it is rebuilt from what remains. The file cache's entries were stamped in the old epoch:
    # the files are read again, not trusted.
    src = tmp_path / "src"
    make_tree(src, files=6)
    Archiver(small_repo).backup([str(src)])
    old_epoch = small_repo.index.epoch
    for kind in (FileType.DATA, FileType.INDEX, FileType.SNAPSHOT):
        for name, _ in list(small_repo.store.list(kind)):
            small_repo.store.delete(kind, name)
    cache_root = Path(small_repo.cache_dir).parent
    small_repo.close()
    for f in Path(small_repo.cache_dir).glob("index.sqlite*"):
        f.unlink()
    repo = Repository.open(small_repo.store, b"pw", cache_root=cache_root, pack_size=64 * 1024)
    try:
        assert repo.index.epoch != old_epoch
        snap = Archiver(repo).backup([str(src)]).snapshot
        assert snap.summary.files_unmodified <= 2  # the empty file, and maybe copy.dat (see above)
        out = tmp_path / "out"
        assert Restorer(repo).restore(snap.tree, str(out)).errors == []
        assert snapshot_of(restored_root(out, src)) == snapshot_of(src)
        assert check(repo, read_data=True).ok
    finally:
        repo.close()


def test_file_cache_trusts_nothing_while_a_prune_has_condemned_packs(small_repo: Repository) -> None:
    small_repo.index.condemned = {b"\x01" * 32}
    fc = small_repo.file_cache()
    try:
        assert fc.epoch == ""
    finally:
        fc.close()
    small_repo.index.condemned = set()
    fc = small_repo.file_cache()
    try:
        assert fc.epoch == small_repo.index.epoch != ""
    finally:
        fc.close()


def test_a_backup_that_changed_nothing_never_builds_the_index_filter(small_repo: Repository, tmp_path: Path) -> None:
    # Reading every blob id to build the Bloom filter was ~0.1 s of a 1.5 s no-change backup of
    # 50,000 files, which never asks it: its chunks are verified by the file cache, its trees in SQL.
    src = tmp_path / "src"
    make_tree(src)
    for f in src.rglob("*"):
        os.utime(f, ns=(OLD * 10**9, OLD * 10**9), follow_symlinks=False)
    Archiver(small_repo).backup([str(src)])
    small_repo.close()
    repo = Repository.open(small_repo.store, b"pw", cache_root=tmp_path / "cache", pack_size=64 * 1024)
    try:
        snap = Archiver(repo).backup([str(src)]).snapshot
        assert snap.summary.data_blobs_added == 0 and snap.summary.files_unmodified > 0
        assert repo.index._bloom is None
        # The first lookup builds it, from every blob the index holds: dedup is unchanged.
        data = (src / "dir1" / "file1.dat").read_bytes()[:1000]
        assert repo.add_blob(Kind.DATA, data)[1] > 0 and repo.add_blob(Kind.DATA, data)[1] == 0
        assert repo.index._bloom is not None
        assert all(repo.index.lookup(i) is not None for i, _, _ in repo.index.all_blobs())
    finally:
        repo.close()
