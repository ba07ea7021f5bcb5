"""Before `dataset add`: is the folder there on an agent of the node? The agents are asked.

An admin's daemon sends each granted, live agent that may reach the data set (all of
the node's agents, or those of `--on`) a signed PathCheck; each one looks at its own
disk and answers with a PathState (net/proto/probe.py). The data set is added when
one agent has it as a directory it can read; otherwise the admin is told what each
agent said, by name. `--allow-missing` skips the question (a folder that will
appear later, a machine that is off). Only admins may ask, and an agent answers only
for a node it is granted: a member cannot use this to look around others' disks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable

from peerbackup.core.nodes import Dataset
from peerbackup.errors import Forbidden, PeerBackupError, ProtocolError, UsageError
from peerbackup.logs import event
from peerbackup.net.proto import probe as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.nodes.service import NodeService

Send = Callable[[str, str, bytes], Awaitable[bytes]]


def path_state(path: str) -> proto.PathState:
    """What this machine has at `path`, as a data set needs it: a directory it can list and read."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return proto.PathState(proto.MISSING, "no such folder here")
    except OSError as exc:
        return proto.PathState(proto.NOT_READABLE, exc.strerror or str(exc))
    if not stat.S_ISDIR(st.st_mode):
        return proto.PathState(proto.NOT_A_DIRECTORY, "a file, not a folder")
    if not os.access(path, os.R_OK | os.X_OK, effective_ids=True):  # capabilities count (the systemd unit's)
        return proto.PathState(proto.NOT_READABLE, "permission denied")
    return proto.PathState(proto.OK)


class DatasetProbe:
    def __init__(self, nodes: NodeService, send: Send, clock: Callable[[], float], log: logging.Logger) -> None:
        self.nodes = nodes
        self.peers = nodes.peers
        self.send = send  # a signed request to a member (JobService.send)
        self.clock = clock
        self.log = log

    def register(self, server: PeerServer) -> None:
        server.route(proto.PATH, self.peers.auth_member, self._on_check)

    async def _on_check(self, issuer: str, body: bytes) -> bytes:
        msg = proto.PathCheck.from_wire(body)
        if not self.peers.membership.member(issuer, self.clock()).has_role("admin"):
            raise Forbidden("only an admin may ask whether a folder is on this machine")
        node = self.nodes.nodes().get(msg.node)
        if node is None or self.peers.me not in node.agents:
            raise Forbidden(f"this peer is not a granted agent of backup node {msg.node!r}")
        state = await asyncio.to_thread(path_state, msg.path)  # a stat on a network mount may block
        event(self.log, "dataset.checked", node=msg.node, path=msg.path, state=state.state, asker=issuer)
        return state.to_wire()

    async def _ask(self, agent: str, node: str, path: str) -> str:
        """What one agent says of the path: its state, or why it gave no answer."""
        if agent == self.peers.me:
            state = await asyncio.to_thread(path_state, path)
        else:
            try:
                state = proto.PathState.from_wire(await self.send(agent, proto.PATH,
                                                                  proto.PathCheck(node, path).to_wire()))
            except (PeerBackupError, ProtocolError) as exc:
                return f"no answer ({exc})"
        return state.state + (f" ({state.detail})" if state.detail else "")

    async def check(self, name: str, dataset: Dataset) -> None:
        """Return when a granted agent has the folder; else a UsageError saying what each agent said."""
        node = self.nodes.node(name)
        ps = self.peers
        names = {c.peer_id: c.name for c in ps.membership.members()}
        agents = sorted((a for a in node.agents if a not in ps.membership.revocations
                         and (not dataset.on or a in dataset.on)), key=lambda a: names.get(a, a))
        later = f"or add it with --allow-missing if {dataset.path} will appear later"
        if not agents:
            among = f" among {', '.join(names.get(p, p) for p in dataset.on)}" if dataset.on else ""
            raise UsageError(f"no agent of backup node {name} is granted{among}, so none can say whether "
                             f"{dataset.path} is there: grant one first (peerbackup grant {name} PEER), {later}")
        now = self.clock()
        live = [a for a in agents if a == ps.me or ps.liveness.state(a, now) == ALIVE]
        said = dict(zip(live, await asyncio.gather(*(self._ask(a, name, dataset.path) for a in live)), strict=True))
        if any(s == proto.OK for s in said.values()):
            return
        answers = "; ".join(f"{names.get(a, a)}: {said.get(a, 'not asked, it is not alive')}" for a in agents)
        raise UsageError(f"{dataset.path} is not a folder that an agent of backup node {name} can back up. "
                         f"Asked: {answers}. Check the path as the agents see it, {later}")
