"""The local SQLite caches: the blob index and the file cache.

Both are disposable (rebuilt from the repository), so the promises are: what is
committed survives a reopen, a damaged file never stops a backup, and the file
cache only skips a file whose identity and times are unchanged.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.storage.cache import default_cache_root
from peerbackup.storage.filecache import FILE_CACHE_TTL, Cached, FileCache
from peerbackup.storage.indexcache import IndexCache


def bid(i: int) -> bytes:
    return bytes([i]) * 32


PACK_A, PACK_B, PACK_C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


def entries(*ids: int, kind: Kind = Kind.DATA) -> list[BlobEntry]:
    # Laid out back to back, 100 sealed bytes each.
    return [BlobEntry(kind, bid(i), n * 100, 100, 60 + i) for n, i in enumerate(ids)]


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "repo-id" / "index.sqlite"


@pytest.fixture
def index(index_path: Path) -> Iterator[IndexCache]:
    c = IndexCache(index_path)
    yield c
    c.close()


def test_default_cache_root_honours_env(tmp_path: Path) -> None:
    # conftest points PEERBACKUP_CACHE_DIR at the test's tmp_path: nothing touches ~/.cache.
    assert default_cache_root() == tmp_path / "cache"


def test_caches_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    # A file cache lists the names, sizes and times of every backed-up file.
    os.chmod(tmp_path, 0o755)
    old_umask = os.umask(0o022)
    try:
        files = FileCache(tmp_path / "root" / "repo-id" / "files.sqlite")
        wal = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "root" / "repo-id").glob("files.sqlite-*")}
        files.close()
        (tmp_path / "old").mkdir(mode=0o755)
        legacy = tmp_path / "old" / "index.sqlite"
        legacy.touch(mode=0o644)  # as an older version left it
        IndexCache(legacy).close()
    finally:
        os.umask(old_umask)

    def mode(p: Path) -> int:
        return p.stat().st_mode & 0o777

    assert mode(tmp_path / "root") == mode(tmp_path / "root" / "repo-id") == 0o700
    assert mode(tmp_path / "root" / "repo-id" / "files.sqlite") == 0o600
    assert mode(legacy) == 0o600
    assert wal == {"files.sqlite-shm": 0o600, "files.sqlite-wal": 0o600}  # while it was open
    assert mode(tmp_path) == mode(tmp_path / "old") == 0o755  # directories that existed are left alone


# ---- IndexCache -----------------------------------------------------------------------


def test_index_add_and_lookup(index: IndexCache) -> None:
    es = entries(1, 2, 3)
    index.add_packs([(PACK_A, es)], "idx1")
    for e in es:
        assert index.lookup(e.id) == (PACK_A, e)
        assert index.has(e.id)
    assert index.lookup(bid(9)) is None
    assert not index.has(bid(9))
    assert index.pack_ids() == {PACK_A}
    assert index.known_index_files() == {"idx1"}


def test_index_a_pack_of_thousands_of_blobs_is_inserted_a_thousand_rows_a_statement(index: IndexCache) -> None:
    # One statement per row handed the GIL to the backup's other threads and back at every row.
    rng = random.Random(5)
    es = [BlobEntry(Kind.DATA, rng.randbytes(32), n * 100, 100, 50) for n in range(2_500)]
    inserts: list[str] = []
    index._db.set_trace_callback(lambda sql: inserts.append(sql) if "INTO blobs" in sql else None)
    index.add_packs([(PACK_A, es)], "idx1")
    index._db.set_trace_callback(None)
    assert len(inserts) == 3
    assert index.lookup_many(e.id for e in es) == {e.id: (PACK_A, e) for e in es}
    index.add_packs([(PACK_A, es[:10])], "idx1")  # again: ignored, not doubled
    assert sorted(index.pack_entries(PACK_A), key=lambda e: e.offset) == es


def test_index_tree_blobs_keep_their_kind(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(4, kind=Kind.TREE))], "idx1")
    found = index.lookup(bid(4))
    assert found is not None and found[1].kind is Kind.TREE


def test_index_duplicate_blob_in_two_packs_and_condemned(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1, 2)), (PACK_B, entries(2, 3))], "idx1")
    found = index.lookup(bid(2))
    assert found is not None and found[0] in (PACK_A, PACK_B)
    # A pack prune has condemned is never handed out again.
    index.condemned = {PACK_A}
    assert index.lookup(bid(1)) is None
    assert not index.has(bid(1))
    found = index.lookup(bid(2))
    assert found is not None and found[0] == PACK_B
    assert found[1] == BlobEntry(Kind.DATA, bid(2), 0, 100, 62)
    index.condemned = {PACK_A, PACK_B}
    assert index.lookup(bid(2)) is None
    index.condemned = set()
    assert index.has(bid(1))


def test_index_unindexed_packs_and_assign(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1)), (PACK_B, entries(2))], None)
    index.add_packs([(PACK_C, entries(3))], "old-index")
    assert sorted(index.unindexed_packs()) == [PACK_A, PACK_B]
    assert index.known_index_files() == {"old-index"}
    # Blobs of packs not yet in an index file are still found (they are in the repo).
    assert index.has(bid(1))

    index.assign_index_file([PACK_A, PACK_B], "new-index")
    assert index.unindexed_packs() == []
    assert index.known_index_files() == {"old-index", "new-index"}
    assert index.lookup(bid(1)) == (PACK_A, entries(1)[0])


def test_index_pack_entries_sorted_by_offset(index: IndexCache) -> None:
    es = entries(5, 1, 9, 3)  # offsets 0, 100, 200, 300 but ids out of order
    shuffled = list(es)
    random.Random(0).shuffle(shuffled)
    index.add_packs([(PACK_A, shuffled)], "i")
    assert index.pack_entries(PACK_A) == es
    assert index.pack_entries(PACK_B) == []


def test_index_all_blobs(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1, 2)), (PACK_B, entries(2))], "i")
    rows = sorted(index.all_blobs())
    assert [(b, p) for b, p, _ in rows] == [(bid(1), PACK_A), (bid(2), PACK_A), (bid(2), PACK_B)]
    assert all(e.id == b for b, _, e in rows)


def test_index_re_adding_is_idempotent(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1, 2))], "i")
    index.add_packs([(PACK_A, entries(1, 2))], "i")
    assert len(list(index.all_blobs())) == 2
    assert index.pack_entries(PACK_A) == entries(1, 2)


def test_index_add_is_one_transaction(index: IndexCache) -> None:
    def packs() -> Iterator[tuple[bytes, list[BlobEntry]]]:
        yield PACK_A, entries(1)
        raise RuntimeError("reading the index file failed half way")

    with pytest.raises(RuntimeError):
        index.add_packs(packs(), "broken")
    # Nothing of the failed batch is recorded, and the cache is still usable.
    assert index.pack_ids() == set()
    assert index.known_index_files() == set()
    index.add_packs([(PACK_B, entries(2))], "ok")
    assert index.pack_ids() == {PACK_B}


def test_index_clear(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1))], "i")
    index.add_packs([(PACK_B, entries(2))], None)
    index.clear()
    assert index.pack_ids() == set()
    assert index.unindexed_packs() == []
    assert index.known_index_files() == set()
    assert list(index.all_blobs()) == []
    assert index.lookup(bid(1)) is None


def test_index_persists_across_reopen(index_path: Path) -> None:
    c = IndexCache(index_path)
    c.add_packs([(PACK_A, entries(1, 2))], "idx1")
    c.add_packs([(PACK_B, entries(3))], None)
    c.condemned = {PACK_A}
    c.close()

    c = IndexCache(index_path)
    try:
        assert c.known_index_files() == {"idx1"}
        assert c.pack_ids() == {PACK_A, PACK_B}
        assert c.unindexed_packs() == [PACK_B]
        assert c.pack_entries(PACK_A) == entries(1, 2)
        # Condemned packs live in the repository (marks), not in the cache.
        assert c.condemned == set()
        assert c.lookup(bid(1)) == (PACK_A, entries(1)[0])
    finally:
        c.close()


@pytest.mark.parametrize("size", [1, 100, 4096, 50_000])
def test_index_garbage_file_is_rebuilt(index_path: Path, size: int) -> None:
    c = IndexCache(index_path)
    c.add_packs([(PACK_A, entries(1))], "idx1")
    c.close()
    index_path.write_bytes(random.Random(size).randbytes(size))

    c = IndexCache(index_path)  # must not raise
    try:
        assert c.pack_ids() == set()  # rebuilt empty: the engine re-reads the index files
        assert c.lookup(bid(1)) is None
        c.add_packs([(PACK_B, entries(2))], "idx2")
        assert c.known_index_files() == {"idx2"}
    finally:
        c.close()


def test_index_other_schema_version_is_rebuilt(index_path: Path) -> None:
    index_path.parent.mkdir(parents=True)
    db = sqlite3.connect(index_path)
    db.executescript("CREATE TABLE blobs(junk); CREATE TABLE packs(junk); PRAGMA user_version=7;")
    db.close()
    c = IndexCache(index_path)
    try:
        c.add_packs([(PACK_A, entries(1))], "i")
        assert c.lookup(bid(1)) == (PACK_A, entries(1)[0])
    finally:
        c.close()


def _scribble_past_first_page(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 8192
    # Keep the 4 KiB first page (header and schema), scribble over the rest.
    path.write_bytes(data[:4096] + random.Random(2).randbytes(len(data) - 4096))


def test_index_damaged_past_first_page_is_rebuilt(index_path: Path) -> None:
    c = IndexCache(index_path)
    c.add_packs([(PACK_A, entries(*range(200)))], "idx1")
    c.close()
    _scribble_past_first_page(index_path)
    c = IndexCache(index_path)
    try:
        c.lookup(bid(1))  # rebuilt or still readable, but no DatabaseError
    finally:
        c.close()


# ---- FileCache ------------------------------------------------------------------------


def stat(ino: int = 100, size: int = 1000, mtime_ns: int = 1_600_000_000_000_000_000,
         ctime_ns: int = 1_600_000_000_000_000_000) -> os.stat_result:
    # Fields past the first ten (the *_ns ones) are only settable through the dict.
    return os.stat_result(
        (0o100644, ino, 1, 1, 0, 0, size, 0, mtime_ns // 10**9, ctime_ns // 10**9),
        {"st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns},
    )


@pytest.fixture
def files_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "repo-id" / "files.sqlite"


CONTENT = [bid(1), bid(2), bid(3)]


def commit_one(path: Path, name: bytes = b"/home/a.txt", st: os.stat_result | None = None,
               content: list[bytes] | None = None) -> int:
    fc = FileCache(path)
    fc.update(name, st or stat(), CONTENT if content is None else content)
    fc.commit()
    gen = fc.gen
    fc.close()
    return gen


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


def _run(path: Path, touch: bytes | None = None) -> int:
    """One backup run that commits, touching (seeing unchanged) at most one path."""
    fc = FileCache(path)
    if touch is not None:
        fc.touch(touch)
    fc.commit()
    gen = fc.gen
    fc.close()
    return gen


def _cached(path: Path, name: bytes = b"/home/a.txt") -> bool:
    fc = FileCache(path)
    try:
        return fc.lookup(name, stat()) is not None
    finally:
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
    fc = FileCache(files_path)
    for i in range(300):
        fc.update(b"/home/f%d" % i, stat(), CONTENT)
    fc.commit()
    fc.close()
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
    fc = FileCache(files_path)
    for i in range(20):
        fc.update(b"/d/f%d" % i, stat(), CONTENT)
    fc.commit()
    queries: list[str] = []
    fc._db.set_trace_callback(queries.append)
    fc.load_dir(b"/d")
    assert all(fc.lookup(b"/d/f%d" % i, stat()) == CONTENT for i in range(20))
    assert len(queries) == 1


def test_index_has_many_is_has_of_each(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1, 2)), (PACK_B, entries(2, 3))], "idx1")
    ids = [bid(i) for i in range(1, 6)]
    many = [bid(i) for i in range(1, 250)] * 3  # more than one query's worth, repeated
    for condemned in (set(), {PACK_A}, {PACK_B}, {PACK_A, PACK_B}):
        index.condemned = condemned
        assert index.has_many(ids) == {i for i in ids if index.has(i)}
        assert index.has_many(many) == {i for i in set(many) if index.has(i)}
    assert index.has_many([]) == set()


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


def test_index_epoch_survives_reopen_and_changes_whenever_blobs_may_have_left(index_path: Path) -> None:
    c = IndexCache(index_path)
    c.add_packs([(PACK_A, entries(1, 2))], "idx1")
    first = c.epoch
    c.add_packs([(PACK_B, entries(3))], None)  # growing keeps the epoch
    assert c.epoch == first
    c.close()
    c = IndexCache(index_path)
    assert c.epoch == first
    c.clear()
    assert c.epoch != first
    cleared = c.epoch
    c.close()
    index_path.unlink()  # a deleted cache is rebuilt: a new epoch
    c = IndexCache(index_path)
    assert c.epoch not in (first, cleared)
    c._db.execute("PRAGMA user_version=7")  # another schema: rebuilt, and a new epoch
    rebuilt_from = c.epoch
    c.close()
    c = IndexCache(index_path)
    assert c.epoch != rebuilt_from
    c.close()


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
