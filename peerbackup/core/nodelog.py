"""A backup node's event log (`node:NAME`): its name, its kinds, and the fields a dispatch owns. Pure.

The node's log is its audit trail and the only memory coordinators have of its
jobs. Who may write which of its kinds with which fields is in the one table of
rights, core/authority.py (checked on merge, the same verdict on every peer);
what needs the control log's facts (claimed terms, grants) is decided when the
log is read, in core/jobs.fold.
"""

from __future__ import annotations

NODE_LOG_PREFIX = "node:"


def node_log(node: str) -> str:
    """The name of backup node `node`'s event log."""
    return NODE_LOG_PREFIX + node


JOB_DISPATCHED, JOB_STARTED, JOB_DONE, JOB_FAILED = "job.dispatched", "job.started", "job.done", "job.failed"
JOB_PROGRESS, JOB_STALLED, JOB_UNSENT = "job.progress", "job.stalled", "job.dispatch_failed"
ACT_AS_ISSUED, ACT_AS_REFUSED, LOGON = "act_as.issued", "act_as.refused", "agent.logon"
RESTORE_DONE = "restore.done"

# The fields a job.dispatched owns (office/jobs.py writes them): a job's identity, kind, deadline and why it
# runs. Only its coordinator sets them; an agent's job.started never changes them (its start counts for them
# only when no dispatch of the job is in the log).
DISPATCH_FIELDS = frozenset({"job", "node", "agent", "term", "coordinator", "deadline", "job_kind", "schedule",
                             "slot", "attempt", "replaces", "prune", "stalled"})


MAX_ATTEMPT = 10_000  # attempts of one job (dispatches, retries, re-dispatches): far beyond any window's

MAX_FAILED = 100  # failing paths a job.done lists (its "failures" counts them all)
MAX_FAILED_PATH, MAX_REASON = 1024, 64
