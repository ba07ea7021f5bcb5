"""Writing a restore's files: their chunks read, verified and written, each file sized, closed and given
its metadata.

Files up to SMALL_FILE are written whole in windows of a few MiB (their chunks read pack range by pack
range), by one thread of their own when the files are tiny; larger files in segments, by a pool. A file is
open only while its segments are written. `FileWriter` is what `Restorer` writes with; it keeps the stats.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from peerbackup.core.objects import Kind
from peerbackup.engine.fsmeta import apply_metadata
from peerbackup.engine.repository import Repository
from peerbackup.engine.restoreplan import FileJob
from peerbackup.engine.sparse import fill_holes, pwrite
from peerbackup.errors import NoSuchObject, PeerBackupError

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
class OpenFile:
    """A large file's descriptor, shared by its segments: opened by the first, closed by the last."""

    remaining: int
    fd: int | None = None
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


# A segment of a file: its job, its open state (shared by its segments) and its chunks [a, b).
Piece = tuple[FileJob, OpenFile, int, int]


def pieces(job: FileJob) -> Iterator[Piece]:
    """A file's segments, sharing one OpenFile."""
    segs = job.segments()
    st = OpenFile(remaining=len(segs))
    for a, b in segs:
        yield job, st, a, b


def write_all(fd: int, bufs: list[bytes | bytearray]) -> int:
    """Write the buffers one after the other from the file's position; their total size."""
    total = sum(map(len, bufs))
    done = os.writev(fd, bufs) if bufs else 0
    if done < total:  # a short write (rare on a regular file): the rest from where it stopped
        rest = memoryview(b"".join(bufs))[done:]
        while rest:
            rest = rest[os.write(fd, rest):]
    return total


class FileWriter:
    """Writes the files' contents of a restore, keeping its stats (the base of `Restorer`)."""

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

    def _write_files(self, jobs: Iterator[FileJob]) -> None:
        """Write every file; a file is open only while its segments are written.

        (Opening all files first runs out of descriptors on a tree of 50,000 files.)
        """
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
            for fn, arg in self._tasks(jobs):
                slots.acquire()
                if failures:
                    break
                tiny = fn == self._write_window and sum(sum(j.sizes) for j in arg) < len(arg) * TINY_FILE
                (small if tiny else pool).submit(fn, arg).add_done_callback(done)
        if failures:
            raise failures[0]

    def _tasks(self, jobs: Iterator[FileJob]) -> Iterator[tuple[Callable[[list[Any]], None], list[Any]]]:
        """What the workers are handed: a window of small files, or one segment of a larger file."""
        # Small files go to the workers in windows, each written whole by one
        # worker with its chunks read pack by pack: a hand-off per 10 KiB file
        # cost more in GIL and futex traffic than writing the file.
        window: list[FileJob] = []
        size = 0
        for job in jobs:
            job_size = sum(job.sizes)
            # A file with data and holes takes the segment path, whose writes go around the holes
            # (engine/sparse.py); one that is all hole is only sized, as a window does it.
            if job_size > SMALL_FILE or (job.holes is not None and job.node.content):
                for piece in pieces(job):
                    yield self._write_pieces, [piece]
                continue
            window.append(job)
            size += job_size
            if size >= _WINDOW_BYTES or len(window) >= _WINDOW_FILES:
                yield self._write_window, window
                window, size = [], 0
        if window:
            yield self._write_window, window

    def _write_pieces(self, batch: list[Piece]) -> None:
        for piece in batch:
            self._write_piece(piece)

    def _write_piece(self, piece: Piece) -> None:
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

    def _write_window(self, window: list[FileJob]) -> None:
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
        self, job: FileJob, fd: int, blobs: dict[bytes, bytes | bytearray | PeerBackupError]
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
        written = write_all(fd, whole)
        if written < job.node.size and not self._size(job, fd):
            return None
        return written + job.hole_bytes

    def _create(self, job: FileJob) -> int | None:
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

    def _size(self, job: FileJob, fd: int) -> bool:
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

    def _write_range(self, job: FileJob, fd: int, a: int, b: int) -> None:
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

    def _close_file(self, job: FileJob, fd: int) -> None:
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

    def _fail(self, path: str, message: str) -> None:
        with self._lock:
            self.stats.errors.append(f"{path}: {message}")

