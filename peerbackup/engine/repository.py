"""A repository: sealed blobs in packs, index files, snapshots and key files.

Writers add blobs concurrently; each kind (data, tree) fills its own pack, and
a full pack is sealed and stored by the thread that filled it, outside the
lock, so packing never serialises the pipeline. Index files are written every
INDEX_EVERY packs and on flush; packs stored after the last index file (a
killed backup) are found on the next open and indexed from their own headers,
which is how an interrupted backup resumes instead of starting over.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from peerbackup import __version__
from peerbackup.core import codec
from peerbackup.core.chunker import Chunker, ChunkerParams
from peerbackup.core.compress import DEFAULT_LEVEL
from peerbackup.core.crypto import KdfParams, Random, content_hash, content_hasher, keyed_id
from peerbackup.core.keys import KeyFile, KeySet
from peerbackup.core.objects import Kind, open_object, seal_object
from peerbackup.core.pack import (
    TRAILER_SIZE,
    BlobEntry,
    PackWriter,
    entries_from_wire,
    entries_to_wire,
    header_length,
    parse_header,
)
from peerbackup.core.snapshot import Snapshot
from peerbackup.engine.config import RepoConfig
from peerbackup.engine.marks import load_condemned
from peerbackup.errors import (
    AmbiguousId,
    FormatError,
    IntegrityError,
    NoSuchObject,
    NotARepository,
    PeerBackupError,
    RepositoryExists,
    UnsupportedVersion,
    WrongPassword,
)
from peerbackup.storage.cache import default_cache_root
from peerbackup.storage.filecache import FileCache
from peerbackup.storage.indexcache import IndexCache
from peerbackup.storage.store import FileType, Store, open_upload

PACK_SIZE = 16 * 1024 * 1024
INDEX_EVERY = 32
UPLOAD_QUEUE = 1
INDEX_VERSION = 1
# read_blobs: neighbouring blobs of a pack are read in one request when the gap
# between them is at most READ_GAP bytes and the request at most READ_SPAN.
READ_GAP = 64 * 1024
READ_SPAN = 4 * 1024 * 1024
# A pack's pieces reach the store in writes of about this size (_Stream).
STREAM_WRITE = 1024 * 1024
_INDEX_CONTEXT = b"index"
_SNAPSHOT_CONTEXT = b"snapshot"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class PooledRandom:
    """os.urandom served from a per-thread pool refilled POOL bytes at a time.

    Every blob sealed takes a 24-byte nonce: one getrandom per blob cost a GIL hand-off
    each (~50,000 on a tree of small files). The bytes are the kernel's all the same; a
    forked child drops the pools it inherited, so parent and child never share a nonce."""

    POOL = 4096

    def __init__(self) -> None:
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._local = threading.local()

    def __call__(self, n: int) -> bytes:
        if n > self.POOL:
            return os.urandom(n)
        local = self._local
        pool: bytes = getattr(local, "pool", b"")
        at: int = getattr(local, "at", 0)
        if at + n > len(pool):
            local.pool = pool = os.urandom(self.POOL)
            at = 0
        local.at = at + n
        return pool[at:at + n]


pooled_random = PooledRandom()


class _Stream:
    """A pack written to the store as it fills (open_upload), and hashed on the way to its name.

    Only the pack's entries stay in memory: three 16 MiB packs used to (filling, queued, being
    written). Small pieces are gathered into writes of STREAM_WRITE bytes: one write per 10 KiB
    blob cost ~2 CPU s on 50,000 small files. A failed write poisons the stream, so no later
    piece lands at a wrong offset."""

    def __init__(self, store: Store) -> None:
        self._upload = open_upload(store, FileType.DATA)
        self._hash = content_hasher()
        self._failed: BaseException | None = None
        self._pieces: list[bytes | bytearray] = []
        self._gathered = 0

    def write(self, piece: bytes | bytearray) -> None:
        if self._failed is not None:
            raise self._failed
        self._pieces.append(piece)
        self._gathered += len(piece)
        if self._gathered >= STREAM_WRITE:
            self._flush()

    def _flush(self) -> None:
        pieces, self._pieces, self._gathered = self._pieces, [], 0
        if not pieces:
            return
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            self._upload.write(data)
        except BaseException as exc:
            self._failed = exc
            self._upload.abort()
            raise
        self._hash.update(data)

    def commit(self) -> bytes:
        """Store the pack under its hash; returns the pack id."""
        if self._failed is not None:
            raise self._failed
        self._flush()
        pack_id = bytes(self._hash.digest())
        self._upload.commit(pack_id.hex())
        return pack_id

    def abort(self) -> None:
        self._pieces, self._gathered = [], 0
        self._upload.abort()


class _Packer:
    """The pack a kind of blob is filling; `lock` keeps its pieces in order in the stream."""

    def __init__(self, store: Store) -> None:
        self.lock = threading.Lock()
        self.stream = _Stream(store)
        self.writer = PackWriter(sink=self.stream.write)

    def take(self, store: Store) -> tuple[PackWriter, _Stream]:
        """The pack so far, replaced by a new one. Under `lock`."""
        full = self.writer, self.stream
        self.stream = _Stream(store)
        self.writer = PackWriter(sink=self.stream.write)
        return full


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
        self._packers = {k: _Packer(store) for k in (Kind.DATA, Kind.TREE)}
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
        listed = {name for name, _ in self.store.list(FileType.INDEX)}
        known = self.index.known_index_files()
        if known - listed:
            # An index file was removed (prune rewrote the index): rebuild from scratch.
            self.index.clear()
            known = set()
        for name in sorted(listed - known):
            try:
                packs = self.read_index_file(name)
            except NoSuchObject:
                continue
            self.index.add_packs(packs, name)
        self._load_marks()

    def read_index_file(self, name: str) -> list[tuple[bytes, list[BlobEntry]]]:
        what = f"index {name[:8]}"
        data = self.store.get(FileType.INDEX, name)
        if content_hash(data).hex() != name:
            raise IntegrityError(f"{what}: content does not match its name")
        obj = codec.unpack_map(open_object(self.keys, Kind.INDEX, data, _INDEX_CONTEXT, what), what)
        version = codec.field(obj, "v", int, what)
        if version > INDEX_VERSION:
            raise UnsupportedVersion(what, version, INDEX_VERSION)
        out = []
        for p in codec.field(obj, "packs", list, what):
            if not isinstance(p, dict) or not isinstance(p.get("id"), bytes):
                raise FormatError(what, "bad pack record")
            out.append((p["id"], entries_from_wire(p.get("blobs"), what)))
        return out

    def write_index_file(self, packs: list[tuple[bytes, list[BlobEntry]]]) -> str:
        body = codec.pack({
            "v": INDEX_VERSION,
            "packs": [{"id": pid, "blobs": entries_to_wire(es)} for pid, es in packs],
        })
        data = seal_object(self.keys, Kind.INDEX, body, _INDEX_CONTEXT, self.rand, self.level)
        name = content_hash(data).hex()
        self.store.put(FileType.INDEX, name, data)
        return name

    def read_pack_header(self, pack_name: str) -> list[BlobEntry]:
        what = f"pack {pack_name[:8]}"
        size = self.store.size(FileType.DATA, pack_name)
        if size < TRAILER_SIZE:
            raise FormatError(what, "truncated pack")
        hlen = header_length(self.store.get(FileType.DATA, pack_name, size - TRAILER_SIZE), what)
        if hlen > size - TRAILER_SIZE:
            raise FormatError(what, "truncated pack")
        sealed = self.store.get(FileType.DATA, pack_name, size - TRAILER_SIZE - hlen, hlen)
        return parse_header(self.keys, sealed, size, what)

    def recover_unindexed_packs(self, report: Callable[[str], None] | None = None) -> int:
        """Index packs stored by a writer that died before writing its index file."""
        known = self.index.pack_ids()
        found: list[tuple[bytes, list[BlobEntry]]] = []
        listed: set[bytes] = set()
        for name, _size in self.store.list(FileType.DATA):
            try:
                pid = bytes.fromhex(name)
            except ValueError:
                continue
            listed.add(pid)
            # A condemned pack missing from the index is being deleted by a prune's sweep (or was, by one
            # that was killed): indexed again, it would outlive its mark and be reused once deleted.
            if pid in known or pid in self.index.condemned:
                continue
            try:
                found.append((pid, self.read_pack_header(name)))
            except PeerBackupError as exc:
                if report:
                    report(f"ignoring unreadable pack {name[:8]}: {exc}")
        if found:
            self.index.add_packs(found, None)
        # A pack this cache holds unindexed (its writer was killed between storing it and writing its index
        # file) that the store no longer has was deleted by a prune meanwhile: written into an index file now,
        # it would be listed there but missing (seen in a soak: gamma killed mid-backup, beta's prune).
        unindexed = self.index.unindexed_packs()
        gone = [p for p in unindexed if p not in listed]
        if gone:
            self.index.forget_packs(gone)
        stray = [(p, self.index.pack_entries(p)) for p in unindexed if p in listed]
        if stray:
            self.index.assign_index_file([p for p, _ in stray], self.write_index_file(stray))
        return len(found)

    def _load_marks(self) -> None:
        self.index.condemned = load_condemned(self.store)

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
        full: tuple[PackWriter, _Stream] | None = None
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

    def _queue_pack(self, writer: PackWriter, stream: _Stream) -> None:
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

    def _store_pack(self, entries: list[BlobEntry], stream: _Stream) -> None:
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
            time_ns=int(now * 1e9), host=host or socket.gethostname(), user=_user(), paths=paths,
            tree=tree, tags=tags, program=f"peerbackup {__version__}", extra=dict(extra or {}),
        )


def _cache_path(cache_dir: str, name: str) -> Path:
    return Path(cache_dir) / name


def read_config(store: Store) -> RepoConfig:
    try:
        data = store.get(FileType.CONFIG, "config")
    except NoSuchObject:
        raise NotARepository(store.location) from None
    return RepoConfig.from_bytes(data)


def key_files(store: Store) -> Iterator[tuple[str, KeyFile]]:
    for name, _ in store.list(FileType.KEY):
        try:
            yield name, KeyFile.from_bytes(store.get(FileType.KEY, name))
        except FormatError:
            continue


def unlock(store: Store, passphrase: bytes) -> tuple[KeySet, str]:
    """The key set and the name of the key file that the passphrase opens."""
    for name, kf in key_files(store):
        try:
            return kf.open(passphrase), name
        except WrongPassword:
            continue
    raise WrongPassword()


def add_key(
    store: Store, keys: KeySet, passphrase: bytes, *, kdf: KdfParams | None = None,
    rand: Random = os.urandom, now: Callable[[], float] = time.time,
) -> str:
    kf = KeyFile.create(
        keys, passphrase, kdf or KdfParams(), rand, int(now()), socket.gethostname(), _user()
    )
    data = kf.to_bytes()
    name = content_hash(data).hex()
    store.put(FileType.KEY, name, data)
    return name
