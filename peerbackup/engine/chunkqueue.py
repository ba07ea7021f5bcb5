"""The backup's work in flight: chunks and small files handed to the worker pool in batches.

A batch goes to the pool once it holds _BATCH_BYTES or _BATCH_COUNT items, within a budget of
IN_FLIGHT_BYTES read but not yet stored; the workers hash, deduplicate, seal and pack the chunks and
read small files whole (the archiver's `read_small`). `PendingFile` is a file whose chunks are in flight.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from peerbackup.core.objects import Kind
from peerbackup.core.tree import Node
from peerbackup.engine.backupreport import BackupProgress
from peerbackup.engine.repository import Repository

# Chunks smaller than this are handed to the workers in batches of about this size.
_BATCH_BYTES = 1024 * 1024
_BATCH_COUNT = 256

# Chunk bytes read but not yet sealed and packed, at most.
IN_FLIGHT_BYTES = 16 * 1024 * 1024


class ByteBudget:
    """A semaphore counted in bytes; one item larger than the budget still passes alone."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cv = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cv:
            while self._used and self._used + n > self.limit:
                self._cv.wait()
            self._used += n

    def release(self, n: int) -> None:
        with self._cv:
            self._used -= n
            self._cv.notify_all()


ChunkResult = tuple[bytes, int, int]  # id, raw bytes added, sealed bytes added


@dataclass
class PendingFile:
    """A file being backed up: its node, and its chunks or (a small file) its batch in flight."""

    node: Node
    path: bytes
    st: os.stat_result
    futures: list[Future[ChunkResult]]
    cacheable: bool
    # A small file a worker reads (Archiver._read_small). Its batch's task says when it is stored (or left
    # out): a Future per file cost the scanning thread ~1 s on 50,000 files.
    small: bool = False
    task: Future[None] | None = None
    failed: BaseException | None = None
    results: list[ChunkResult] = field(default_factory=list)
    bytes_read: int = 0
    unreadable: bool = False

    def done(self) -> bool:
        if self.small:
            return self.task is not None and self.task.done()
        return all(f.done() for f in self.futures)


# What the workers are handed: a chunk (id if hashed already, bytes, its future) or a small file to read.
Item = tuple[bytes | None, memoryview, Future[ChunkResult]] | PendingFile


class ChunkQueue:
    """Hands chunks and small files to the workers' pool, a batch at a time, within the byte budget."""

    def __init__(
        self, repo: Repository, progress: BackupProgress, read_small: Callable[[PendingFile], None],
    ) -> None:
        self.repo = repo
        self.progress = progress
        self._read_small = read_small
        # Bounds the work in flight, and so memory, by bytes: zero-filled disk
        # images make 8 MiB chunks, and a bound by count let those pile up.
        self._budget = ByteBudget(IN_FLIGHT_BYTES)
        self.pool: ThreadPoolExecutor | None = None  # set while a backup runs
        self._batch: list[Item] = []
        self._batch_bytes = 0

    def submit(self, chunk: memoryview) -> Future[ChunkResult]:
        fut: Future[ChunkResult] = Future()
        if len(chunk) < _BATCH_BYTES:
            # Small chunks (small files) travel to the workers in batches: one hand-off
            # per chunk costs more GIL ping-pong than storing a 10 KiB chunk. The worker
            # hashes and deduplicates them too: on a tree of small files the scanning
            # thread is the bottleneck, the workers wait.
            self.queue((None, chunk, fut), len(chunk))
            return fut
        # A large chunk is hashed and checked here, in the scanning thread, which has time
        # to spare between large reads: the workers only see chunks that must be stored.
        repo = self.repo
        blob_id = repo.blob_id(chunk)
        if not repo.claim(blob_id):
            self.progress.processed(len(chunk))
            fut.set_result((blob_id, 0, 0))
            return fut
        self.flush()
        self._batch.append((blob_id, chunk, fut))
        self.flush()
        return fut

    def queue(self, item: Item, nbytes: int) -> None:
        """Add to the batch the workers get next; hand it over once it holds enough."""
        self._batch.append(item)
        self._batch_bytes += nbytes
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_COUNT:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        assert self.pool is not None
        size = sum(it.st.st_size if isinstance(it, PendingFile) else len(it[1]) for it in batch)
        self._budget.acquire(size)
        try:
            task = self.pool.submit(self._store_batch, batch)
        except BaseException:
            self._budget.release(size)
            raise
        task.add_done_callback(lambda _f: self._budget.release(size))
        for item in batch:
            if isinstance(item, PendingFile):
                item.task = task

    def _store_batch(self, batch: list[Item]) -> None:
        for item in batch:
            if isinstance(item, PendingFile):
                self._read_small(item)
                continue
            blob_id, chunk, fut = item
            try:
                result = self.store_chunk(blob_id, chunk)
            except BaseException as exc:
                fut.set_exception(exc)
                continue
            fut.set_result(result)

    def store_chunk(self, blob_id: bytes | None, chunk: memoryview) -> ChunkResult:
        """Store a chunk unless the repository has it; blob_id None: not hashed yet (see submit)."""
        repo = self.repo
        if blob_id is None:
            blob_id = repo.blob_id(chunk)
            if not repo.claim(blob_id):
                self.progress.processed(len(chunk))
                return blob_id, 0, 0
        stored = repo.save_blob(Kind.DATA, blob_id, chunk)
        self.progress.processed(len(chunk))
        return blob_id, len(chunk), stored
