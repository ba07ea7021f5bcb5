"""How a node's jobs stand, folded from its event log, and when its retention job is due. Pure.

The node's log (`node:NAME`) is the only memory a coordinator has of jobs: a new
coordinator reads it to know which slots ran, which jobs are still open, which
failed and may be retried, and when the node was last pruned. Folding it here,
with no I/O, gives every coordinator (and the tests) the same answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import hlc
from peerbackup.core.events import Event
from peerbackup.core.nodelog import DISPATCH_FIELDS, JOB_DISPATCHED, JOB_DONE, JOB_FAILED, JOB_STARTED, JOB_UNSENT
from peerbackup.core.schedule import Schedule, job_id, retry_at

BACKUP, RETENTION = "backup", "retention"
# The longest a job may run, as a dispatch gives it: a schedule's window is at most 7 days.
MAX_UNDISPATCHED_DEADLINE = 7 * 86400 + 3600
OPEN, DONE, FAILED = "open", "done", "failed"
WHERE = ("job", "node", "agent", "term", "coordinator", "deadline", "job_kind")
# How a finished job came out: a job.done's "result". Partial: its snapshots were saved without some
# files (their paths and why in the event). It is still finished: never dispatched again.
PARTIAL = "partial"


@dataclass
class JobState:
    job: str
    fields: dict[str, Any]  # the latest dispatch's fields, with what its agent's job.started adds
    state: str = OPEN
    ended_ms: int = 0  # wall time of the event that ended it
    started_ms: int = 0  # wall time of its agent's latest job.started
    result: dict[str, Any] = field(default_factory=dict)  # the job.done or job.failed fields
    prior: tuple[dict[str, Any], str, dict[str, Any]] | None = None  # before the latest dispatch
    dispatcher: str = ""  # who wrote the latest job.dispatched (the fields say who it claims to be)
    agents: set[str] = field(default_factory=set)  # every agent the job was given: only they start or end it

    @property
    def kind(self) -> str:
        return str(self.fields.get("job_kind", BACKUP))  # jobs logged before retention were backups

    @property
    def agent(self) -> str:
        return str(self.fields.get("agent", ""))

    def where(self) -> dict[str, Any]:
        """What an agent's event about this job repeats of it (job.started, job.done, job.failed)."""
        return {k: self.fields[k] for k in WHERE if k in self.fields}

    @property
    def attempt(self) -> int:
        """Which attempt of the job is current: 1 for the first dispatch, one more for each retry or
        re-dispatch (events from before attempts were numbered are attempt 1)."""
        return attempt_of(self.fields)

    def current(self, ev: Event) -> bool:
        """Whether a start or an end is the current attempt's: written by its agent about its number. A
        replaced agent that wakes up and finishes speaks of an attempt that no longer runs the job."""
        # The event's `agent` is its writer (the table of rights refuses one naming another peer).
        return ev.fields.get("agent") == self.agent and attempt_of(ev.fields) == self.attempt

    @property
    def dispatched(self) -> bool:
        """Whether a coordinator's dispatch of it is in the log (else only its agent's start is)."""
        return bool(self.dispatcher)

    @property
    def deadline(self) -> float:
        return float(self.fields.get("deadline", 0))

    @property
    def outcome(self) -> str:
        """open, done, partial or failed: the state, with a done job's result (job.done before results
        existed, and retention jobs, are done)."""
        if self.state == DONE and self.result.get("result") == PARTIAL:
            return PARTIAL
        return self.state


def attempt_of(fields: dict[str, Any]) -> int:
    a = fields.get("attempt", 1)
    return a if isinstance(a, int) and not isinstance(a, bool) else 1


