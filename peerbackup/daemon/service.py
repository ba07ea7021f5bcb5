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
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from peerbackup import __version__
from peerbackup.core.settings import Settings
from peerbackup.daemon import metrics
from peerbackup.daemon.addresses import DEFAULT_PORT, format_address, local_ipv4, parse_address
from peerbackup.daemon.admin import AdminApi
from peerbackup.daemon.controls import Controls, NodeAccess
from peerbackup.daemon.disk import DiskWatch
from peerbackup.daemon.rounds import Loop, Rounds
from peerbackup.daemon.view import DaemonView, Roster
from peerbackup.errors import DiskFull, DuplicatePeer, PeerBackupError, StartError
from peerbackup.logs import event
from peerbackup.net.client import PeerClient
from peerbackup.net.discovery import Discovery, ServiceHint
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
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State
from peerbackup.office.nodes.probe import DatasetProbe
from peerbackup.office.nodes.service import NodeService
from peerbackup.office.peerstore.client import UploadLimit
from peerbackup.office.peerstore.holder import StorageService
from peerbackup.office.peerstore.repair import RepairService
from peerbackup.office.replication.service import LogService
from peerbackup.storage.eventlog import EventStore
from peerbackup.storage.holder import Holder

ENDPOINT_WIDTH = 96  # bytes of admin.json: its url (127.0.0.1 and a port) and pid, with room to spare


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
        self._runners: list[web.AppRunner] = []
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
        """Build the services over the home's databases, then listen, publish and start the loops."""
        await self._open_membership()
        await self._open_logs()
        await self._build_office()
        self._build_view()
        port = await self._serve_peers()
        await self._serve_admin()
        if self.options.metrics_listen:
            await self._serve_metrics(self.options.metrics_listen)
        if self.options.mdns:
            await self._start_discovery(port)
        # The start-up wait counts from here: discovery (its duplicate probe included) is over,
        # so the wait is spent hearing the current coordinator.
        self.coordination.election.started = self.clock()
        self._start_loops()
        if self.ident.peer_id in self.peer_service.membership.revocations:
            event(self.log, "daemon.removed", logging.ERROR,
                  reason="this peer has been removed from the office: every member refuses it; "
                         "ask an admin for a new invite and join again with a new home")
        assert self._admin is not None
        event(self.log, "daemon.started", peer=self.ident.peer_id, name=self.ident.certificate.name,
              office=self.ident.office.name, listen=",".join(self.advertised), mdns=self.options.mdns,
              admin=f"127.0.0.1:{self._admin.port}", version=__version__)

    async def _open_membership(self) -> None:
        """The state database, the peer client and the membership service over them."""
        self.state = await State.open(self.home.file(STATE_DB))
        await asyncio.to_thread(os.chmod, self.home.file(STATE_DB), 0o600)
        self.session = aiohttp.ClientSession()
        # Errors name peers as membership does (load() below replaces membership: looked up each time).
        self.client = client = PeerClient(self.ident.key, self.settings, self.clock, secrets.token_bytes, self.session,
                                          lambda peer_id: self.peer_service.membership.name(peer_id))
        self.peer_service = PeerService(self.ident, self.settings, self.state, client, self.clock,
                                        secrets.token_bytes, self.log, lambda: self.advertised, self.disk.failed)
        self.admissions = Admissions(self.peer_service)  # invites, joins, removals
        self.roster = Roster(self.ident, self.state, self.peer_service, self.clock, lambda: self.advertised)
        await self.peer_service.load()

    async def _open_logs(self) -> None:
        """The event database and the replicated logs over it."""
        self.events = await EventStore.open(self.home.file(EVENTS_DB))
        await asyncio.to_thread(os.chmod, self.home.file(EVENTS_DB), 0o600)
        self.logs = LogService(self.peer_service, self.events, self.clock, self.log)
        self.peer_service.logs = self.logs  # each needs the other (office/membership LogsLink)
        await self.logs.load()

    async def _build_office(self) -> None:
        """Nodes, the peer store, coordination, jobs and alerts, each given the services it uses."""
        self.nodes = NodeService(self.logs, self.log)
        holder = await asyncio.to_thread(Holder, self.home.file(HELD), self.options.storage_quota, self.clock)
        self.storage = StorageService(self.logs, self.nodes.views, holder, self.log,
                                      lambda: self.coordination.status()[0], self.disk.failed)
        limit = UploadLimit(self.options.limit_upload, time.monotonic) if self.options.limit_upload else None
        self.agent = AgentService(self.nodes.nodes, self.nodes.keys, self.roster.storage_peers, self.client,
                                  self.ident.peer_id, self.ident.certificate.name, self.ident.office.fingerprint,
                                  self.home.file(CACHE), self.log, self.clock, limit)
        self.repair = RepairService(self.nodes.nodes, self.roster.storage_peers, self.client, holder,
                                    self.ident.peer_id, self.settings, self.clock,
                                    self.peer_service.liveness.last_heard.get, self.log, self.storage.forgotten)
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
        assert self.state is not None
        self.rounds = Rounds(self.ident, self.settings, self.state, self.peer_service, self.logs, self.coordination,
                             self.scheduler, self.alerts, self.repair, self.static, lambda: self.advertised,
                             self.clock, self.log)
        if self.ident.office_key is not None and self.ident.peer_id not in self.logs.state.config().members:
            # An admin's own membership is written by itself (init, recover); others' by their inviter.
            # Spawned: the log waits until it is in step with a peer before it appends anything.
            self.peer_service.spawn(self.rounds.log_own_membership())

    def _build_view(self) -> None:
        """What the admin API, the dashboard and metrics read (the view) and act through (the controls)."""
        self.view = DaemonView(self.home, self.ident, self.roster, self.logs, self.nodes, self.coordination,
                               self.jobs, self.repair, self.client.clocks, self.clock, self.log, started=self.started,
                               mdns=self.options.mdns, limit_upload=self.options.limit_upload,
                               skew_limit=self.settings.clock_skew, restore_root=self.options.restore_root)
        access = NodeAccess(self.ident, self.settings, self.roster, self.client, self.logs, self.nodes, self.jobs,
                            self.agent, self.adhoc, self.clock, self.log)
        self.controls = Controls(self.nodes, self.jobs, self.agent, self.adhoc, self.probe, self.admissions,
                                 self.repair, self.alerts, self.logs, access)

    async def _serve_peers(self) -> int:
        """The peer server on the listen address, every service's handlers on it; answers the bound port."""
        server = PeerServer(self.ident.key, self.settings, self.clock, secrets.token_bytes, self._spend_nonce,
                            self.peer_service.whoami, self.log, self.client.clocks)
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
        return port

    async def _serve_admin(self) -> None:
        admin = AdminApi(secrets.token_urlsafe(32), self.view, self.controls)
        admin_runner = web.AppRunner(admin.app(), access_log=None, handle_signals=False)
        await admin_runner.setup()
        self._runners.append(admin_runner)
        await web.TCPSite(admin_runner, "127.0.0.1", 0).start()
        admin.port = self._bound_port(admin_runner)
        self._admin = admin
        await self._publish_admin()

    async def _start_discovery(self, port: int) -> None:
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

    def _start_loops(self) -> None:
        for fn in [*self.rounds.loops(), self._disk]:
            self._loop(fn)

    @staticmethod
    def _bound_port(runner: web.AppRunner) -> int:
        for addr in runner.addresses:
            return int(addr[1])
        raise StartError("the listener did not bind")

    def _loop(self, fn: Loop) -> None:
        self._loops.append(asyncio.create_task(self._supervised(fn)))

    async def _supervised(self, fn: Loop) -> None:
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

    async def _serve_metrics(self, listen: str) -> None:
        host, port = parse_address(listen, 9742)

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(body=await metrics.render(self.view), headers={"Content-Type": metrics.CONTENT_TYPE})

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
