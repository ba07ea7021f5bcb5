"""Restore a snapshot, or parts of it, into a target directory.

Nothing is ever written outside the target: every name is checked before use,
names must be unique within a directory, files are opened with O_NOFOLLOW, an
existing symlink where a directory belongs is replaced rather than followed,
and symlinks from the snapshot are created last, after all data is written.
File contents are written by worker threads, each chunk verified against its
keyed id before it is written: files up to SMALL_FILE whole, in windows of a few
MiB (by one thread of their own when the files are tiny), their chunks read
pack range by pack range (a hand-off or a read per 10 KiB file cost more than
writing it); larger files in segments, by a pool.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.core.tree import (
    BLOCKDEV,
    CHARDEV,
    DIR,
    FIFO,
    FILE,
    SYMLINK,
    Node,
    decode_tree,
    is_safe_name,
)
from peerbackup.engine.fsmeta import apply_metadata, make_special
from peerbackup.engine.repository import Repository
from peerbackup.engine.sparse import HoleMap, fill_holes, pwrite
from peerbackup.engine.walk import find_path, load_tree
from peerbackup.errors import NoSuchObject, PeerBackupError, TargetNotEmpty, UnsafePath

SEGMENT = 64 * 1024 * 1024  # large files are split into segments of about this size
SMALL_FILE = 1024 * 1024  # files up to this size are written whole, in windows:
_WINDOW_BYTES = 4 * 1024 * 1024  # a window is about this much data
_WINDOW_FILES = 512  # or this many files
TINY_FILE = 64 * 1024  # windows of files this small on average are written by one thread (_write_files)


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


class RestoreProgress(Protocol):
    def planned(self, files: int, nbytes: int) -> None: ...
    def written(self, nbytes: int) -> None: ...


class NoRestoreProgress:
    def planned(self, files: int, nbytes: int) -> None:
        pass

    def written(self, nbytes: int) -> None:
        pass


@dataclass
class _OpenFile:
    remaining: int
    fd: int | None = None
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _FileJob:
    path: str
    node: Node
    offsets: list[int]  # start of each chunk in the file
    places: list[tuple[bytes, BlobEntry] | None]  # (pack, entry) of each chunk, None if missing
    holes: HoleMap | None = None  # where the data goes around the file's holes; offsets skip them

    @property
    def sizes(self) -> list[int]:
        """Plaintext size of each chunk; 0 for one the index does not have."""
        return [p[1].raw_length if p else 0 for p in self.places]

    @property
    def hole_bytes(self) -> int:
        return sum(n for _, n in self.holes.holes) if self.holes is not None else 0


def _included(path: str, includes: list[str]) -> tuple[bool, bool]:
    """(restore this entry, descend into it) for a snapshot path."""
    if not includes:
        return True, True
    for inc in includes:
        if path == inc or path.startswith(inc + "/"):
            return True, True
        if inc.startswith(path + "/"):
            return False, True  # an ancestor of something included
    return False, False


def _write_all(fd: int, bufs: list[bytes | bytearray]) -> int:
    """Write the buffers one after the other from the file's position; their total size."""
    total = sum(map(len, bufs))
    done = os.writev(fd, bufs) if bufs else 0
    if done < total:  # a short write (rare on a regular file): the rest from where it stopped
        rest = memoryview(b"".join(bufs))[done:]
        while rest:
            rest = rest[os.write(fd, rest):]
    return total


class _SubtreeReader:
    """A directory's subtrees, read ahead a batch at a time (one index query and
    one read per pack range), in the order the walk descends into them."""

    BATCH = 64  # bounds what is held: at most this many trees per level of the walk

    def __init__(self, repo: Repository, tree_ids: list[bytes]) -> None:
        self.repo = repo
        self.pending = tree_ids[::-1]
        self.trees: dict[bytes, bytes | bytearray | PeerBackupError] = {}

    def get(self, tree_id: bytes) -> bytes | bytearray | None:
        """The tree's plaintext, or None: then load_tree reads it (and reports any error)."""
        if tree_id not in self.trees and self.pending:
            # The walk asks in list order, so the next batch holds this tree.
            batch = [self.pending.pop() for _ in range(min(self.BATCH, len(self.pending)))]
            found = self.repo.index.lookup_many(batch, for_reading=True)
            self.trees = self.repo.read_blobs(Kind.TREE, found)
        got = self.trees.get(tree_id)
        return got if isinstance(got, bytes | bytearray) else None


