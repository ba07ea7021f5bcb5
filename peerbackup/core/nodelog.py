"""A backup node's event log (`node:NAME`): its name, its kinds, the fields a dispatch owns, the missed slots. Pure.

The node's log is its audit trail and the only memory coordinators have of its
jobs. Who may write which of its kinds with which fields is in the one table of
rights, core/authority.py (checked on merge, the same verdict on every peer);
what needs the control log's facts (claimed terms, grants) is decided when the
log is read, in core/jobs.fold.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from peerbackup.core.events import Event

NODE_LOG_PREFIX = "node:"


def node_log(node: str) -> str:
    """The name of backup node `node`'s event log."""
    return NODE_LOG_PREFIX + node


JOB_DISPATCHED, JOB_STARTED, JOB_DONE, JOB_FAILED = "job.dispatched", "job.started", "job.done", "job.failed"
JOB_PROGRESS, JOB_STALLED, JOB_UNSENT = "job.progress", "job.stalled", "job.dispatch_failed"
# A scheduled slot that no job ran for and none ever will (core/schedule.settle says why), written by the
# coordinator: {node, schedule, slot, reason, term, coordinator}. A slot is run or logged missed, never lost.
JOB_MISSED = "job.missed"
ACT_AS_ISSUED, ACT_AS_REFUSED, LOGON = "act_as.issued", "act_as.refused", "agent.logon"
RESTORE_DONE = "restore.done"

# The fields a job.dispatched owns (office/jobs/service.py writes them): a job's identity, kind, deadline and why it
# runs. Only its coordinator sets them; an agent's job.started never changes them (its start counts for them
# only when no dispatch of the job is in the log).
DISPATCH_FIELDS = frozenset({"job", "node", "agent", "term", "coordinator", "deadline", "job_kind", "schedule",
                             "slot", "attempt", "replaces", "prune", "stalled"})


MAX_ATTEMPT = 10_000  # attempts of one job (dispatches, retries, re-dispatches): far beyond any window's

MAX_FAILED = 100  # failing paths a job.done lists (its "failures" counts them all)
MAX_FAILED_PATH, MAX_REASON = 1024, 64


def missed_slots(events: Iterable[Event], claims: Collection[tuple[int, str]]) -> dict[tuple[str, int], dict[str, Any]]:
    """(schedule, slot) -> the fields of the first job.missed that logged it, from a node's log in log order.
    Counts only from a coordinator of the term it names (as a dispatch does): any other member's look-alike
    would stop a slot from running."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for ev in events:
        f = ev.fields
        if ev.kind != JOB_MISSED or (f.get("term"), ev.feed) not in claims:
            continue
        schedule, slot = f.get("schedule"), f.get("slot")
        if isinstance(schedule, str) and isinstance(slot, int) and not isinstance(slot, bool):
            out.setdefault((schedule, slot), dict(f))
    return out
