"""Jobs of a backup node, asked of the coordinator and dispatched to an agent.

Any peer may ask for a node to be backed up now (`peerbackup backup NODE`); the
request goes to the coordinator. The coordinator picks an agent (alive, granted,
able to reach a data set; the one that last succeeded for the node first, its
file cache is warm; then the least loaded), writes `job.dispatched` to the node's
log (`node:NAME`, replicated like the control log), and sends the agent a signed
Dispatch under its fencing token. The agent refuses a token below the highest it
has seen and anything for a node whose keys it does not hold; it logs on (a
fresh challenge of the coordinator's, answered under its own key) and asks to act
as the node; the coordinator checks the grant, signs an act-as token and logs
`agent.logon` and `act_as.issued`. The agent writes `job.started`, runs the job as
the node (office/jobs/agent.py), sends progress heartbeats (and a `job.progress`
summary to the log now and then), writes `job.done` or `job.failed`, and reports.
Every event names the node, the agent and the coordinator's term, and is signed
by its writer. The agent's side of this lives in office/jobs/runner.py.

Schedules: the coordinator evaluates them every heartbeat (core/schedule.py);
a due slot's job id is a hash of node, schedule and slot, and a slot whose job
the node's log shows dispatched (by this coordinator or a previous one) is not
started again. A slot whose start is refused (no agent alive, ...) waits and is
tried again each heartbeat; one that can never start (its window closed, a later
slot replaces it) is logged `job.missed` with why, once: no slot is lost
silently. A job whose agent is dead (liveness), or alive but silent or making
no progress for `stall_after`, is dispatched again, same job id, to another
agent inside its deadline; one still open past its deadline (no agent could take
it over in time) has its slot logged `job.missed`, naming its agent. A scheduled
job that failed is retried with back-off while its retries and window last (one no
agent ever started, a lease later). After a successful backup of a node with a
retention policy, a retention job (forget by the policy, prune now and then) is
dispatched the same way, with an act-as token that may delete (core/jobs.py).

Here: asking for a job, picking an agent and dispatching to it, the agents' reports and heartbeats.
The coordinator's tick (the schedules, retries and redispatches above) is office/jobs/scheduler.py,
which starts jobs through `start` here; logon and act-as are office/jobs/logon.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peerbackup.core.jobs import BACKUP, OPEN, RETENTION, JobState
from peerbackup.core.nodelog import (
    JOB_DISPATCHED,
    JOB_UNSENT,
    RESTORE_DONE,
    node_log,
)
from peerbackup.core.settings import Settings
from peerbackup.errors import Forbidden, PeerBackupError, ProtocolError, UsageError
from peerbackup.logs import event
from peerbackup.net.proto import jobs as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.jobs.agent import AgentService
from peerbackup.office.jobs.logon import ActAsService
from peerbackup.office.jobs.runner import AgentRunner
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.nodes.service import NodeService

DEADLINE = 4 * 3600.0  # a manual backup's window


@dataclass
class Live:
    """What the coordinator hears of a running job: to show its progress and to see it stall."""

    agent: str
    node: str
    since: float
    heard: float  # last heartbeat (or the dispatch)
    moved: float  # last time the counters changed
    progress: proto.JobProgress | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        return {**running_json(self.agent, self.node, now - self.since, self.progress),
                "heard": round(now - self.heard, 1)}


def running_json(agent: str, node: str, elapsed: float, progress: proto.JobProgress | None) -> dict[str, Any]:
    """A running job as `jobs`, the dashboard and `backup --wait` show it, here or from the coordinator."""
    elapsed = max(elapsed, 1e-3)
    return {"agent": agent, "node": node, "elapsed": round(elapsed, 1),
            **({**progress.fields(), "rate": round(progress.nbytes / elapsed)} if progress else {})}


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
        self.actas = ActAsService(nodes, coordination, clock, self.send)  # logon and act-as (office/jobs/logon.py)
        self.runner = AgentRunner(self)  # the agent's side of jobs (office/jobs/runner.py)
        self.live: dict[str, Live] = {}  # job -> what its agent last said (on the coordinator)
        self.reported: deque[tuple[str, str]] = deque(maxlen=1000)  # (job, agent) that reported an end
        # running_anywhere's last question: coordinator, when, and the answer (on its way or come)
        self._running_asked: tuple[str, float, asyncio.Future[dict[str, dict[str, Any]]]] | None = None

    def register(self, server: PeerServer) -> None:
        auth = self.peers.auth_member
        server.route(proto.REQUEST_PATH, auth, self._on_request)
        server.route(proto.DISPATCH_PATH, auth, self.runner.on_dispatch)
        server.route(proto.REPORT_PATH, auth, self.on_report)
        server.route(proto.ACT_AS_PATH, auth, self.actas.on_act_as)
        server.route(proto.LOGON_PATH, auth, self.actas.on_logon)
        server.route(proto.PROGRESS_PATH, auth, self.on_progress)
        server.route(proto.RUNNING_PATH, auth, self._on_running)

    @property
    def settings(self) -> Settings:
        return self.peers.settings

    async def send(self, peer_id: str, path: str, body: bytes) -> bytes:
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
        self.check_clock()
        coordinator, _ = self.coordination.status()
        if coordinator is None:
            raise UsageError("there is no coordinator yet (see `peerbackup status`): try again in a few seconds")
        if coordinator == self.peers.me:
            accepted = await self.start(node)
        else:
            raw = await self.send(coordinator, proto.REQUEST_PATH, proto.JobRequest(node).to_wire())
            accepted = proto.JobAccepted.from_wire(raw)
        names = {c.peer_id: c.name for c in self.peers.membership.members()}
        return {"job": accepted.job, "node": node, "agent": accepted.agent, "agent_name": names.get(accepted.agent),
                "coordinator": accepted.token[1], "coordinator_name": names.get(accepted.token[1]),
                "term": accepted.token[0], "log": node_log(node)}

    async def _on_request(self, issuer: str, body: bytes) -> bytes:
        msg = proto.JobRequest.from_wire(body)
        try:
            return (await self.start(msg.node)).to_wire()
        except UsageError as exc:
            raise Forbidden(str(exc)) from None

    def clock_suspect(self, now: float) -> bool:
        """Is this peer's clock the wrong one (most other members refuse its messages for it)?"""
        others = sum(1 for c in self.peers.membership.members() if c.peer_id != self.peers.me)
        return self.peers.client.clocks.suspect(now, others)

    def check_clock(self) -> None:
        """A peer whose messages the others refuse for its clock can neither coordinate nor run a job
        for the office: say so rather than fail later with a lesser reason."""
        now = self.clock()
        refused = self.peers.client.clocks.report(now)["refused_by"]
        if self.clock_suspect(now):
            raise UsageError(f"{len(refused)} peer(s) refuse this peer's messages because of its clock "
                             f"({next(iter(refused.values()))}): set this machine's clock right (NTP) first")

    # ---- the coordinator ----------------------------------------------------------------

    def candidates(self, node: str, kind: str = BACKUP, exclude: frozenset[str] = frozenset()) -> list[str]:
        """Agents that could run a job of the node now, best first (a retention job reads no data set)."""
        info = self.nodes.nodes()[node]
        now = self.clock()
        ps = self.peers
        out = []
        for agent in sorted(info.agents):
            if agent in ps.membership.revocations or agent in exclude:
                continue
            alive = agent == ps.me or ps.liveness.state(agent, now) == ALIVE
            reachable = kind == RETENTION or any(not d.on or agent in d.on for d in info.datasets.values())
            if alive and reachable:
                out.append(agent)
        return sorted(out, key=lambda a: (a != self.last_ok.get(node), self.running[a], a))

    def job_states(self, node: str) -> dict[str, JobState]:
        """Every job in the node's log and how it stands (core/jobs.py), folded once per change of the log."""
        return self.nodes.views.job_states(node)

    def known_jobs(self, node: str) -> set[str]:
        """Jobs the node's log shows dispatched or started, under any coordinator (a slot never runs twice)."""
        return set(self.job_states(node))

    def open_jobs(self, node: str) -> dict[str, dict[str, Any]]:
        return {job: st.fields for job, st in self.job_states(node).items() if st.state == OPEN}

    def missed_slots(self, node: str) -> dict[tuple[str, int], dict[str, Any]]:
        """The node's slots logged missed (core/nodelog.py), read again only when its log changed."""
        return self.nodes.views.missed_slots(node)

    async def start(self, node: str, job: str | None = None, deadline: float | None = None,
                    why: dict[str, Any] | None = None, kind: str | None = None,
                    exclude: frozenset[str] = frozenset()) -> proto.JobAccepted:
        coordinator, term = self.coordination.status()
        if coordinator != self.peers.me or term is None:
            raise UsageError("this peer is not the coordinator")
        if not self.coordination.claimed():
            raise UsageError(f"this peer was just elected coordinator (term {term}) and is still writing its claim "
                             "to the office log, which waits for its logs to be in step with the other peers' (at "
                             "most one lease): jobs start once the claim is there; try again in a few seconds")
        info = self.nodes.nodes().get(node)
        if info is None:
            raise UsageError(f"no backup node named {node!r}")
        why = dict(why or {})
        kind = kind or str(why.pop("job_kind", BACKUP))
        if kind == BACKUP and not info.datasets:
            raise UsageError(f"backup node {node} has no data set (peerbackup dataset add)")
        token = self.coordination.election.token
        job = job or "manual-" + hashlib.blake2b(f"{node}\0{self.clock()}\0{secrets.token_hex(8)}".encode(),
                                                 digest_size=8).hexdigest()
        until = deadline if deadline is not None else self.clock() + DEADLINE
        # Attempts are numbered like coordinators' terms: the fold counts only the current one's end, and
        # the holders refuse a replaced attempt's snapshot (office/peerstore/holder.py).
        attempt = int(why.pop("attempt", 1))
        tried = []
        for agent in self.candidates(node, kind, exclude):
            await self.logs.append(JOB_DISPATCHED, {"job": job, "node": node, "agent": agent, "term": token[0],
                                                    "coordinator": self.peers.me, "deadline": int(until),
                                                    "job_kind": kind, "attempt": attempt, **why}, log=node_log(node))
            body = proto.Dispatch(job, node, token, int(until * 1000), kind, bool(why.get("prune")),
                                  attempt, self.logs.state.config().digest()).to_wire()
            try:
                if agent == self.peers.me:
                    await self.runner.on_dispatch(agent, body)
                else:
                    await self.send(agent, proto.DISPATCH_PATH, body)
            except (PeerBackupError, ProtocolError) as exc:
                tried.append(f"{self.peers.membership.name(agent)}: {exc}")
                # In the log too: the dispatch above did not happen (core/jobs.py undoes it), and the
                # audit trail says why this agent was passed over.
                await self.logs.append(JOB_UNSENT, {"job": job, "node": node, "agent": agent, "term": token[0],
                                                    "reason": str(exc)[:300]}, log=node_log(node))
                event(self.log, "job.dispatch_failed", logging.WARNING, job=job, node=node, agent=agent,
                      reason=str(exc))
                continue
            self.running[agent] += 1
            now = self.clock()
            self.live[job] = Live(agent, node, now, now, now)
            event(self.log, "job.dispatched", job=job, node=node, agent=agent, term=token[0], kind=kind)
            return proto.JobAccepted(job, agent, token)
        raise UsageError(f"no agent of {node} can take the {'backup' if kind == BACKUP else 'retention job'} now: "
                         + ("; ".join(tried) or "none alive, granted and able to reach a data set"))

    async def on_report(self, issuer: str, body: bytes) -> bytes:
        msg = proto.JobReport.from_wire(body)
        if self.running[issuer] > 0:
            self.running[issuer] -= 1
        if msg.state == "done":
            self.last_ok[msg.node] = issuer
        live = self.live.get(msg.job)
        if live is not None and live.agent == issuer:
            del self.live[msg.job]
        self.reported.append((msg.job, issuer))
        event(self.log, "job.reported", job=msg.job, node=msg.node, agent=issuer, state=msg.state)
        return b""

    async def on_progress(self, issuer: str, body: bytes) -> bytes:
        msg = proto.JobProgress.from_wire(body)
        now = self.clock()
        live = self.live.get(msg.job)
        if live is None or live.agent != issuer:
            st = self.job_states(msg.node).get(msg.job)
            info = self.nodes.nodes().get(msg.node)
            if st is None and info is not None and issuer in info.agents and \
                    issuer not in self.peers.membership.revocations:
                # An attempt this peer's log does not show yet (a previous coordinator's dispatch on its way):
                # adopted, so that its slot is not dispatched a second time (the scheduler skips jobs it hears of).
                event(self.log, "job.adopted", job=msg.job, node=msg.node, agent=issuer)
            elif st is None or st.state != OPEN or st.agent != issuer:
                raise Forbidden(f"job {msg.job} is not running on {self.peers.membership.name(issuer)}: "
                                + ("it is over" if st is not None and st.state != OPEN else
                                   "superseded by another attempt"))
            live = self.live[msg.job] = Live(issuer, msg.node, now, now, now)
        if msg.waiting or live.progress is None or (msg.files, msg.nbytes, msg.files_seen) != \
                (live.progress.files, live.progress.nbytes, live.progress.files_seen):
            live.moved = now
        live.heard, live.progress = now, msg
        return b""

    async def _on_running(self, issuer: str, body: bytes) -> bytes:
        now = self.clock()
        event(self.log, "jobs.running_asked", logging.DEBUG, peer=issuer)
        return proto.Running(tuple(proto.RunningJob(live.agent, int((now - live.since) * 1000), live.progress)
                                   for live in self.live.values() if live.progress is not None)).to_wire()

    async def running_anywhere(self, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """The running jobs as the coordinator hears them, asked of it when this peer is not it. Callers
        that ask while a question is on its way share its answer, and one younger than `max_age` seconds
        is reused: every open dashboard page wants them each second, which would otherwise cost the
        coordinator a signed request per page per second."""
        coordinator, _ = self.coordination.status()
        if coordinator is None or coordinator == self.peers.me:
            return self.running_jobs()
        now = self.clock()
        asked = self._running_asked
        if asked is None or asked[0] != coordinator or (asked[2].done() and not (
                0 <= now - asked[1] < max_age and not asked[2].cancelled() and asked[2].exception() is None)):
            # Nothing on its way, and no answer young enough (a failure is never reused).
            task = asyncio.ensure_future(self._ask_running(coordinator))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # read by someone, always
            asked = self._running_asked = (coordinator, now, task)
        return await asyncio.shield(asked[2])

    async def _ask_running(self, coordinator: str) -> dict[str, dict[str, Any]]:
        reply = proto.Running.from_wire(await self.send(coordinator, proto.RUNNING_PATH, b"\x80"))
        return {r.progress.job: running_json(r.agent, r.progress.node, r.elapsed_ms / 1000, r.progress)
                for r in reply.jobs}

    def running_jobs(self) -> dict[str, dict[str, Any]]:
        """Jobs running now as the coordinator hears them: agent, counters, rate (for `jobs` and the UI)."""
        now = self.clock()
        return {job: live.to_json(now) for job, live in self.live.items()}

    async def log_restore(self, node: str, fields: dict[str, Any]) -> None:
        """A restore made on this peer, in the node's log (the audit trail names who read what)."""
        self.nodes.keys(node)  # only a holder of the keys can have restored it
        await self.logs.append(RESTORE_DONE, {"node": node, "agent": self.peers.me, **fields}, log=node_log(node))