class Restorer:
    def __init__(
        self, repo: Repository, *, workers: int | None = None,
        progress: RestoreProgress | None = None, overwrite: bool = False, sparse: bool = True,
    ) -> None:
        self.repo = repo
        self.workers = workers or max(2, (os.cpu_count() or 2) + 1)
        self.progress: RestoreProgress = progress or NoRestoreProgress()
        self.overwrite = overwrite
        self.sparse = sparse  # holes left as holes; False writes their zeros
        self.stats = RestoreStats()
        self._lock = threading.Lock()
        self._dirs: list[tuple[str, Node]] = []
        self._links: list[tuple[str, Node]] = []
        self._specials: list[tuple[str, Node]] = []
        self._hardlinks: dict[tuple[int, int], str] = {}
        self._link_jobs: list[tuple[str, str, Node]] = []

    def restore(
        self, tree_id: bytes, target: str, *, includes: list[str] | None = None,
        subpath: str = "/", total: tuple[int, int] | None = None,
    ) -> RestoreStats:
        """total: (files, bytes) expected, for the progress display only."""
        target = os.path.abspath(target)
        self._prepare_target(target)
        incs = ["/" + "/".join(p for p in i.split("/") if p) for i in (includes or [])]
        root = tree_id
        if subpath.strip("/"):
            node = find_path(self.repo, tree_id, subpath)
            if node is None or node.type != DIR or node.subtree is None:
                raise PeerBackupError(f"{subpath} is not a directory in the snapshot")
            root = node.subtree
        if total is not None:
            self.progress.planned(*total)
        # Files are written while the trees are still being walked: a plan of the
        # whole snapshot held in memory would grow with the number of files.
        self._write_files(self._plan(root, target, "", incs))
        for path, first, node in self._link_jobs:
            self._hardlink(path, first, node)
        for path, node in self._specials:
            self._special(path, node)
        for path, node in self._links:
            self._symlink(path, node)
        # Directories last, deepest first, so their mtimes and modes stick.
        for path, node in reversed(self._dirs):
            apply_metadata(path, node, self.stats.errors)
        return self.stats

    # ---- planning ----------------------------------------------------------------

    def _prepare_target(self, target: str) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            os.makedirs(target)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise PeerBackupError(f"restore target {target} exists and is not a directory")
        if os.listdir(target) and not self.overwrite:
            raise TargetNotEmpty(target)

    def _plan(
        self, tree_id: bytes, dest: str, snap_path: str, includes: list[str],
        raw: bytes | bytearray | None = None,
    ) -> Iterator[_FileJob]:
        """Create directories and yield the files to write, walking the tree.

        raw: the tree's plaintext if the parent read it ahead.
        """
        try:
            nodes = load_tree(self.repo, tree_id) if raw is None else decode_tree(raw, f"tree {tree_id.hex()[:8]}")
        except PeerBackupError as exc:
            self.stats.errors.append(f"{snap_path or '/'}: {exc}")
            return
        # Every chunk of the directory's files in one index query, not one each.
        found = self.repo.index.lookup_many(
            (b for n in nodes if n.type == FILE for b in n.content), for_reading=True
        )
        subtrees = _SubtreeReader(self.repo, [
            n.subtree for n in nodes
            if n.type == DIR and n.subtree is not None and any(_included(f"{snap_path}/{n.name}", includes))
        ])
        seen: set[str] = set()
        for node in nodes:
            if not is_safe_name(node.name) or node.name in seen:
                self.stats.errors.append(str(UnsafePath(f"{snap_path}/{node.name}")))
                continue
            seen.add(node.name)
            path = f"{snap_path}/{node.name}"
            take, descend = _included(path, includes)
            out = os.path.join(dest, node.name)
            if node.type == DIR:
                if not (take or descend):
                    continue
                if not self._mkdir(out):
                    continue
                self._dirs.append((out, node))
                self.stats.dirs += 1
                if node.subtree is not None:
                    yield from self._plan(node.subtree, out, path, includes, subtrees.get(node.subtree))
            elif not take:
                continue
            elif node.type == FILE:
                job = self._plan_file(out, node, found)
                if job is not None:
                    yield job
            elif node.type == SYMLINK:
                self._links.append((out, node))
            elif node.type in (FIFO, CHARDEV, BLOCKDEV):
                self._specials.append((out, node))

    def _mkdir(self, path: str) -> bool:
        try:
            os.mkdir(path, 0o700)
            return True
        except FileExistsError:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                return True
            if not self.overwrite:
                self.stats.errors.append(f"{path}: exists and is not a directory")
                return False
            os.unlink(path)  # a file or symlink where the snapshot has a directory
            os.mkdir(path, 0o700)
            return True
        except OSError as exc:
            self.stats.errors.append(f"{path}: cannot create directory: {exc.strerror}")
            return False

    def _plan_file(
        self, path: str, node: Node, found: dict[bytes, tuple[bytes, BlobEntry]]
    ) -> _FileJob | None:
        if node.links > 1:
            key = (node.dev, node.inode)
            first = self._hardlinks.get(key)
            if first is not None:
                self._link_jobs.append((path, first, node))
                return None
            self._hardlinks[key] = path
        offsets, places = [], []
        pos = 0
        for blob_id in node.content:
            place = found.get(blob_id)
            offsets.append(pos)
            places.append(place)
            pos += place[1].raw_length if place else 0
        return _FileJob(path, node, offsets, places, HoleMap(node.holes) if node.holes else None)

    # ---- writing -----------------------------------------------------------------

    def _write_files(self, jobs: Iterator[_FileJob]) -> None:
        """Write every file; a file is open only while its segments are written.

        (Opening all files first runs out of descriptors on a tree of 50,000 files.)
        """

        Piece = tuple[_FileJob, _OpenFile, int, int]

        def pieces(job: _FileJob) -> Iterator[Piece]:
            segs = self._segments(job)
            st = _OpenFile(remaining=len(segs))
            for a, b in segs:
                yield job, st, a, b

        def tasks() -> Iterator[tuple[Callable[[list[Any]], None], list[Any]]]:
            # Small files go to the workers in windows, each written whole by one
            # worker with its chunks read pack by pack: a hand-off per 10 KiB file
            # cost more in GIL and futex traffic than writing the file.
            window: list[_FileJob] = []
            size = 0
            for job in jobs:
                job_size = sum(job.sizes)
                # A file with data and holes takes the segment path, whose writes go around the holes
                # (engine/sparse.py); one that is all hole is only sized, as a window does it.
                if job_size > SMALL_FILE or (job.holes is not None and job.node.content):
                    for piece in pieces(job):
                        yield run, [piece]
                    continue
                window.append(job)
                size += job_size
                if size >= _WINDOW_BYTES or len(window) >= _WINDOW_FILES:
                    yield self._write_window, window
                    window, size = [], 0
            if window:
                yield self._write_window, window

        def run(batch: list[Piece]) -> None:
            for piece in batch:
                write_piece(piece)

        def write_piece(piece: Piece) -> None:
            job, st, a, b = piece
            with st.lock:
                if st.fd is None and not st.failed:
                    st.fd = self._create(job)
                    st.failed = st.fd is None
            try:
                if st.fd is not None and b > a:
                    self._write_range(job, st.fd, a, b)
            finally:
                with st.lock:
                    st.remaining -= 1
                    fd = st.fd if st.remaining == 0 else None
                if fd is not None:
                    self._close_file(job, fd)

        # Bounded submission: a future per task for 50,000 files at once is waste.
        slots = threading.BoundedSemaphore(self.workers * 4)
        failures: list[BaseException] = []

        def done(fut: Future[None]) -> None:
            slots.release()
            if fut.exception() is not None:
                failures.append(fut.exception())  # type: ignore[arg-type]

        # Windows of tiny files are read and written by one thread of their own, everything else by
        # the pool: a tiny file is a handful of system calls, each handing the GIL to the other
        # threads and back, and little data to decrypt and decompress in parallel. On 50,724 files
        # of 16 KiB on average, into tmpfs: windows by the pool of three, 5.9 s and 8.5 CPU s; by
        # one thread, 4.7 s and 5.5 CPU s; read by the pool and written by one thread, 5.3-5.9 s.
        # Windows of larger files (the office set's average 160 KiB) keep the pool's cores.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="restore") as pool, \
                ThreadPoolExecutor(1, thread_name_prefix="restore-small") as small:
            for fn, arg in tasks():
                slots.acquire()
                if failures:
                    break
                tiny = fn == self._write_window and sum(sum(j.sizes) for j in arg) < len(arg) * TINY_FILE
                (small if tiny else pool).submit(fn, arg).add_done_callback(done)
        if failures:
            raise failures[0]

    def _write_window(self, window: list[_FileJob]) -> None:
        """Write small files whole: their chunks read first, each pack range once."""
        places = {b: p for job in window for b, p in zip(job.node.content, job.places, strict=True) if p}
        blobs = self.repo.read_blobs(Kind.DATA, places)
        files = nbytes = 0
        errors: list[str] = []
        for job in window:
            fd = self._open_out(job.path)
            if fd is None:
                continue
            try:
                written = self._write_whole(job, fd, blobs)
                if written is None:
                    continue
                nbytes += written
                files += 1
                apply_metadata(job.path, job.node, errors, fd=fd)
            finally:
                os.close(fd)
        self.progress.written(nbytes)
        with self._lock:
            self.stats.files += files
            self.stats.bytes += nbytes
            self.stats.errors.extend(errors)

    def _write_whole(
        self, job: _FileJob, fd: int, blobs: dict[bytes, bytes | bytearray | PeerBackupError]
    ) -> int | None:
        """Bytes written into a small file, None if it could not be sized."""
        data: list[bytes | bytearray | None] = []
        for i, blob_id in enumerate(job.node.content):
            got = blobs.get(blob_id) if job.places[i] else None
            if not isinstance(got, bytes | bytearray):
                exc = got or NoSuchObject("data blob", blob_id.hex())
                self._fail(job.path, f"chunk {blob_id.hex()[:8]} at offset {job.offsets[i]}: {exc}")
                got = None
            data.append(got)
        whole = [d for d in data if d is not None]
        if len(whole) < len(data):  # a chunk missing: the others at their planned offsets
            if not self._size(job, fd):
                return None
            for d, offset in zip(data, job.offsets, strict=True):
                if d is not None:
                    os.pwrite(fd, d, offset)
            return sum(map(len, whole))
        written = _write_all(fd, whole)
        if written < job.node.size and not self._size(job, fd):
            return None
        return written + job.hole_bytes

    def _create(self, job: _FileJob) -> int | None:
        fd = self._open_out(job.path)
        if fd is None:
            return None
        # Created empty (O_TRUNC) and sized here, so every byte the data does not cover reads as zero: the
        # holes need no write (unless asked for their zeros).
        if not self._size(job, fd):
            os.close(fd)
            return None
        if job.hole_bytes:
            self.progress.written(job.hole_bytes)
            with self._lock:
                self.stats.bytes += job.hole_bytes
        return fd

    def _size(self, job: _FileJob, fd: int) -> bool:
        """The file at its full size: what the data does not cover reads as zeros (holes stay holes, or are
        written as zeros with --no-sparse)."""
        try:
            os.ftruncate(fd, job.node.size)
            if job.holes is not None and not self.sparse:
                fill_holes(fd, job.holes.holes)
            return True
        except OSError as exc:
            self._fail(job.path, f"cannot size file: {exc.strerror}")
            return False

    def _segments(self, job: _FileJob) -> list[tuple[int, int]]:
        segs = []
        start = 0
        acc = 0
        sizes = job.sizes
        for i, size in enumerate(sizes):
            acc += size
            if acc >= SEGMENT:
                segs.append((start, i + 1))
                start, acc = i + 1, 0
        if start < len(sizes):
            segs.append((start, len(sizes)))
        return segs

    def _open_out(self, path: str) -> int | None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            return os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EISDIR) and self.overwrite:
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        self._fail(path, "a directory exists where the snapshot has a file")
                        return None
                    os.unlink(path)
                    return os.open(path, flags, 0o600)
                except OSError as exc2:
                    exc = exc2
            self._fail(path, f"cannot create: {exc.strerror}")
            return None

    def _write_range(self, job: _FileJob, fd: int, a: int, b: int) -> None:
        for i in range(a, b):
            blob_id = job.node.content[i]
            place = job.places[i]
            try:
                if place is None:
                    raise NoSuchObject("data blob", blob_id.hex())
                data = self.repo.read_blob_at(Kind.DATA, blob_id, *place)
            except PeerBackupError as exc:
                self._fail(job.path, f"chunk {blob_id.hex()[:8]} at offset {job.offsets[i]}: {exc}")
                continue
            pwrite(fd, data, job.offsets[i], job.holes)
            self.progress.written(len(data))
            with self._lock:
                self.stats.bytes += len(data)

    def _close_file(self, job: _FileJob, fd: int) -> None:
        errors: list[str] = []
        with self._lock:
            self.stats.files += 1
        try:
            apply_metadata(job.path, job.node, errors, fd=fd)
        finally:
            os.close(fd)
        if errors:
            with self._lock:
                self.stats.errors.extend(errors)

    def _hardlink(self, path: str, first: str, node: Node) -> None:
        try:
            if self.overwrite and os.path.lexists(path):
                os.unlink(path)
            os.link(first, path, follow_symlinks=False)
            self.stats.files += 1
        except OSError as exc:
            self._fail(path, f"cannot create hard link: {exc.strerror}")

    def _special(self, path: str, node: Node) -> None:
        try:
            if self.overwrite and os.path.lexists(path):
                os.unlink(path)
            make_special(path, node)
            if os.path.lexists(path):
                apply_metadata(path, node, self.stats.errors)
        except OSError as exc:
            self._fail(path, f"cannot create: {exc.strerror}")

    def _symlink(self, path: str, node: Node) -> None:
        try:
            if self.overwrite and os.path.lexists(path):
                if os.path.isdir(path) and not os.path.islink(path):
                    self._fail(path, "a directory exists where the snapshot has a symlink")
                    return
                os.unlink(path)
            os.symlink(node.target, path)
            apply_metadata(path, node, self.stats.errors)
        except OSError as exc:
            self._fail(path, f"cannot create symlink: {exc.strerror}")

    def _fail(self, path: str, message: str) -> None:
        with self._lock:
            self.stats.errors.append(f"{path}: {message}")

