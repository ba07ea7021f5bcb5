"""A repository: sealed blobs in packs, index files and snapshots, over a store and a key set.

Writers add blobs concurrently; each kind (data, tree) fills its own pack, and
a full pack is sealed and stored by the thread that filled it, outside the
lock, so packing never serialises the pipeline. Index files are written every
INDEX_EVERY packs and on flush; packs stored after the last index file (a
killed backup) are found on the next open and indexed from their own headers,
which is how an interrupted backup resumes instead of starting over.

Beside it: a filling pack's stream (engine/packstream.py), the index files' format
and recovery (engine/indexfiles.py), the config and key files that open it
(engine/keyfiles.py) and the nonces it seals with (engine/nonces.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from peerbackup import __version__
from peerbackup.core.chunker import Chunker, ChunkerParams
from peerbackup.core.compress import DEFAULT_LEVEL
from peerbackup.core.crypto import KdfParams, Random, content_hash, keyed_id
from peerbackup.core.keys import KeySet
from peerbackup.core.objects import Kind, open_object, seal_object
from peerbackup.core.pack import BlobEntry, PackWriter
from peerbackup.core.snapshot import Snapshot
from peerbackup.engine.config import RepoConfig
from peerbackup.engine.indexfiles import read_index_file, recover_unindexed_packs, sync_index, write_index_file
from peerbackup.engine.keyfiles import add_key, current_user, read_config, unlock
from peerbackup.engine.nonces import pooled_random
from peerbackup.engine.packstream import Packer, PackStream
from peerbackup.errors import (
    AmbiguousId,
    FormatError,
    IntegrityError,
    NoSuchObject,
    PeerBackupError,
    RepositoryExists,
    WrongPassword,
)
from peerbackup.storage.cache import default_cache_root
from peerbackup.storage.filecache import FileCache
from peerbackup.storage.indexcache import IndexCache
from peerbackup.storage.store import FileType, Store

PACK_SIZE = 16 * 1024 * 1024
INDEX_EVERY = 32
UPLOAD_QUEUE = 1
# read_blobs: neighbouring blobs of a pack are read in one request when the gap
# between them is at most READ_GAP bytes and the request at most READ_SPAN.
READ_GAP = 64 * 1024
READ_SPAN = 4 * 1024 * 1024
_SNAPSHOT_CONTEXT = b"snapshot"


class Repository:
    def __init__(
        self, store: Store, keys: KeySet, config: RepoConfig, *,
        cache_root: os.PathLike[str] | str | None = None, rand: Random = pooled_random,
        pack_size: int = PACK_SIZE, level: int = DEFAULT_LEVEL,
    ) -> None:
        self.store = store
        self.keys = keys
        self.config = config
        self.rand = rand
        self.pack_size = pack_size
        self.level = level
        self.chunker = Chunker(config.chunker)
        root = os.fspath(cache_root) if cache_root else default_cache_root()
        self.cache_dir = os.path.join(root, config.id)
        self.index = IndexCache(_cache_path(self.cache_dir, "index.sqlite"))
        self._lock = threading.Lock()
        self._pending: set[bytes] = set()  # claimed by a writer, not yet in a stored pack
        self._packers = {k: Packer(store) for k in (Kind.DATA, Kind.TREE)}
        self._unindexed: list[tuple[bytes, list[BlobEntry]]] = []
        self._index_lock = threading.Lock()
        # Full packs are committed (fsync, rename, index) by one uploader thread so that workers
        # never wait on fsync; at most UPLOAD_QUEUE packs wait for it.
        self._uploader = ThreadPoolExecutor(1, thread_name_prefix="upload")
        self._upload_slots = threading.BoundedSemaphore(UPLOAD_QUEUE)
        self._uploads: set[Future[None]] = set()
        self.sync_index()

    # ---- creation and opening -------------------------------------------------

    @classmethod
    def init(
        cls, store: Store, passphrase: bytes, *, kdf: KdfParams | None = None,
        chunker: ChunkerParams | None = None, rand: Random = os.urandom,
        now: Callable[[], float] = time.time, keys: KeySet | None = None,
    ) -> str:
        """Create a repository; returns its id."""
        if any(True for _ in store.list(FileType.CONFIG)) or any(True for _ in store.list(FileType.KEY)):
            raise RepositoryExists(store.location)
        keys = keys or KeySet.generate(rand)
        config = RepoConfig(id=rand(16).hex(), chunker=chunker or ChunkerParams(), created=int(now()))
        add_key(store, keys, passphrase, kdf=kdf, rand=rand, now=now)
        store.put(FileType.CONFIG, "config", config.to_bytes())
        return config.id

    @classmethod
    def open(
        cls, store: Store, passphrase: bytes | None = None, *, keys: KeySet | None = None,
        **kwargs: object,
    ) -> Repository:
        config = read_config(store)
        if keys is None:
            if passphrase is None:
                raise WrongPassword()
            keys, _name = unlock(store, passphrase)
        return cls(store, keys, config, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self._uploader.shutdown(wait=True)
        for packer in self._packers.values():
            packer.stream.abort()  # a pack a failed backup left unfinished: its temp file goes
        self.index.close()

    def file_cache(self) -> FileCache:
        # While a prune has condemned packs, a chunk in the index may not be reused: trust nothing.
        epoch = None if self.index.condemned else self.index.epoch
        return FileCache(_cache_path(self.cache_dir, "files.sqlite"), epoch)

    # ---- index ---------------------------------------------------------------

    def sync_index(self) -> None:
        """Bring the local index cache in line with the repository's index files."""
        sync_index(self.store, self.keys, self.index)

    def read_index_file(self, name: str) -> list[tuple[bytes, list[BlobEntry]]]:
        return read_index_file(self.store, self.keys, name)

    def write_index_file(self, packs: list[tuple[bytes, list[BlobEntry]]]) -> str:
        return write_index_file(self.store, self.keys, packs, self.rand, self.level)

    def recover_unindexed_packs(self, report: Callable[[str], None] | None = None) -> int:
        """Index packs stored by a writer that died before writing its index file."""
        return recover_unindexed_packs(self.store, self.keys, self.index, self.rand, self.level, report)

    # ---- blobs -----------------------------------------------------------------

    def blob_id(self, data: bytes | bytearray | memoryview) -> bytes:
        return keyed_id(self.keys.id_key, data)

    def claim(self, blob_id: bytes) -> bool:
        """True if the caller must store the blob: nobody has it or is storing it."""
        with self._lock:
            if blob_id in self._pending:
                return False
            self._pending.add(blob_id)
        if self.index.has(blob_id):
            with self._lock:
                self._pending.discard(blob_id)
            return False
        return True

    def save_blob(self, kind: Kind, blob_id: bytes, data: bytes | bytearray | memoryview) -> int:
        """Seal and pack a claimed blob; returns its sealed size. Thread-safe."""
        sealed = seal_object(self.keys, kind, data, blob_id, self.rand, self.level)
        full: tuple[PackWriter, PackStream] | None = None
        packer = self._packers[kind]
        with packer.lock:  # not self._lock: the write may wait on the disk, claims must not
            packer.writer.add(kind, blob_id, sealed, len(data))
            if len(packer.writer) >= self.pack_size:
                full = packer.take(self.store)
        if full is not None:
            self._queue_pack(*full)
        return len(sealed)

    def add_blob(self, kind: Kind, data: bytes | bytearray | memoryview) -> tuple[bytes, int]:
        """Store data if new; returns (id, sealed bytes added)."""
        blob_id = self.blob_id(data)
        if not self.claim(blob_id):
            return blob_id, 0
        return blob_id, self.save_blob(kind, blob_id, data)

    def _queue_pack(self, writer: PackWriter, stream: PackStream) -> None:
        for piece in writer.tail(self.keys, self.rand):
            stream.write(piece)
        self._upload_slots.acquire()
        fut = self._uploader.submit(self._store_pack, writer.entries, stream)
        fut.add_done_callback(lambda _f: self._upload_slots.release())
        with self._lock:
            self._uploads.add(fut)
            done = [f for f in self._uploads if f.done()]
            self._uploads.difference_update(done)
        for f in done:
            f.result()  # a failed upload (a full disk) fails the writer that comes next

    def _wait_uploads(self) -> None:
        with self._lock:
            pending, self._uploads = self._uploads, set()
        for f in pending:
            f.result()

    def _store_pack(self, entries: list[BlobEntry], stream: PackStream) -> None:
        pack_id = stream.commit()
        self.index.add_packs([(pack_id, entries)], None)
        with self._lock:
            for e in entries:
                self._pending.discard(e.id)
            self._unindexed.append((pack_id, entries))
            due = len(self._unindexed) >= INDEX_EVERY
        if due:
            self._write_pending_index()

    def _write_pending_index(self) -> None:
        with self._index_lock:
            with self._lock:
                batch, self._unindexed = self._unindexed, []
            if batch:
                name = self.write_index_file(batch)
                self.index.assign_index_file([p for p, _ in batch], name)

    def flush(self) -> None:
        """Store partly filled packs and index everything stored so far."""
        for kind in (Kind.DATA, Kind.TREE):
            packer = self._packers[kind]
            with packer.lock:
                w, stream = packer.take(self.store)
            if w.count:
                self._queue_pack(w, stream)
            else:
                stream.abort()
        self._wait_uploads()
        self._write_pending_index()

    def load_blob(self, kind: Kind, blob_id: bytes) -> bytes | bytearray:
        found = self.index.lookup(blob_id, for_reading=True)
        if found is None:
            raise NoSuchObject(kind.name.lower() + " blob", blob_id.hex())
        return self.read_blob_at(kind, blob_id, *found)

    def read_blob_at(self, kind: Kind, blob_id: bytes, pack_id: bytes, e: BlobEntry) -> bytes | bytearray:
        """Read a blob whose place the caller already looked up."""
        what = f"{kind.name.lower()} blob {blob_id.hex()[:8]}"
        while True:
            sealed = self.store.get(FileType.DATA, pack_id.hex(), e.offset, e.length)
            try:
                return self.open_blob(kind, blob_id, sealed, what)
            except IntegrityError:
                # A damaged copy: a store with replicas reads another one (each copy at most once).
                if not self.store.damaged(FileType.DATA, pack_id.hex()):
                    raise

    def read_blobs(
        self, kind: Kind, places: dict[bytes, tuple[bytes, BlobEntry]]
    ) -> dict[bytes, bytes | bytearray | PeerBackupError]:
        """Read many blobs whose places the caller looked up, each pack range once.

        Blobs are sorted by pack and offset and neighbours read in one request
        (gaps up to READ_GAP, requests up to READ_SPAN); a blob that does not open
        from such a read is read again alone by read_blob_at, so a damaged copy
        is handled exactly as there. Failures are returned per blob, not raised.
        """
        by_pack: dict[bytes, list[BlobEntry]] = {}
        for pack_id, e in places.values():
            by_pack.setdefault(pack_id, []).append(e)
        out: dict[bytes, bytes | bytearray | PeerBackupError] = {}
        for pack_id, entries in by_pack.items():
            entries.sort(key=lambda e: e.offset)
            i = 0
            while i < len(entries):
                j, end = i + 1, entries[i].offset + entries[i].length
                while (j < len(entries) and entries[j].offset - end <= READ_GAP
                       and entries[j].offset + entries[j].length - entries[i].offset <= READ_SPAN):
                    end = max(end, entries[j].offset + entries[j].length)
                    j += 1
                self._read_run(kind, pack_id, entries[i:j], end, out)
                i = j
        return out

    def _read_run(self, kind: Kind, pack_id: bytes, run: list[BlobEntry], end: int,
                  out: dict[bytes, bytes | bytearray | PeerBackupError]) -> None:
        start = run[0].offset
        try:
            buf = memoryview(self.store.get(FileType.DATA, pack_id.hex(), start, end - start))
        except PeerBackupError:
            buf = memoryview(b"")  # each blob below retries alone and reports its own error
        for e in run:
            try:
                sealed = buf[e.offset - start:e.offset - start + e.length]
                if len(sealed) != e.length:
                    raise FormatError("blob", "truncated pack")
                out[e.id] = self.open_blob(kind, e.id, sealed, f"{kind.name.lower()} blob {e.id.hex()[:8]}")
            except PeerBackupError:
                try:
                    out[e.id] = self.read_blob_at(kind, e.id, pack_id, e)
                except PeerBackupError as exc:
                    out[e.id] = exc

    def open_blob(self, kind: Kind, blob_id: bytes, sealed: bytes | memoryview, what: str) -> bytes | bytearray:
        if len(sealed) == 0:
            raise FormatError(what, "truncated pack")
        data = open_object(self.keys, kind, sealed, blob_id, what)
        if keyed_id(self.keys.id_key, data) != blob_id:
            raise IntegrityError(f"{what}: content does not match its id")
        return data

    # ---- snapshots -----------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        data = seal_object(self.keys, Kind.SNAPSHOT, snap.to_bytes(), _SNAPSHOT_CONTEXT, self.rand)
        snap.id = content_hash(data).hex()
        self.store.put(FileType.SNAPSHOT, snap.id, data)
        return snap.id

    def load_snapshot(self, snap_id: str) -> Snapshot:
        what = f"snapshot {snap_id[:8]}"
        data = self.store.get(FileType.SNAPSHOT, snap_id)
        if content_hash(data).hex() != snap_id:
            raise IntegrityError(f"{what}: content does not match its name")
        plain = open_object(self.keys, Kind.SNAPSHOT, data, _SNAPSHOT_CONTEXT, what)
        return Snapshot.from_bytes(plain, snap_id)

    def snapshots(self, errors: list[str] | None = None) -> list[Snapshot]:
        """All readable snapshots, oldest first; unreadable ones go to errors."""
        out = []
        for name, _ in self.store.list(FileType.SNAPSHOT):
            try:
                out.append(self.load_snapshot(name))
            except PeerBackupError as exc:
                if errors is None:
                    raise
                errors.append(f"snapshot {name[:8]}: {exc}")
        out.sort(key=lambda s: (s.time_ns, s.id))
        return out

    def find_snapshot(self, ref: str) -> Snapshot:
        """A snapshot by id prefix, or `latest`."""
        if ref == "latest":
            snaps = self.snapshots(errors=[])
            if not snaps:
                raise NoSuchObject("snapshot", "latest")
            return snaps[-1]
        matches = [n for n, _ in self.store.list(FileType.SNAPSHOT) if n.startswith(ref.lower())]
        if not matches or not ref:
            raise NoSuchObject("snapshot", ref)
        if len(matches) > 1:
            raise AmbiguousId(ref)
        return self.load_snapshot(matches[0])

    def new_snapshot(self, paths: list[str], tree: bytes, tags: list[str], now: float,
                     host: str | None = None, extra: dict[str, str] | None = None) -> Snapshot:
        return Snapshot(
            time_ns=int(now * 1e9), host=host or socket.gethostname(), user=current_user(), paths=paths,
            tree=tree, tags=tags, program=f"peerbackup {__version__}", extra=dict(extra or {}),
        )


def _cache_path(cache_dir: str, name: str) -> Path:
    return Path(cache_dir) / name
