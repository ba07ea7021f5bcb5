"""The file cache (storage/filecache.py): hits and misses, updates, generations, expiry, damage, and its
file apart from the blob index's.

Disposable like the blob index (test_cache_index.py): a damaged file never stops a backup, and the
cache only skips a file whose identity and times are unchanged.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from peerbackup.storage.filecache import FILE_CACHE_TTL, FileCache
from peerbackup.storage.indexcache import IndexCache
from tests.storage._cache import (
    CONTENT,
    PACK_A,
    _cached,
    _run,
    _scribble_past_first_page,
    bid,
    commit_one,
    entries,
    filled,
    stat,
)


def test_file_cache_miss_then_hit(files_path: Path) -> None:
    fc = FileCache(files_path)
    assert fc.lookup(b"/home/a.txt", stat()) is None
    fc.update(b"/home/a.txt", stat(), CONTENT)
    # Nothing is visible before commit(): a backup that fails teaches the cache nothing.
    assert fc.lookup(b"/home/a.txt", stat()) is None
    fc.commit()
    assert fc.lookup(b"/home/a.txt", stat()) == CONTENT
    assert fc.lookup(b"/home/other.txt", stat()) is None
    fc.close()


@pytest.mark.parametrize(
    "changed",
    [
        stat(ino=101),  # replaced by another file (e.g. saved via rename)
        stat(size=1001),
        stat(mtime_ns=1_600_000_000_000_000_001),  # one nanosecond is enough
        stat(ctime_ns=1_600_000_000_000_000_001),  # chmod, or mtime reset by a copier
    ],
    ids=["inode", "size", "mtime", "ctime"],
)
def test_file_cache_misses_on_any_change(files_path: Path, changed: os.stat_result) -> None:
    commit_one(files_path)
    fc = FileCache(files_path)
    try:
        assert fc.lookup(b"/home/a.txt", stat()) == CONTENT
        assert fc.lookup(b"/home/a.txt", changed) is None
    finally:
        fc.close()


def test_file_cache_ignores_atime_mode_and_owner(files_path: Path) -> None:
    commit_one(files_path)
    st = stat()
    other = os.stat_result(
        (0o100600, st.st_ino, 9, 2, 1000, 1000, st.st_size, 12345, st.st_mtime, st.st_ctime),
        {"st_mtime_ns": st.st_mtime_ns, "st_ctime_ns": st.st_ctime_ns},
    )
    fc = FileCache(files_path)
    try:
        assert fc.lookup(b"/home/a.txt", other) == CONTENT
    finally:
        fc.close()


def test_file_cache_empty_file_hits_with_no_chunks(files_path: Path) -> None:
    commit_one(files_path, st=stat(size=0), content=[])
    fc = FileCache(files_path)
    try:
        assert fc.lookup(b"/home/a.txt", stat(size=0)) == []  # a hit, not None
    finally:
        fc.close()


def test_file_cache_non_utf8_paths(files_path: Path) -> None:
    commit_one(files_path, name=b"/home/caf\xe9")
    fc = FileCache(files_path)
    try:
        assert fc.lookup(b"/home/caf\xe9", stat()) == CONTENT
        assert fc.lookup("/home/café".encode(), stat()) is None
    finally:
        fc.close()


def test_file_cache_update_replaces(files_path: Path) -> None:
    commit_one(files_path)
    commit_one(files_path, st=stat(size=5), content=[bid(7)])
    fc = FileCache(files_path)
    try:
        assert fc.lookup(b"/home/a.txt", stat()) is None
        assert fc.lookup(b"/home/a.txt", stat(size=5)) == [bid(7)]
    finally:
        fc.close()


def test_file_cache_generation_advances_on_commit_only(files_path: Path) -> None:
    assert commit_one(files_path) == 1
    assert commit_one(files_path) == 2
    fc = FileCache(files_path)
    assert fc.gen == 3
    fc.close()  # no commit: this run did not count
    fc = FileCache(files_path)
    assert fc.gen == 3
    fc.close()


def test_file_cache_ttl_eviction(files_path: Path) -> None:
    assert commit_one(files_path) == 1
    # An entry survives FILE_CACHE_TTL runs that do not look at it ...
    for _ in range(FILE_CACHE_TTL):
        _run(files_path)
    assert _cached(files_path)
    # ... and is dropped by the next one (gen 1 < gen 22 - 20).
    assert _run(files_path) == FILE_CACHE_TTL + 2
    assert not _cached(files_path)


def test_file_cache_touch_keeps_entry_alive(files_path: Path) -> None:
    commit_one(files_path, name=b"/seen")
    commit_one(files_path, name=b"/unseen")
    for _ in range(FILE_CACHE_TTL + 5):
        _run(files_path, touch=b"/seen")  # backups see /seen unchanged every time
    assert _cached(files_path, b"/seen")
    assert not _cached(files_path, b"/unseen")


def test_file_cache_garbage_file_is_rebuilt(files_path: Path) -> None:
    commit_one(files_path)
    files_path.write_bytes(random.Random(1).randbytes(10_000))
    fc = FileCache(files_path)  # must not raise
    try:
        assert fc.gen == 1  # starts over
        assert fc.lookup(b"/home/a.txt", stat()) is None
        fc.update(b"/home/a.txt", stat(), CONTENT)
        fc.commit()
        assert fc.lookup(b"/home/a.txt", stat()) == CONTENT
    finally:
        fc.close()


def test_file_cache_damaged_past_first_page_is_rebuilt(files_path: Path) -> None:
    filled(files_path, b"/home/f", 300).close()
    _scribble_past_first_page(files_path)
    fc = FileCache(files_path)
    try:
        fc.lookup(b"/home/f1", stat())
    finally:
        fc.close()


def test_index_and_file_cache_are_independent_files(index_path: Path, files_path: Path) -> None:
    ic = IndexCache(index_path)
    ic.add_packs([(PACK_A, entries(1))], "i")
    ic.close()
    commit_one(files_path)
    assert index_path.exists() and files_path.exists()
    files_path.unlink()
    ic = IndexCache(index_path)
    try:
        assert ic.has(bid(1))
    finally:
        ic.close()
