"""What the file cache (storage/filecache.py) lets a backup reuse, and when: a directory's entries in one
query, xattrs of unchanged files, renewal at half an entry's life, trust only under the current blob
index epoch, and updates held outside memory until the commit.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbackup.storage.filecache import FILE_CACHE_TTL, Cached, FileCache
from tests.storage._cache import CONTENT, _cached, bid, commit_one, filled, stat


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from([b"/a", b"/a/b", b"/a/b/c", b"/a/b.x", b"/a/b0", b"/a/bc/d", b"/ab",
                                        b"/a/\xff", b"/a/b/\xe9", b"/b/a"]), unique=True),
       directory=st.sampled_from([b"/", b"/a", b"/a/b", b"/a/bc", b"/b", b"/c"]),
       seed=st.integers(0, 2**16))
def test_file_cache_load_dir_answers_as_one_query_per_file(
    files_path: Path, names: list[bytes], directory: bytes, seed: int
) -> None:
    # Loading a directory's entries changes what check() costs, never what it answers: for the
    # directory's own files, for files deeper down or beside it, and for names sharing its prefix.
    rng = random.Random(seed)
    files_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(files_path) + suffix).unlink(missing_ok=True)
    fc = FileCache(files_path)
    fc.update(b"/zz/other", stat(), CONTENT)  # the cache is not empty even with no names
    kept = {n: [bid(rng.randrange(1, 250)) for _ in range(rng.randrange(0, 3))] for n in names}
    for n, content in kept.items():
        fc.update(n, stat(ino=100 + len(n)), content)
    fc.commit()
    probes = [(n, stat(ino=100 + len(n) + rng.randrange(0, 2))) for n in [*names, b"/a/none", b"/none"]]
    plain = [fc.check(n, s) for n, s in probes]
    ids = fc.load_dir(directory)
    prefix = directory.rstrip(b"/") + b"/"
    own = [n for n in names if n.startswith(prefix) and b"/" not in n[len(prefix):]]
    assert sorted(ids) == sorted(i for n in own for i in kept[n])
    assert [fc.check(n, s) for n, s in probes] == plain
    fc.unload_dir(directory)
    assert [fc.check(n, s) for n, s in probes] == plain
    fc.close()


def test_file_cache_load_dir_saves_the_query_per_file(files_path: Path) -> None:
    fc = filled(files_path, b"/d/f", 20)
    queries: list[str] = []
    fc._db.set_trace_callback(queries.append)
    fc.load_dir(b"/d")
    assert all(fc.lookup(b"/d/f%d" % i, stat()) == CONTENT for i in range(20))
    assert len(queries) == 1


def test_file_cache_keeps_xattrs_of_unchanged_files(files_path: Path) -> None:
    fc = FileCache(files_path)
    fc.update(b"/d/tagged", stat(), CONTENT, {"user.tag": b"blue", "user.x": b""})
    fc.update(b"/d/plain", stat(), CONTENT)
    fc.commit()
    assert fc.xattrs(b"/d/tagged", stat()) == {"user.tag": b"blue", "user.x": b""}
    assert fc.xattrs(b"/d/plain", stat()) == {}
    assert fc.xattrs(b"/d/tagged", stat(ctime_ns=1)) is None  # setxattr changes the ctime
    fc.load_dir(b"/d")
    assert fc.xattrs(b"/d/tagged", stat()) == {"user.tag": b"blue", "user.x": b""}
    # An entry whose attributes cannot be decoded is not trusted for them.
    fc._db.execute("UPDATE files SET xattrs=x'c1' WHERE dir=? AND name=?", (b"/d", b"plain"))
    fc.unload_dir(b"/d")
    assert fc.check(b"/d/plain", stat()) == Cached(True, CONTENT, None, False)
    fc.close()


def test_file_cache_of_the_version_before_xattrs_is_rebuilt(files_path: Path) -> None:
    files_path.parent.mkdir(parents=True)
    db = sqlite3.connect(files_path)
    db.executescript(
        "CREATE TABLE files(path BLOB PRIMARY KEY, inode INT, size INT, mtime INT, ctime INT, content BLOB, gen INT);"
        "CREATE TABLE meta(k TEXT PRIMARY KEY, v INT); PRAGMA user_version=1;"
    )
    db.execute("INSERT INTO files VALUES (?, 100, 1000, ?, ?, ?, 1)",
               (b"/home/a.txt", 1_600_000_000_000_000_000, 1_600_000_000_000_000_000, b"".join(CONTENT)))
    db.commit()
    db.close()
    fc = FileCache(files_path)
    assert fc.lookup(b"/home/a.txt", stat()) is None  # read again: its attributes are not known
    commit_one(files_path)
    fc.close()
    assert FileCache(files_path).xattrs(b"/home/a.txt", stat()) == {}


def test_file_cache_renews_a_seen_entry_only_when_half_its_life_is_gone(files_path: Path) -> None:
    # Renewing every entry on every run rewrote the whole cache; the promise stays: an entry seen
    # at least every TTL/2 runs lives on (test above), and a renewal writes only the old ones.
    commit_one(files_path, name=b"/seen")
    writes = []
    for _ in range(FILE_CACHE_TTL + 5):
        fc = FileCache(files_path)
        fc.touch(b"/seen")
        before = fc._db.total_changes
        fc.commit()
        writes.append(fc._db.total_changes - before)
        fc.close()
    renewals = [w - 1 for w in writes]  # minus the generation's own row in meta
    assert sum(renewals) == 2 and renewals[FILE_CACHE_TTL // 2] == 1
    assert _cached(files_path, b"/seen")


def test_file_cache_trusts_only_entries_stamped_with_the_current_epoch(files_path: Path) -> None:
    fc = FileCache(files_path, "e1")
    fc.update(b"/d/new", stat(), CONTENT)  # read and stored in epoch e1
    fc.commit()
    fc.close()
    assert FileCache(files_path, "e1").check(b"/d/new", stat()) == Cached(True, CONTENT, {}, True)
    fc = FileCache(files_path, "e2")  # the index was rebuilt since
    assert fc.check(b"/d/new", stat()) == Cached(True, CONTENT, {}, False)
    assert sorted(fc.load_dir(b"/d")) == sorted(CONTENT)  # to be checked in the index
    fc.touch(b"/d/new")  # found there: stamped with e2
    fc.commit()
    fc.close()
    fc = FileCache(files_path, "e2")
    assert fc.load_dir(b"/d") == []  # nothing left to ask the index
    assert fc.check(b"/d/new", stat())[3]
    fc.close()
    # With no epoch (a prune has condemned packs) nothing is trusted, nor stamped.
    fc = FileCache(files_path, None)
    assert not fc.check(b"/d/new", stat())[3]
    fc.update(b"/d/other", stat(), CONTENT)
    fc.commit()
    fc.close()
    assert not FileCache(files_path, "").check(b"/d/other", stat())[3]
    assert not FileCache(files_path, "e2").check(b"/d/other", stat())[3]


def test_file_cache_does_not_even_ask_to_renew_a_young_verified_entry(files_path: Path) -> None:
    fc = FileCache(files_path, "e1")
    fc.update(b"/d/f", stat(), CONTENT)
    fc.commit()
    fc.close()
    for epoch, renewed in (("e1", False), ("e2", True), ("e2", False)):
        fc = FileCache(files_path, epoch)
        fc.load_dir(b"/d")
        assert fc.check(b"/d/f", stat())[1] == CONTENT
        fc.touch(b"/d/f")
        statements: list[str] = []
        fc._db.set_trace_callback(statements.append)
        fc.commit()
        fc.close()
        assert any(q.startswith("UPDATE files") for q in statements) == renewed, epoch
    assert FileCache(files_path, "e2").check(b"/d/f", stat())[3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(updates=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 250)), max_size=60),
       commit=st.booleans())
def test_file_cache_updates_held_outside_memory_become_visible_only_at_commit_last_one_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, updates: list[tuple[int, int]], commit: bool
) -> None:
    # A first backup's updates are spilled to a temporary table as they come (every 7 here):
    # memory stays bounded, and what the cache says is unchanged: nothing before commit, nothing
    # from a backup that never commits, and the last update of a path is the one kept.
    monkeypatch.setattr("peerbackup.storage.cache.ROWS_PER_INSERT", 7)
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "files.sqlite"  # one per example
    fc = FileCache(path)
    for name, content in updates:
        fc.update(b"/d/f%d" % name, stat(), [bid(content)])
        assert len(fc._updates) < 7
        assert fc.lookup(b"/d/f%d" % name, stat()) is None
    if commit:
        fc.commit()
    fc.close()
    fc = FileCache(path)
    try:
        last = {name: content for name, content in updates}
        for name in range(31):
            expected = [bid(last[name])] if commit and name in last else None
            assert fc.lookup(b"/d/f%d" % name, stat()) == expected
    finally:
        fc.close()
