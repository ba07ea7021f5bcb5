"""The office's periodic rounds, one loop each: heartbeats, coordination, housekeeping, repair,
schedules, alerts and (on a storage peer) scrubbing. The Daemon builds them over its services,
starts each as a task and restarts one that fails (daemon/service.py `_supervised`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from peerbackup.core.logstate import MEMBER_ADD
from peerbackup.core.settings import Settings
from peerbackup.errors import PeerBackupError
from peerbackup.logs import event
from peerbackup.office.alerts.rounds import AlertService
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.jobs.scheduler import Scheduler
from peerbackup.office.membership.home import Identity
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.membership.state import State
from peerbackup.office.peerstore.repair import RepairService
from peerbackup.office.replication.service import LogService

Loop = Callable[[], Coroutine[Any, Any, None]]


class Rounds:
    def __init__(self, ident: Identity, settings: Settings, state: State, peers: PeerService, logs: LogService,
                 coordination: CoordinatorService, scheduler: Scheduler, alerts: AlertService, repair: RepairService,
                 static: list[str], advertised: Callable[[], list[str]], clock: Callable[[], float],
                 log: logging.Logger) -> None:
        self.ident = ident
        self.settings = settings
        self.state = state
        self.peer_service = peers
        self.logs = logs
        self.coordination = coordination
        self.scheduler = scheduler
        self.alerts = alerts
        self.repair = repair
        self.static = static  # --peer addresses, contacted until a member answers there
        self.advertised = advertised
        self.clock = clock
        self.log = log
        self._static_failed: set[str] = set()

    def loops(self) -> list[Loop]:
        """Every loop this peer runs; a loop's name is what a failure of it logs."""
        out = [self._heartbeats, self._coordinator, self._housekeeping, self._repair, self._schedules, self._alerts]
        if self.ident.certificate.has_role("storage"):
            out.append(self._scrub)
        return out

    async def _heartbeats(self) -> None:
        while True:
            if self.static:
                answering = await self._addresses_alive()
                for address in self.static:
                    if address not in self.advertised() and address not in answering:
                        self.peer_service.spawn(self._contact_static(address))
            await self.peer_service.heartbeat_round()
            self.peer_service.check_liveness()
            await asyncio.sleep(self.settings.heartbeat)

    async def log_own_membership(self) -> None:
        """An admin's own membership, written by itself (init, recover) once the log is in step with a peer."""
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
        now = self.clock()
        return {a for peer_id, addrs in (await self.state.addresses()).items()
                if self.peer_service.liveness.state(peer_id, now) == ALIVE for a in addrs}

    async def _housekeeping(self) -> None:
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
