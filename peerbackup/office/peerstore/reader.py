"""Reading a backup node's repository inside the daemon: the dashboard's snapshots, trees and restores.

The command line reads a node's repository in its own process (cli/officerepo.py);
the dashboard asks the daemon, which does the same here: the engine over the
peer store, in a worker thread, with this peer's copy of the node's keys (a key
holder, or an admin through the office key). Restores go only below the
configured restore root: a path that leaves it, by `..` or a symbolic link, is
refused before anything is written.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerbackup.core.objects import Kind
from peerbackup.core.retention import NODE_GROUP_BY, Policy, node_hold
from peerbackup.core.tree import DIR, FILE
from peerbackup.engine.prune import forget_by_policy
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.restorefiles import RestoreStats
from peerbackup.engine.sparse import expand
from peerbackup.engine.walk import find_path, load_tree
from peerbackup.errors import PeerBackupError, UsageError


def snapshot_json(s: Any) -> dict[str, Any]:
    return {"id": s.id, "short_id": s.short_id, "time": s.time.isoformat(), "paths": list(s.paths),
            "agent": s.extra.get("agent"), "agent_name": s.extra.get("agent_name"), "job": s.extra.get("job"),
            "parent": s.parent, "summary": s.summary.to_wire()}


def clean_path(path: str) -> str:
    """A path inside a snapshot, absolute and without `.`/`..` tricks."""
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\0" in path:
        raise UsageError(f"{path!r} is not a path inside the snapshot")
    return "/" + "/".join(parts)


def inside(root: Path, target: str) -> Path:
    """`target` resolved (symbolic links followed as far as they exist), refused unless below `root`."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(target))
    if real != real_root and real_root not in real.parents:
        raise UsageError(f"restores go only below {real_root}: {target} is outside it")
    return real


@dataclass
class Entry:
    name: str
    type: str
    size: int
    mtime: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "size": self.size, "mtime": self.mtime}


class NodeReader:
    """One open repository of a node (sync: call from a worker thread)."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def close(self) -> None:
        self.repo.close()

    def snapshots(self, policy: Policy | None = None, datasets: Collection[str] = ()) -> list[dict[str, Any]]:
        """The snapshots, oldest first; with the node's policy, what its next retention job would do with each
        (`retention`: kept by which rules, held, or removed) — the same plan the job makes."""
        snaps = sorted(self.repo.snapshots(errors=[]), key=lambda s: s.time_ns)
        out = [snapshot_json(s) for s in snaps]
        if policy is None or policy.empty():
            return out
        # The retention job's own function, as a dry run: the dashboard shows exactly what the job would do.
        plans = forget_by_policy(self.repo, policy, NODE_GROUP_BY, snaps, node_hold(datasets), dry_run=True)
        fate: dict[str, dict[str, Any]] = {}
        for p in plans:
            fate.update({sid: {"keep": True, "why": p.held or ", ".join(p.reasons[sid])} for sid in p.keep})
            fate.update({sid: {"keep": False, "why": ""} for sid in p.remove})
        for s in out:
            s["retention"] = fate[s["id"]]
        return out

    def listing(self, snapshot: str, path: str) -> list[Entry]:
        snap = self.repo.find_snapshot(snapshot)
        path = clean_path(path)
        tree = snap.tree
        if path != "/":
            node = find_path(self.repo, snap.tree, path)
            if node is None or node.type != DIR or node.subtree is None:
                raise UsageError(f"{path} is not a folder in snapshot {snap.short_id}")
            tree = node.subtree
        return [Entry(n.name, n.type, n.size, n.mtime_ns / 1e9) for n in load_tree(self.repo, tree)]

    def file_chunks(self, snapshot: str, path: str) -> tuple[int, Iterator[bytes]]:
        """(size, the file's bytes chunk by chunk) of a regular file in a snapshot."""
        snap = self.repo.find_snapshot(snapshot)
        node = find_path(self.repo, snap.tree, clean_path(path))
        if node is None or node.type != FILE:
            raise UsageError(f"{path} is not a file in snapshot {snap.short_id}")

        def chunks() -> Iterator[bytes]:
            for blob in node.content or []:
                yield bytes(self.repo.load_blob(Kind.DATA, blob))

        return node.size, expand(node.holes, chunks())  # the holes as zeros

    def is_dir(self, snapshot: str, path: str) -> bool:
        snap = self.repo.find_snapshot(snapshot)
        path = clean_path(path)
        if path == "/":
            return True
        node = find_path(self.repo, snap.tree, path)
        return node is not None and node.type == DIR

    def restore(self, snapshot: str, path: str, target: Path, sparse: bool = True) -> tuple[str, RestoreStats]:
        """Restore `path` of a snapshot (a file or a folder, with what is below it) into `target`, which
        the caller has checked; files land under target + their path in the snapshot, as `restore` does."""
        snap = self.repo.find_snapshot(snapshot)
        path = clean_path(path)
        if path != "/":
            find_path(self.repo, snap.tree, path)  # NoSuchObject, naming the path, if it is not there
        target.mkdir(parents=True, exist_ok=True)
        stats = Restorer(self.repo, sparse=sparse).restore(snap.tree, str(target),
                                                          includes=None if path == "/" else [path])
        return snap.id, stats

    def tar(self, snapshot: str, path: str, scratch: Path) -> Path:
        """A folder of a snapshot as a .tar file in `scratch` (restored there first, then packed)."""
        work = Path(tempfile.mkdtemp(prefix="ui-", dir=scratch))
        _, stats = self.restore(snapshot, path, work / "tree")
        if stats.errors:
            raise PeerBackupError(f"{len(stats.errors)} file(s) could not be restored: {stats.errors[0]}")
        out = work / "folder.tar"
        source = work / "tree" / clean_path(path).lstrip("/")
        with tarfile.open(out, "w") as tar:
            tar.add(source, arcname=os.path.basename(clean_path(path)) or "snapshot")
        return out
