"""Backup: scan -> file cache -> chunk -> dedup -> compress -> seal -> pack -> store.

The scanning thread walks the tree, skips files the file cache proves
unchanged, reads and chunks the large ones, and hands each chunk to a bounded
pool whose workers hash, deduplicate, compress, seal and pack it (all of which
release the GIL, so both cores stay busy). A small file (one chunk) is handed
over unread, in batches: the workers open, read and store it, so on a tree of
small files the reading is spread over every core instead of bottlenecking the
scan. Directory trees are finished in post-order as their files complete,
without stalling the scan. The snapshot is written only after every pack and
index it refers to is stored.

The hand-off to the workers lives in engine/chunkqueue.py, what a backup reports
(progress, failures and their reasons, the result) in engine/backupreport.py.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from peerbackup.core.objects import Kind
from peerbackup.core.snapshot import Summary
from peerbackup.core.tree import DIR, FILE, SOCKET, SYMLINK, Node, encode_tree
from peerbackup.engine.backupreport import CHANGED, BackupProgress, BackupResult, FileFailure, NoProgress, reason_of
from peerbackup.engine.chunkqueue import ChunkQueue, PendingFile
from peerbackup.engine.excludes import Excluder
from peerbackup.engine.fsmeta import node_from_stat, node_type, open_for_read, read_xattrs
from peerbackup.engine.locks import RepoLock
from peerbackup.engine.repository import Repository
from peerbackup.engine.sparse import DataReader, may_have_holes
from peerbackup.storage.filecache import FileCache

# Trees finished before they are stored together.
_TREE_BATCH = 256

# Files modified this recently are not trusted to the file cache: a write in
# the same clock tick after our read would leave size and mtime unchanged.
_RACY_NS = 2_000_000_000

_NONE: frozenset[bytes] = frozenset()

# Returned for a file that cannot be opened: it is left out of the snapshot.
_UNREADABLE = PendingFile(Node("", FILE), b"", os.stat_result((0,) * 10), [], cacheable=False)


@dataclass
class _PendingDir:
    nodes: list[Node]
    files: list[PendingFile]
    parent: Node | None  # whose subtree this tree becomes; None for the root
    result: list[bytes] = field(default_factory=list)
    done_upto: int = 0  # files[:done_upto] are known done (_finish_ready)


class Archiver:
    def __init__(
        self, repo: Repository, *, excludes: Excluder | None = None,
        progress: BackupProgress | None = None, workers: int | None = None,
        now: Callable[[], float] = time.time, use_file_cache: bool = True,
        host: str | None = None, extra: dict[str, str] | None = None,
    ) -> None:
        self.repo = repo
        # A backup node's snapshots name the node as their host, so the parent is found per
        # (node, paths) whichever agent made the last one; extra records the agent and job.
        self.host = host or socket.gethostname()
        self.extra = dict(extra or {})
        self.excludes = excludes or Excluder([])
        self.progress = progress or NoProgress()
        self.workers = workers or max(2, (os.cpu_count() or 2))
        self.now = now
        self.use_file_cache = use_file_cache
        self.summary = Summary()
        self.errors: list[str] = []
        self.failures: list[FileFailure] = []
        self._stats_lock = threading.Lock()
        self._chunks = ChunkQueue(repo, self.progress, self._read_small)
        self._dirs: deque[_PendingDir] = deque()
        self._fc: FileCache | None = None
        self._live: dict[bytes, set[bytes]] = {}  # directory/ -> chunk ids of its cached files that are stored
        self._trees: list[tuple[bytes, bytes]] = []  # (id, encoded) finished, not yet stored (_store_trees)
        self._start_ns = 0

    # ---- entry point ---------------------------------------------------------

    def backup(self, sources: list[str], tags: list[str] | None = None) -> BackupResult:
        started = self.now()
        self._start_ns = time.time_ns()
        paths = sorted({os.path.abspath(s) for s in sources})
        with RepoLock(self.repo.store, "backup"):
            self.repo.sync_index()
            self.repo.recover_unindexed_packs(report=lambda m: self.errors.append(m))
            self._fc = self.repo.file_cache() if self.use_file_cache else None
            try:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="chunk") as pool:
                    self._chunks.pool = pool
                    try:
                        root = self._backup_roots(paths)
                        self._chunks.flush()
                    finally:
                        self._chunks.pool = None
                tree_id = self._finish_all(root)
                self.repo.flush()
                parent = self._parent(paths)
                snap = self.repo.new_snapshot(paths, tree_id, tags or [], started, self.host, self.extra)
                snap.parent = parent
                self.summary.errors = len(self.errors)
                self.summary.duration = self.now() - started
                snap.summary = self.summary
                self.repo.save_snapshot(snap)
                if self._fc is not None:
                    self._fc.commit()
            finally:
                if self._fc is not None:
                    self._fc.close()
        return BackupResult(snap, self.errors, self.failures)

    def _parent(self, paths: list[str]) -> str | None:
        try:
            snaps = self.repo.snapshots(errors=[])
        except Exception:
            return None
        same = [s for s in snaps if s.paths == paths and s.host == self.host]
        return same[-1].id if same else None

    # ---- tree walk ---------------------------------------------------------------

    def _backup_roots(self, paths: list[str]) -> _PendingDir:
        """Build the virtual root: each source under its full path, as restic does."""
        hierarchy: dict[str, dict] = {}  # type: ignore[type-arg]
        for p in paths:
            node = hierarchy
            for part in [x for x in p.split("/") if x]:
                node = node.setdefault(part, {})
            node[""] = {}  # marks a source
        return self._virtual_dir("/", hierarchy, None)

    def _virtual_dir(self, path: str, children: dict, parent: Node | None) -> _PendingDir:  # type: ignore[type-arg]
        nodes: list[Node] = []
        pending = _PendingDir(nodes=nodes, files=[], parent=parent)
        for name in sorted(k for k in children if k):
            child_path = os.path.join(path, name)
            sub = children[name]
            if "" in sub:  # a source: back it up whole
                try:
                    st = os.lstat(child_path)
                except OSError as exc:
                    self._os_error(child_path, "cannot read", exc)
                    continue
                self._entry(child_path, name, st, nodes, pending)
                continue
            try:
                st = os.stat(child_path)
            except OSError as exc:
                self._os_error(child_path, "cannot read", exc)
                continue
            node = node_from_stat(name, st, DIR)
            nodes.append(node)
            self._virtual_dir(child_path, sub, node)
        self._dirs.append(pending)
        return pending

    def _dir(self, path: str, node: Node) -> None:
        nodes: list[Node] = []
        pending = _PendingDir(nodes=nodes, files=[], parent=node)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._os_error(path, "cannot list directory", exc)
            entries = []
        bdir = os.fsencode(path).rstrip(b"/") + b"/"  # "/" too: as its files' paths begin
        if self._fc is not None and entries:
            # The directory's file-cache entries and which of their chunks the index holds (for
            # entries not verified in this index epoch), in a few queries rather than a few per file.
            self._live[bdir] = self.repo.index.has_many(self._fc.load_dir(bdir))
        for entry in entries:
            child = entry.path
            if self.excludes and self.excludes.excluded(child, entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._os_error(child, "cannot stat", exc)
                continue
            self._entry(child, entry.name, st, nodes, pending)
        if self._fc is not None:
            self._fc.unload_dir(bdir)
            self._live.pop(bdir, None)
        self.summary.dirs += 1
        self._dirs.append(pending)
        self._finish_ready()

    def _entry(self, path: str, name: str, st: os.stat_result, nodes: list[Node], pending: _PendingDir) -> None:
        kind = node_type(st.st_mode)
        if kind is None or kind == SOCKET:
            return  # sockets are recreated by their programs; nothing to restore
        node = node_from_stat(name, st, kind)
        if kind != FILE:  # a file's are read in _file, unless the file cache has them
            node.xattrs = read_xattrs(path)
        if kind == SYMLINK:
            try:
                node.target = os.readlink(path)
            except OSError as exc:
                self._os_error(path, "cannot read link", exc)
                return
        if kind == FILE:
            pf = self._file(path, node, st)
            if pf is _UNREADABLE:
                return
            if pf is not None:
                pending.files.append(pf)
        nodes.append(node)
        if kind == DIR:
            self._dir(path, node)

    # ---- files ---------------------------------------------------------------------

    def _file(self, path: str, node: Node, st: os.stat_result) -> PendingFile | None:
        """Start backing up a file: None when the file cache settled it."""
        bpath = os.fsencode(path)
        self.progress.scanned(path, st.st_size)
        self.summary.bytes_processed += st.st_size
        if self._fc is not None:
            known, cached, xattrs, verified, holes = self._fc.check(bpath, st)
            live = self._live.get(bpath[:bpath.rfind(b"/") + 1], _NONE)
            if cached is not None and xattrs is not None and (verified or all(
                c in live or self.repo.index.has(c) for c in cached
            )):
                node.content, node.xattrs, node.holes = cached, xattrs, list(holes)
                self._fc.touch(bpath)
                self.summary.files_unmodified += 1
                self.progress.processed(st.st_size)
                self.progress.file_done(path, st.st_size)
                return None
            if known:
                self.summary.files_changed += 1
            else:
                self.summary.files_new += 1
        else:
            self.summary.files_new += 1
        allocated = st.st_blocks * 512
        sparse = may_have_holes(st.st_size, allocated)
        if st.st_size <= self.repo.chunker.params.min_size and not sparse:
            # One chunk: a worker reads and stores it (_read_small), so reading spreads over the cores.
            pf = PendingFile(node, bpath, st, [], cacheable=False, small=True)
            self._chunks.queue(pf, st.st_size)
            return pf
        pf = PendingFile(node, bpath, st, [], cacheable=False)
        self._read(pf, sparse, lambda chunk: pf.futures.append(self._chunks.submit(chunk)))
        self.summary.bytes_read += pf.bytes_read
        return _UNREADABLE if pf.unreadable else pf

    def _read(self, pf: PendingFile, sparse: bool, emit: Callable[[memoryview], object]) -> None:
        """Read and chunk a file, handing each chunk to emit; sets the node's xattrs, size and holes,
        and pf's bytes_read, cacheable and unreadable (left out of the snapshot: it could not be opened).
        Runs in the scanning thread or, for a small file, in a worker."""
        node, st = pf.node, pf.st
        path = os.fsdecode(pf.path)
        node.xattrs = read_xattrs(path)
        try:
            fd = open_for_read(path)
        except OSError as exc:
            self._os_error(path, "cannot open", exc)
            pf.unreadable = True
            return
        size = 0
        # The file without its holes, when it may have some.
        data = DataReader(fd, st.st_size, st.st_blocks * 512) if sparse else None
        try:
            try:
                # A small file as the scan saw it is one read and one chunk: no file object, no chunker.
                whole = os.read(fd, st.st_size + 1) if pf.small else None
                if whole is not None and len(whole) == st.st_size:
                    size = len(whole)
                    if whole:
                        emit(memoryview(whole))
                else:  # any other file, or a small one that grew or shrank since: chunked as it is now
                    os.lseek(fd, 0, os.SEEK_SET)
                    with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                        for chunk in self.repo.chunker.chunks(f if data is None else data, st.st_size):
                            size += len(chunk)
                            emit(chunk)
                after = os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self._os_error(path, "read error", exc)
            # Keep what was read so the snapshot stays consistent with its sizes.
            node.size, node.holes = data.layout(size) if data is not None else (size, [])
            return
        pf.bytes_read = size
        node.size, node.holes = data.layout(size) if data is not None else (size, [])
        changed = (
            node.size != st.st_size or after.st_mtime_ns != st.st_mtime_ns
            or after.st_size != st.st_size
        )
        if changed:
            self._error(path, "file changed while it was being read", CHANGED)
        racy = st.st_mtime_ns > self._start_ns - _RACY_NS
        pf.cacheable = not changed and not racy

    def _read_small(self, pf: PendingFile) -> None:
        """In a worker: read, hash, deduplicate and store a small file."""
        try:
            self._read(pf, False, lambda chunk: pf.results.append(self._chunks.store_chunk(None, chunk)))
        except BaseException as exc:  # raised when its directory is finished, as a chunk's would be
            pf.failed = exc

    # ---- finishing trees -----------------------------------------------------------

    def _finish_ready(self) -> None:
        """Finish the oldest pending directories whose chunks are all done."""
        while self._dirs:
            # Resumes where the last look stopped: the oldest directory is looked at after every
            # directory scanned, and rescanning its files each time cost the scan ~1 s on 50,000 files.
            d = self._dirs[0]
            files = d.files
            while d.done_upto < len(files) and files[d.done_upto].done():
                d.done_upto += 1
            if d.done_upto < len(files):
                return
            self._finish_dir(self._dirs.popleft())

    def _finish_all(self, root: _PendingDir) -> bytes:
        while self._dirs:
            self._finish_dir(self._dirs.popleft())
        self._store_trees()
        return root.result[0]

    def _finish_dir(self, d: _PendingDir) -> None:
        for pf in d.files:
            if pf.small:
                assert pf.task is not None
                pf.task.result()
                if pf.failed is not None:
                    raise pf.failed
                self.summary.bytes_read += pf.bytes_read
                if pf.unreadable:  # left out of the snapshot, as the scanning thread leaves such a file
                    d.nodes.remove(pf.node)
                    continue
            content = []
            for blob_id, added, stored in pf.results or (fut.result() for fut in pf.futures):
                content.append(blob_id)
                if added:
                    self.summary.data_blobs_added += 1
                    self.summary.bytes_added += added
                    self.summary.bytes_stored += stored
            pf.node.content = content
            self.progress.file_done(os.fsdecode(pf.path), pf.node.size)
            if self._fc is not None and pf.cacheable:
                self._fc.update(pf.path, pf.st, content, pf.node.xattrs, pf.node.holes)
        tree = encode_tree(d.nodes)
        tree_id = self.repo.blob_id(tree)
        self._trees.append((tree_id, tree))
        if len(self._trees) >= _TREE_BATCH:
            self._store_trees()
        if d.parent is not None:
            d.parent.subtree = tree_id
        d.result.append(tree_id)

    def _store_trees(self) -> None:
        """Store the new ones of the trees finished so far, asking the index about them in one
        query rather than one each: a no-change backup finds every tree there."""
        trees, self._trees = self._trees, []
        repo = self.repo
        known = repo.index.has_many(tree_id for tree_id, _ in trees)
        for tree_id, tree in trees:
            if tree_id in known or not repo.claim(tree_id):
                continue
            self.summary.tree_blobs_added += 1
            self.summary.bytes_stored += repo.save_blob(Kind.TREE, tree_id, tree)

    def _error(self, path: str, message: str, reason: str) -> None:
        failure = FileFailure(path, reason, message)
        with self._stats_lock:
            self.errors.append(str(failure))
            self.failures.append(failure)
        self.progress.error(path, message)

    def _os_error(self, path: str, what: str, exc: OSError) -> None:
        self._error(path, f"{what}: {exc.strerror or exc}", reason_of(exc))

