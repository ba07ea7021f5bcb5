"""Local SQLite caches of a repository: the blob index and the file cache.

Both can be deleted at any time and are rebuilt from the repository, so they
run with synchronous=OFF: a crash may lose the cache, never the backup. They
keep memory bounded by the working set rather than by the repository's size.
"""

from __future__ import annotations

import functools
import os
import secrets
import sqlite3
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from peerbackup.core import codec
from peerbackup.core.crypto import ID_SIZE
from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.errors import PeerBackupError
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


# Blobs inserted by one statement: executemany steps once per row, and each step hands the GIL
# to the backup's other threads and back (~50,000 hand-offs on a tree of small files).
_ROWS_PER_INSERT = 1000


@functools.lru_cache(maxsize=8)
def _insert_sql(verb: str, table: str, rows: int, columns: int) -> str:
    row = "(" + ", ".join(["?"] * columns) + ")"
    return f"{verb} INTO {table} VALUES " + ",".join([row] * rows)


def _insert_rows(db: sqlite3.Connection, verb: str, table: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert rows _ROWS_PER_INSERT to a statement (see there)."""
    for at in range(0, len(rows), _ROWS_PER_INSERT):
        part = rows[at:at + _ROWS_PER_INSERT]
        db.execute(_insert_sql(verb, table, len(part), len(part[0])), [v for row in part for v in row])


def _connect(path: Path) -> sqlite3.Connection:
    _private_dirs(path.parent)
    make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    return db


def _open_versioned(path: Path, schema: str, schema_version: int = _SCHEMA_VERSION) -> sqlite3.Connection:
    """Open a cache; a cache of another schema or a damaged one is rebuilt from scratch."""
    for attempt in range(2):
        try:
            db = _connect(path)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version != schema_version:
                db.executescript(schema)
                db.execute(f"PRAGMA user_version={schema_version}")
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
        self._db = _open_versioned(path, _INDEX_SCHEMA)
        self._lock = threading.Lock()
        # The epoch: drawn anew whenever blobs may have left this cache (a new or rebuilt file,
        # clear()); between two draws the cache only grows. The file cache trusts the chunk ids of
        # an entry stamped with the current epoch without asking (see FileCache).
        self._db.execute("CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
        row = self._db.execute("SELECT v FROM meta WHERE k='epoch'").fetchone()
        self.epoch: str = row[0] if row else self._new_epoch()
        # Lookups get their own connection: WAL lets them read while the uploader
        # thread commits new packs, instead of queueing behind its lock.
        self._reader = _connect(path)
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
                    _insert_rows(db, "INSERT OR IGNORE", "blobs", [
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


# Version 2 added xattrs: the file's extended attributes (codec-packed, b"" for none), so that an
# unchanged file costs no listxattr either (setting or removing an attribute changes the ctime);
# version 3 epoch: the index cache's epoch when the entry's chunks were last known to be in it;
# version 4 the key (directory, name) instead of the path, so that a directory's entries are one range,
# and holes: where the file has holes (engine/sparse.py), packed (offset, length) pairs.
_FILES_VERSION = 4
_FILES_SCHEMA = """
DROP TABLE IF EXISTS files;
CREATE TABLE files(dir BLOB, name BLOB, inode INT, size INT, mtime INT, ctime INT,
                   content BLOB, gen INT, xattrs BLOB, epoch TEXT, holes BLOB, PRIMARY KEY(dir, name))
                   WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INT) WITHOUT ROWID;
