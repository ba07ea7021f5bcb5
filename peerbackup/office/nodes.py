"""Backup nodes, their keys and their grants, as a service over the office control log.

Only admins change nodes (the log refuses node events from anyone else); any
holder of a node's keys (its admins and granted agents) can open them here.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Any

from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.keys import KeySet
from peerbackup.core.nodes import (
    DEFAULT_REPLICAS,
    MAX_REPLICAS,
    NODE_ADD,
    NODE_DATASET,
    NODE_GRANT,
    NODE_POLICY,
    NODE_REVOKE,
    NODE_SCHEDULE,
    Dataset,
    Node,
    check_fields,
    check_node_name,
    open_keys,
    schedule_fields,
    seal_keys,
    seal_office,
)
from peerbackup.core.schedule import Schedule
from peerbackup.daemon.logs import event
from peerbackup.errors import FormatError, NotAdmin, NotAHolder, UsageError
from peerbackup.office.replication import LogService


class NodeService:
    def __init__(self, logs: LogService, log: logging.Logger) -> None:
        self.logs = logs
        self.peers = logs.peers
        self.log = log

    def nodes(self) -> dict[str, Node]:
        return self.logs.state.config().nodes

    def _node(self, name: str) -> Node:
        try:
            check_node_name(name)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        node = self.nodes().get(name)
        if node is None:
            raise UsageError(f"no backup node named {name!r} (see `peerbackup node list`)")
        return node

    def node(self, name: str) -> Node:
        """The node, or a UsageError naming the mistake."""
        return self._node(name)

    def _admin(self) -> None:
        if not self.peers.ident.certificate.has_role("admin"):
            raise NotAdmin()

    def _names(self) -> dict[str, str]:
        return {p: c.name for p, c in self.peers.membership.certs.items()}

    def describe(self, node: Node) -> dict[str, Any]:
        names = self._names()
        out = node.describe()
        out["agent_names"] = [names.get(p, p) for p in out["agents"]]
        out["holder_names"] = [names.get(p, p) for p in out["holders"]]
        out["i_hold_keys"] = self.peers.me in node.boxes
        return out

    def keys(self, name: str) -> KeySet:
        """This peer's copy of the node's keys, or NotAHolder naming who holds them."""
        node = self._node(name)
        box = node.boxes.get(self.peers.me)
        office_key = self.peers.ident.office_key
        if box is None and office_key is not None and node.office_box:
            return open_keys(node.office_box, office_key)  # an admin added later, or rebuilt from the kit
        if box is None:
            names = self._names()
            raise NotAHolder(name, ", ".join(sorted(names.get(p, p) for p in node.holders)) or "nobody")
        return open_keys(box, self.peers.ident.key)

    async def add(self, name: str, replicas: int = DEFAULT_REPLICAS) -> Node:
        self._admin()
        try:
            check_node_name(name)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        if not 1 <= replicas <= MAX_REPLICAS:
            raise UsageError(f"--replicas must be 1 to {MAX_REPLICAS}")
        if name in self.nodes():
            raise UsageError(f"a backup node named {name!r} exists already")
        admins = {c.peer_id: c.public_key for c in self.peers.membership.members() if c.has_role("admin")}
        keys = KeySet.generate(secrets.token_bytes)
        await self.logs.append(NODE_ADD, {"node": name, "replicas": replicas, "keys": seal_keys(keys, admins),
                                          "office_keys": seal_office(keys, self.peers.ident.office.public_key)})
        event(self.log, "node.added", node=name, replicas=replicas, holders=len(admins))
        return self._node(name)

    async def add_dataset(self, name: str, dataset: Dataset) -> Node:
        self._admin()
        self._node(name)
        fields = dataset.to_fields(name)
        reason = check_fields(NODE_DATASET, fields)
        if reason:
            raise UsageError(reason)
        for peer in dataset.on:
            self.peers.membership.member(peer, self.peers.clock())
        await self.logs.append(NODE_DATASET, fields)
        event(self.log, "node.dataset", node=name, path=dataset.path)
        return self._node(name)

    async def add_schedule(self, name: str, schedule: Schedule) -> tuple[Node, Schedule]:
        self._admin()
        self._node(name)
        schedule = dataclasses.replace(schedule, node=name, id=schedule.id or secrets.token_hex(3)).check()
        await self.logs.append(NODE_SCHEDULE, schedule_fields(schedule))
        event(self.log, "node.schedule", node=name, schedule=schedule.id, cron=schedule.cron, every=schedule.every)
        return self._node(name), schedule

    async def set_policy(self, name: str, keep: dict[str, int]) -> Node:
        self._admin()
        self._node(name)
        fields = {"node": name, "keep": keep}
        reason = check_fields(NODE_POLICY, fields)
        if reason:
            raise UsageError(reason)
        await self.logs.append(NODE_POLICY, fields)
        event(self.log, "node.policy", node=name, **{f"keep_{k}": v for k, v in keep.items() if v})
        return self._node(name)

    async def grant(self, name: str, agent: str) -> Node:
        self._admin()
        node = self._node(name)
        cert = self.peers.membership.member(agent, self.peers.clock())
        if not cert.has_role("agent"):
            raise UsageError(f"{cert.name} ({agent}) does not have the agent role")
        if agent in node.agents:
            raise UsageError(f"{cert.name} is an agent of {name} already")
        keys = self.keys(name)
        await self.logs.append(NODE_GRANT, {"node": name, "agent": agent,
                                            "keys": seal_keys(keys, {agent: cert.public_key})})
        event(self.log, "node.granted", node=name, agent=agent, name=cert.name)
        return self._node(name)

    async def revoke(self, name: str, agent: str) -> Node:
        self._admin()
        node = self._node(name)
        if agent not in node.agents:
            raise UsageError(f"{self.peers.membership.name(agent)} is not an agent of {name}")
        keys = self.keys(name).rotated(secrets.token_bytes)
        remaining = {}
        for holder in node.holders - {agent}:
            cert = self.peers.membership.certs.get(holder)
            if cert is not None and holder not in self.peers.membership.revocations:
                remaining[holder] = cert.public_key
        await self.logs.append(NODE_REVOKE, {"node": name, "agent": agent, "epoch": keys.epoch,
                                             "keys": seal_keys(keys, remaining),
                                             "office_keys": seal_office(keys, self.peers.ident.office.public_key)})
        event(self.log, "node.revoked", node=name, agent=agent, epoch=keys.epoch)
        return self._node(name)

    async def spread(self, timeout: float) -> dict[str, list[str]]:
        """After a change (a grant, a revoke): wait up to `timeout` seconds until every live member holds
        it, which the agent needs to open the keys, the coordinator to let it act as the node and the
        storage peers to take its writes. Says, by name, who does not hold it yet and who is down (not
        waited for: a member that comes back catches up at its first heartbeat)."""
        me = self.peers.me
        late, down = await self.logs.spread(CONTROL_LOG, me, self.logs.state.heads.get((CONTROL_LOG, me), 0),
                                            timeout)
        name = self.peers.membership.name
        return {"not_yet": sorted(map(name, late)), "down": sorted(map(name, down))}
