"""The blob index cache: which blob is in which pack, with a Bloom filter in front (storage/cache.py)."""

from __future__ import annotations

import secrets
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.storage.cache import connect, insert_rows, open_versioned

_LOOKUP_BATCH = 500  # ids per query of lookup_many (SQLite allows 32,766 parameters)


_INDEX_SCHEMA = """
DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS packs; DROP TABLE IF EXISTS index_files;
CREATE TABLE blobs(id BLOB, pack BLOB, kind INT, off INT, len INT, raw INT,
                   PRIMARY KEY(id, pack)) WITHOUT ROWID;
CREATE TABLE packs(id BLOB PRIMARY KEY, index_file TEXT) WITHOUT ROWID;
CREATE TABLE index_files(name TEXT PRIMARY KEY) WITHOUT ROWID;
"""


class _Bloom:
    """A Bloom filter over blob ids, to answer most 'not stored' questions in memory.

    Ids are keyed hashes, uniformly random: their own bytes serve as the hash
    functions. At 16 bits per id and 4 probes the false-positive rate is about
    0.25 %, and a false positive only costs the SQLite lookup it would have made anyway.
    """

    PROBES = 4

    def __init__(self, expected: int) -> None:
        bits = 1 << max(23, (max(expected, 1) * 16 - 1).bit_length())
        self._mask = bits - 1
        self._bits = bytearray(bits // 8)

    # The probes: the id's first PROBES little-endian 64-bit words, read in one call (per-probe
    # slicing and int.from_bytes made opening a 50,000-blob index take 0.3 s).
    _WORDS = struct.Struct(f"<{PROBES}Q")

    def add(self, blob_id: bytes) -> None:
        self.add_many((blob_id,))

    def add_many(self, blob_ids: Iterable[bytes]) -> None:
        bits, mask, words = self._bits, self._mask, self._WORDS.unpack_from
        for blob_id in blob_ids:
            for w in words(blob_id):
                p = w & mask
                bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, blob_id: bytes) -> bool:
        bits, mask = self._bits, self._mask
        for w in self._WORDS.unpack_from(blob_id):
            p = w & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True


