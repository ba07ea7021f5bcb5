"""The blob index (storage/indexcache.py), and where the local SQLite caches live and who may read them.

Both caches are disposable (rebuilt from the repository), so the promises are: what is
committed survives a reopen, a damaged file never stops a backup, and the file
cache only skips a file whose identity and times are unchanged.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.storage.cache import default_cache_root
from peerbackup.storage.filecache import FileCache
from peerbackup.storage.indexcache import IndexCache
from tests.storage._cache import PACK_A, PACK_B, PACK_C, _scribble_past_first_page, bid, entries


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


def test_index_has_many_is_has_of_each(index: IndexCache) -> None:
    index.add_packs([(PACK_A, entries(1, 2)), (PACK_B, entries(2, 3))], "idx1")
    ids = [bid(i) for i in range(1, 6)]
    many = [bid(i) for i in range(1, 250)] * 3  # more than one query's worth, repeated
    for condemned in (set(), {PACK_A}, {PACK_B}, {PACK_A, PACK_B}):
        index.condemned = condemned
        assert index.has_many(ids) == {i for i in ids if index.has(i)}
        assert index.has_many(many) == {i for i in set(many) if index.has(i)}
    assert index.has_many([]) == set()


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
