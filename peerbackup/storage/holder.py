"""What a storage peer keeps for the office: other machines' ciphertext, per backup node.

The holder side of the peer store (issue 5). Each node's files live in their
own LocalStore under `nodes/<node>/` (temp -> fsync -> rename -> fsync dir;
immutable), within the peer's quota. Packs and index files are named by the
hash of their bytes, so a holder refuses an upload whose bytes do not match
its name, and a scrub needs no key to find a damaged copy. Deleting never
frees space at once: files go to `trash/` and are purged after a grace time,
so a prune that went wrong can still be undone. Holders never see keys or
plaintext. Synchronous: the daemon calls it from a worker thread.
"""

from __future__ import annotations

import math
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import blake3

from peerbackup.core.crypto import content_hash
from peerbackup.core.nodes import check_node_name
from peerbackup.errors import FormatError, IntegrityError, ObjectExists, QuotaExceeded, StoreError
from peerbackup.storage.local import LocalStore, fsync_dir
from peerbackup.storage.store import MUTABLE, FileType

# Every immutable kind but the config is named by the BLAKE3 hash of its bytes.
CONTENT_NAMED = frozenset({FileType.DATA, FileType.INDEX, FileType.SNAPSHOT, FileType.MARK, FileType.KEY})
MAX_CHALLENGE = 1024 * 1024