class IndexCache:
    """Which blob is in which pack. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self._db = open_versioned(path, _INDEX_SCHEMA)
        self._lock = threading.Lock()
        # The epoch: drawn anew whenever blobs may have left this cache (a new or rebuilt file,
        # clear()); between two draws the cache only grows. The file cache trusts the chunk ids of
        # an entry stamped with the current epoch without asking (see FileCache).
        self._db.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
        row = self._db.execute("SELECT v FROM meta WHERE k='epoch'").fetchone()
        self.epoch: str = row[0] if row else self._new_epoch()
        # Lookups get their own connection: WAL lets them read while the uploader
        # thread commits new packs, instead of queueing behind its lock.
        self._reader = connect(path)
        self._read_lock = threading.Lock()
        # Built at the first lookup, not at open: a backup that changed nothing never asks it (its
        # chunks are verified by the file cache, its trees by has_many), and reading every id to
        # build it was ~5 % of such a backup of 50,000 files.
        self._bloom: _Bloom | None = None
        # Packs a prune has condemned: their blobs must not be reused (engine/prune.py).
        self.condemned: set[bytes] = set()

    def _filter(self) -> _Bloom:
        bloom = self._bloom
        if bloom is not None:
            return bloom
        with self._lock:
            if self._bloom is None:
                (count,) = self._db.execute("SELECT count(*) FROM blobs").fetchone()
                # Room for this many new blobs before the filter fills up: then
                # lookups just go to SQLite more often.
                bloom = _Bloom(count + 1_000_000)
                bloom.add_many(blob_id for (blob_id,) in self._db.execute("SELECT id FROM blobs"))
                self._bloom = bloom
            return self._bloom

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    def known_index_files(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT name FROM index_files")}

    def _new_epoch(self) -> str:
        epoch = secrets.token_hex(16)
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
        self.epoch = epoch
        return epoch

    def clear(self) -> None:
        with self._lock:
            self._db.executescript(
                "BEGIN; DELETE FROM blobs; DELETE FROM packs; DELETE FROM index_files; COMMIT;"
            )
            self._new_epoch()
            self._bloom = None

    def add_packs(self, packs: Iterable[tuple[bytes, list[BlobEntry]]], index_file: str | None) -> None:
        """Record packs, in one transaction; index_file None means 'not yet in any index file'."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for pack_id, entries in packs:
                    db.execute(
                        "INSERT OR REPLACE INTO packs VALUES (?, ?)", (pack_id, index_file or "")
                    )
                    insert_rows(db, "INSERT OR IGNORE", "blobs", [
                        (e.id, pack_id, int(e.kind), e.offset, e.length, e.raw_length) for e in entries
                    ])
                    if self._bloom is not None:  # else built from the table, these rows included
                        self._bloom.add_many(e.id for e in entries)
                if index_file:
                    db.execute("INSERT OR IGNORE INTO index_files VALUES (?)", (index_file,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def assign_index_file(self, pack_ids: Iterable[bytes], index_file: str) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            db.executemany(
                "UPDATE packs SET index_file=? WHERE id=?", [(index_file, p) for p in pack_ids]
            )
            db.execute("INSERT OR IGNORE INTO index_files VALUES (?)", (index_file,))
            db.execute("COMMIT")

    def lookup(self, blob_id: bytes, for_reading: bool = False) -> tuple[bytes, BlobEntry] | None:
        """(pack id, entry) of a live copy of the blob, or None.

        Deduplication must not reuse a copy in a pack that prune condemned; a reader
        may (the pack exists until the sweep proves no snapshot needs it), but
        prefers a live copy.
        """
        if blob_id not in self._filter():
            return None
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT pack, kind, off, len, raw FROM blobs WHERE id=?", (blob_id,)
            ).fetchall()
        rows.sort(key=lambda r: r[0] in self.condemned)
        for pack, kind, off, length, raw in rows:
            if for_reading or pack not in self.condemned:
                return pack, BlobEntry(Kind(kind), blob_id, off, length, raw)
        return None

    def lookup_many(
        self, blob_ids: Iterable[bytes], for_reading: bool = False
    ) -> dict[bytes, tuple[bytes, BlobEntry]]:
        """lookup() of many blobs in a few queries; blobs not found are left out.

        A restore looks up every chunk of every file: one query per directory
        instead of one per chunk (each a lock, a GIL release and SQLite's own locks).
        """
        ids = list(dict.fromkeys(blob_ids))  # no Bloom filter: a reader's ids are nearly all there
        rows: list[tuple[bytes, bytes, int, int, int, int]] = []
        for start in range(0, len(ids), _LOOKUP_BATCH):
            part = ids[start:start + _LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            with self._read_lock:
                rows += self._reader.execute(
                    f"SELECT id, pack, kind, off, len, raw FROM blobs WHERE id IN ({marks})", part
                ).fetchall()
        rows.sort(key=lambda r: r[1] in self.condemned)  # live copies first, as lookup()
        out: dict[bytes, tuple[bytes, BlobEntry]] = {}
        for blob_id, pack, kind, off, length, raw in rows:
            if blob_id not in out and (for_reading or pack not in self.condemned):
                out[blob_id] = (pack, BlobEntry(Kind(kind), blob_id, off, length, raw))
        return out

    def has(self, blob_id: bytes) -> bool:
        return self.lookup(blob_id) is not None

    # Ids per query: well under SQLite's smallest limit on bound parameters (999).
    _MANY = 500

    def has_many(self, blob_ids: Iterable[bytes]) -> set[bytes]:
        """Those of the ids for which has() is true, in one query per few hundred ids.

        Meant for ids expected to be stored (a file cache's): the Bloom filter would only say
        yes to them, so they go to SQLite directly, and when no pack is condemned SQLite only
        counts them, the common answer being "all"."""
        want = list(set(blob_ids))
        found: set[bytes] = set()
        for start in range(0, len(want), self._MANY):
            part = want[start:start + self._MANY]
            sql = f"FROM blobs WHERE id IN ({','.join('?' * len(part))})"
            with self._read_lock:
                if not self.condemned:
                    (n,) = self._reader.execute(f"SELECT count(DISTINCT id) {sql}", part).fetchone()
                    if n == len(part):
                        found.update(part)
                        continue
                rows = self._reader.execute(f"SELECT id, pack {sql}", part).fetchall()
            found.update(i for i, pack in rows if pack not in self.condemned)
        return found

    def pack_ids(self) -> set[bytes]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM packs")}

    def forget_packs(self, pack_ids: Iterable[bytes]) -> None:
        """Drop packs the store no longer has. Blobs leave the index: a new epoch (see FileCache)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            for pid in pack_ids:
                db.execute("DELETE FROM blobs WHERE pack=?", (pid,))
                db.execute("DELETE FROM packs WHERE id=?", (pid,))
            self._new_epoch()
            db.execute("COMMIT")

    def unindexed_packs(self) -> list[bytes]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT id FROM packs WHERE index_file=''")]

    def pack_entries(self, pack_id: bytes) -> list[BlobEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, off, len, raw FROM blobs WHERE pack=? ORDER BY off", (pack_id,)
            ).fetchall()
        return [BlobEntry(Kind(k), i, o, n, r) for i, k, o, n, r in rows]

    def all_blobs(self) -> Iterator[tuple[bytes, bytes, BlobEntry]]:
        """(blob id, pack id, entry) of everything indexed; a snapshot of the table."""
        with self._lock:
            rows = self._db.execute("SELECT id, pack, kind, off, len, raw FROM blobs").fetchall()
        for i, p, k, o, n, r in rows:
            yield i, p, BlobEntry(Kind(k), i, o, n, r)
