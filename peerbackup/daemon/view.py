"""What this peer reports: the queries the admin API, the dashboard, metrics and alerts answer.

Built by the Daemon (daemon/service.py) from the services it wires, passed in one by one, so the
readers take a typed view instead of the whole Daemon. `Roster` is the office's members as seen
from here (the peer store writes to its storage peers, so the Daemon builds it before the
services that write); `DaemonView` answers the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerbackup import __version__
from peerbackup.net.clockwatch import ClockWatch
from peerbackup.net.proto import store as proto_store
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.jobs.service import JobService
from peerbackup.office.membership.home import Home, Identity
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State
from peerbackup.office.nodes.service import NodeService
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.office.peerstore.repair import RepairService
from peerbackup.office.replication.service import LogService
from peerbackup.storage.store import FileType

SCAN_CACHE = 10.0  # seconds a node's replication scan is reused by the dashboard and metrics


class Roster:
    """The office's members with their addresses and liveness, this peer included."""

    def __init__(self, ident: Identity, state: State, peers: PeerService, clock: Callable[[], float],
                 advertised: Callable[[], list[str]]) -> None:
        self.ident = ident
        self.state = state
        self.peer_service = peers
        self.clock = clock
        self.advertised = advertised  # this peer's own addresses, known once its listener is bound

    async def peers(self, coordinator: str | None) -> list[dict[str, Any]]:
        now = self.clock()
        known = await self.state.addresses()
        ps = self.peer_service
        out = []
        for cert in ps.membership.members():
            me = cert.peer_id == self.ident.peer_id
            last = ps.liveness.last_heard.get(cert.peer_id)
            addrs = self.advertised() if me else known.get(cert.peer_id, [])
            out.append({
                "peer_id": cert.peer_id, "name": cert.name, "address": addrs[0] if addrs else None,
                "roles": list(cert.roles), "rank": cert.rank,
                "state": ALIVE if me else ps.liveness.state(cert.peer_id, now),
                "coordinator": cert.peer_id == coordinator, "self": me,
                "last_heard_s": None if me or last is None else round(now - last, 1),
            })
        return out

    async def storage_peers(self) -> list[StoragePeer]:
        """Every storage peer of the office with its addresses and liveness, as a writer sees them."""
        now = self.clock()
        known = await self.state.addresses()
        ps = self.peer_service
        out = []
        for cert in ps.membership.members():
            if not cert.has_role("storage") or cert.peer_id in ps.membership.revocations:
                continue
            me = cert.peer_id == self.ident.peer_id
            addrs = self.advertised() if me else known.get(cert.peer_id, [])
            alive = me or ps.liveness.state(cert.peer_id, now) == ALIVE
            out.append(StoragePeer(cert.peer_id, cert.name, tuple(addrs), cert.public_key, alive, cert.rank))
        return out


