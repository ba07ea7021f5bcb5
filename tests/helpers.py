"""Helpers shared by the engine, CLI and daemon tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerbackup.core.chunker import ChunkerParams

# Small chunks so that a few hundred KiB already make many chunks and packs.
SMALL_CHUNKS = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
OLD = 1_600_000_000  # a fixed mtime, old enough for the file cache to trust


def text(rng: random.Random, n: int) -> bytes:
    words = [b"invoice", b"ledger", b"meeting", b"client", b"budget", b"draft", b"the", b"and"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def make_tree(root: Path, seed: int = 1, files: int = 30) -> None:
    """A small tree with text, random data, duplicates, odd names and special files."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        d = root / f"dir{i % 4}" / ("sub" if i % 3 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        data = text(rng, rng.randint(0, 200_000)) if i % 2 else rng.randbytes(rng.randint(0, 150_000))
        (d / f"file{i}.dat").write_bytes(data)
    (root / "dir0" / "copy.dat").write_bytes((root / "dir0" / "sub" / "file0.dat").read_bytes())
    (root / "empty").write_bytes(b"")
    (root / "emptydir").mkdir()
    os.symlink("dir0/sub/file0.dat", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "dir1" / "file1.dat", root / "hardlink")
    os.mkfifo(root / "fifo")
    (root / os.fsdecode(b"caf\xe9-latin1.txt")).write_bytes(b"non-utf8 name")
    (root / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(root / "script.sh", 0o750)
    os.chmod(root / "dir2", 0o711)
    try:
        os.setxattr(root / "empty", "user.comment", b"kept")
    except OSError:
        pass
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (OLD, OLD + rng.randint(0, 10**6)), follow_symlinks=False)
    os.utime(root, (OLD, OLD))


def snapshot_of(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything restore must reproduce, per relative path."""
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(filenames + dirnames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                content = Path(p).read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            link_group = None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                link_group = inodes.setdefault(st.st_ino, rel)
            try:
                xattrs = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                      for k in os.listxattr(p, follow_symlinks=False)))
            except OSError:
                xattrs = ()
            mtime = None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns
            out[rel] = (kind, stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode) else None,
                        st.st_uid, st.st_gid, mtime, content, link_group is not None, xattrs)
    return out


# sysfs attributes with no read side: the kernel refuses to open them for reading, even to root (EACCES).
WRITE_ONLY_SYSFS = ("/sys/bus/pci/rescan", "/sys/kernel/mm/ksm/run", "/sys/power/wakeup_count")


def _write_only_sysfs() -> str:
    for candidate in WRITE_ONLY_SYSFS:
        if os.path.exists(candidate) and os.stat(candidate).st_mode & 0o444 == 0:
            return candidate
    for root, _dirs, files in os.walk("/sys/bus"):
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path).st_mode) and os.lstat(path).st_mode & 0o444 == 0:
                    return path
    raise AssertionError("no write-only sysfs attribute to make a file root cannot open")


@contextlib.contextmanager
def unopenable(path: Path) -> Iterator[None]:
    """A regular file at `path` that open() for reading refuses with EACCES, as root too: mode 0 for a
    normal user; for root (who may read a mode-0 file) a write-only sysfs attribute bind-mounted over
    it. Undone on leaving."""
    path.write_bytes(b"placeholder")
    if os.geteuid() != 0:
        path.chmod(0)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    subprocess.run(["mount", "--bind", _write_only_sysfs(), str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@dataclass
class Result:
    """What a command run as a subprocess gave back."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)
