"""The agent's side of a job: take a dispatch, log on, run it as the node, tell the coordinator.

JobService (office/jobs/service.py) holds the coordinator's side and builds the AgentRunner: the two talk
to each other in-process when this peer is both, and over the peer protocol otherwise. The runner
knows the coordinator's side only through the CoordinatorSide protocol below (what it needs, by
public names), so that this module does not import office/jobs/service.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from peerbackup.core.jobs import BACKUP, DONE, OPEN, PARTIAL, RETENTION, JobState
from peerbackup.core.nodelog import (
    JOB_DONE,
    JOB_FAILED,
    JOB_PROGRESS,
    JOB_STARTED,
    MAX_FAILED,
    MAX_FAILED_PATH,
    MAX_REASON,
    node_log,
)
from peerbackup.core.settings import Settings
from peerbackup.engine.backupreport import FileFailure
from peerbackup.errors import (
    Forbidden,
    NotAHolder,
    PeerBackupError,
    PeerRefused,
    PeerUnreachable,
    ProtocolError,
    Superseded,
    UsageError,
)
from peerbackup.logs import event
from peerbackup.net.proto import jobs as proto
from peerbackup.office.coordination.service import CoordinatorService
from peerbackup.office.jobs.agent import AgentService, readable
from peerbackup.office.jobs.logon import ActAsService
from peerbackup.office.membership.service import PeerService
from peerbackup.office.nodes.service import NodeService
from peerbackup.office.replication.service import LogService

PROGRESS_LOG_EVERY = 12  # heartbeats between two job.progress events in the node's log


class CoordinatorSide(Protocol):
    """What the agent's side of a job (AgentRunner here, AdHocJobs in office/jobs/adhoc.py) needs of this peer's
    coordinator side (JobService satisfies it)."""

    nodes: NodeService
    logs: LogService
    peers: PeerService
    coordination: CoordinatorService
    agent: AgentService
    actas: ActAsService  # logon and act-as tokens (office/jobs/logon.py)
    log: logging.Logger
    clock: Callable[[], float]

    @property
    def settings(self) -> Settings: ...

    async def send(self, peer_id: str, path: str, body: bytes) -> bytes:
        """A signed request to a member, at the addresses known for it."""

    async def on_report(self, issuer: str, body: bytes) -> bytes:
        """A job's end as the coordinator takes it (called directly when this peer is the coordinator)."""

    async def on_progress(self, issuer: str, body: bytes) -> bytes:
        """A job's heartbeat as the coordinator takes it (called directly when this peer is the coordinator)."""

    def check_clock(self) -> None:
        """Raises when the other members refuse this peer's messages for its clock."""

    def job_states(self, node: str) -> dict[str, JobState]:
        """Every job in the node's log and how it stands."""


def result_fields(failures: list[FileFailure]) -> dict[str, Any]:
    """A job.done's result: done, or partial with how many files failed and the first MAX_FAILED of them
    (core/nodelog.py checks the shape on every peer)."""
    if not failures:
        return {"result": DONE}
    return {"result": PARTIAL, "failures": len(failures),
            "failed": [{"path": _clip(f.path), "reason": f.reason[:MAX_REASON]} for f in failures[:MAX_FAILED]]}