def fold(events: Iterable[Event], claims: Collection[tuple[int, str]] | None,
         agents: Collection[str] | None = None) -> dict[str, JobState]:
    """Every job in a node's log (events in log order), in the order first dispatched. A coordinator
    that dispatched a job may have died before its event spread: then the job.started alone carries
    what a successor needs. A re-dispatch reopens a failed or open job, never a done one; the first end
    after it closes it, when it is the current attempt's (its agent's, about its number); a partial
    job.done closes it as done does (its `outcome` tells them apart). A dispatch
    the agent never took (job.dispatch_failed, written by the coordinator when sending failed) is undone:
    the job stands as before it, or, if it was the first, failed (a schedule retries it).

    `claims` are the (term, peer) coordinator claims of the control log. A dispatch counts only when
    its writer claimed the term it names, a dispatch_failed only from the job's dispatcher, a start or
    an end only from an agent the job was given: any other member's look-alike (core/nodelog.py) is
    passed over. A start whose dispatch is not in the log counts only from one of the node's granted
    `agents` (else any agent-role member could make a slot look taken). None trusts every writer (unit
    tests of the other rules)."""
    jobs: dict[str, JobState] = {}
    for ev in events:
        job = str(ev.fields.get("job"))
        st = jobs.get(job)
        if claims is not None and not _may(ev, st, claims, agents):
            continue
        if ev.kind == JOB_DISPATCHED:
            _dispatched(jobs, job, st, ev)
        elif ev.kind == JOB_UNSENT and st is not None and st.state == OPEN and st.agent == ev.fields.get("agent"):
            _unsent(st, ev)
        elif ev.kind == JOB_STARTED:
            _started(jobs, job, st, ev)
        elif ev.kind in (JOB_DONE, JOB_FAILED) and st is not None and st.state == OPEN and st.current(ev):
            # Only the current attempt ends the job: a replaced agent's late end would let a new attempt be
            # dispatched while the current one still runs (and its snapshot is refused by the holders).
            st.state = DONE if ev.kind == JOB_DONE else FAILED
            st.ended_ms = hlc.wall_ms(ev.hlc)
            st.result = dict(ev.fields)
    return jobs


def _dispatched(jobs: dict[str, JobState], job: str, st: JobState | None, ev: Event) -> None:
    """A job.dispatched (fold): a new job opened, a failed or open one reopened (what it was kept as `prior`)."""
    if st is None:
        st = jobs[job] = JobState(job, dict(ev.fields))
    elif st.state == DONE:
        # Done is final. A later dispatch of it comes from a coordinator that did not know (the other
        # side of a partition, merged on heal): reopening it would run the slot a third time.
        return
    else:
        st.prior = (st.fields, st.state, st.result)
        st.fields, st.state, st.result = dict(ev.fields), OPEN, {}
    st.dispatcher = ev.feed
    st.agents.add(str(ev.fields.get("agent")))


def _unsent(st: JobState, ev: Event) -> None:
    """A job.dispatch_failed of an open job's agent (fold): the dispatch undone, a first one failed."""
    if st.prior is None:
        st.state, st.result, st.ended_ms = FAILED, dict(ev.fields), hlc.wall_ms(ev.hlc)
    else:
        st.fields, st.state, st.result = st.prior
        st.prior = None


def _started(jobs: dict[str, JobState], job: str, st: JobState | None, ev: Event) -> None:
    """A job.started (fold): a job whose dispatch is not in the log known by it alone, else the current
    attempt's start and the fields its agent adds."""
    if st is None:
        st = jobs[job] = JobState(job, dict(ev.fields))
        st.started_ms = hlc.wall_ms(ev.hlc)
        st.agents.add(ev.feed)
        # No dispatch says when it ends: the agent's word, but never past what any dispatch could give
        # (an open job holds the node's retention back until its deadline).
        latest = st.started_ms // 1000 + MAX_UNDISPATCHED_DEADLINE
        if not isinstance(st.fields.get("deadline"), int) or st.fields["deadline"] > latest:
            st.fields["deadline"] = latest
    elif st.state != DONE and st.current(ev):
        # A start after the end is another side's late copy: the end stands. A replaced attempt's
        # late start neither reopens a failed job nor speaks for the current attempt.
        st.started_ms = hlc.wall_ms(ev.hlc)
        # The agent adds its own fields only: what a dispatch says (kind, deadline, slot, prune...) is
        # the coordinator's, whether or not this dispatch said it (an agent that rewrote job_kind to
        # "retention" was handed a delete-capable token).
        for k, v in ev.fields.items():
            if k not in DISPATCH_FIELDS:
                st.fields.setdefault(k, v)
        st.state = OPEN if st.state == FAILED else st.state


