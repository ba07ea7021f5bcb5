"""Keeping one step's disk work out of the next one's timing: sync and wait for idle disks between steps,
and dispose of trees (repositories, restores, source copies) so that freed inodes do not slow down the
file creation timed later (ext4 without a journal, see INODE_REUSE_WINDOW); one invocation at a time
per workdir."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

# ext4 without a journal does not reuse an inode freed less than 60 s ago (360 s
# once its inode-table block is dirty again): the allocator steps over each one
# with a buffer-cache lookup (fs/ext4/ialloc.c, recently_deleted()). On the
# machine this was written on, restoring 50k files right after deleting the
# previous 50k-file restore took 35 s instead of 7 s, all of it kernel time.
INODE_REUSE_WINDOW = 361.0


def _mount_of(path: Path) -> tuple[str, str]:
    """(major:minor, fstype) of the filesystem holding path."""
    target = str(path.resolve())
    best = ("", "", "")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mnt, fstype = fields[4], fields[fields.index("-") + 1]
        inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):  # the innermost, last-mounted wins
            best = (mnt, fields[2], fstype)
    return best[1], best[2]


def inode_reuse_window(path: Path) -> float:
    """Seconds during which freed inodes slow down file creation on path's fs."""
    devno, fstype = _mount_of(path)
    if fstype != "ext4":
        return 0.0
    try:
        dev = os.path.basename(os.readlink(f"/sys/dev/block/{devno}"))
        journals = os.listdir("/proc/fs/jbd2")
    except OSError:
        return INODE_REUSE_WINDOW  # cannot tell: assume the worst
    return 0.0 if any(j.startswith(dev + "-") for j in journals) else INODE_REUSE_WINDOW


def _disk_activity() -> tuple[int, int]:
    """(I/Os completed incl. discards, I/Os in flight) over all block devices."""
    done = in_flight = 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        done += int(f[3]) + int(f[7]) + (int(f[14]) if len(f) > 14 else 0)
        in_flight += int(f[11])
    return done, in_flight


def settle_io(timeout: float = 30.0) -> None:
    """sync, then wait for the disks to go idle, so writeback and discards
    caused by one step are not billed to the next one."""
    os.sync()
    deadline = time.monotonic() + timeout
    prev = None
    while time.monotonic() < deadline:
        cur = _disk_activity()
        if cur == prev:
            return
        prev = cur
        time.sleep(0.5)


class Trash:
    """Disposes of trees (repos, restores, source copies) between runs.

    Where freed inodes are costly (see INODE_REUSE_WINDOW) the tree is moved
    here and its files truncated, which frees the data but keeps the inodes;
    the skeletons are deleted by purge() once nothing is timed any more.
    """

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "trash"
        self.stamp = workdir / "trash.purged"
        self.window = inode_reuse_window(workdir)
        self.count = 0

    def discard(self, path: Path) -> None:
        if not path.exists():
            return
        if not self.window:
            shutil.rmtree(path)
        else:
            self.dir.mkdir(exist_ok=True)
            self.count += 1
            dest = self.dir / f"{self.count}-{path.name}"
            path.rename(dest)
            for dirpath, _, names in os.walk(dest):
                for name in names:
                    p = os.path.join(dirpath, name)
                    if os.path.isfile(p) and not os.path.islink(p):
                        _truncate(p)
        settle_io()

    def purge(self) -> None:
        if self.dir.exists():
            print(f"deleting {self.dir} ...", flush=True)
            shutil.rmtree(self.dir)
            self.stamp.touch()

    def wait_for_inode_reuse(self) -> None:
        """After a purge (maybe by an earlier invocation), wait out the window."""
        if not self.window or not self.stamp.exists():
            return
        left = self.stamp.stat().st_mtime + self.window - time.time()
        if left > 0:
            print(f"waiting {left:.0f} s: ext4 without journal is slow to create files "
                  "right after many were deleted", flush=True)
            time.sleep(left)


def _truncate(path: str) -> None:
    try:
        os.truncate(path, 0)
    except PermissionError:  # read-only file when not running as root
        os.chmod(path, 0o600)
        os.truncate(path, 0)


def lock_workdir(workdir: Path) -> int:
    """Serialise invocations sharing a workdir: they share the data sets and
    scratch trees, and would skew each other's timings anyway."""
    fd = os.open(workdir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another bench.py is using {workdir}, waiting for it ...", flush=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd  # held until exit