class Holder:
    def __init__(self, root: str | os.PathLike[str], quota: int | None, clock: Callable[[], float],
                 fsync: bool = True) -> None:
        self.root = Path(root)
        self.quota = quota
        self.clock = clock
        self.fsync = fsync
        self._stores: dict[str, LocalStore] = {}
        self._lock = threading.Lock()  # quota accounting across worker threads
        self._trash_lock = threading.Lock()  # a trash name is chosen and taken at once
        self.used = self._scan()

    def _scan(self) -> int:
        total = 0
        for base in (self.root / "nodes", self.root / "trash"):
            for dirpath, _, files in os.walk(base):
                total += sum(max(0, _regular_size(os.path.join(dirpath, f))) for f in files)
        return total

    def store(self, node: str) -> LocalStore:
        try:
            check_node_name(node)
        except FormatError as exc:
            raise StoreError(str(exc)) from None
        st = self._stores.get(node)
        if st is None:
            st = self._stores[node] = LocalStore(self.root / "nodes" / node, fsync=self.fsync)
        return st

    def put(self, node: str, ftype: FileType, name: str, data: bytes | bytearray,
            digest: bytes | None = None) -> bool:
        """Store a file; False when the very same bytes were there already (a retried upload).

        digest: the BLAKE3 hash the signed request named for the bytes (one hash pass
        checks both the sender's claim and a content-named file's name)."""
        st = self.store(node)
        actual = content_hash(data)
        if digest is not None and actual != digest:
            raise IntegrityError(f"{ftype.value}/{name[:12]}: the bytes do not match the signed hash "
                                 "(damaged in transit)")
        if ftype in CONTENT_NAMED and actual.hex() != name:
            raise IntegrityError(f"{ftype.value}/{name[:12]}: the bytes do not match their name")
        if ftype not in MUTABLE and st.exists(ftype, name):
            if st.size(ftype, name) == len(data) and content_hash(st.get(ftype, name)) == actual:
                return False
            raise ObjectExists(ftype.value, name)
        with self._lock:
            if self.quota is not None and self.used + len(data) > self.quota:
                raise QuotaExceeded(len(data), self.quota - self.used)
            self.used += len(data)
        try:
            st.put(ftype, name, data)
        except BaseException:
            with self._lock:
                self.used -= len(data)
            raise
        return True

    def get(self, node: str, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.store(node).get(ftype, name, offset, length)

    def has(self, node: str, ftype: FileType, name: str) -> bool:
        return self.store(node).exists(ftype, name)

    def listing(self, node: str, ftype: FileType) -> list[tuple[str, int]]:
        return sorted(self.store(node).list(ftype))

    def challenge(self, node: str, ftype: FileType, name: str, nonce: bytes, offset: int, length: int) -> bytes:
        """Proof of holding: BLAKE3 of nonce + a byte range the asker chose, which it can check
        against its own copy (or the pack's known hash) and a holder cannot precompute."""
        if not 0 < length <= MAX_CHALLENGE or offset < 0 or not 16 <= len(nonce) <= 64:
            raise StoreError("bad challenge")
        data = self.get(node, ftype, name, offset, length)
        return bytes(blake3.blake3(nonce + data).digest())

    def scrub(self, node: str, ftype: FileType = FileType.DATA) -> list[str]:
        """Names of content-named files whose bytes no longer match their name."""
        st = self.store(node)
        return [name for name, _ in self.listing(node, ftype) if content_hash(st.get(ftype, name)).hex() != name]

    def delete(self, node: str, ftype: FileType, name: str) -> None:
        """A lock is removed at once (it holds no backup data); anything else goes to the trash."""
        if ftype in MUTABLE:
            self.store(node).delete(ftype, name)
        else:
            self.trash(node, ftype, name)

    def trash(self, node: str, ftype: FileType, name: str) -> None:
        """Move a file to the trash (kept for the grace time); a missing file is not an error."""
        st = self.store(node)
        src = st.path(ftype, name)
        dest_dir = self.root / "trash" / node / ftype.value
        dest_dir.mkdir(parents=True, exist_ok=True)
        # Rounded up: the stamp is never before the deletion, so the grace is never cut short.
        with self._trash_lock:
            if not st.move_out(ftype, name, _trash_name(dest_dir, name, math.ceil(self.clock()))):
                return
        if self.fsync:
            fsync_dir(src.parent)
            fsync_dir(dest_dir)

    def purge(self, grace: float) -> int:
        """Free the trash older than grace seconds; the bytes freed.

        A file is freed once the clock reads at least its stamp + grace. A file whose name has no
        stamp, or a stamp in the future (the clock was wrong when it was trashed), is stamped with
        the current time instead, so it is freed one grace after this purge (not by it) rather than never.
        Only regular files are freed: a symlink or anything else in the trash is left alone, and
        a trash directory that is a symlink is not entered."""
        freed = 0
        trash = self.root / "trash"
        if trash.is_symlink():
            return 0
        for dirpath, _, files in os.walk(trash):
            for f in files:
                path = os.path.join(dirpath, f)
                size = _regular_size(path)
                if size < 0:
                    continue
                # Read for each file: one trashed while this purge walks must not look as if from the future.
                now = self.clock()
                base, _, stamp = f.rpartition(".")
                stamped = bool(base) and _STAMP.fullmatch(stamp) is not None
                if not stamped or int(stamp) > math.ceil(now):
                    with self._trash_lock:
                        os.rename(path, _trash_name(Path(dirpath), base if stamped else f, math.ceil(now)))
                elif int(stamp) <= now - grace:
                    os.unlink(path)
                    freed += size
        with self._lock:
            self.used -= freed
        return freed

    def usage(self) -> dict[str, object]:
        nodes = {}
        base = self.root / "nodes"
        if base.exists():
            for entry in sorted(base.iterdir()):
                nodes[entry.name] = sum(1 for _ in self.store(entry.name).list(FileType.DATA))
        return {"used": self.used, "quota": self.quota, "packs": nodes}


_STAMP = re.compile(r"[0-9]+")


def _trash_name(directory: Path, name: str, stamp: int) -> Path:
    """NAME.STAMP, or NAME.N.STAMP when that is taken (the same file deleted twice in one second):
    a trashed file is never overwritten, so it keeps its own grace and the accounting stays true."""
    path = directory / f"{name}.{stamp}"
    n = 0
    while os.path.lexists(path):
        n += 1
        path = directory / f"{name}.{n}.{stamp}"
    return path


def _regular_size(path: str) -> int:
    """The size of a regular file, -1 for anything else (a symlink is never followed) or a file gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return -1
    return st.st_size if stat.S_ISREG(st.st_mode) else -1
