"""check: is every snapshot restorable? Names exactly which objects are not.

Structure check (always): every snapshot and index file decrypts; every tree
of every snapshot loads; every chunk a file names is indexed in a pack that
exists with the size the index expects. With read_data, every pack is read
whole: its bytes must hash to its name, its header must match the index, and
every blob must decrypt and hash to its id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from peerbackup.core.crypto import content_hash
from peerbackup.core.objects import Kind
from peerbackup.core.pack import read_pack
from peerbackup.core.tree import DIR, decode_tree
from peerbackup.engine.repository import Repository
from peerbackup.errors import PeerBackupError
from peerbackup.storage.store import FileType


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    packs: int = 0
    packs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def check(
    repo: Repository, *, read_data: bool = False, report: Callable[[str], None] | None = None
) -> CheckResult:
    res = CheckResult()
    # Start from the index files themselves, not from the local cache.
    index: dict[bytes, dict[bytes, tuple[Kind, int, int, int]]] = {}
    for name, _ in repo.store.list(FileType.INDEX):
        try:
            for pid, entries in repo.read_index_file(name):
                index.setdefault(pid, {}).update(
                    {e.id: (e.kind, e.offset, e.length, e.raw_length) for e in entries}
                )
        except PeerBackupError as exc:
            res.errors.append(f"index {name[:8]}: {exc}")
    stored = dict(repo.store.list(FileType.DATA))
    res.packs = len(stored)
    blob_home: dict[bytes, bytes] = {}
    for pid, blobs in index.items():
        name = pid.hex()
        if name not in stored:
            res.errors.append(f"pack {name[:8]}: listed in the index but missing")
            continue
        end = max((off + length for _k, off, length, _r in blobs.values()), default=0)
        if end > stored[name]:
            res.errors.append(f"pack {name[:8]}: truncated ({stored[name]} bytes, index needs {end}+)")
            continue
        for bid in blobs:
            blob_home.setdefault(bid, pid)
    for name in stored:
        try:
            pid = bytes.fromhex(name)
            if pid not in index:
                # A condemned pack is one a prune's sweep is deleting (or was, when killed): never adopted again.
                fate = ("condemned by a prune: the next prune deletes it" if pid in repo.index.condemned
                        else "the next backup adopts it")
                res.warnings.append(f"pack {name[:8]}: not in any index ({fate})")
        except ValueError:
            res.warnings.append(f"data/{name}: not a pack name")

    snap_errors: list[str] = []
    snaps = repo.snapshots(errors=snap_errors)
    res.errors.extend(snap_errors)
    res.snapshots = len(snaps)
    checked_trees: dict[bytes, bool] = {}
    for snap in snaps:
        bad = _check_tree(repo, snap.tree, "", blob_home, checked_trees, res)
        if bad:
            res.errors.append(f"snapshot {snap.short_id}: {bad} damaged or missing object(s), listed above")
    res.trees = len(checked_trees)

    if read_data:
        for name in sorted(stored):
            _read_pack(repo, name, index.get(bytes.fromhex(name), {}) if _is_hex(name) else {}, res)
            if report:
                report(f"read pack {name[:8]}")
    return res


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
        return True
    except ValueError:
        return False


def _check_tree(
    repo: Repository, tree_id: bytes, path: str, blob_home: dict[bytes, bytes],
    done: dict[bytes, bool], res: CheckResult,
) -> int:
    """Number of problems below this tree (each already recorded)."""
    if tree_id in done:
        return 0 if done[tree_id] else 1
    what = f"tree {tree_id.hex()[:8]} ({path or '/'})"
    if tree_id not in blob_home:
        res.errors.append(f"{what}: missing from the index")
        done[tree_id] = False
        return 1
    try:
        nodes = decode_tree(repo.load_blob(Kind.TREE, tree_id), what)
    except PeerBackupError as exc:
        res.errors.append(f"{what}: {exc}")
        done[tree_id] = False
        return 1
    problems = 0
    for node in nodes:
        p = f"{path}/{node.name}"
        if node.type == DIR and node.subtree is not None:
            problems += _check_tree(repo, node.subtree, p, blob_home, done, res)
        for cid in node.content:
            if cid not in blob_home:
                res.errors.append(f"file {p}: chunk {cid.hex()[:8]} is missing")
                problems += 1
    done[tree_id] = problems == 0
    return problems


def _read_pack(
    repo: Repository, name: str, indexed: dict[bytes, tuple[Kind, int, int, int]], res: CheckResult
) -> None:
    what = f"pack {name[:8]}"
    try:
        data = repo.store.get(FileType.DATA, name)
    except PeerBackupError as exc:
        res.errors.append(f"{what}: {exc}")
        return
    res.packs_read += 1
    if content_hash(data).hex() != name:
        res.errors.append(f"{what}: content does not match its name (damaged)")
    try:
        entries = read_pack(repo.keys, data, what)
    except PeerBackupError as exc:
        res.errors.append(f"{what}: header: {exc}")
        return
    for e in entries:
        ref = indexed.get(e.id)
        if indexed and (ref is None or ref[1:3] != (e.offset, e.length)):
            res.errors.append(f"{what}: blob {e.id.hex()[:8]} disagrees with the index")
        try:
            repo.open_blob(e.kind, e.id, data[e.offset:e.offset + e.length],
                           f"{e.kind.name.lower()} blob {e.id.hex()[:8]} in {what}")
        except PeerBackupError as exc:
            res.errors.append(str(exc))
