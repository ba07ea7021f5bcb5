"""Local SQLite caches of a repository: what the blob index (storage/indexcache.py) and the file cache
(storage/filecache.py) share, where they live and how they are opened.

Both can be deleted at any time and are rebuilt from the repository, so they
run with synchronous=OFF: a crash may lose the cache, never the backup. They
keep memory bounded by the working set rather than by the repository's size.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from peerbackup.storage.sqlite import make_private

_SCHEMA_VERSION = 1


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
ROWS_PER_INSERT = 1000


@functools.lru_cache(maxsize=8)
def _insert_sql(verb: str, table: str, rows: int, columns: int) -> str:
    row = "(" + ", ".join(["?"] * columns) + ")"
    return f"{verb} INTO {table} VALUES " + ",".join([row] * rows)


def insert_rows(db: sqlite3.Connection, verb: str, table: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert rows ROWS_PER_INSERT to a statement (see there)."""
    for at in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[at:at + ROWS_PER_INSERT]
        db.execute(_insert_sql(verb, table, len(part), len(part[0])), [v for row in part for v in row])


def connect(path: Path) -> sqlite3.Connection:
    _private_dirs(path.parent)
    make_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    return db


def open_versioned(path: Path, schema: str, schema_version: int = _SCHEMA_VERSION) -> sqlite3.Connection:
    """Open a cache; a cache of another schema or a damaged one is rebuilt from scratch."""
    for attempt in range(2):
        try:
            db = connect(path)
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
