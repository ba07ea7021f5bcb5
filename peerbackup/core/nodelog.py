"""Who may write what in a backup node's event log (`node:NAME`). Pure.

The node's log is its audit trail and the only memory coordinators have of its
jobs, so a member must not be able to write there what it had no part in. Two
rules, one at each place where it can be decided:

- **On merge** (`refusal`, called by core/logstate for every node-log event): the
  kind must be one peerbackup writes, and the writer's certificate must carry the
  role that writes it: a coordinator's kinds need the coordinator role, a job's own
  steps the agent role, and the event must name its writer where it names one (an
  agent cannot log a step as another agent). Roles are in the certificate, so the
  verdict is the same on every peer in whatever order events arrive.
- **On reading** (core/jobs.fold, given the coordinator claims of the control log):
  a dispatch counts only when its writer claimed the term it names, and a job's
  start and end only from an agent it was dispatched to. Grants and terms live in
  another log, which may arrive later: deciding them on merge would make the
  result depend on the order of arrival.
"""

from __future__ import annotations

from typing import Any

from peerbackup.core.certs import Certificate

NODE_LOG_PREFIX = "node:"


def node_log(node: str) -> str:
    """The name of backup node `node`'s event log."""
    return NODE_LOG_PREFIX + node


JOB_DISPATCHED, JOB_STARTED, JOB_DONE, JOB_FAILED = "job.dispatched", "job.started", "job.done", "job.failed"
JOB_PROGRESS, JOB_STALLED, JOB_UNSENT = "job.progress", "job.stalled", "job.dispatch_failed"
ACT_AS_ISSUED, ACT_AS_REFUSED, LOGON = "act_as.issued", "act_as.refused", "agent.logon"
RESTORE_DONE = "restore.done"

# kind -> the roles of which the writer needs one, and the field that must name the writer ("" for none)
WRITERS: dict[str, tuple[tuple[str, ...], str]] = {
    JOB_DISPATCHED: (("coordinator",), "coordinator"),
    JOB_UNSENT: (("coordinator",), ""),
    JOB_STALLED: (("coordinator",), ""),
    LOGON: (("coordinator",), ""),
    ACT_AS_ISSUED: (("coordinator",), ""),
    ACT_AS_REFUSED: (("coordinator",), ""),
    JOB_STARTED: (("agent",), "agent"),
    JOB_PROGRESS: (("agent",), "agent"),
    JOB_DONE: (("agent",), "agent"),
    JOB_FAILED: (("agent",), "agent"),
    # Restores are made by holders of the node's keys: its admins and its agents.
    RESTORE_DONE: (("admin", "agent"), "agent"),
}


def refusal(node: str, kind: str, fields: dict[str, Any], writer: str, cert: Certificate) -> str:
    """'' when `writer` (with `cert`) may write this event in node `node`'s log, else why not."""
    rule = WRITERS.get(kind)
    if rule is None:
        return f"{kind!r} is not an event of a backup node's log"
    roles, names = rule
    if not any(cert.has_role(r) for r in roles):
        return f"{writer} has no {' or '.join(roles)} role and cannot write {kind} in node {node}'s log"
    if fields.get("node", node) != node:
        return f"{kind} for node {fields.get('node')!r} written in node {node}'s log"
    if names and fields.get(names, writer) != writer:
        return f"{kind} names {fields.get(names)!r} as its {names}, not its writer {writer}"
    if not isinstance(fields.get("job", ""), str):
        return f"{kind} with a job that is not a string"
    if kind == JOB_DONE:
        return _result_refusal(fields)
    return ""


MAX_FAILED = 100  # failing paths a job.done lists (its "failures" counts them all)
MAX_FAILED_PATH, MAX_REASON = 1024, 64


def _result_refusal(fields: dict[str, Any]) -> str:
    """'' when a job.done's result is well formed: what the CLI, the dashboard, metrics and alerts read."""
    result, count, failed = fields.get("result", "done"), fields.get("failures", 0), fields.get("failed", [])
    if result not in ("done", "partial"):
        return f"job.done with an unknown result {str(result)[:40]!r}"
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return "job.done whose failure count is not a count"
    if not isinstance(failed, list) or len(failed) > MAX_FAILED or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) and len(f["path"]) <= MAX_FAILED_PATH
            and isinstance(f.get("reason"), str) and len(f["reason"]) <= MAX_REASON for f in failed):
        return f"job.done: failed is a list of at most {MAX_FAILED} {{path, reason}}"
    return ""