class DaemonView:
    """The queries of the admin API, the dashboard and metrics. The services are typed attributes for
    what they read directly (a node's description, its jobs' states, the logs); nothing here acts."""

    def __init__(self, home: Home, ident: Identity, roster: Roster, logs: LogService, nodes: NodeService,
                 coordination: CoordinatorService, jobs: JobService, repair: RepairService, clocks: ClockWatch,
                 clock: Callable[[], float], log: logging.Logger, *, started: float, mdns: bool,
                 limit_upload: int | None, skew_limit: float, restore_root: str | None) -> None:
        self.home = home
        self.ident = ident
        self.roster = roster
        self.logs = logs
        self.nodes = nodes
        self.coordination = coordination
        self.jobs = jobs
        self.repair = repair
        self.clocks = clocks
        self.mdns, self.limit_upload, self.skew_limit = mdns, limit_upload, skew_limit  # for status
        self._restore_root = restore_root
        self.clock = clock
        self.log = log
        self.started = started  # when the Daemon was built: status reports uptime from there
        self._scans: dict[str, tuple[float, dict[str, int]]] = {}

    def coordinator(self) -> tuple[str | None, int | None]:
        """The coordinator this peer follows and its term (None, None before any is known)."""
        return self.coordination.status()

    def status(self) -> dict[str, Any]:
        c = self.ident.certificate
        coordinator, term = self.coordinator()
        return {
            "peer_id": self.ident.peer_id, "name": c.name, "office": self.ident.office.name,
            "office_fingerprint": self.ident.office.fingerprint, "roles": list(c.roles), "rank": c.rank,
            "admin": self.ident.office_key is not None, "coordinator": coordinator, "term": term,
            "removed": self.ident.peer_id in self.roster.peer_service.membership.revocations,
            "highest_token": list(self.coordination.election.highest),
            "logs_digest": self.logs.state.digest().hex(), "config_digest": self.logs.state.config().digest().hex(),
            "log_alerts": self.logs.alerts[-10:],
            "listen": self.roster.advertised(), "mdns": self.mdns, "version": __version__,
            "limit_upload": self.limit_upload,
            "uptime_s": round(self.clock() - self.started, 1),
            "clock": self._clock_report(),
        }

    def _clock_report(self) -> dict[str, Any]:
        """Peers whose clocks are too far from ours (by name), and whether they refuse our messages for it."""
        names = {c.peer_id: c.name for c in self.roster.peer_service.membership.members()}
        report = self.clocks.report(self.clock())
        return {"skew_limit": self.skew_limit, "this_clock_suspect": self.jobs.clock_suspect(self.clock()),
                "peers_off": {names.get(p, p): off for p, off in report["peers_off"].items()},
                "refused_by": {names.get(p, p): msg for p, msg in report["refused_by"].items()}}

    async def peers(self) -> list[dict[str, Any]]:
        return await self.roster.peers(self.coordinator()[0])

    async def node_scan(self, name: str) -> dict[str, int]:
        """A node's snapshot count and files short of copies, from one listing of the storage peers; reused
        for SCAN_CACHE seconds (the dashboard and metrics scrapes ask often, a listing costs every peer)."""
        now = time.monotonic()
        cached = self._scans.get(name)
        if cached is not None and now - cached[0] < SCAN_CACHE:
            return cached[1]
        scan = await self.repair.scan(self.nodes.nodes()[name])
        out = {"snapshots": sum(1 for (ftype, _) in scan.files if ftype == FileType.SNAPSHOT),
               "under_replicated": len(scan.under())}
        self._scans[name] = (now, out)
        return out

    def restore_root(self) -> Path:
        return Path(self._restore_root) if self._restore_root else self.home.file("restores")

    async def storage_report(self) -> dict[str, Any]:
        """`peerbackup storage`: what each storage peer keeps, and how many files lack copies."""
        peers = await self.roster.storage_peers()
        client = self.roster.peer_service.client
        usages = await asyncio.gather(*(StoreClient(client, "").usage(p) for p in peers if p.alive),
                                      return_exceptions=True)
        by_id = dict(zip([p.peer_id for p in peers if p.alive], usages, strict=True))
        rows: list[dict[str, Any]] = []
        for p in peers:
            row: dict[str, Any] = {"peer_id": p.peer_id, "name": p.name, "state": "alive" if p.alive else "down",
                                   "used": None, "quota": None, "packs": None}
            u = by_id.get(p.peer_id)
            if isinstance(u, proto_store.Usage):
                row.update(used=u.used, quota=None if u.quota < 0 else u.quota, packs=sum(n for _, n in u.packs))
            elif u is not None:
                row["error"] = str(u)
            rows.append(row)
        # Before a repair round here, a count would be a guess: peers not heard yet list nothing, and
        # nothing listed is nothing short. Null says "not checked yet" rather than a reassuring 0.
        checked = bool(self.repair.last_round)
        return {"peers": rows, "under_replicated": await self.repair.under_replicated() if checked else None,
                "last_repair": self.repair.last_round if checked else None}
