"""Logon and act-as on the coordinator: an agent acts as a node only with a token the coordinator signs.

An agent about to run a job of a node logs on (the coordinator hands it a fresh challenge, answered
under the agent's own key within LOGON_VALIDITY) and asks to act as the node; the coordinator checks
the grant and the job's attempt, signs an act-as token (core/actas.py) and logs `agent.logon` and
`act_as.issued` in the node's log (`act_as.refused`, for someone who is not a granted agent). Storage
peers take an agent's writes into a node's namespace only with that token, and its deletes only with
one of "prune" scope, which a retention job this coordinator dispatched to that agent gets.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from peerbackup.core.actas import BACKUP as BACKUP_SCOPE
from peerbackup.core.actas import PRUNE, ActAs
from peerbackup.core.jobs import DONE, OPEN, RETENTION
from peerbackup.core.nodelog import ACT_AS_ISSUED, ACT_AS_REFUSED, LOGON, node_log
from peerbackup.errors import Forbidden, UsageError
from peerbackup.net.proto import jobs as proto
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.nodes.service import NodeService

ACT_AS_VALIDITY = 6 * 3600
LOGON_VALIDITY = 60.0  # a logon challenge must be answered this soon

Send = Callable[[str, str, bytes], Awaitable[bytes]]  # a signed request to a member: peer id, path, body


class ActAsService:
    """The coordinator's side of logon and act-as, and this peer's way to ask for a token (`act_as`)."""

    def __init__(self, nodes: NodeService, coordination: CoordinatorService, clock: Callable[[], float],
                 send: Send) -> None:
        self.nodes = nodes
        self.logs = nodes.logs
        self.peers = nodes.peers
        self.coordination = coordination
        self.clock = clock
        self.send = send
        self.challenges: dict[bytes, tuple[str, str, str, float]] = {}  # -> agent, node, job, until

    async def on_logon(self, issuer: str, body: bytes) -> bytes:
        """An agent about to act as a node asks for a challenge: its act-as request must carry it back,
        signed by its own key, within LOGON_VALIDITY. Freshness that rests on the coordinator's clock only."""
        msg = proto.Logon.from_wire(body)
        now = self.clock()
        self.challenges = {c: v for c, v in self.challenges.items() if v[3] > now}
        challenge = secrets.token_bytes(proto.CHALLENGE_SIZE)
        self.challenges[challenge] = (issuer, msg.node, msg.job, now + LOGON_VALIDITY)
        return proto.Logon(msg.node, msg.job, challenge).to_wire()

    async def on_act_as(self, issuer: str, body: bytes) -> bytes:
        """The coordinator lets a granted agent act as the node for a job: a token it signs, logged.
        Deleting is allowed ("prune" scope) only for a retention job this coordinator gave that agent."""
        msg = proto.ActAsRequest.from_wire(body)
        coordinator, term = self.coordination.status()
        if coordinator != self.peers.me or term is None:
            raise Forbidden("this peer is not the coordinator")
        info = self.nodes.nodes().get(msg.node)
        if info is None or issuer not in info.agents or issuer in self.peers.membership.revocations:
            if info is not None:  # the audit trail shows who tried
                await self.logs.append(ACT_AS_REFUSED, {"job": msg.job, "node": msg.node, "agent": issuer,
                                                        "term": term, "reason": "not a granted agent"},
                                       log=node_log(msg.node))
            raise Forbidden(f"{self.peers.membership.name(issuer)} is not a granted agent of backup node {msg.node}")
        now = self.clock()
        issued = self.challenges.pop(msg.challenge, None)
        if issued is None or issued[:3] != (issuer, msg.node, msg.job) or issued[3] < now:
            raise Forbidden("log on first: the act-as request must carry a fresh challenge from this coordinator, "
                            "issued to this agent for this node and job")
        st = self.nodes.views.job_states(msg.node).get(msg.job)
        if st is not None and (st.state == DONE or st.agent != issuer):
            # A replaced attempt that wakes up before logging on: the job is someone else's now, or over.
            raise Forbidden(f"job {msg.job} of {msg.node} is " + ("done" if st.state == DONE else
                            f"attempt {st.attempt} of {self.peers.membership.name(st.agent)}: this attempt was "
                            "superseded"))
        # Only a retention job this coordinator itself dispatched (its own signed event, not a look-alike
        # any member could write into the node's log) lets the agent delete.
        scope = PRUNE if (st is not None and st.kind == RETENTION and st.state == OPEN and st.agent == issuer
                          and st.dispatcher == self.peers.me and info.policy) else BACKUP_SCOPE
        token = ActAs.issue(self.peers.ident.key, term, issuer, msg.node, msg.job, int(now), ACT_AS_VALIDITY, scope)
        await self.logs.append(LOGON, {"job": msg.job, "node": msg.node, "agent": issuer, "term": term},
                               log=node_log(msg.node))
        issued_ev = await self.logs.append(ACT_AS_ISSUED, {"job": msg.job, "node": msg.node, "agent": issuer,
                                                           "term": term, "expires": token.expires, "scope": scope},
                                           log=node_log(msg.node))
        return proto.ActAsReply(token.raw, issued_ev.hlc).to_wire()

    async def act_as(self, node: str, job: str, coordinator: str | None = None) -> bytes:
        """Log on to the given (or the current) coordinator and get an act-as token for this peer."""
        coordinator = coordinator or self.coordination.status()[0]
        if coordinator is None:
            raise UsageError("there is no coordinator to let this agent act as the node; try again shortly")

        async def ask(path: str, body: bytes) -> bytes:
            if coordinator == self.peers.me:
                handler = self.on_logon if path == proto.LOGON_PATH else self.on_act_as
                return await handler(self.peers.me, body)
            return await self.send(coordinator, path, body)

        challenge = proto.Logon.from_wire(await ask(proto.LOGON_PATH, proto.Logon(node, job).to_wire()),
                                          answer=True).challenge
        reply = proto.ActAsReply.from_wire(await ask(proto.ACT_AS_PATH,
                                                     proto.ActAsRequest(node, job, challenge).to_wire()))
        if reply.hlc:
            self.logs.observe(reply.hlc, coordinator)
        return reply.token
