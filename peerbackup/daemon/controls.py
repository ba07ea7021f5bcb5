"""What the admin API, the dashboard and alerts act through: the services, typed, never the Daemon.

`NodeAccess` holds the acts that span several services (a key holder's access to a node's
repository, a delete grant, a purge); `Controls` bundles the services the admin API drives.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peerbackup.core import codec
from peerbackup.core.certs import DeleteGrant
from peerbackup.core.settings import Settings
from peerbackup.daemon.view import Roster
from peerbackup.engine.repository import Repository
from peerbackup.errors import NotAdmin, PeerBackupError
from peerbackup.logs import event
from peerbackup.net.client import PeerClient
from peerbackup.office.alerts.rounds import AlertService
from peerbackup.office.jobs.adhoc import AdHocJobs
from peerbackup.office.jobs.agent import AgentService
from peerbackup.office.jobs.service import JobService
from peerbackup.office.membership.admission import Admissions
from peerbackup.office.membership.home import Identity
from peerbackup.office.nodes.probe import DatasetProbe
from peerbackup.office.nodes.service import NodeService
from peerbackup.office.peerstore.client import StoreClient
from peerbackup.office.peerstore.purge import purge_files
from peerbackup.office.peerstore.repair import RepairService
from peerbackup.office.replication.service import LogService

NODE_DELETE_GRANT = "node.delete_grant"  # logged: who was allowed to delete from which node, until when
DELETE_GRANT_VALIDITY = 6 * 3600
ADHOC_WAIT = 100.0  # most seconds a backup by hand on an agent waits for a coordinator (officerepo.ADHOC_TIMEOUT)


class NodeAccess:
    """A key holder's use of a node's repository in the peer store, and an admin's deletes there."""

    def __init__(self, ident: Identity, settings: Settings, roster: Roster, client: PeerClient, logs: LogService,
                 nodes: NodeService, jobs: JobService, agent: AgentService, adhoc: AdHocJobs,
                 clock: Callable[[], float], log: logging.Logger) -> None:
        self.ident = ident
        self.settings = settings
        self.roster = roster
        self.client = client
        self.logs = logs
        self.nodes = nodes
        self.jobs = jobs
        self.agent = agent
        self.adhoc = adhoc
        self.clock = clock
        self.log = log

    def needs_act_as(self, node: str) -> bool:
        """An agent (not an admin) writes as a node only with the coordinator's act-as token."""
        info = self.nodes.node(node)
        return self.ident.peer_id in info.agents and not self.ident.certificate.has_role("admin")

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
                "peers": [p.to_json() for p in await self.roster.storage_peers()], "act_as": act_as.hex(),
                "job": job}

    async def purge_node(self, node: str) -> dict[str, Any]:
        """`node purge`: logged, after the grace only (NodeService.purge), then every file deleted."""
        await self.nodes.purge(node)
        grant = await self.delete_grant(node)
        return await purge_files(StoreClient(self.client, node), await self.roster.storage_peers(), grant,
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


@dataclass(frozen=True)
class Controls:
    """The services the admin API acts through (built and owned by the Daemon)."""

    nodes: NodeService
    jobs: JobService
    agent: AgentService
    adhoc: AdHocJobs
    probe: DatasetProbe
    admissions: Admissions
    repair: RepairService
    alerts: AlertService
    logs: LogService
    access: NodeAccess
