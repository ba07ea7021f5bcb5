"""The daemon: the one place that builds, starts, supervises and stops every service.

Start order: state -> peer server -> admin API -> mDNS -> loops. Stop is the
reverse, so the mDNS goodbye goes out while we can still answer, and the
state database closes last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from peerbackup import __version__
from peerbackup.core import codec
from peerbackup.core.certs import DeleteGrant
from peerbackup.core.logstate import MEMBER_ADD
from peerbackup.core.settings import Settings
from peerbackup.daemon import metrics
from peerbackup.daemon.addresses import DEFAULT_PORT, format_address, local_ipv4, parse_address
from peerbackup.daemon.admin import AdminApi
from peerbackup.daemon.disk import DiskWatch
from peerbackup.engine.repository import Repository
from peerbackup.errors import DiskFull, DuplicatePeer, NotAdmin, PeerBackupError, StartError
from peerbackup.logs import event
from peerbackup.net.client import PeerClient
from peerbackup.net.discovery import Discovery, ServiceHint
from peerbackup.net.proto import store as proto_store
from peerbackup.net.server import PeerServer
from peerbackup.office.alerts.rounds import AlertService
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.jobs.adhoc import AdHocJobs
from peerbackup.office.jobs.agent import AgentService
from peerbackup.office.jobs.scheduler import Scheduler
from peerbackup.office.jobs.service import JobService
from peerbackup.office.membership.admission import Admissions
from peerbackup.office.membership.home import (
    ADMIN_ENDPOINT,
    ADMIN_TOKEN,
    CACHE,
    EVENTS_DB,
    HELD,
    STATE_DB,
    Home,
    Identity,
    rewrite_private,
)
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State
from peerbackup.office.nodes.probe import DatasetProbe
from peerbackup.office.nodes.service import NodeService
from peerbackup.office.peerstore.client import StoragePeer, StoreClient, UploadLimit
from peerbackup.office.peerstore.holder import StorageService
from peerbackup.office.peerstore.purge import purge_files
from peerbackup.office.peerstore.repair import RepairService
from peerbackup.office.replication.service import LogService
from peerbackup.storage.eventlog import EventStore
from peerbackup.storage.holder import Holder
from peerbackup.storage.store import FileType

NODE_DELETE_GRANT = "node.delete_grant"  # logged: who was allowed to delete from which node, until when
DELETE_GRANT_VALIDITY = 6 * 3600
ENDPOINT_WIDTH = 96  # bytes of admin.json: its url (127.0.0.1 and a port) and pid, with room to spare
SCAN_CACHE = 10.0  # seconds a node's replication scan is reused by the dashboard and metrics
ADHOC_WAIT = 100.0  # most seconds a backup by hand on an agent waits for a coordinator (officerepo.ADHOC_TIMEOUT)


@dataclass
class DaemonOptions:
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    peers: list[str] = field(default_factory=list)
    mdns: bool = True
    mdns_interface: str | None = None
    storage_quota: int | None = None  # bytes this peer keeps for others; None: no limit but the disk
    settings: Settings = field(default_factory=Settings)
    restore_root: str | None = None  # where the dashboard may restore to; None: HOME/restores
    metrics_listen: str | None = None  # HOST:PORT of a token-free /metrics for Prometheus; None: none
    limit_upload: int | None = None  # bytes/s this peer's jobs send to storage peers at most; None: no limit


class Daemon:
    def __init__(self, home: Home, ident: Identity, options: DaemonOptions, log: logging.Logger,
                 clock: Callable[[], float] = time.time) -> None:
        self.home = home
        self.ident = ident
        self.options = options
        self.settings = options.settings
        self.log = log
        self.clock = clock
        self.started = clock()
        self.listen_host, self.listen_port = parse_address(options.listen)
        self.static = [format_address(*parse_address(p)) for p in options.peers]
        self.advertised: list[str] = []
        self._static_failed: set[str] = set()
        self._runners: list[web.AppRunner] = []
        self._scans: dict[str, tuple[float, dict[str, int]]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self.discovery: Discovery | None = None
        self.session: aiohttp.ClientSession | None = None
        self.state: State | None = None
        self.events: EventStore | None = None
        self.logs: LogService
        self.coordination: CoordinatorService
        self.nodes: NodeService
        self.storage: StorageService
        self.peer_service: PeerService
        self.stopping = asyncio.Event()
        self.fatal: PeerBackupError | None = None
        self.disk = DiskWatch(home.path, log)
        self._admin: AdminApi | None = None
        self._admin_unpublished = False  # its token and address wait for room on the disk

    def _advertised_ips(self) -> list[str]:
        if self.options.mdns_interface:
            return [self.options.mdns_interface]
        if self.listen_host in ("0.0.0.0", ""):
            return local_ipv4()
        return [self.listen_host]

    async def start(self) -> None:
        self.state = await State.open(self.home.file(STATE_DB))
        await asyncio.to_thread(os.chmod, self.home.file(STATE_DB), 0o600)
        self.session = aiohttp.ClientSession()
        client = PeerClient(self.ident.key, self.settings, self.clock, secrets.token_bytes, self.session)
        self.peer_service = PeerService(self.ident, self.settings, self.state, client, self.clock,
                                        secrets.token_bytes, self.log, lambda: self.advertised)
        self.admissions = Admissions(self.peer_service)  # invites, joins, removals
        client.names = lambda peer_id: self.peer_service.membership.name(peer_id)  # load() replaces membership
        self.peer_service.disk_full = self.disk.failed
        await self.peer_service.load()
        self.events = await EventStore.open(self.home.file(EVENTS_DB))
        await asyncio.to_thread(os.chmod, self.home.file(EVENTS_DB), 0o600)
        self.logs = LogService(self.peer_service, self.events, self.clock, self.log)
        self.peer_service.logs = self.logs
        await self.logs.load()
        self.nodes = NodeService(self.logs, self.log)
        holder = await asyncio.to_thread(Holder, self.home.file(HELD), self.options.storage_quota, self.clock)
        self.storage = StorageService(self.logs, self.nodes.views, holder, self.log,
                                      lambda: self.coordination.status()[0], self.disk.failed)
        limit = UploadLimit(self.options.limit_upload, time.monotonic) if self.options.limit_upload else None
        self.agent = AgentService(self.nodes.nodes, self.nodes.keys, self.storage_peers, client, self.ident.peer_id,
                                  self.ident.certificate.name, self.ident.office.fingerprint, self.home.file(CACHE),
                                  self.log, self.clock, limit)
        self.repair = RepairService(self.nodes.nodes, self.storage_peers, client, holder, self.ident.peer_id,
                                    self.settings, self.clock, self.peer_service.liveness.last_heard.get, self.log,
                                    self.storage.forgotten)
        self.coordination = CoordinatorService(self.peer_service, self.logs, self.clock, self.log)
        await self.coordination.load()
        self.jobs = JobService(self.nodes, self.coordination, self.agent, self.clock, self.log)
        self.scheduler = Scheduler(self.jobs)
        self.peer_service.spawn(self.jobs.runner.end_lost_runs(self.clock()))
        self.probe = DatasetProbe(self.nodes, self.jobs.send, self.clock, self.log)
        self.adhoc = AdHocJobs(self.jobs)
        self.alerts = AlertService(self.logs, self.jobs.job_states,
                                   lambda: self.coordination.status()[0] == self.ident.peer_id,
                                   lambda: self.repair.last_round, lambda: self.session, self.clock, self.log)
        if self.ident.office_key is not None and self.ident.peer_id not in self.logs.state.config().members:
            # An admin's own membership is written by itself (init, recover); others' by their inviter.
            # Spawned: the log waits until it is in step with a peer before it appends anything.
            self.peer_service.spawn(self._log_own_membership())

        server = PeerServer(self.ident.key, self.settings, self.clock, secrets.token_bytes, self._spend_nonce,
                            self.peer_service.whoami, self.log)
        server.clocks = self.clocks = client.clocks  # both halves of what clock skew looks like, for status
        self.peer_service.register(server)
        self.admissions.register(server)
        self.logs.register(server)
        self.coordination.register(server)
        self.storage.register(server)
        self.jobs.register(server)
        self.probe.register(server)
        runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.listen_host, self.listen_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartError(f"cannot listen on {self.options.listen}: {exc.strerror}") from None
        port = self._bound_port(runner)
        self.advertised = [format_address(ip, port) for ip in self._advertised_ips()]

        admin = AdminApi(secrets.token_urlsafe(32), self)
        admin_runner = web.AppRunner(admin.app(), access_log=None, handle_signals=False)
        await admin_runner.setup()
        self._runners.append(admin_runner)
        await web.TCPSite(admin_runner, "127.0.0.1", 0).start()
        admin.port = self._bound_port(admin_runner)
        self._admin = admin
        await self._publish_admin()

        if self.options.metrics_listen:
            await self._serve_metrics(self.options.metrics_listen)

        if self.options.mdns:
            self.discovery = Discovery(self.ident.peer_id, self.ident.certificate.name, self.ident.office.fingerprint,
                                       port, self._advertised_ips(), self.options.mdns_interface, self._on_hint,
                                       self._on_duplicate, self.log)
            try:
                await self.discovery.start()
            except OSError as exc:
                # No multicast here (no route, no interface): static peers still work.
                event(self.log, "mdns.unavailable", logging.ERROR, reason=str(exc),
                      hint="use --peer HOST:PORT, or --mdns-interface IP")
                self.discovery = None

        # The start-up wait counts from here: discovery (its duplicate probe included) is over,
        # so the wait is spent hearing the current coordinator.
        self.coordination.election.started = self.clock()
        self._loop(self._heartbeats)
        self._loop(self._coordinator)
        self._loop(self._housekeeping)
        self._loop(self._repair)
        self._loop(self._schedules)
        self._loop(self._alerts)
        self._loop(self._disk)
        if self.ident.certificate.has_role("storage"):
            self._loop(self._scrub)
        if self.ident.peer_id in self.peer_service.membership.revocations:
            event(self.log, "daemon.removed", logging.ERROR,
                  reason="this peer has been removed from the office: every member refuses it; "
                         "ask an admin for a new invite and join again with a new home")
        event(self.log, "daemon.started", peer=self.ident.peer_id, name=self.ident.certificate.name,
              office=self.ident.office.name, listen=",".join(self.advertised), mdns=self.options.mdns,
              admin=f"127.0.0.1:{admin.port}", version=__version__)

    @staticmethod
    def _bound_port(runner: web.AppRunner) -> int:
        for addr in runner.addresses:
            return int(addr[1])
        raise StartError("the listener did not bind")

    def _loop(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._loops.append(asyncio.create_task(self._supervised(fn)))

    async def _supervised(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A loop that fails is logged and restarted: one bad peer must not stop the heartbeats.
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.disk.failed(exc, fn.__name__):  # a full disk is said once, not at every round
                    self.log.exception("daemon.loop_failed", extra={"pb_fields": {"loop": fn.__name__}})
                await asyncio.sleep(self.settings.heartbeat)

    def _on_duplicate(self, message: str) -> None:
        event(self.log, "mdns.duplicate", logging.ERROR, reason=message)
        self.fatal = DuplicatePeer(message)
        self.stopping.set()

    def _on_hint(self, hint: ServiceHint) -> None:
        self.peer_service.spawn(self.peer_service.hint(hint.peer_id, hint.addresses, "mdns"))

    async def _heartbeats(self) -> None:
        while True:
            if self.static:
                answering = await self._addresses_alive()
                for address in self.static:
                    if address not in self.advertised and address not in answering:
                        self.peer_service.spawn(self._contact_static(address))
            await self.peer_service.heartbeat_round()
            self.peer_service.check_liveness()
            await asyncio.sleep(self.settings.heartbeat)

    async def _log_own_membership(self) -> None:
        try:
            await self.logs.wait_ready()
            if self.ident.peer_id not in self.logs.state.config().members:
                await self.logs.append(MEMBER_ADD, {"cert": self.ident.certificate.raw})
        except PeerBackupError as exc:
            event(self.log, "member.log_failed", logging.ERROR, peer=self.ident.peer_id, reason=str(exc))

    async def _coordinator(self) -> None:
        while True:
            await self.coordination.tick()
            await asyncio.sleep(min(self.settings.heartbeat, self.settings.renew / 2))

    async def _contact_static(self, address: str) -> None:
        peer_id = await self.peer_service.contact(address)
        if peer_id is None and address not in self._static_failed:
            # Said once at the default level (a typo in --peer must not go unnoticed), then only with -v.
            self._static_failed.add(address)
            event(self.log, "peer.static_unreachable", logging.WARNING, address=address,
                  hint="no member of this office answers there yet; retrying every heartbeat")
        elif peer_id is not None:
            self._static_failed.discard(address)

    async def _addresses_alive(self) -> set[str]:
        """Every address known for a peer that is alive: static peers there need no introduction."""
        assert self.state is not None
        now = self.clock()
        return {a for peer_id, addrs in (await self.state.addresses()).items()
                if self.peer_service.liveness.state(peer_id, now) == ALIVE for a in addrs}

    async def _spend_nonce(self, issuer: str, nonce: bytes, expires: float) -> bool:
        assert self.state is not None
        try:
            return await self.state.spend_nonce(issuer, nonce, expires)
        except DiskFull as exc:
            self.disk.failed(exc, "a request's nonce")
            raise

    async def _publish_admin(self) -> None:
        """The admin API's token and address, for the CLI on this machine. On a full disk the daemon starts
        without them (it still serves its peers) and writes them once there is room again."""
        assert self._admin is not None
        try:
            await asyncio.to_thread(rewrite_private, self.home.file(ADMIN_TOKEN), self._admin.token.encode())
            # Padded to a fixed width, so a rewrite in place on a full disk fits the last run's file.
            await asyncio.to_thread(rewrite_private, self.home.file(ADMIN_ENDPOINT), json.dumps(
                {"url": f"http://127.0.0.1:{self._admin.port}", "pid": os.getpid()}).encode().ljust(ENDPOINT_WIDTH))
            self._admin_unpublished = False
        except OSError as exc:
            if not self.disk.failed(exc, "writing the admin API's token and address"):
                raise
            self._admin_unpublished = True

    async def _disk(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            if self.disk.full:
                await asyncio.to_thread(self.disk.check)
            if self._admin_unpublished and not self.disk.full:
                await self._publish_admin()

    async def _housekeeping(self) -> None:
        assert self.state is not None
        while True:
            await self.state.prune_nonces(self.clock())
            await asyncio.sleep(max(self.settings.clock_skew / 4, 1.0))

    async def _schedules(self) -> None:
        # Its own loop: a dispatch waits for an agent's answer, and the lease renewal must not.
        while True:
            await self.scheduler.tick()
            await asyncio.sleep(self.settings.heartbeat)

    async def _alerts(self) -> None:
        # Its own loop: a webhook or SMTP server that is slow to answer must not delay dispatches.
        while True:
            await asyncio.sleep(self.settings.alert_interval)
            await self.alerts.tick()

    async def _repair(self) -> None:
        # The coordinator repairs (one peer, not all of them copying the same files); a second
        # coordinator under a partition only adds copies that are harmless.
        while True:
            await asyncio.sleep(self.settings.repair_interval)
            if self.coordination.status()[0] == self.ident.peer_id:
                summary = await self.repair.run_once()
                event(self.log, "repair.round", logging.DEBUG, **{k: v["under_replicated"] for k, v in summary.items()})

    async def _scrub(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scrub_interval)
            result = await self.repair.scrub_once()
            event(self.log, "scrub.done", logging.INFO if result["damaged"] else logging.DEBUG, **result)

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if getattr(self, "peer_service", None) is not None:
            await self.peer_service.cancel_all()
        if self.discovery is not None:
            await self.discovery.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        for name in (ADMIN_ENDPOINT, ADMIN_TOKEN):
            await asyncio.to_thread(self.home.file(name).unlink, missing_ok=True)
        if self.session is not None:
            await self.session.close()
        if self.events is not None:
            await self.events.close()
        if self.state is not None:
            await self.state.close()
        event(self.log, "daemon.stopped", peer=self.ident.peer_id)

    # ---- what the admin API reports --------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.ident.certificate
        coordinator, term = self.coordination.status()
        return {
            "peer_id": self.ident.peer_id, "name": c.name, "office": self.ident.office.name,
            "office_fingerprint": self.ident.office.fingerprint, "roles": list(c.roles), "rank": c.rank,
            "admin": self.ident.office_key is not None, "coordinator": coordinator, "term": term,
            "removed": self.ident.peer_id in self.peer_service.membership.revocations,
            "highest_token": list(self.coordination.election.highest),
            "logs_digest": self.logs.state.digest().hex(), "config_digest": self.logs.state.config().digest().hex(),
            "log_alerts": self.logs.alerts[-10:],
            "listen": self.advertised, "mdns": self.options.mdns, "version": __version__,
            "limit_upload": self.options.limit_upload,
            "uptime_s": round(self.clock() - self.started, 1),
            "clock": self._clock_report(),
        }

    def _clock_report(self) -> dict[str, Any]:
        """Peers whose clocks are too far from ours (by name), and whether they refuse our messages for it."""
        names = {c.peer_id: c.name for c in self.peer_service.membership.members()}
        report = self.clocks.report(self.clock())
        return {"skew_limit": self.settings.clock_skew, "this_clock_suspect": self.jobs.clock_suspect(self.clock()),
                "peers_off": {names.get(p, p): off for p, off in report["peers_off"].items()},
                "refused_by": {names.get(p, p): msg for p, msg in report["refused_by"].items()}}

    async def peers(self) -> list[dict[str, Any]]:
        assert self.state is not None
        now = self.clock()
        known = await self.state.addresses()
        ps = self.peer_service
        coordinator, _ = self.coordination.status()
        out = []
        for cert in ps.membership.members():
            me = cert.peer_id == self.ident.peer_id
            last = ps.liveness.last_heard.get(cert.peer_id)
            addrs = self.advertised if me else known.get(cert.peer_id, [])
            out.append({
                "peer_id": cert.peer_id, "name": cert.name, "address": addrs[0] if addrs else None,
                "roles": list(cert.roles), "rank": cert.rank,
                "state": ALIVE if me else ps.liveness.state(cert.peer_id, now),
                "coordinator": cert.peer_id == coordinator, "self": me,
                "last_heard_s": None if me or last is None else round(now - last, 1),
            })
        return out


    # ---- the peer store ----------------------------------------------------------------

    async def storage_peers(self) -> list[StoragePeer]:
        """Every storage peer of the office with its addresses and liveness, as a writer sees them."""
        assert self.state is not None
        now = self.clock()
        known = await self.state.addresses()
        ps = self.peer_service
        out = []
        for cert in ps.membership.members():
            if not cert.has_role("storage") or cert.peer_id in ps.membership.revocations:
                continue
            me = cert.peer_id == self.ident.peer_id
            addrs = self.advertised if me else known.get(cert.peer_id, [])
            alive = me or ps.liveness.state(cert.peer_id, now) == ALIVE
            out.append(StoragePeer(cert.peer_id, cert.name, tuple(addrs), cert.public_key, alive, cert.rank))
        return out

    def needs_act_as(self, node: str) -> bool:
        """An agent (not an admin) writes as a node only with the coordinator's act-as token."""
        info = self.nodes.node(node)
        return self.ident.peer_id in info.agents and not self.ident.certificate.has_role("admin")

    async def _serve_metrics(self, listen: str) -> None:
        host, port = parse_address(listen, 9742)

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(body=await metrics.render(self), headers={"Content-Type": metrics.CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            raise StartError(f"cannot serve metrics on {listen}: {exc.strerror}") from None
        event(self.log, "metrics.listening", address=format_address(host, self._bound_port(runner)))

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
        return Path(self.options.restore_root) if self.options.restore_root else self.home.file("restores")

    async def open_node_repo(self, node: str) -> Repository:
        """The node's repository in the peer store, for reading here (the dashboard)."""
        return await self.agent.open_repo(node)

    async def store_access(self, node: str, backup: list[str] | None = None) -> dict[str, Any]:
        """What a key holder's process needs to use a node's repository in the peer store. For a
        `backup` (of those paths) by an agent: the act-as token of a job of the node (office/jobs/adhoc.py),
        waited for while the office has no coordinator yet."""
        keys = self.nodes.keys(node)  # NotAHolder, naming who holds them, for anyone else
        info = self.nodes.nodes()[node]
        act_as, job = b"", ""
        if backup is not None and self.needs_act_as(node):
            job, act_as = await self.adhoc.start(node, backup, min(max(2 * self.settings.lease, 30.0), ADHOC_WAIT))
        elif self.needs_act_as(node):
            try:
                act_as = await self.jobs.actas.act_as(node, f"cli-{secrets.token_hex(6)}")
            except PeerBackupError as exc:  # reads still work; a write will be refused, saying why
                event(self.log, "act_as.unavailable", logging.WARNING, node=node, reason=str(exc))
        return {"node": node, "replicas": info.replicas, "created": info.created, "me": self.ident.peer_id,
                "office": self.ident.office.fingerprint, "keys": codec.pack(keys.to_wire()).hex(),
                "peers": [p.to_json() for p in await self.storage_peers()], "act_as": act_as.hex(), "job": job}

    async def storage_report(self) -> dict[str, Any]:
        """`peerbackup storage`: what each storage peer keeps, and how many files lack copies."""
        peers = await self.storage_peers()
        client = self.peer_service.client
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

    async def purge_node(self, node: str) -> dict[str, Any]:
        """`node purge`: logged, after the grace only (NodeService.purge), then every file deleted."""
        await self.nodes.purge(node)
        grant = await self.delete_grant(node)
        return await purge_files(StoreClient(self.peer_service.client, node), await self.storage_peers(), grant,
                                 self.clock, self.log)

    async def delete_grant(self, node: str, valid_for: int = DELETE_GRANT_VALIDITY) -> bytes:
        """An admin's delete capability for its own prune of a node, logged in the control log."""
        if self.ident.office_key is None:
            raise NotAdmin()
        gone = self.nodes.removed().get(node)
        if gone is None or not gone.purged:  # a purged node's keys are not needed to delete its files
            self.nodes.keys(node)
        grant = DeleteGrant.issue(self.ident.office_key, node, self.ident.peer_id, int(self.clock()), valid_for)
        await self.logs.append(NODE_DELETE_GRANT, {"node": node, "holder": self.ident.peer_id,
                                                   "expires": grant.expires, "grant": grant.raw})
        event(self.log, "node.delete_grant", node=node, holder=self.ident.peer_id, expires=grant.expires)
        return grant.raw


def run(home: Home, ident: Identity, options: DaemonOptions, log: logging.Logger) -> None:
    """Run in the foreground until SIGTERM or Ctrl-C; stop cleanly either way."""

    async def main() -> None:
        daemon = Daemon(home, ident, options, log)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stopping.set)
        try:
            await daemon.start()
            await daemon.stopping.wait()
            event(log, "daemon.stopping", reason="fatal" if daemon.fatal else "signal")
        finally:
            await daemon.stop()
        if daemon.fatal is not None:
            raise daemon.fatal

    asyncio.run(main())
