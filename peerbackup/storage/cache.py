"""Local SQLite caches of a repository: the blob index and the file cache.

Both can be deleted at any time and are rebuilt from the repository, so they
run with synchronous=OFF: a crash may lose the cache, never the backup. They
keep memory bounded by the working set rather than by the repository's size.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from peerbackup.core.crypto import ID_SIZE
from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.storage.sqlite import make_private

_SCHEMA_VERSION = 1
_LOOKUP_BATCH = 500  # ids per query of lookup_many (SQLite allows 32,766 parameters)


def default_cache_root() -> Path:
    env = os.environ.get("PEERBACKUP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "peerbackup" if xdg else Path.home() / ".cache" / "peerbackup"


def _private_dirs(path: Path) -> None:
    """Make the missing directories of `path` readable by this user only: a cache lists the backed-up
    files' names, sizes and times. Directories that exist are left as they are (a shared cache root
    the user chose)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # exactly, whatever the umask


def _connect(path: Path) -> sqlite3.Connection:
    _private_dirs(path.parent)
    make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    return db


def _open_versioned(path: Path, schema: str) -> sqlite3.Connection:
    """Open a cache; a cache of another schema or a damaged one is rebuilt from scratch."""
    for attempt in range(2):
        try:
            db = _connect(path)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version != _SCHEMA_VERSION:
                db.executescript(schema)
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            # Damage past the header page only shows when the pages are read: look
            # now, while the cache can still be rebuilt, not in the middle of a backup.
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                db.close()
                raise sqlite3.DatabaseError(verdict)
            return db
        except sqlite3.DatabaseError:
            if attempt:
                raise
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    raise AssertionError("unreachable")


_INDEX_SCHEMA = """
DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS packs; DROP TABLE IF EXISTS index_files;
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

    def _positions(self, blob_id: bytes) -> list[int]:
        return [int.from_bytes(blob_id[i * 8:i * 8 + 8], "little") & self._mask for i in range(self.PROBES)]

    def add(self, blob_id: bytes) -> None:
        for p in self._positions(blob_id):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, blob_id: bytes) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(blob_id))


class IndexCache:
    """Which blob is in which pack. Thread-safe: one connection behind a lock."""

    def __init__(self, path: Path) -> None:
        self._db = _open_versioned(path, _INDEX_SCHEMA)
        self._lock = threading.Lock()
        # Lookups get their own connection: WAL lets them read while the uploader
        # thread commits new packs, instead of queueing behind its lock.
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
        self._load_bloom()
        # Packs a prune has condemned: their blobs must not be reused (engine/prune.py).
        self.condemned: set[bytes] = set()

    def _load_bloom(self) -> None:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM blobs").fetchone()
            # Room for this many new blobs before the filter fills up: then
            # lookups just go to SQLite more often.
            self._bloom = _Bloom(count + 1_000_000)
            for (blob_id,) in self._db.execute("SELECT id FROM blobs"):
                self._bloom.add(blob_id)

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    def known_index_files(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT name FROM index_files")}

    def clear(self) -> None:
        with self._lock:
            self._db.executescript(
                "BEGIN; DELETE FROM blobs; DELETE FROM packs; DELETE FROM index_files; COMMIT;"
            )
            self._bloom = _Bloom(1_000_000)

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
                    db.executemany(
                        "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?, ?, ?)",
                        [(e.id, pack_id, int(e.kind), e.offset, e.length, e.raw_length)
                         for e in entries],
                    )
                    for e in entries:
                        self._bloom.add(e.id)
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
        if blob_id not in self._bloom:
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

    def pack_ids(self) -> set[bytes]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM packs")}

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


_FILES_SCHEMA = """
DROP TABLE IF EXISTS files;
CREATE TABLE files(path BLOB PRIMARY KEY, inode INT, size INT, mtime INT, ctime INT,
                   content BLOB, gen INT, holes BLOB) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;
"""
_HOLE = struct.Struct(">QQ")  # a hole in the file cache: offset, length

# An entry no backup has looked at for more than this many runs is dropped.
FILE_CACHE_TTL = 20


class FileCache:
    """Skips unchanged files: path -> (inode, size, mtime, ctime) and their chunk ids."""

    def __init__(self, path: Path) -> None:
        self._db = _open_versioned(path, _FILES_SCHEMA)
        if "holes" not in {r[1] for r in self._db.execute("PRAGMA table_info(files)")}:
            # A cache from before holes were recorded: its rows keep their NULL (see check).
            self._db.execute("ALTER TABLE files ADD COLUMN holes BLOB")
        self._lock = threading.Lock()
        # A first backup asks about every file: no need when there is nothing to find.
        self._empty = self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
        row = self._db.execute("SELECT v FROM meta WHERE k='gen'").fetchone()
        self.gen = (row[0] if row else 0) + 1
        self._updates: list[tuple[bytes, int, int, int, int, bytes, int, bytes]] = []
        self._touched: list[tuple[int, bytes]] = []

    def close(self) -> None:
        self._db.close()

    def lookup(self, path: bytes, st: os.stat_result) -> list[bytes] | None:
        return self.check(path, st)[1]

    def check(self, path: bytes, st: os.stat_result) -> tuple[bool, list[bytes] | None, list[tuple[int, int]]]:
        """(path seen before, its chunk ids if the file is unchanged, its holes) in one query."""
        if self._empty:
            return False, None, []
        with self._lock:
            row = self._db.execute(
                "SELECT inode, size, mtime, ctime, content, holes FROM files WHERE path=?", (path,)
            ).fetchone()
        if row is None:
            return False, None, []
        if row[:4] != (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return True, None, []
        content: bytes = row[4]
        holes: bytes | None = row[5]
        if holes is None and st.st_blocks * 512 < st.st_size:
            return True, None, []  # cached before holes were recorded, and it has some: read it once more
        return True, [content[i:i + ID_SIZE] for i in range(0, len(content), ID_SIZE)], \
            [(o, n) for o, n in _HOLE.iter_unpack(holes or b"")]

    def touch(self, path: bytes) -> None:
        self._touched.append((self.gen, path))

    def update(self, path: bytes, st: os.stat_result, content: list[bytes],
               holes: list[tuple[int, int]] | None = None) -> None:
        self._updates.append(
            (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, b"".join(content), self.gen,
             b"".join(_HOLE.pack(o, n) for o, n in holes or ()))
        )

    def commit(self) -> None:
        """Write what this backup learnt; called only once its snapshot is saved."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._updates)
            db.executemany("UPDATE files SET gen=? WHERE path=?", self._touched)
            db.execute("DELETE FROM files WHERE gen < ?", (self.gen - FILE_CACHE_TTL,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('gen', ?)", (self.gen,))
            db.execute("COMMIT")
            self._empty = db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
            self._updates.clear()
            self._touched.clear()
