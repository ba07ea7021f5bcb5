"""Backup nodes, their keys and their grants, as a service over the office control log.

Only admins change nodes (the log refuses node events from anyone else); any
holder of a node's keys (its admins and granted agents) can open them here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
    NODE_DATASET_REMOVE,
    NODE_GRANT,
    NODE_POLICY,
    NODE_PURGE,
    NODE_REMOVE,
    NODE_RESTORE,
    NODE_REVOKE,
    NODE_SCHEDULE,
    NODE_SCHEDULE_PAUSE,
    NODE_SCHEDULE_REMOVE,
    NODE_SCHEDULE_RESUME,
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
from peerbackup.core.settings import Settings
from peerbackup.errors import FormatError, NotAdmin, NotAHolder, UsageError
from peerbackup.logs import event
from peerbackup.office.replication.nodeviews import NodeViews
from peerbackup.office.replication.service import LogService


class NodeService:
    def __init__(self, logs: LogService, log: logging.Logger) -> None:
        self.logs = logs
        self.peers = logs.peers
        self.log = log
        self.views = NodeViews(logs)  # each node's log folded once per change: jobs, missed slots, forgotten

    def nodes(self) -> dict[str, Node]:
        return self.logs.state.config().nodes

    def removed(self) -> dict[str, Node]:
        """Removed nodes, purged or not (node list --removed)."""
        return self.logs.state.config().removed_nodes

    @property
    def settings(self) -> Settings:
        return self.peers.settings

    def _node(self, name: str) -> Node:
        _usage_name(name)
        node = self.nodes().get(name)
        if node is None:
            gone = self.removed().get(name)
            if gone is not None:
                raise UsageError(f"backup node {name!r} was removed ({_removal(gone)})")
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
        _usage_name(name)
        if not 1 <= replicas <= MAX_REPLICAS:
            raise UsageError(f"--replicas must be 1 to {MAX_REPLICAS}")
        if name in self.nodes():
            raise UsageError(f"a backup node named {name!r} exists already")
        if name in self.removed():
            # Its packs are (or were) under that name on the storage peers, under its own keys.
            raise UsageError(f"a backup node named {name!r} was removed ({_removal(self.removed()[name])}): "
                             "choose another name")
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

    async def remove_dataset(self, name: str, path: str) -> Node:
        """The data set leaves the node's configuration; its snapshots stay (nothing here deletes)."""
        self._admin()
        node = self._node(name)
        if path not in node.datasets:
            raise UsageError(f"backup node {name} has no data set {path!r} (it has: "
                             f"{', '.join(sorted(node.datasets)) or 'none'})")
        await self.logs.append(NODE_DATASET_REMOVE, {"node": name, "path": path})
        event(self.log, "node.dataset_removed", node=name, path=path)
        return self._node(name)

    def _check_new_schedule(self, node: Node, schedule: Schedule) -> None:
        low = self.settings.min_schedule_interval
        if schedule.every and schedule.every < low:
            raise UsageError(f"--every {schedule.every:g} s is below the office's minimum of {low:g} s "
                             "(the min_schedule_interval setting)")
        same = [sc.id for sc in (*node.schedules.values(), *node.paused.values()) if sc.id != schedule.id
                and (sc.cron, sc.every, sc.tz, sc.window) == (schedule.cron, schedule.every, schedule.tz,
                                                              schedule.window)]
        if same:
            raise UsageError(f"backup node {node.name} has this schedule already (id {same[0]}): same "
                             f"{'cron' if schedule.cron else 'interval'}, zone and window")

    async def add_schedule(self, name: str, schedule: Schedule) -> tuple[Node, Schedule]:
        self._admin()
        node = self._node(name)
        schedule = dataclasses.replace(schedule, node=name, id=schedule.id or secrets.token_hex(3)).check()
        self._check_new_schedule(node, schedule)
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

    async def schedule_state(self, name: str, schedule_id: str, action: str) -> Node:
        """remove, pause or resume one of the node's schedules."""
        self._admin()
        node = self._node(name)
        known = {**node.schedules, **node.paused}
        if schedule_id not in known:
            raise UsageError(f"backup node {name} has no schedule {schedule_id!r} (it has: "
                             f"{', '.join(sorted(known)) or 'none'}; see `peerbackup schedule list`)")
        if action == "pause" and schedule_id in node.paused:
            raise UsageError(f"schedule {schedule_id} of {name} is paused already")
        if action == "resume" and schedule_id in node.schedules:
            raise UsageError(f"schedule {schedule_id} of {name} is not paused")
        kinds = {"remove": NODE_SCHEDULE_REMOVE, "pause": NODE_SCHEDULE_PAUSE, "resume": NODE_SCHEDULE_RESUME}
        if action not in kinds:
            raise UsageError(f"a schedule is removed, paused or resumed, not {action!r}")
        await self.logs.append(kinds[action], {"node": name, "id": schedule_id})
        event(self.log, f"node.schedule_{action}", node=name, schedule=schedule_id)
        return self._node(name)

    async def remove(self, name: str) -> Node:
        """The node, its schedules and grants go from the office's configuration: no job, no listing.
        Its key events stay in the log and its packs on the storage peers; restore-config brings it
        back until `node_grace` has passed, and only then may an admin purge its packs."""
        self._admin()
        self._node(name)
        until = int(self.peers.clock() + self.settings.node_grace)
        await self.logs.append(NODE_REMOVE, {"node": name, "until": until})
        event(self.log, "node.removed", node=name, until=until)
        return self.removed()[name]

    async def restore(self, name: str) -> Node:
        """A removed node back as it was: data sets, schedules (paused ones paused), policy, grants."""
        self._admin()
        _usage_name(name)
        gone = self.removed().get(name)
        if gone is None:
            raise UsageError(f"no removed backup node named {name!r} (see `peerbackup node list --removed`)")
        if gone.purged or self.peers.clock() >= gone.restorable_until:
            raise UsageError(f"backup node {name!r} can no longer be restored ({_removal(gone)})")
        await self.logs.append(NODE_RESTORE, {"node": name})
        event(self.log, "node.restored", node=name)
        return self._node(name)

    async def purge(self, name: str) -> Node:
        """Record that a removed node's packs may now be deleted (only once its grace is over); the
        deleting itself is office/peerstore/purge.py. Asked again (a storage peer was down), it logs nothing new."""
        self._admin()
        _usage_name(name)
        gone = self.removed().get(name)
        if gone is None:
            in_force = name in self.nodes()
            raise UsageError(f"backup node {name!r} " + ("is in use: `node remove` it first, and purge it after "
                             "its grace" if in_force else "does not exist (see `peerbackup node list --removed`)"))
        if not gone.purged:
            if self.peers.clock() < gone.restorable_until:
                raise UsageError(f"backup node {name!r} is inside its grace ({_removal(gone)}): it can be purged "
                                 "only after")
            await self.logs.append(NODE_PURGE, {"node": name})
            event(self.log, "node.purged", node=name)
        return self.removed()[name]


def _usage_name(name: str) -> None:
    try:
        check_node_name(name)
    except FormatError as exc:
        raise UsageError(str(exc)) from None


def _removal(node: Node) -> str:
    if node.purged:
        return f"and its packs purged at {_iso(node.purged)}"
    return f"at {_iso(node.removed)}; restorable with `node restore-config` until {_iso(node.restorable_until)}"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
