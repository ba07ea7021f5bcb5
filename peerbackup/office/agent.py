"""The agent's side of a node backup (issue 6, begun): back up a node's data sets, as the node.

The daemon runs the engine in a worker thread, writing into the peer store through
the daemon's own event loop. Snapshots name the node as their host, so the parent
snapshot is found per (node, data set) whichever agent made the last one, and they
record the agent and the job in `extra`. Which data sets: those of the node this
peer may reach (`on` empty or naming it) and can read. Coordinator dispatch and
act-as tokens (issue 6) will call `run`; for now an agent's own daemon does,
through the admin API.
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
from peerbackup.daemon.logs import event
from peerbackup.engine.backup import Archiver
from peerbackup.engine.excludes import Excluder
from peerbackup.engine.repository import Repository
from peerbackup.errors import PeerBackupError, UsageError
from peerbackup.net.client import PeerClient
from peerbackup.office.peerstore import PeerStore, StoragePeer, StoreClient, open_config

T = TypeVar("T")


@dataclass
class JobRecord:
    job: str
    node: str
    state: str = "running"  # running, done, failed
    started: float = 0.0
    finished: float | None = None
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def readable(datasets: list[Dataset], me: str) -> tuple[list[Dataset], list[str]]:
    """The data sets this peer may and can back up, and why the others are not."""
    ok, why = [], []
    for d in datasets:
        if d.on and me not in d.on:
            why.append(f"{d.path}: only on {', '.join(d.on)}")
        elif not os.access(d.path, os.R_OK):
            why.append(f"{d.path}: not readable here")
        else:
            ok.append(d)
    return ok, why


class AgentService:
    def __init__(self, nodes: Callable[[], dict[str, Node]], keys: Callable[[str], KeySet],
                 peers: Callable[[], Awaitable[list[StoragePeer]]], client: PeerClient, me: str, name: str,
                 office: str, cache_root: Path, log: logging.Logger, clock: Callable[[], float] = time.time) -> None:
        self.nodes = nodes
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
        self._busy = threading.Lock()  # one backup at a time on a machine

    async def run(self, node_name: str, job: str, act_as: bytes = b"") -> JobRecord:
        keys = self.keys(node_name)  # NotAHolder (naming who holds them) for anyone else
        node = self.nodes()[node_name]
        datasets, skipped = readable(sorted(node.datasets.values(), key=lambda d: d.path), self.me)
        if not datasets:
            reasons = "; ".join(skipped) or "the node has no data set (peerbackup dataset add)"
            raise UsageError(f"nothing of backup node {node_name} can be backed up here: {reasons}")
        rec = self.jobs[job] = JobRecord(job, node_name, started=self.clock())
        loop = asyncio.get_running_loop()

        def on_loop(coro: Coroutine[Any, Any, T]) -> T:
            return asyncio.run_coroutine_threadsafe(coro, loop).result()

        store = PeerStore(node_name, node.replicas, await self.peers(), StoreClient(self.client, node_name),
                          on_loop, self.me, warn=lambda m: event(self.log, "agent.store_warning", logging.WARNING,
                                                                 node=node_name, job=job, message=m),
                          act_as=act_as)
        event(self.log, "agent.backup_started", node=node_name, job=job, datasets=len(datasets))
        try:
            await asyncio.to_thread(self._backup, store, keys, node, datasets, job, rec)
        except PeerBackupError as exc:
            rec.state, rec.finished = "failed", self.clock()
            rec.errors.append(str(exc))
            event(self.log, "agent.backup_failed", logging.ERROR, node=node_name, job=job, reason=str(exc))
            raise
        rec.state, rec.finished = "done", self.clock()
        rec.errors += skipped
        event(self.log, "agent.backup_done", node=node_name, job=job, snapshots=len(rec.snapshots),
              errors=len(rec.errors))
        return rec

    def _backup(self, store: PeerStore, keys: KeySet, node: Node, datasets: list[Dataset], job: str,
                rec: JobRecord) -> None:
        if not self._busy.acquire(blocking=False):
            raise UsageError("a backup is already running on this peer")
        try:
            config = open_config(store, self.office, node.name, node.created)
            repo = Repository(store, keys, config, cache_root=self.cache_root)
            try:
                for d in datasets:
                    extra = {"node": node.name, "agent": self.me, "agent_name": self.name, "job": job}
                    result = Archiver(repo, excludes=Excluder(list(d.exclude)), host=node.name,
                                      extra=extra).backup([d.path])
                    s = result.snapshot
                    rec.snapshots.append({"id": s.id, "path": d.path, "parent": s.parent,
                                          "summary": s.summary.to_wire()})
                    rec.errors += result.errors
            finally:
                repo.close()
        finally:
            self._busy.release()