"""
_HOLE = struct.Struct(">QQ")  # a hole in the file cache: offset, length

# An entry no backup has looked at for more than this many runs is dropped. A backup that sees
# an entry unchanged renews its generation only once it is half that old: renewing every entry on
# every run rewrote the whole cache (0.2-0.8 s for 50,000 files). So an entry seen within the last
# TTL/2 runs is always kept, one unseen for more than TTL runs always dropped.
FILE_CACHE_TTL = 20


def _unpack_xattrs(packed: bytes) -> dict[str, bytes] | None:
    """The attributes update() packed; None (read them again) if the entry is not such a map."""
    try:
        obj = codec.unpack_map(packed, "file cache xattrs")
    except PeerBackupError:
        return None
    ok = all(isinstance(k, str) and isinstance(v, bytes) for k, v in obj.items())
    return obj if ok else None


class Cached(NamedTuple):
    """What the file cache knows of a path (FileCache.check)."""

    known: bool  # the path was seen before
    content: list[bytes] | None = None  # its chunk ids, if the file is unchanged
    xattrs: dict[str, bytes] | None = None
    verified: bool = False  # its chunks are known to be in the index (the entry has this epoch's stamp)
    holes: tuple[tuple[int, int], ...] = ()  # where the file has holes


class FileCache:
    """Skips unchanged files: path -> (inode, size, mtime, ctime) and their chunk ids.

    `epoch` is the index cache's epoch (IndexCache.epoch), or None while a prune has condemned
    packs. Invariant: an entry stamped with the current epoch names only chunks the index holds,
    because the index only grows within an epoch and an entry is stamped only by a backup that
    stored its chunks or found them in the index. check() says so (verified), and the backup
    skips asking the index about those chunks; any other entry is checked chunk by chunk.
    """

    def __init__(self, path: Path, epoch: str | None = None) -> None:
        self._db = _open_versioned(path, _FILES_SCHEMA, _FILES_VERSION)
        self.epoch = epoch or ""  # "" is never a stamp that verifies
        self._lock = threading.Lock()
        # A first backup asks about every file: no need when there is nothing to find.
        self._empty = self._db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
        row = self._db.execute("SELECT v FROM meta WHERE k='gen'").fetchone()
        self.gen = (row[0] if row else 0) + 1
        self._updates: list[tuple[bytes, bytes, int, int, int, int, bytes, int, bytes, str, bytes]] = []
        self._touched: list[tuple[int, str, bytes, bytes, int, str]] = []
        # Directory path -> {file name: (inode, size, mtime, ctime, content, xattrs, epoch, gen, holes)}.
        self._loaded: dict[bytes, dict[bytes, tuple[int, int, int, int, bytes, bytes, str, int, bytes | None]]] = {}
        # Paths check() found unchanged, stamped with this epoch and young: touch() need not write them.
        self._fresh: set[bytes] = set()
        self._spilled = False  # updates wait in temp.pending (_spill)

    def close(self) -> None:
        self._db.close()

    def lookup(self, path: bytes, st: os.stat_result) -> list[bytes] | None:
        return self.check(path, st).content

    def xattrs(self, path: bytes, st: os.stat_result) -> dict[str, bytes] | None:
        return self.check(path, st).xattrs

    def load_dir(self, directory: bytes) -> list[bytes]:
        """Fetch the entries of a directory's files in one query, until unload_dir(); returns the
        chunk ids of those not verified (see the class), which the caller checks in the index.

        check() on each of them is then a dict lookup: from Python, one SQLite query per file cost
        more than all the rest of a no-change backup's work on a small file. Only the entries of the
        directories being walked are held, so memory stays bounded by the tree's width, not its size.
        """
        if self._empty:
            return []
        key = directory.rstrip(b"/")
        with self._lock:
            rows = self._db.execute(
                "SELECT name, inode, size, mtime, ctime, content, xattrs, epoch, gen, holes FROM files WHERE dir=?",
                (key,),
            ).fetchall()
        self._loaded[key] = {r[0]: r[1:] for r in rows}
        unverified = [r[5] for r in rows if not self.epoch or r[7] != self.epoch]
        return [c[i:i + ID_SIZE] for c in unverified for i in range(0, len(c), ID_SIZE)]

    def unload_dir(self, directory: bytes) -> None:
        self._loaded.pop(directory.rstrip(b"/"), None)

    def check(self, path: bytes, st: os.stat_result) -> Cached:
        """(path seen before, and if the file is unchanged: its chunk ids, its extended attributes,
        whether the chunks are verified to be in the index, and its holes): from its directory's entries
        if load_dir() fetched them, else in one query."""
        if self._empty:
            return Cached(False)
        directory, _, name = path.rpartition(b"/")
        loaded = self._loaded.get(directory)
        if loaded is not None:
            row = loaded.get(name)
        else:
            with self._lock:
                row = self._db.execute(
                    "SELECT inode, size, mtime, ctime, content, xattrs, epoch, gen, holes FROM files "
                    "WHERE dir=? AND name=?",
                    (directory, name),
                ).fetchone()
        if row is None:
            return Cached(False)
        if row[:4] != (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return Cached(True)
        content: bytes = row[4]
        holes: bytes | None = row[8]
        if holes is None and st.st_blocks * 512 < st.st_size:
            return Cached(True)  # an entry that does not say where its holes are, and the file has some
        xattrs = _unpack_xattrs(row[5]) if row[5] else {}
        verified = bool(self.epoch) and row[6] == self.epoch
        if verified and row[7] >= self.gen - FILE_CACHE_TTL // 2:
            self._fresh.add(path)
        return Cached(True, [content[i:i + ID_SIZE] for i in range(0, len(content), ID_SIZE)], xattrs, verified,
                      tuple((o, n) for o, n in _HOLE.iter_unpack(holes or b"")))

    def touch(self, path: bytes) -> None:
        """An entry seen unchanged, its chunks found in the index: renewed (when half its life
        is gone) and stamped with this epoch."""
        if path in self._fresh:  # the UPDATE would change nothing
            self._fresh.discard(path)
            return
        directory, _, name = path.rpartition(b"/")
        self._touched.append((self.gen, self.epoch, directory, name, self.gen - FILE_CACHE_TTL // 2, self.epoch))

    def update(self, path: bytes, st: os.stat_result, content: list[bytes],
               xattrs: dict[str, bytes] | None = None, holes: list[tuple[int, int]] | None = None) -> None:
        """Remember a file read whole: its chunk ids (stored or found in the index by this backup),
        the extended attributes it had as `st`, and its holes."""
        packed = codec.pack(xattrs) if xattrs else b""
        directory, _, name = path.rpartition(b"/")
        self._updates.append((directory, name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, b"".join(content),
                              self.gen, packed, self.epoch, b"".join(_HOLE.pack(o, n) for o, n in holes or ())))
        if len(self._updates) >= _ROWS_PER_INSERT:
            self._spill()

    def _spill(self) -> None:
        """Move the updates held in memory to a temporary table (SQLite's temp file): ~500 bytes
        an entry for every file of a first backup made the largest part of its peak memory beyond
        the interpreter's. The main table sees them only at commit(), as before."""
        rows, self._updates = self._updates, []
        with self._lock:
            if not self._spilled:
                self._db.execute("CREATE TEMP TABLE IF NOT EXISTS pending AS SELECT * FROM main.files WHERE 0")
                self._db.execute("DELETE FROM temp.pending")
                self._spilled = True
            _insert_rows(self._db, "INSERT", "temp.pending", rows)

    def commit(self) -> None:
        """Write what this backup learnt; called only once its snapshot is saved."""
        if self._spilled and self._updates:
            self._spill()
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            if self._spilled:  # in the order update() was called: a later row replaces an earlier one
                db.execute("INSERT OR REPLACE INTO main.files SELECT * FROM temp.pending ORDER BY rowid")
                db.execute("DELETE FROM temp.pending")
                self._spilled = False
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._updates)
            db.executemany(
                "UPDATE files SET gen=?, epoch=? WHERE dir=? AND name=? AND (gen < ? OR epoch IS NOT ?)", self._touched
            )
            db.execute("DELETE FROM files WHERE gen < ?", (self.gen - FILE_CACHE_TTL,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('gen', ?)", (self.gen,))
            db.execute("COMMIT")
            self._empty = db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is None
            self._updates.clear()
            self._touched.clear()
            self._fresh.clear()
