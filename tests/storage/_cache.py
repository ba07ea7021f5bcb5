"""Shared by the cache tests (test_cache_index.py, test_filecache*.py): blob ids and pack entries, a
stat result with chosen identity and times, one committed file-cache run, and a file damaged past its
first page.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.storage.filecache import FileCache


def bid(i: int) -> bytes:
    return bytes([i]) * 32


PACK_A, PACK_B, PACK_C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


def entries(*ids: int, kind: Kind = Kind.DATA) -> list[BlobEntry]:
    # Laid out back to back, 100 sealed bytes each.
    return [BlobEntry(kind, bid(i), n * 100, 100, 60 + i) for n, i in enumerate(ids)]


def _scribble_past_first_page(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 8192
    # Keep the 4 KiB first page (header and schema), scribble over the rest.
    path.write_bytes(data[:4096] + random.Random(2).randbytes(len(data) - 4096))


def stat(ino: int = 100, size: int = 1000, mtime_ns: int = 1_600_000_000_000_000_000,
         ctime_ns: int = 1_600_000_000_000_000_000) -> os.stat_result:
    # Fields past the first ten (the *_ns ones) are only settable through the dict.
    return os.stat_result(
        (0o100644, ino, 1, 1, 0, 0, size, 0, mtime_ns // 10**9, ctime_ns // 10**9),
        {"st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns},
    )


CONTENT = [bid(1), bid(2), bid(3)]


def commit_one(path: Path, name: bytes = b"/home/a.txt", st: os.stat_result | None = None,
               content: list[bytes] | None = None) -> int:
    fc = FileCache(path)
    fc.update(name, st or stat(), CONTENT if content is None else content)
    fc.commit()
    gen = fc.gen
    fc.close()
    return gen


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


def filled(path: Path, prefix: bytes, n: int) -> FileCache:
    """A file cache holding n unchanged files named prefix0, prefix1, ..., committed and left open."""
    fc = FileCache(path)
    for i in range(n):
        fc.update(prefix + b"%d" % i, stat(), CONTENT)
    fc.commit()
    return fc
