"""Non-exclusive repository locks: a record that an operation is under way.

Backups never exclude each other or a prune. A lock only tells prune's sweep
that a backup which might still reuse condemned blobs is running. Owners
refresh their lock; a lock not refreshed for STALE seconds, or whose process is
gone from this host, is ignored.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from peerbackup.core import codec
from peerbackup.errors import PeerBackupError
from peerbackup.storage.store import FileType, Store

REFRESH = 120.0
STALE = 30 * 60.0


@dataclass(frozen=True)
class LockInfo:
    name: str
    kind: str
    host: str
    pid: int
    started: float
    refreshed: float

    def is_stale(self, now: float, host: str) -> bool:
        if now - self.refreshed > STALE:
            return True
        if self.host == host:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False


def read_locks(store: Store) -> list[LockInfo]:
    out = []
    for name, _size in store.list(FileType.LOCK):
        try:
            obj = codec.unpack_map(store.get(FileType.LOCK, name), "lock")
            out.append(LockInfo(
                name, str(obj["kind"]), str(obj["host"]), int(obj["pid"]),
                float(obj["started"]), float(obj["refreshed"]),
            ))
        except (PeerBackupError, KeyError, TypeError, ValueError):
            continue  # a lock being rewritten or garbage: not a reason to fail
    return out


class RepoLock:
    def __init__(self, store: Store, kind: str) -> None:
        self.store = store
        self.kind = kind
        self.name = secrets.token_hex(16)
        self.started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        self.store.put(FileType.LOCK, self.name, codec.pack({
            "kind": self.kind, "host": socket.gethostname(), "pid": os.getpid(),
            "started": self.started, "refreshed": time.time(),
        }))

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH):
            try:
                self._write()
            except PeerBackupError:
                pass  # a full disk must not kill the backup; the lock just ages

    def __enter__(self) -> RepoLock:
        self._write()
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True, name="lock")
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.store.delete(FileType.LOCK, self.name)