def _may(ev: Event, st: JobState | None, claims: Collection[tuple[int, str]],
         agents: Collection[str] | None) -> bool:
    """Whether this event's writer had the part in the job that the event says it had."""
    f = ev.fields
    if ev.kind == JOB_DISPATCHED:
        return (f.get("term"), ev.feed) in claims
    if ev.kind == JOB_UNSENT:
        return st is not None and st.dispatcher == ev.feed
    if ev.kind == JOB_STARTED and st is None:
        # Its dispatch has not arrived (or was never logged): the start must name a real claim and come
        # from a granted agent of the node.
        return (f.get("term"), f.get("coordinator")) in claims and (agents is None or ev.feed in agents)
    if ev.kind in (JOB_STARTED, JOB_DONE, JOB_FAILED):
        return st is not None and ev.feed in st.agents
    return True


def tally(reasons: Iterable[str]) -> str:
    """'2 permission denied, 1 not found': how many files failed for each reason, most first."""
    counts: dict[str, int] = {}
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    return ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda rn: (-rn[1], rn[0])))


def unended(node: str, jobs: dict[str, JobState], missed: Collection[tuple[str, int]], now: float,
            grace: float) -> list[JobState]:
    """Scheduled jobs still open `grace` after their deadline whose slot no job.missed explains yet, oldest
    slot first: the coordinator logs each one missed, with why, so that no slot is left dispatched and never
    ended (an agent killed, or cut off, past the point where another could take the job over inside its
    window). Past its deadline a job is not re-dispatched nor retried, so nothing else would ever end it.

    Only a job whose dispatch is in the log and whose id is its slot's (ids are hash(node, schedule, slot)):
    a slot is what job.missed names, and an agent's own start must not make the coordinator log a slot of its
    choosing. A late job.done (the other side of a partition) still folds the job done: job.missed changes
    no job's state, it says why a slot has no backup (alerts and `log` show it)."""
    out = []
    for st in jobs.values():
        if st.state != OPEN or not st.dispatched or not st.deadline or now < st.deadline + grace:
            continue
        own = slot_of(node, st)
        if own is not None and own not in missed:
            out.append(st)
    return sorted(out, key=lambda st: (int(st.fields["slot"]), st.job))


def slot_of(node: str, st: JobState) -> tuple[str, int] | None:
    """(schedule, slot) of a scheduled job, when its id is that slot's (ids are hash(node, schedule, slot)):
    a slot an agent wrote into a start of its own (2**40, say) names nothing."""
    schedule, slot = st.fields.get("schedule"), st.fields.get("slot")
    if not isinstance(schedule, str) or not isinstance(slot, int) or isinstance(slot, bool):
        return None
    return (schedule, slot) if job_id(node, schedule, slot) == st.job else None


def next_attempt(sc: Schedule, slot: float, st: JobState, soon: float) -> float | None:
    """When failed scheduled job `st` of `slot` may be tried again (core/schedule.retry_at): after the
    schedule's back-off, or `soon` after it failed when no agent ever started it (nothing ran: every dispatch
    refused or unreachable, or its agent failed before its start); None when no retry is left in the window.
    The coordinator retries by it (soon: a lease) and the alerts wait for it (soon 0: a retry still to come)."""
    unstarted = st.ended_ms / 1000 if not st.started_ms else None
    return retry_at(sc, slot, st.attempt, unstarted, soon)


def retention_job_id(node: str, after: str) -> str:
    """The retention job that follows backup job `after`: one per backup, whichever coordinator starts it."""
    return "retention-" + hashlib.blake2b(f"{node}\0{after}".encode(), digest_size=10).hexdigest()


def retention_due(node: str, jobs: dict[str, JobState], now: float, prune_interval: float) -> tuple[str, bool] | None:
    """(job id, prune too?) when the node's retention job should start now, else None.

    After each successful backup, once: forget by the node's policy, and prune when the last prune
    that succeeded is older than `prune_interval` (a prune reads every index and tree: not after every
    backup of a large node). Never while another job of the node is open: a prune beside a backup is
    safe (engine/prune.py) but slower for both, and the next round comes soon."""
    if any(st.state == OPEN and st.deadline > now for st in jobs.values()):
        return None
    backups = [st for st in jobs.values() if st.kind == BACKUP and st.state == DONE]
    if not backups:
        return None
    last = max(backups, key=lambda st: st.ended_ms)
    job = retention_job_id(node, last.job)
    if job in jobs:
        return None
    pruned = [st.ended_ms for st in jobs.values()
              if st.kind == RETENTION and st.state == DONE and st.result.get("pruned")]
    return job, not pruned or now - max(pruned) / 1000 >= prune_interval
