"""The agent's side of a node's jobs: back up its data sets, or apply its retention policy, as the node.

The daemon runs the engine in a worker thread, writing into the peer store through
the daemon's own event loop. Snapshots name the node as their host, so the parent
snapshot is found per (node, data set) whichever agent made the last one, and they
record the agent and the job in `extra`. Which data sets: those of the node this
peer may reach (`on` empty or naming it) and can read. The job's counters live in
its JobRecord, which the heartbeats (office/jobs/runner.py) read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from peerbackup.core.keys import KeySet
from peerbackup.core.nodes import Dataset, Node
from peerbackup.core.retention import NODE_GROUP_BY, Policy, group_outcome, node_hold, removals
from peerbackup.engine.backup import Archiver
from peerbackup.engine.backupreport import DENIED, FileFailure
from peerbackup.engine.excludes import Excluder
from peerbackup.engine.prescan import count
from peerbackup.engine.prune import forget_by_policy, prune
from peerbackup.engine.repository import Repository
from peerbackup.errors import PeerBackupError, UsageError
from peerbackup.logs import event
from peerbackup.net.client import PeerClient
from peerbackup.net.proto.probe import MISSING
from peerbackup.office.peerstore.client import StoragePeer, StoreClient, UploadLimit
from peerbackup.office.peerstore.store import PeerStore, open_config

T = TypeVar("T")
WAIT = 3600.0  # a job run by hand waits this long for the machine's running job


@dataclass
class JobRecord:
    job: str
    node: str
    state: str = "waiting"  # waiting (for the machine's other job), running, done, failed
    started: float = 0.0
    finished: float | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failures: list[FileFailure] = field(default_factory=list)  # files and data sets the snapshots lack
    files: int = 0  # done
    nbytes: int = 0
    files_seen: int = 0  # found by the scan so far
    nbytes_seen: int = 0
    files_total: int = -1  # counted before the backup starts (-1: not counted)
    nbytes_total: int = -1
    outcome: dict[str, Any] = field(default_factory=dict)  # what a retention job did
    deadline: float = 0.0  # how long it may wait for another job of this machine's to end
    superseded: bool = False  # the coordinator gave the job to another agent: never start it


class RecordProgress:
    """The engine's progress callbacks, counted into the job's record (read by the heartbeats; plain int
    updates from the engine's thread, read whole on the loop)."""

    def __init__(self, rec: JobRecord) -> None:
        self.rec = rec

    def scanned(self, path: str, size: int) -> None:
        self.rec.files_seen += 1
        self.rec.nbytes_seen += size

    def processed(self, nbytes: int) -> None:
        self.rec.nbytes += nbytes

    def file_done(self, path: str, size: int) -> None:
        self.rec.files += 1

    def error(self, path: str, message: str) -> None:
        pass  # the backup's result lists them


ELSEWHERE = "elsewhere"  # a data set given to other agents only; MISSING: not on this machine (yet)


def readable(datasets: list[Dataset], me: str) -> tuple[list[Dataset], list[FileFailure]]:
    """The data sets this peer may and can back up, and why the others are not: given to other agents
    only (ELSEWHERE, not a failure of this peer's), missing here, or refused."""
    ok, why = [], []
    for d in datasets:
        if d.on and me not in d.on:
            why.append(FileFailure(d.path, ELSEWHERE, f"only on {', '.join(d.on)}"))
        elif not os.path.lexists(d.path):
            why.append(FileFailure(d.path, MISSING, "missing on this machine"))
        elif not os.access(d.path, os.R_OK, effective_ids=True):  # capabilities count (the systemd unit's)
            why.append(FileFailure(d.path, DENIED, "not readable here (permission denied)"))
        else:
            ok.append(d)
    return ok, why


class AgentService:
    def __init__(self, nodes: Callable[[], dict[str, Node]], keys: Callable[[str], KeySet],
                 peers: Callable[[], Awaitable[list[StoragePeer]]], client: PeerClient, me: str, name: str,
                 office: str, cache_root: Path, log: logging.Logger, clock: Callable[[], float] = time.time,
                 limit: UploadLimit | None = None) -> None:
        self.nodes = nodes
        self.limit = limit  # limit_upload: the pace of every pack this machine's jobs send
        self.keys = keys
        self.peers = peers
        self.client = client
        self.me = me
        self.name = name
        self.office = office
        self.cache_root = cache_root
        self.log = log
        self.clock = clock
        self.jobs: dict[str, JobRecord] = {}
        self._busy = threading.Lock()  # one job at a time on a machine
        self.prune_grace = 0.0  # marked packs swept at once when no backup runs (engine/prune.py)

    async def _store(self, node: Node, job: str, act_as: bytes) -> PeerStore:
        loop = asyncio.get_running_loop()

        def on_loop(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        client = StoreClient(self.client, node.name, self.limit)
        return PeerStore(node.name, node.replicas, await self.peers(), client, on_loop, self.me,
                         warn=lambda m: event(self.log, "agent.store_warning", logging.WARNING,
                                                       node=node.name, job=job, message=m), act_as=act_as)

    async def _job(self, what: str, rec: JobRecord, work: Callable[[], None]) -> JobRecord:
        """Run one job's engine work in a thread, one at a time on this machine, recording how it ended."""
        self.jobs[rec.job] = rec
        event(self.log, f"agent.{what}_started", node=rec.node, job=rec.job)

        def locked() -> None:
            # One job at a time per machine: a job dispatched while another runs waits its turn.
            if not self._busy.acquire(timeout=max(rec.deadline - self.clock(), 0.0)):
                raise UsageError("another job of this peer's ran until this job's deadline")
            if rec.superseded:
                self._busy.release()
                raise UsageError("superseded: the coordinator gave this job to another agent while it waited "
                                 "for this peer's other job")
            rec.state = "running"
            try:
                work()
            finally:
                self._busy.release()

        try:
            await asyncio.to_thread(locked)
        except PeerBackupError as exc:
            rec.state, rec.finished = "failed", self.clock()
            rec.errors.append(str(exc))
            event(self.log, f"agent.{what}_failed", logging.ERROR, node=rec.node, job=rec.job, reason=str(exc))
            raise
        rec.state, rec.finished = "done", self.clock()
        event(self.log, f"agent.{what}_done", node=rec.node, job=rec.job, snapshots=len(rec.snapshots),
              errors=len(rec.errors), **rec.outcome)
        return rec

    async def open_repo(self, node_name: str) -> Repository:
        """The node's repository, to read (snapshots, trees, restores): no act-as token, so no writes."""
        self.keys(node_name)
        node = self.nodes()[node_name]
        store = await self._store(node, f"read-{node_name}", b"")
        return await asyncio.to_thread(self._open, store, node)

    def _open(self, store: PeerStore, node: Node) -> Repository:
        keys = self.keys(node.name)
        return Repository(store, keys, open_config(store, self.office, node.name, node.created),
                          cache_root=self.cache_root)

    async def run(self, node_name: str, job: str, act_as: bytes = b"", deadline: float | None = None) -> JobRecord:
        """Back up the node's data sets that this peer can read, as the node."""
        self.keys(node_name)  # NotAHolder (naming who holds them) for anyone else
        node = self.nodes()[node_name]
        datasets, skipped = readable(sorted(node.datasets.values(), key=lambda d: d.path), self.me)
        if not datasets:
            reasons = "; ".join(map(str, skipped)) or "the node has no data set (peerbackup dataset add)"
            raise UsageError(f"nothing of backup node {node_name} can be backed up here: {reasons}")
        # A data set given to other agents is theirs to back up; one missing or refused here is a hole.
        lacking = [f for f in skipped if f.reason != ELSEWHERE]
        rec = JobRecord(job, node_name, started=self.clock(), errors=list(map(str, lacking)), failures=lacking,
                        deadline=deadline or self.clock() + WAIT)
        store = await self._store(node, job, act_as)

        def work() -> None:
            # Counted first (a walk of stat calls), so progress is a share of a known whole, with an ETA.
            rec.files_total, rec.nbytes_total = 0, 0
            for d in datasets:
                files, size = count([d.path], Excluder(list(d.exclude)))
                rec.files_total += files
                rec.nbytes_total += size
            repo = self._open(store, node)
            try:
                for d in datasets:
                    extra = {"node": node.name, "agent": self.me, "agent_name": self.name, "job": job}
                    result = Archiver(repo, excludes=Excluder(list(d.exclude)), host=node.name, extra=extra,
                                      progress=RecordProgress(rec)).backup([d.path])
                    s = result.snapshot
                    rec.snapshots.append({"id": s.id, "path": d.path, "parent": s.parent,
                                          "summary": s.summary.to_wire()})
                    rec.errors += result.errors
                    rec.failures += result.failures
            finally:
                repo.close()

        return await self._job("backup", rec, work)

    async def retention(self, node_name: str, job: str, act_as: bytes, prune_too: bool,
                        deadline: float | None = None) -> JobRecord:
        """Forget the node's snapshots its policy does not keep, data set by data set (buckets in this machine's
        local time, as `repo forget` does), then prune when asked: with a retention job's act-as token, which
        may delete. A data set no longer in the node's configuration is held whole: its snapshots stay until an
        admin forgets them on purpose."""
        self.keys(node_name)
        node = self.nodes()[node_name]
        policy = Policy.of_node(node.policy)
        if policy.empty():
            raise UsageError(f"backup node {node_name} has no retention policy (peerbackup node policy)")
        rec = JobRecord(job, node_name, started=self.clock(), deadline=deadline or self.clock() + WAIT)
        store = await self._store(node, job, act_as)

        def work() -> None:
            repo = self._open(store, node)
            try:
                plans = forget_by_policy(repo, policy, NODE_GROUP_BY, hold=node_hold(node.datasets))
                rec.outcome.update(kept=sum(len(p.keep) for p in plans),
                                   forgotten=[sid[:16] for sid in removals(plans)], pruned=prune_too,
                                   groups=[group_outcome(p) for p in plans])
                if prune_too:
                    st = prune(repo, grace=self.prune_grace)
                    rec.outcome.update(packs_deleted=st.packs_deleted, packs_repacked=st.packs_repacked,
                                       bytes_freed=st.bytes_freed, prune_deferred=st.deferred)
            finally:
                repo.close()

        return await self._job("retention", rec, work)
