"""A backup made by hand on an agent (`peerbackup repo backup --repo office:NODE`), as a job of the node.

The command runs the engine in its own process, so no coordinator dispatches it; the agent's
daemon does the rest as for a dispatched job (office/jobs/runner.py): it logs on to the coordinator
and gets an act-as token (storage peers take an agent's writes only with one), writes
`job.started` into the node's log under that coordinator's term, and `job.done` or `job.failed`
when the command says how it ended. A start without a dispatch counts (core/jobs.fold) because
it names a term its coordinator claimed in the control log. The job is marked `adhoc`, with the
paths it backs up: no coordinator gives it to another agent (only the command knows what it backs
up), and a command killed before it reports leaves it open until its deadline.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from peerbackup.core.actas import ActAs, coordinator_of
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.jobs import BACKUP, OPEN
from peerbackup.core.nodelog import JOB_DONE, JOB_FAILED, JOB_STARTED, node_log
from peerbackup.errors import PeerBackupError, ProtocolError, UsageError
from peerbackup.office.jobs.runner import CoordinatorSide

DEADLINE = 4 * 3600.0  # as a manual backup's; past it, a job its command never ended no longer holds back retention
MAX_PATHS, MAX_PATH = 20, 300  # what of the command's paths the log keeps


class AdHocJobs:
    def __init__(self, jobs: CoordinatorSide) -> None:
        self.jobs = jobs

    async def start(self, node: str, paths: list[str], wait: float) -> tuple[str, bytes]:
        """Log on and act as the node for a backup of `paths`: (job id, act-as token). Right after the
        daemons start there is no coordinator for one lease: this waits up to `wait` seconds for one
        whose claim this peer holds, then until the storage peers hold that claim too (they check the
        token's term against it)."""
        self.jobs.nodes.keys(node)  # NotAHolder, naming who holds them, for anyone else
        job = "adhoc-" + secrets.token_hex(6)
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while True:
            coordinator, term = self.jobs.coordination.status()
            if coordinator is None:
                why = "there is no coordinator yet (one is elected within a lease of the daemons' start)"
            elif (term, coordinator) not in self.jobs.logs.state.config().coordinator_terms:
                why = (f"the claim of coordinator {self.jobs.peers.membership.name(coordinator)} to term {term} "
                       "has not reached this peer")
                self.jobs.logs.sync_soon(coordinator)  # now, not at the next heartbeat
            else:
                try:
                    raw = await self.jobs.actas.act_as(node, job, coordinator)
                    break
                except (PeerBackupError, ProtocolError) as exc:
                    why = str(exc)
            if loop.time() >= until:
                raise UsageError(f"cannot act as backup node {node} for this backup after {wait:g} s: {why}; "
                                 "see `peerbackup status`, and try again")
            await asyncio.sleep(0.2)
        ps = self.jobs.peers
        cert = ps.membership.certs[coordinator_of(raw)]
        token = ActAs.from_bytes(raw, cert.public_key)
        storage = [c.peer_id for c in ps.membership.members() if c.has_role("storage")]
        await self.jobs.logs.spread(CONTROL_LOG, token.coordinator,
                                    self.jobs.logs.state.heads.get((CONTROL_LOG, token.coordinator), 0),
                                    max(until - loop.time(), 1.0), among=storage)
        await self.jobs.logs.append(JOB_STARTED, {
            "job": job, "node": node, "agent": ps.me, "term": token.term, "coordinator": token.coordinator,
            "deadline": int(self.jobs.clock() + DEADLINE), "job_kind": BACKUP, "adhoc": True,
            "paths": [p[:MAX_PATH] for p in paths[:MAX_PATHS]]}, log=node_log(node))
        return job, raw

    async def end(self, node: str, job: str, result: dict[str, Any]) -> None:
        """The command's word on how its backup ended: job.done with its snapshots, or job.failed."""
        st = self.jobs.job_states(node).get(job)
        if st is None or st.state != OPEN or not st.fields.get("adhoc") or st.agent != self.jobs.peers.me:
            raise UsageError(f"no backup of {node} by hand is open on this peer as job {job!r}")
        where = st.where()
        if result.get("state") == "done":
            snapshots = result.get("snapshots")
            if not isinstance(snapshots, list) or not all(isinstance(s, str) for s in snapshots):
                raise UsageError("give the job's snapshots: a list of ids")
            counts = {k: result.get(k, 0) for k in ("errors", "added")}
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
                raise UsageError("errors and added are counts")
            # A backup that could not read some files says so as a dispatched one does (result, failures and
            # the first failing paths); the table of rights (core/authority.py) checks their shape on merge.
            outcome: dict[str, Any] = {k: result[k] for k in ("result", "failures", "failed") if k in result}
            await self.jobs.logs.append(JOB_DONE, {**where, "snapshots": snapshots, **counts, **outcome},
                                        log=node_log(node))
        else:
            reason = str(result.get("reason") or "the command ended before its snapshot was saved")
            await self.jobs.logs.append(JOB_FAILED, {**where, "reason": reason[:500]}, log=node_log(node))
