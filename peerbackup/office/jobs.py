"""Backups of a backup node, asked of the coordinator and dispatched to an agent (issue 6, begun).

Any peer may ask for a node to be backed up now (`peerbackup backup NODE`); the
request goes to the coordinator. The coordinator picks an agent (alive, granted,
able to reach a data set; the one that last succeeded for the node first, its
file cache is warm; then the least loaded), writes `job.dispatched` to the node's
log (`node:NAME`, replicated like the control log), and sends the agent a signed
Dispatch under its fencing token. The agent refuses a token below the highest it
has seen and anything for a node whose keys it does not hold; it writes
`job.started`, runs the backup as the node (office/agent.py), writes `job.done`
or `job.failed` with the snapshots, and reports to the coordinator. Every event
names the node, the agent and the coordinator's term, and is signed by its writer.

Schedules: the coordinator evaluates them every heartbeat (core/schedule.py);
a due slot's job id is a hash of node, schedule and slot, and a slot whose job
the node's log shows dispatched (by this coordinator or a previous one) is not
started again. A job whose agent is dead (liveness) before the job ended is
dispatched again, same job id, to another agent inside its deadline; a scheduled
job that failed is retried with back-off while its retries and window last. Not
yet: act-as tokens required by storage peers, progress heartbeats.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

from peerbackup.core.actas import ActAs
from peerbackup.core.schedule import due, retry_at
from peerbackup.daemon.logs import event
from peerbackup.errors import Forbidden, NotAHolder, PeerBackupError, ProtocolError, UsageError
from peerbackup.net.proto import jobs as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.agent import AgentService, readable
from peerbackup.office.coordination import CoordinatorService
from peerbackup.office.liveness import ALIVE, DEAD
from peerbackup.office.nodes import NodeService

JOB_DISPATCHED, JOB_STARTED, JOB_DONE, JOB_FAILED = "job.dispatched", "job.started", "job.done", "job.failed"
ACT_AS_ISSUED = "act_as.issued"
ACT_AS_VALIDITY = 6 * 3600
RESTORE_DONE = "restore.done"
DEADLINE = 4 * 3600.0  # a manual backup's window


def node_log(node: str) -> str:
    return f"node:{node}"


class JobService:
    def __init__(self, nodes: NodeService, coordination: CoordinatorService, agent: AgentService,
                 clock: Callable[[], float], log: logging.Logger) -> None:
        self.nodes = nodes
        self.logs = nodes.logs
        self.peers = nodes.peers
        self.coordination = coordination
        self.agent = agent
        self.clock = clock
        self.log = log
        self.last_ok: dict[str, str] = {}  # node -> the agent that last succeeded for it
        self.running: Counter[str] = Counter()  # agent -> jobs dispatched and not reported
        self.evaluated: dict[str, float] = {}  # node/schedule -> slots up to here were considered

    def register(self, server: PeerServer) -> None:
        auth = self.peers.auth_member
        server.route(proto.REQUEST_PATH, auth, self._on_request)
        server.route(proto.DISPATCH_PATH, auth, self._on_dispatch)
        server.route(proto.REPORT_PATH, auth, self._on_report)
        server.route(proto.ACT_AS_PATH, auth, self._on_act_as)

    async def _send(self, peer_id: str, path: str, body: bytes) -> bytes:
        cert = self.peers.membership.member(peer_id, self.clock())
        addresses = (await self.peers.state.addresses()).get(peer_id, [])
        last: PeerBackupError = UsageError(f"no address known for {cert.name} ({peer_id})")
        for address in addresses:
            try:
                return await self.peers.client.request(address, peer_id, path, body, lambda _e: cert.public_key)
            except PeerBackupError as exc:
                last = exc
        raise last

    # ---- asking -------------------------------------------------------------------------

    async def request(self, node: str) -> dict[str, Any]:
        """Back a node up now: the coordinator dispatches it, wherever it is asked."""
        self.nodes.node(node)  # a clear error for an unknown node, here
        coordinator, _ = self.coordination.status()
        if coordinator is None:
            raise UsageError("there is no coordinator yet (see `peerbackup status`): try again in a few seconds")
        if coordinator == self.peers.me:
            accepted = await self.start(node)
        else:
            raw = await self._send(coordinator, proto.REQUEST_PATH, proto.JobRequest(node).to_wire())
            accepted = proto.JobAccepted.from_wire(raw)
        names = {c.peer_id: c.name for c in self.peers.membership.members()}
        return {"job": accepted.job, "node": node, "agent": accepted.agent, "agent_name": names.get(accepted.agent),
                "coordinator": accepted.token[1], "term": accepted.token[0], "log": node_log(node)}

    async def _on_request(self, issuer: str, body: bytes) -> bytes:
        msg = proto.JobRequest.from_wire(body)
        try:
            return (await self.start(msg.node)).to_wire()
        except UsageError as exc:
            raise Forbidden(str(exc)) from None

    # ---- the coordinator ----------------------------------------------------------------

    def candidates(self, node: str) -> list[str]:
        """Agents that could run a backup of the node now, best first."""
        info = self.nodes.nodes()[node]
        now = self.clock()
        ps = self.peers
        out = []
        for agent in sorted(info.agents):
            if agent in ps.membership.revocations:
                continue
            alive = agent == ps.me or ps.liveness.state(agent, now) == ALIVE
            reachable = any(not d.on or agent in d.on for d in info.datasets.values())
            if alive and reachable:
                out.append(agent)
        return sorted(out, key=lambda a: (a != self.last_ok.get(node), self.running[a], a))

    def job_states(self, node: str) -> dict[str, tuple[dict[str, Any], str]]:
        """Every job in the node's log: the fields of its latest dispatch, with what its agent's
        job.started adds, and how it stands: "open", "done" or "failed". The coordinator that dispatched
        a job may have died before its event spread: then the job.started alone carries what a
        successor needs."""
        jobs: dict[str, tuple[dict[str, Any], str]] = {}
        for ev in self.logs.state.ordered(node_log(node)):
            job = str(ev.fields.get("job"))
            if ev.kind == JOB_DISPATCHED:
                jobs[job] = (dict(ev.fields), "open")
            elif ev.kind == JOB_STARTED:
                jobs[job] = ({**jobs.get(job, ({}, ""))[0], **ev.fields}, "open")
            elif ev.kind in (JOB_DONE, JOB_FAILED) and job in jobs:
                jobs[job] = (jobs[job][0], "done" if ev.kind == JOB_DONE else "failed")
        return jobs

    def known_jobs(self, node: str) -> set[str]:
        """Jobs the node's log shows dispatched or started, under any coordinator (a slot never runs twice)."""
        return set(self.job_states(node))

    def open_jobs(self, node: str) -> dict[str, dict[str, Any]]:
        return {job: f for job, (f, state) in self.job_states(node).items() if state == "open"}

    def failed_jobs(self, node: str) -> dict[str, dict[str, Any]]:
        return {job: f for job, (f, state) in self.job_states(node).items() if state == "failed"}

    async def _retry(self, name: str, now: float) -> None:
        """A scheduled job that failed is tried again with back-off (retry_delay doubling), while the
        schedule's retries and the slot's window last."""
        schedules = self.nodes.nodes()[name].schedules
        for job, f in self.failed_jobs(name).items():
            sc = schedules.get(str(f.get("schedule")))
            if sc is None or "slot" not in f:
                continue  # a manual backup is not retried: whoever asked sees it failed
            attempt = int(f.get("attempt", 1))
            at = retry_at(sc, float(f["slot"]), attempt)
            if at is None or now < at:
                continue
            event(self.log, "job.retry", job=job, node=name, attempt=attempt + 1)
            try:
                await self.start(name, job, deadline=float(f["slot"]) + sc.window,
                                 why={"schedule": sc.id, "slot": int(f["slot"]), "attempt": attempt + 1})
            except UsageError as exc:
                event(self.log, "job.not_started", logging.WARNING, node=name, job=job, reason=str(exc))

    async def _redispatch(self, name: str, now: float) -> None:
        """A job whose agent died mid-way goes to another agent inside its window; the second agent
        reuses the packs the first one stored (the engine indexes packs found without an index)."""
        for job, f in self.open_jobs(name).items():
            agent = str(f.get("agent"))
            deadline = float(f.get("deadline", 0))
            if agent == self.peers.me or self.peers.liveness.state(agent, now) != DEAD or now >= deadline:
                continue
            why = {k: v for k, v in f.items() if k in ("schedule", "slot")}
            why.update(attempt=int(f.get("attempt", 1)) + 1, replaces=agent)
            event(self.log, "job.redispatch", logging.WARNING, job=job, node=name, dead_agent=agent)
            try:
                await self.start(name, job, deadline=deadline, why=why)
            except UsageError as exc:
                event(self.log, "job.not_started", logging.WARNING, node=name, job=job, reason=str(exc))

    async def tick(self) -> None:
        """On the coordinator: start every scheduled slot that is due and not dispatched yet, and
        give the jobs of dead agents to live ones."""
        coordinator, _ = self.coordination.status()
        if coordinator != self.peers.me:
            self.evaluated.clear()  # a coordinator that comes back re-reads the log, not its memory
            return
        now = self.clock()
        for name in sorted(self.nodes.nodes()):
            await self._redispatch(name, now)
            await self._retry(name, now)
        for name, node in sorted(self.nodes.nodes().items()):
            for sc in node.schedules.values():
                key = f"{name}/{sc.id}"
                # A new coordinator looks back one window: a slot its predecessor missed is caught up,
                # one it dispatched is in the log.
                since = self.evaluated.get(key, now - sc.window)
                self.evaluated[key] = now
                for d in due(sc, since, now):
                    if d.job_id in self.known_jobs(name):
                        continue
                    try:
                        await self.start(name, d.job_id, deadline=d.slot + sc.window,
                                         why={"schedule": sc.id, "slot": int(d.slot), "caught_up": d.caught_up})
                    except UsageError as exc:
                        event(self.log, "job.not_started", logging.WARNING, node=name, schedule=sc.id,
                              slot=int(d.slot), reason=str(exc))

    async def start(self, node: str, job: str | None = None, deadline: float | None = None,
                    why: dict[str, Any] | None = None) -> proto.JobAccepted:
        coordinator, term = self.coordination.status()
        if coordinator != self.peers.me or term is None:
            raise UsageError("this peer is not the coordinator")
        info = self.nodes.nodes().get(node)
        if info is None:
            raise UsageError(f"no backup node named {node!r}")
        if not info.datasets:
            raise UsageError(f"backup node {node} has no data set (peerbackup dataset add)")
        token = self.coordination.election.token
        job = job or "manual-" + hashlib.blake2b(f"{node}\0{self.clock()}\0{secrets.token_hex(8)}".encode(),
                                                 digest_size=8).hexdigest()
        until = deadline if deadline is not None else self.clock() + DEADLINE
        tried = []
        for agent in self.candidates(node):
            await self.logs.append(JOB_DISPATCHED, {"job": job, "node": node, "agent": agent, "term": token[0],
                                                    "coordinator": self.peers.me, "deadline": int(until),
                                                    **(why or {})}, log=node_log(node))
            body = proto.Dispatch(job, node, token, int(until * 1000)).to_wire()
            try:
                if agent == self.peers.me:
                    await self._on_dispatch(agent, body)
                else:
                    await self._send(agent, proto.DISPATCH_PATH, body)
            except (PeerBackupError, ProtocolError) as exc:
                tried.append(f"{agent}: {exc}")
                event(self.log, "job.dispatch_failed", logging.WARNING, job=job, node=node, agent=agent,
                      reason=str(exc))
                continue
            self.running[agent] += 1
            event(self.log, "job.dispatched", job=job, node=node, agent=agent, term=token[0])
            return proto.JobAccepted(job, agent, token)
        raise UsageError(f"no agent of {node} can take the backup now: "
                         + ("; ".join(tried) or "none alive, granted and able to reach a data set"))

    async def _on_report(self, issuer: str, body: bytes) -> bytes:
        msg = proto.JobReport.from_wire(body)
        if self.running[issuer] > 0:
            self.running[issuer] -= 1
        if msg.state == "done":
            self.last_ok[msg.node] = issuer
        event(self.log, "job.reported", job=msg.job, node=msg.node, agent=issuer, state=msg.state)
        return b""

    async def log_restore(self, node: str, fields: dict[str, Any]) -> None:
        """A restore made on this peer, in the node's log (the audit trail names who read what)."""
        self.nodes.keys(node)  # only a holder of the keys can have restored it
        await self.logs.append(RESTORE_DONE, {"node": node, "agent": self.peers.me, **fields}, log=node_log(node))

    async def _on_act_as(self, issuer: str, body: bytes) -> bytes:
        """The coordinator lets a granted agent act as the node for a job: a token it signs, logged."""
        msg = proto.ActAsRequest.from_wire(body)
        coordinator, term = self.coordination.status()
        if coordinator != self.peers.me or term is None:
            raise Forbidden("this peer is not the coordinator")
        info = self.nodes.nodes().get(msg.node)
        if info is None or issuer not in info.agents or issuer in self.peers.membership.revocations:
            raise Forbidden(f"{issuer} is not a granted agent of backup node {msg.node}")
        now = self.clock()
        token = ActAs.issue(self.peers.ident.key, term, issuer, msg.node, msg.job, int(now), ACT_AS_VALIDITY)
        await self.logs.append(ACT_AS_ISSUED, {"job": msg.job, "node": msg.node, "agent": issuer, "term": term,
                                               "expires": token.expires}, log=node_log(msg.node))
        return proto.ActAsReply(token.raw).to_wire()

    async def act_as(self, node: str, job: str, coordinator: str | None = None) -> bytes:
        """An act-as token for this peer, from the given (or the current) coordinator."""
        coordinator = coordinator or self.coordination.status()[0]
        if coordinator is None:
            raise UsageError("there is no coordinator to let this agent act as the node; try again shortly")
        body = proto.ActAsRequest(node, job).to_wire()
        raw = await (self._on_act_as(self.peers.me, body) if coordinator == self.peers.me
                     else self._send(coordinator, proto.ACT_AS_PATH, body))
        return proto.ActAsReply.from_wire(raw).token

    # ---- the agent ---------------------------------------------------------------------

    async def _on_dispatch(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Dispatch.from_wire(body)
        if msg.token[1] != issuer:
            raise Forbidden("a dispatch must come from the coordinator its fencing token names")
        if msg.token < self.coordination.election.highest:
            raise Forbidden(f"stale fencing token {list(msg.token)}: this peer has seen "
                            f"{list(self.coordination.election.highest)}")
        try:
            self.nodes.keys(msg.node)
        except (NotAHolder, UsageError) as exc:
            raise Forbidden(str(exc)) from None
        info = self.nodes.nodes()[msg.node]
        ok, why = readable(list(info.datasets.values()), self.peers.me)
        if not ok:
            raise Forbidden(f"nothing of {msg.node} can be backed up here: {'; '.join(why)}")
        self.peers.spawn(self._run(msg, issuer))
        return b""

    async def _run(self, msg: proto.Dispatch, coordinator: str) -> None:
        where = {"job": msg.job, "node": msg.node, "agent": self.peers.me, "term": msg.token[0],
                 "coordinator": coordinator, "deadline": msg.deadline_ms // 1000}
        try:
            # Log on as the node: the coordinator that dispatched the job checks the grant and signs.
            token = await self.act_as(msg.node, msg.job, coordinator)
            await self.logs.append(JOB_STARTED, where, log=node_log(msg.node))
            rec = await self.agent.run(msg.node, msg.job, token)
        except PeerBackupError as exc:
            await self.logs.append(JOB_FAILED, {**where, "reason": str(exc)[:500]}, log=node_log(msg.node))
            report = proto.JobReport(msg.job, msg.node, "failed", (), str(exc))
        else:
            snaps = [s["id"] for s in rec.snapshots]
            await self.logs.append(JOB_DONE, {**where, "snapshots": snaps, "errors": len(rec.errors),
                                              "added": sum(s["summary"].get("bytes_added", 0)
                                                           for s in rec.snapshots)}, log=node_log(msg.node))
            report = proto.JobReport(msg.job, msg.node, "done", tuple(snaps))
        try:
            if coordinator == self.peers.me:
                await self._on_report(self.peers.me, report.to_wire())
            else:
                await self._send(coordinator, proto.REPORT_PATH, report.to_wire())
        except PeerBackupError as exc:
            event(self.log, "job.report_failed", logging.WARNING, job=msg.job, reason=str(exc))