def _superseded(exc: BaseException | None) -> bool:
    """Whether a holder refused this attempt's commit because a newer attempt runs the job (peerstore/holder.py)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, Superseded) or (isinstance(exc, PeerRefused) and exc.code == Superseded.code):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _clip(path: str) -> str:
    # The end of a long path says which file it is; the event must stay well under the log's size limit.
    return path if len(path) <= MAX_FAILED_PATH else "…" + path[-(MAX_FAILED_PATH - 1):]


class AgentRunner:
    """The agent's half of jobs: dispatches in, reports and heartbeats out to the coordinator side it is handed."""

    def __init__(self, jobs: CoordinatorSide) -> None:
        self.jobs = jobs
        self.runs: dict[str, dict[str, Any]] = {}  # job -> the `where` of the attempt this peer runs of it

    async def _catch_up(self, coordinator: str, msg: proto.Dispatch) -> None:
        """Runs a job only under the configuration it was dispatched under, or a later one. An agent's log
        can be a heartbeat behind the coordinator's: a data set added (or removed, or a policy changed) just
        before `backup` would be left out (or backed up, or applied the old way) and the job still end done.
        So an agent whose configuration digest differs from the dispatch's first syncs its logs with the
        coordinator, for at most half a request's time (the sync goes on if the wait ends first), and refuses
        the dispatch if that did not finish: the coordinator tries another agent, or again a lease later.
        A dispatch without a digest (a coordinator before it) is caught up only when this peer knows no
        data set of a backup's node."""
        if msg.config:
            if msg.config == self._config_digest():
                return
        else:
            node = self.jobs.nodes.nodes().get(msg.node)
            if msg.kind != BACKUP or (node is not None and node.datasets):
                return
        sync = self.jobs.peers.spawn(self.jobs.logs.sync_with(coordinator))
        done, _ = await asyncio.wait({sync}, timeout=self.jobs.settings.request_timeout / 2)
        caught_up = bool(done) and not sync.cancelled() and sync.exception() is None and sync.result()
        if msg.config and not caught_up and msg.config != self._config_digest():
            raise Forbidden(f"this peer's configuration is behind the coordinator's and it could not catch up "
                            f"within {self.jobs.settings.request_timeout / 2:g} s")

    def _config_digest(self) -> bytes:
        return self.jobs.logs.state.config().digest()

    async def on_dispatch(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Dispatch.from_wire(body)
        if msg.token[1] != issuer:
            raise Forbidden("a dispatch must come from the coordinator its fencing token names")
        if not self.jobs.coordination.election.check_fence(msg.token):
            raise Forbidden(f"stale fencing token {list(msg.token)}: this peer has seen "
                            f"{list(self.jobs.coordination.election.highest)}")
        await self._catch_up(issuer, msg)
        try:
            self.jobs.nodes.keys(msg.node)
        except (NotAHolder, UsageError) as exc:
            raise Forbidden(str(exc)) from None
        if msg.kind == BACKUP:
            info = self.jobs.nodes.nodes()[msg.node]
            ok, why = readable(list(info.datasets.values()), self.jobs.peers.me)
            if not ok:
                raise Forbidden(f"nothing of {msg.node} can be backed up here: {'; '.join(map(str, why))}")
        where = self.runs.get(msg.job)
        if where is not None:
            # Already running here under an earlier dispatch (a new coordinator whose log lacked it, or a retry
            # sent before this peer's end arrived): the run goes on as the new attempt, never a second run.
            where.update(term=msg.token[0], coordinator=issuer, attempt=msg.attempt, deadline=msg.deadline_ms // 1000)
            event(self.jobs.log, "job.adopted", job=msg.job, node=msg.node, attempt=msg.attempt,
                  coordinator=issuer)
            await self.jobs.logs.append(JOB_STARTED, dict(where), log=node_log(msg.node))
            return b""
        done = self.jobs.job_states(msg.node).get(msg.job)
        if done is not None and done.state == DONE:
            # Done already, as this peer's log shows (a coordinator on the other side of a partition that has
            # just healed sends a slot this peer finished moments ago): taken, not run again; the coordinator
            # hears it ended, and the end it lacks reaches it with the log.
            snaps = tuple(str(s) for s in done.result.get("snapshots", ()) if isinstance(s, str))
            event(self.jobs.log, "job.already_done", job=msg.job, node=msg.node, coordinator=issuer)
            report = proto.JobReport(msg.job, msg.node, "done", snaps)
            self.jobs.peers.spawn(self._report(issuer, report))
            return b""
        self.runs[msg.job] = self._where(msg, issuer)
        self.jobs.peers.spawn(self._run(msg))
        return b""

    async def _report(self, coordinator: str, report: proto.JobReport) -> None:
        try:
            await self._tell(coordinator, proto.REPORT_PATH, report.to_wire())
        except (PeerBackupError, ProtocolError) as exc:
            event(self.jobs.log, "job.report_failed", logging.WARNING, job=report.job, reason=str(exc))

    async def end_lost_runs(self, boot: float) -> None:
        """After a restart: an attempt this peer had started (its job.started is in its own feed, written
        before `boot`) and that no run of this process carries was lost with the process (kill -9, a crash,
        a power cut). Ended job.failed saying so, so that the coordinator retries or re-dispatches the slot
        now instead of waiting for `stall_after` or the window's end with the slot neither done nor missed. A
        backup by hand is left open: its command, in a process of its own, may still end it."""
        await self.jobs.logs.wait_ready()
        me = self.jobs.peers.me
        for name, info in sorted(self.jobs.nodes.nodes().items()):
            if me not in info.agents:
                continue
            for job, st in list(self.jobs.job_states(name).items()):
                if st.state != OPEN or st.agent != me or job in self.runs or st.fields.get("adhoc") \
                        or not 0 < st.started_ms < boot * 1000:
                    continue
                reason = "lost: this agent restarted while it ran the job (its run ended with the process)"
                event(self.jobs.log, "job.lost", logging.WARNING, job=job, node=name, attempt=st.attempt)
                await self._record(JOB_FAILED, {**st.where(), "attempt": st.attempt, "reason": reason}, name)

    def _where(self, msg: proto.Dispatch, coordinator: str) -> dict[str, Any]:
        """What every event of this attempt says of it (updated when a later dispatch adopts the run)."""
        return {"job": msg.job, "node": msg.node, "agent": self.jobs.peers.me, "term": msg.token[0],
                "coordinator": coordinator, "deadline": msg.deadline_ms // 1000, "job_kind": msg.kind,
                "attempt": msg.attempt}

    def _coordinator(self, where: dict[str, Any]) -> str:
        """Where heartbeats and the report go: the coordinator now, which may not be the one that dispatched
        (it adopts the attempt when its log does not show it yet), else the dispatching one."""
        return self.jobs.coordination.status()[0] or str(where["coordinator"])

    async def _tell(self, coordinator: str, path: str, body: bytes) -> None:
        local = {proto.REPORT_PATH: self.jobs.on_report, proto.PROGRESS_PATH: self.jobs.on_progress}
        if coordinator == self.jobs.peers.me:
            await local[path](self.jobs.peers.me, body)
        else:
            await self.jobs.send(coordinator, path, body)

    async def _heartbeat(self, msg: proto.Dispatch, where: dict[str, Any]) -> None:
        """While the job runs: its counters to the coordinator every progress_interval, and a summary
        into the node's log every PROGRESS_LOG_EVERY of them."""
        beats = 0
        while True:
            await asyncio.sleep(self.jobs.settings.progress_interval)
            rec = self.jobs.agent.jobs.get(msg.job)
            if rec is None or rec.state not in ("waiting", "running"):
                continue
            beats += 1
            p = proto.JobProgress(msg.job, msg.node, rec.files, rec.nbytes, rec.files_seen, rec.nbytes_seen,
                                  len(rec.errors), rec.state == "waiting", rec.files_total, rec.nbytes_total)
            try:
                await self._tell(self._coordinator(where), proto.PROGRESS_PATH, p.to_wire())
            except (PeerBackupError, ProtocolError) as exc:
                if isinstance(exc, Forbidden) or (isinstance(exc, PeerRefused) and exc.code == "forbidden"):
                    # The coordinator gave the job to another agent (this one stalled): nothing more to say, and
                    # if it still waits for this machine's other job, it never starts.
                    event(self.jobs.log, "job.taken_over", logging.WARNING, job=msg.job, reason=str(exc))
                    rec.superseded = True
                    return
                event(self.jobs.log, "job.heartbeat_failed", logging.WARNING, job=msg.job, reason=str(exc))
            if beats % PROGRESS_LOG_EVERY == 0 and not p.waiting:
                await self.jobs.logs.append(JOB_PROGRESS, {**where, "files": rec.files, "bytes": rec.nbytes,
                                                      "files_seen": rec.files_seen, "bytes_seen": rec.nbytes_seen,
                                                      "errors": len(rec.errors)}, log=node_log(msg.node))

    async def _run(self, msg: proto.Dispatch) -> None:
        where = self.runs[msg.job]
        beat = asyncio.ensure_future(self._heartbeat(msg, where))
        try:
            self.jobs.check_clock()
            token = await self._act_as(msg, where)
            await self.jobs.logs.append(JOB_STARTED, dict(where), log=node_log(msg.node))
            if msg.kind == RETENTION:
                rec = await self.jobs.agent.retention(msg.node, msg.job, token, msg.prune, msg.deadline_ms / 1000)
            else:
                rec = await self.jobs.agent.run(msg.node, msg.job, token, msg.deadline_ms / 1000)
        except Exception as exc:  # whatever stopped the job, the coordinator must hear of it
            reason = str(exc) if isinstance(exc, PeerBackupError) else f"internal error: {type(exc).__name__}: {exc}"
            if _superseded(exc) and not reason.startswith("superseded"):
                reason = f"superseded: {reason}"  # what the log's readers (and the soak) look for
            if not isinstance(exc, PeerBackupError):
                self.jobs.log.exception("job.crashed", extra={"pb_fields": {"job": msg.job}})
            await self._record(JOB_FAILED, {**where, "reason": reason[:500]}, msg.node)
            report = proto.JobReport(msg.job, msg.node, "failed", (), reason)
        else:
            snaps = [s["id"] for s in rec.snapshots]
            done = {**where, "snapshots": snaps, "errors": len(rec.errors),
                    "added": sum(s["summary"].get("bytes_added", 0) for s in rec.snapshots), **rec.outcome,
                    **result_fields(rec.failures)}
            await self._record(JOB_DONE, done, msg.node)
            report = proto.JobReport(msg.job, msg.node, "done", tuple(snaps))
        finally:
            beat.cancel()
            self.runs.pop(msg.job, None)
        await self._report(self._coordinator(where), report)

    async def _act_as(self, msg: proto.Dispatch, where: dict[str, Any]) -> bytes:
        """Log on as the node: the coordinator that dispatched the job checks the grant and signs. When that
        one cannot be reached (lost between its dispatch and this logon), the next coordinator, waited for as
        long as an election takes, within the job's deadline: it lets this agent act only if its log neither
        gives the job to another agent nor shows it done (office/jobs/logon.py), so the job still runs once.
        Before, a backup asked by hand failed then, and was never tried again (no slot of a schedule)."""
        dispatcher = str(where["coordinator"])
        try:
            return await self.jobs.actas.act_as(msg.node, msg.job, dispatcher)
        except PeerUnreachable:
            nxt = await self._next_coordinator(dispatcher, msg.deadline_ms / 1000)
            if nxt is None:
                raise
        coordinator, term = nxt
        event(self.jobs.log, "job.coordinator_changed", job=msg.job, node=msg.node, was=dispatcher, now=coordinator)
        where.update(coordinator=coordinator, term=term)
        return await self.jobs.actas.act_as(msg.node, msg.job, coordinator)

    async def _next_coordinator(self, lost: str, deadline: float) -> tuple[str, int] | None:
        s = self.jobs.settings
        until = min(deadline, self.jobs.clock() + s.lease + s.dead + 2 * s.heartbeat)
        while self.jobs.clock() < until:
            holder, term = self.jobs.coordination.status()
            if holder is not None and holder != lost and term is not None:
                return holder, term
            await asyncio.sleep(s.heartbeat)
        return None

    async def _record(self, kind: str, fields: dict[str, Any], node: str) -> None:
        """The end of a job in the node's log; if this peer cannot write its log (a clock that ran ahead
        leaves its log's time in the future for a while), the report to the coordinator still goes, and the
        end is written later, tried every progress_interval until the job's deadline: without it the job
        stays open in every log until then, neither retried nor re-dispatched (seen by the soak)."""
        try:
            await self.jobs.logs.append(kind, fields, log=node_log(node))
        except PeerBackupError as exc:
            event(self.jobs.log, "job.log_failed", logging.ERROR, job=fields.get("job"), kind=kind, reason=str(exc))
            self.jobs.peers.spawn(self._record_later(kind, fields, node))

    async def _record_later(self, kind: str, fields: dict[str, Any], node: str) -> None:
        while self.jobs.clock() < float(fields.get("deadline") or 0):
            await asyncio.sleep(self.jobs.settings.progress_interval)
            try:
                await self.jobs.logs.append(kind, fields, log=node_log(node))
            except PeerBackupError:
                continue
            event(self.jobs.log, "job.logged_late", job=fields.get("job"), kind=kind)
            return
        event(self.jobs.log, "job.end_unlogged", logging.ERROR, job=fields.get("job"), kind=kind,
              reason="its deadline passed before this peer could write the job's end to the node's log")
