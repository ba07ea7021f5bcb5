"""forget and prune, without ever blocking a backup.

Prune takes no exclusive lock. It works in two phases:
1. mark: packs that hold no blob any snapshot uses (after repacking the still
   used blobs of mostly-unused packs into new packs) are listed in a mark
   file. From then on every backup that opens the repository treats blobs in
   marked packs as absent and stores them again, so no new snapshot can come
   to depend on a marked pack.
2. sweep: once every backup that was already running when the mark was made
   has ended (their locks are gone), and the grace period has passed, the
   marked packs are checked once more against all snapshots and deleted, and
   the index is rewritten without them. A marked pack that some snapshot
   still needs (a backup finished in between) is kept.
When no backup is running, both phases happen in one `prune` run.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from peerbackup.core.pack import BlobEntry
from peerbackup.core.retention import DEFAULT_GROUP_BY, GroupKey, GroupPlan, Policy, SnapInfo, plan, removals
from peerbackup.core.snapshot import Snapshot
from peerbackup.engine.locks import RepoLock, read_locks
from peerbackup.engine.marks import read_marks, write_mark
from peerbackup.engine.repository import Repository
from peerbackup.engine.walk import used_blobs
from peerbackup.errors import PeerBackupError
from peerbackup.storage.store import FileType

# A pack with more than this share of unused bytes has its used blobs repacked.
REPACK_UNUSED = 0.2
# A backup whose lock started up to this long after a mark's time still counts as running during
# the mark: lock times come from the backup host's clock and mark times from the pruning host's,
# and a backup can load the index between prune reading the clock and the mark being stored.
CLOCK_MARGIN = 300.0


@dataclass
class PruneStats:
    packs_marked: int = 0
    packs_deleted: int = 0
    packs_kept: int = 0
    packs_repacked: int = 0
    bytes_freed: int = 0
    bytes_repacked: int = 0
    deferred: bool = False
    messages: list[str] = field(default_factory=list)


def _used(repo: Repository) -> set[bytes]:
    snaps = repo.snapshots()  # an unreadable snapshot must stop prune: it may need anything
    data, trees = used_blobs(repo, [s.tree for s in snaps])
    return data | trees


def prune(
    repo: Repository, *, grace: float = 0.0, now: Callable[[], float] = time.time,
    dry_run: bool = False,
) -> PruneStats:
    stats = PruneStats()
    with RepoLock(repo.store, "prune") as own:
        repo.sync_index()
        repo.recover_unindexed_packs()
        if not dry_run:
            _mark(repo, stats, now)
        _sweep(repo, stats, own.name, grace, now, dry_run)
    return stats


def _mark(repo: Repository, stats: PruneStats, now: Callable[[], float]) -> None:
    used = _used(repo)
    condemned = repo.index.condemned
    by_pack: dict[bytes, list[tuple[BlobEntry, bool]]] = {}
    for blob_id, pack_id, entry in repo.index.all_blobs():
        if pack_id in condemned:
            continue
        by_pack.setdefault(pack_id, []).append((entry, blob_id in used))
    # A blob may sit in several packs (two backups raced); keep it in one only.
    seen: set[bytes] = set()
    to_mark: list[bytes] = []
    for pack_id, entries in sorted(by_pack.items()):
        live = [(e, u and e.id not in seen) for e, u in entries]
        for e, u in live:
            if u:
                seen.add(e.id)
        used_bytes = sum(e.length for e, u in live if u)
        total = sum(e.length for e, _ in live)
        if used_bytes == 0:
            to_mark.append(pack_id)
        elif total and (total - used_bytes) / total > REPACK_UNUSED:
            for e, u in live:
                if u:
                    data = repo.load_blob(e.kind, e.id)
                    repo.save_blob(e.kind, e.id, data)
                    stats.bytes_repacked += e.length
            stats.packs_repacked += 1
            to_mark.append(pack_id)
    repo.flush()  # repacked blobs are stored and indexed before their old packs are marked
    if to_mark:
        write_mark(repo.store, to_mark, now())
        stats.packs_marked = len(to_mark)
        repo.index.condemned |= set(to_mark)


def _sweep(
    repo: Repository, stats: PruneStats, own_lock: str, grace: float,
    now: Callable[[], float], dry_run: bool,
) -> None:
    marks = read_marks(repo.store)
    if not marks:
        return
    host = socket.gethostname()
    t = now()
    locks = [lk for lk in read_locks(repo.store) if lk.name != own_lock and not lk.is_stale(t, host)]
    ready = []
    for m in marks:
        blockers = [lk for lk in locks if lk.started <= m.time + CLOCK_MARGIN]
        if blockers or t - m.time < grace:
            stats.deferred = True
            why = (f"{len(blockers)} backup(s) that may have started before it are still running"
                   if blockers else "its grace period has not passed")
            stats.messages.append(f"mark {m.name[:8]}: sweep deferred: {why}")
        else:
            ready.append(m)
    if not ready or dry_run:
        return
    repo.sync_index()
    used = _used(repo)
    doomed: set[bytes] = set().union(*(m.packs for m in ready))
    still_marked = set().union(*(m.packs for m in marks if m not in ready))
    keep: set[bytes] = set()
    for blob_id, pack_id, _e in repo.index.all_blobs():
        if pack_id in doomed and blob_id in used:
            others = repo.index.lookup(blob_id)
            if others is None or others[0] in doomed:
                keep.add(pack_id)
    doomed -= keep
    stats.packs_kept += len(keep)
    # Rewrite the index without the doomed packs before deleting anything.
    # Only index files this process has read: one a running backup writes meanwhile stays.
    old_index = repo.index.known_index_files()
    survivors: list[tuple[bytes, list[BlobEntry]]] = []
    for pid in repo.index.pack_ids() - doomed:
        survivors.append((pid, repo.index.pack_entries(pid)))
    for i in range(0, len(survivors), 2000):
        repo.write_index_file(survivors[i:i + 2000])
    for name in old_index:
        repo.store.delete(FileType.INDEX, name)
    for pid in doomed:
        name = pid.hex()
        try:
            stats.bytes_freed += repo.store.size(FileType.DATA, name)
        except PeerBackupError:
            pass
        repo.store.delete(FileType.DATA, name)
        stats.packs_deleted += 1
    for m in ready:
        repo.store.delete(FileType.MARK, m.name)
    repo.index.condemned = set(still_marked)
    repo.sync_index()


def forget_snapshots(repo: Repository, ids: list[str]) -> None:
    for sid in ids:
        repo.store.delete(FileType.SNAPSHOT, sid)


def snap_info(s: Snapshot, zone: dt.tzinfo | None = None) -> SnapInfo:
    """What retention reads of a snapshot, its time in `zone` (None: this machine's local zone)."""
    return SnapInfo(s.id, s.time.astimezone(zone), s.host, tuple(s.paths), tuple(s.tags))


def forget_by_policy(repo: Repository, policy: Policy, group_by: Sequence[str] = DEFAULT_GROUP_BY,
                     snaps: Sequence[Snapshot] | None = None, hold: Callable[[GroupKey], str] | None = None,
                     dry_run: bool = False) -> list[GroupPlan]:
    """Plan the policy group by group (core/retention.py guards the plan: no group ever loses its newest
    snapshot), then forget what it removes unless this is a dry run. The dry run and the real run go through
    this one function, so a dry run shows exactly what the real one removes."""
    if snaps is None:
        snaps = repo.snapshots()
    plans = plan([snap_info(s) for s in snaps], policy, group_by, hold)
    if not dry_run:
        forget_snapshots(repo, removals(plans))
    return plans

