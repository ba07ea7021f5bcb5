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

The tree walk and what it creates itself (directories, links, special files) are here; writing the files'
contents is engine/restorefiles.py (`FileWriter`, which `Restorer` extends), what the walk plans for it
engine/restoreplan.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

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
from peerbackup.engine.restorefiles import FileWriter, RestoreProgress, RestoreStats
from peerbackup.engine.restoreplan import FileJob, SubtreeReader, included
from peerbackup.engine.sparse import HoleMap
from peerbackup.engine.walk import find_path, load_tree
from peerbackup.errors import PeerBackupError, TargetNotEmpty, UnsafePath


class Restorer(FileWriter):
    def __init__(
        self, repo: Repository, *, workers: int | None = None,
        progress: RestoreProgress | None = None, overwrite: bool = False, sparse: bool = True,
    ) -> None:
        super().__init__(repo, workers=workers, progress=progress, overwrite=overwrite, sparse=sparse)
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
    ) -> Iterator[FileJob]:
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
        subtrees = SubtreeReader(self.repo, [
            n.subtree for n in nodes
            if n.type == DIR and n.subtree is not None and any(included(f"{snap_path}/{n.name}", includes))
        ])
        seen: set[str] = set()
        for node in nodes:
            if not is_safe_name(node.name) or node.name in seen:
                self.stats.errors.append(str(UnsafePath(f"{snap_path}/{node.name}")))
                continue
            seen.add(node.name)
            path = f"{snap_path}/{node.name}"
            take, descend = included(path, includes)
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
    ) -> FileJob | None:
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
        return FileJob(path, node, offsets, places, HoleMap(node.holes) if node.holes else None)

    # ---- links and special files ---------------------------------------------------

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

