"""A full disk, told once: when a write first fails for want of room, and again when there is room.

A storage peer's disk fills (its home shares a disk with other things, or holds
more than it should): every write fails from then on, each for its own reason
(the nonce table, events.db, a pack). The server refuses writes with a typed
`disk-full` and serves reads (net/server.py); the daemon's loops go on as they
can. Without this, each loop round and each refused request would log its own
traceback every second; with it the log says `disk.full` once, and `disk.ok`
once when the free space is back above ROOM (checked every heartbeat while full).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from peerbackup.logs import event
from peerbackup.storage.sqlite import disk_full

ROOM = 8 * 1024 * 1024  # free bytes that count as room again: more than a nonce, less than a pack


class DiskWatch:
    def __init__(self, path: Path, log: logging.Logger, room: int = ROOM) -> None:
        self.path = path
        self.log = log
        self.room = room
        self.full = False

    def failed(self, exc: BaseException, during: str) -> bool:
        """Whether exc is a full disk; the first one since the disk last had room is logged."""
        if not disk_full(exc):
            return False
        if not self.full:
            self.full = True
            event(self.log, "disk.full", logging.ERROR, path=str(self.path), during=during, reason=str(exc),
                  free=self.free(), hint="writes are refused and reads served until there is room again")
        return True

    def free(self) -> int:
        try:
            st = os.statvfs(self.path)
        except OSError:
            return -1
        return st.f_bavail * st.f_frsize

    def check(self) -> None:
        """While full: is there room again? Said once when there is."""
        if self.full and self.free() >= self.room:
            self.full = False
            event(self.log, "disk.ok", path=str(self.path), free=self.free())
