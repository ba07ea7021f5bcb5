"""The file cache: skips the files a backup finds unchanged (storage/cache.py)."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import NamedTuple

from peerbackup.core import codec
from peerbackup.core.crypto import ID_SIZE
from peerbackup.errors import PeerBackupError
from peerbackup.storage import cache

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
        self._db = cache.open_versioned(path, _FILES_SCHEMA, _FILES_VERSION)
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
        if len(self._updates) >= cache.ROWS_PER_INSERT:
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
            cache.insert_rows(self._db, "INSERT", "temp.pending", rows)

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
