"""The fold of a node's log into job states, and when the node's retention job is due."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import hlc
from peerbackup.core.authority import NODE, refusal
from peerbackup.core.certs import Certificate
from peerbackup.core.events import GENESIS, Event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.jobs import DONE, FAILED, OPEN, PARTIAL, RETENTION, fold, retention_due, retention_job_id, unended
from peerbackup.core.nodelog import MAX_FAILED
from peerbackup.core.schedule import job_id

KEY = SigningKey(bytes(range(32)))
T0 = 1_800_000_000.0


class Log:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, kind: str, at: float, **fields: Any) -> None:
        prev = self.events[-1].id if self.events else GENESIS
        self.events.append(make_event(KEY, "node:a", len(self.events) + 1, prev, hlc.pack(int(at * 1000), 0),
                                      kind, fields))

    def backup(self, job: str, at: float, end: str = "job.done") -> None:
        self.add("job.dispatched", at, job=job, agent="B", deadline=int(at + 3600))
        self.add("job.started", at + 1, job=job, agent="B", coordinator="C")
        self.add(end, at + 60, job=job, agent="B")


def test_fold_follows_a_job_through_retries_and_ignores_late_ends() -> None:
    log = Log()
    log.backup("j1", T0, end="job.failed")
    assert fold(log.events, None)["j1"].state == FAILED
    log.add("job.dispatched", T0 + 600, job="j1", agent="G", attempt=2, deadline=int(T0 + 3600))
    st = fold(log.events, None)["j1"]
    assert (st.state, st.agent, st.fields["attempt"]) == (OPEN, "G", 2)
    log.add("job.done", T0 + 700, job="j1", agent="G", attempt=2, snapshots=["s1"])
    log.add("job.failed", T0 + 800, job="j1", agent="B")  # a stalled first agent that woke up too late
    st = fold(log.events, None)["j1"]
    assert (st.state, st.result["snapshots"], st.ended_ms) == (DONE, ["s1"], int((T0 + 700) * 1000))
    # A successor coordinator that only saw the agent's job.started still knows the job.
    log2 = Log()
    log2.add("job.started", T0, job="j2", agent="B", deadline=int(T0 + 60))
    assert fold(log2.events, None)["j2"].state == OPEN
    assert fold(log.events, None)["j1"].kind == "backup"  # events before job kinds were backups


def test_retention_follows_each_successful_backup_once_and_prunes_by_interval() -> None:
    log = Log()
    assert retention_due("a", fold(log.events, None), T0, 86400) is None  # nothing backed up yet
    log.backup("j1", T0)
    due = retention_due("a", fold(log.events, None), T0 + 100, 86400)
    assert due == (retention_job_id("a", "j1"), True)  # never pruned: prune now
    # While a job of the node is open (inside its deadline), nothing starts.
    log.add("job.dispatched", T0 + 90, job="j2", agent="B", deadline=int(T0 + 3600))
    assert retention_due("a", fold(log.events, None), T0 + 100, 86400) is None
    assert retention_due("a", fold(log.events, None), T0 + 3700, 86400) is not None  # its deadline passed
    log.add("job.done", T0 + 120, job="j2", agent="B")
    job, prune = retention_due("a", fold(log.events, None), T0 + 130, 86400) or ("", False)
    assert job == retention_job_id("a", "j2") and prune
    log.add("job.dispatched", T0 + 130, job=job, agent="B", job_kind=RETENTION, prune=True, deadline=int(T0 + 999))
    log.add("job.done", T0 + 140, job=job, agent="B", pruned=True)
    assert retention_due("a", fold(log.events, None), T0 + 150, 86400) is None  # once per backup
    log.backup("j3", T0 + 200)
    job, prune = retention_due("a", fold(log.events, None), T0 + 300, 86400) or ("", True)
    assert job == retention_job_id("a", "j3") and not prune  # pruned 160 s ago: forget only
    assert retention_due("a", fold(log.events, None), T0 + 140 + 86400, 86400) == (job, True)
    # A failed backup is not followed by a retention job of its own.
    log.backup("j4", T0 + 400, end="job.failed")
    assert retention_due("a", fold(log.events, None), T0 + 500, 86400) == (job, False)


def test_a_dispatch_the_agent_never_took_is_undone() -> None:
    log = Log()
    log.add("job.dispatched", T0, job="j1", agent="B", deadline=int(T0 + 3600))
    log.add("job.started", T0 + 1, job="j1", agent="B")
    # B stalls; the coordinator gives the job to G, but G cannot be reached: the job is still B's.
    log.add("job.dispatched", T0 + 600, job="j1", agent="G", deadline=int(T0 + 3600), replaces="B")
    log.add("job.dispatch_failed", T0 + 601, job="j1", agent="G", reason="unreachable")
    st = fold(log.events, None)["j1"]
    assert (st.state, st.agent) == (OPEN, "B")
    # A first dispatch that no agent took leaves the job failed (a schedule's retry takes it up).
    log.add("job.dispatched", T0, job="j2", agent="G", deadline=int(T0 + 3600), schedule="s", slot=int(T0))
    log.add("job.dispatch_failed", T0 + 1, job="j2", agent="G", reason="nothing of accounts can be backed up here")
    st = fold(log.events, None)["j2"]
    assert st.state == FAILED and "backed up here" in st.result["reason"]
    # A late failure report for an agent that is no longer the job's changes nothing.
    log.add("job.dispatch_failed", T0 + 700, job="j1", agent="G", reason="again")
    assert fold(log.events, None)["j1"].agent == "B"


def test_the_fold_says_who_wrote_a_dispatch() -> None:
    # The coordinator lets an agent delete only for a retention job it dispatched itself: a look-alike
    # event written by someone else names its real writer.
    log = Log()
    log.add("job.dispatched", T0, job="r1", agent="B", coordinator="C", job_kind=RETENTION, deadline=int(T0 + 60))
    assert fold(log.events, None)["r1"].dispatcher == KEY.peer_id


def test_a_done_job_stays_done_when_the_other_side_of_a_partition_dispatched_it_too() -> None:
    log = Log()
    log.backup("j1", T0)  # done by B on alpha's side
    # gamma's side, cut off, thought B dead and gave the job to G; its events sort after on heal.
    log.add("job.dispatched", T0 + 70, job="j1", agent="G", attempt=2, replaces="B", deadline=int(T0 + 3600))
    log.add("job.started", T0 + 71, job="j1", agent="G")
    st = fold(log.events, None)["j1"]
    assert st.state == DONE and st.agent == "B"  # not open again: nobody dispatches it a third time


class Feeds:
    """A node's log written by several peers, each signing its own feed (the fold checks writers)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.at = T0

    def add(self, key: SigningKey, kind: str, **fields: Any) -> None:
        mine = [e for e in self.events if e.feed == key.peer_id]
        self.at += 1
        self.events.append(make_event(key, "node:a", len(mine) + 1, mine[-1].id if mine else GENESIS,
                                      hlc.pack(int(self.at * 1000), 0), kind, {"node": "a", **fields}))


COORD, ROGUE, B, G = (SigningKey(bytes([n]) * 32) for n in (1, 2, 3, 4))
CLAIMS = {(1, COORD.peer_id), (2, ROGUE.peer_id)}


def dispatch(log: Feeds, key: SigningKey, job: str, agent: SigningKey, term: int = 1, **more: Any) -> None:
    log.add(key, "job.dispatched", job=job, agent=agent.peer_id, coordinator=key.peer_id, term=term,
            deadline=int(T0 + 3600), **more)


def test_a_dispatch_counts_only_from_the_peer_that_claimed_its_term() -> None:
    log = Feeds()
    # A member that is no coordinator writes a dispatch of a coming slot, to have it skipped.
    dispatch(log, ROGUE, "slot-1", B, term=1)
    log.add(B, "job.started", job="slot-1", agent=B.peer_id, term=1, coordinator=ROGUE.peer_id)
    assert "slot-1" not in fold(log.events, CLAIMS)
    assert "slot-1" in fold(log.events, None)  # what every member could do before
    # The same writer under the term it did claim: a real dispatch.
    dispatch(log, ROGUE, "slot-2", B, term=2)
    assert fold(log.events, CLAIMS)["slot-2"].state == OPEN
    # A claim that arrives after the dispatch (the control log replicates on its own) makes it count.
    dispatch(log, COORD, "slot-3", B, term=3)
    assert "slot-3" not in fold(log.events, CLAIMS)
    assert fold(log.events, CLAIMS | {(3, COORD.peer_id)})["slot-3"].agent == B.peer_id


def test_only_an_agent_given_the_job_starts_or_ends_it() -> None:
    log = Feeds()
    dispatch(log, COORD, "j1", B)
    log.add(G, "job.done", job="j1", agent=G.peer_id, snapshots=["forged"])  # G was not given j1
    log.add(ROGUE, "job.dispatch_failed", job="j1", agent=B.peer_id, reason="forged")  # nor is ROGUE its dispatcher
    st = fold(log.events, CLAIMS)["j1"]
    assert (st.state, st.agent, st.agents) == (OPEN, B.peer_id, {B.peer_id})
    log.add(B, "job.started", job="j1", agent=B.peer_id, term=1, coordinator=COORD.peer_id)
    # B stalls; the coordinator gives the job to G (attempt 2). B wakes up and ends its attempt 1: that end
    # is not the current attempt's and closes nothing (issue 16, cause 1), nor does a start of B's reopen it.
    dispatch(log, COORD, "j1", G, attempt=2, replaces=B.peer_id)
    log.add(B, "job.done", job="j1", agent=B.peer_id, snapshots=["s1"])
    log.add(B, "job.started", job="j1", agent=B.peer_id, term=1, coordinator=COORD.peer_id)
    st = fold(log.events, CLAIMS)["j1"]
    assert (st.state, st.agent, st.attempt, st.agents) == (OPEN, G.peer_id, 2, {B.peer_id, G.peer_id})
    log.add(G, "job.done", job="j1", agent=G.peer_id, attempt=2, snapshots=["s2"])
    st = fold(log.events, CLAIMS)["j1"]
    assert (st.state, st.result["snapshots"]) == (DONE, ["s2"])


def test_a_start_without_its_dispatch_must_name_a_claimed_term() -> None:
    log = Feeds()
    # The coordinator died before its dispatch spread: the agent's start names it and its term.
    log.add(B, "job.started", job="j1", agent=B.peer_id, term=1, coordinator=COORD.peer_id, deadline=int(T0 + 60))
    log.add(G, "job.started", job="j2", agent=G.peer_id, term=1, coordinator=ROGUE.peer_id, deadline=int(T0 + 60))
    jobs = fold(log.events, CLAIMS)
    assert jobs["j1"].state == OPEN and jobs["j1"].agents == {B.peer_id}
    assert "j2" not in jobs  # nobody claimed to be ROGUE's coordinator of term 1
    log.add(G, "job.failed", job="j1", agent=G.peer_id, reason="forged")
    log.add(B, "job.done", job="j1", agent=B.peer_id, snapshots=["s1"])
    assert fold(log.events, CLAIMS)["j1"].result["snapshots"] == ["s1"]


def test_an_agents_start_never_rewrites_what_the_dispatch_said() -> None:
    """Issue 14, finding 3: the agent's own job.started overwrote job_kind and deadline, so a granted agent
    turned its backup job into a "retention" job and was handed a delete-capable token."""
    log = Feeds()
    dispatch(log, COORD, "j1", B, job_kind="backup", schedule="s1", slot=1_800_000_000)
    log.add(B, "job.started", job="j1", agent=B.peer_id, term=1, coordinator=COORD.peer_id, job_kind=RETENTION,
            deadline=2**40, slot=2**40, prune=True, files_total=12)
    st = fold(log.events, CLAIMS)["j1"]
    assert (st.kind, st.deadline, st.fields["slot"]) == ("backup", T0 + 3600, 1_800_000_000)
    assert "prune" not in st.fields and st.fields["files_total"] == 12  # what the dispatch did not say is added
    assert st.dispatched and st.dispatcher == COORD.peer_id


def test_a_start_without_its_dispatch_counts_only_from_a_granted_agent() -> None:
    """Issue 14, finding 4: any agent-role member could write the start of a coming slot's (predictable) job
    id under a claimed term, and the coordinator skipped the slot as already known."""
    log = Feeds()
    log.add(G, "job.started", job="slot-7", agent=G.peer_id, term=1, coordinator=COORD.peer_id)
    log.add(B, "job.started", job="slot-8", agent=B.peer_id, term=1, coordinator=COORD.peer_id)
    jobs = fold(log.events, CLAIMS, agents={B.peer_id})
    assert "slot-7" not in jobs and not jobs["slot-8"].dispatched
    assert {"slot-7", "slot-8"} <= set(fold(log.events, CLAIMS))  # no grants given: trusted, as before


PARTIAL_END = {"result": PARTIAL, "failures": 2, "snapshots": ["s1"],
               "failed": [{"path": "/srv/a.db", "reason": "permission denied"},
                          {"path": "/srv/gone", "reason": "not found"}]}


def test_a_partial_backup_is_finished_never_dispatched_again_and_says_what_failed() -> None:
    log = Log()
    log.add("job.dispatched", T0, job="j1", agent="B", deadline=int(T0 + 3600))
    log.add("job.started", T0 + 1, job="j1", agent="B")
    log.add("job.done", T0 + 60, job="j1", agent="B", **PARTIAL_END)
    st = fold(log.events, None)["j1"]
    assert (st.state, st.outcome, st.result["failures"]) == (DONE, PARTIAL, 2)
    assert [f["reason"] for f in st.result["failed"]] == ["permission denied", "not found"]
    # A dispatch of it from the other side of a partition does not reopen it, nor does a later end.
    log.add("job.dispatched", T0 + 70, job="j1", agent="G", attempt=2, deadline=int(T0 + 3600))
    log.add("job.done", T0 + 80, job="j1", agent="G", result=DONE)
    st = fold(log.events, None)["j1"]
    assert (st.state, st.outcome, st.agent) == (DONE, PARTIAL, "B")
    # Its snapshots were saved: the node's retention job follows it as it follows a full backup.
    assert retention_due("a", fold(log.events, None), T0 + 100, 86400) == (retention_job_id("a", "j1"), True)
    # A job.done from before results (no "result" field), a full one, a failure and an open job.
    log.backup("j2", T0 + 200)
    log.add("job.dispatched", T0 + 300, job="j3", agent="B", deadline=int(T0 + 3600))
    log.add("job.done", T0 + 360, job="j3", agent="B", result=DONE)
    log.backup("j4", T0 + 400, end="job.failed")
    log.add("job.dispatched", T0 + 500, job="j5", agent="B", deadline=int(T0 + 3600))
    jobs = fold(log.events, None)
    assert [jobs[j].outcome for j in ("j2", "j3", "j4", "j5")] == [DONE, DONE, FAILED, OPEN]


AGENT = SigningKey(bytes([9]) * 32)
AGENT_CERT = Certificate.issue(SigningKey(bytes([8]) * 32), AGENT.public_key, "b", ("agent",), 100, int(T0))


def _done(**fields: Any) -> str:
    return refusal(NODE, "a", "job.done", {"job": "j1", "node": "a", "agent": AGENT.peer_id, **fields},
                   AGENT.peer_id, AGENT_CERT, b"", T0)


def test_the_agent_given_the_job_may_end_it_partial_with_a_well_formed_result() -> None:
    assert _done(**PARTIAL_END) == ""
    assert _done(result=DONE) == "" and _done() == ""  # and as before results existed
    many = [{"path": f"/srv/{i}", "reason": "I/O error"} for i in range(MAX_FAILED)]
    assert _done(result=PARTIAL, failures=5000, failed=many) == ""


@pytest.mark.parametrize(("fields", "why"), [
    ({"result": "fine"}, "result must be done or partial"),
    ({"result": PARTIAL, "failures": -1}, "failures must be a count"),
    ({"result": PARTIAL, "failures": True}, "failures must be a count"),
    ({"result": PARTIAL, "failed": "/srv/a"}, "failed must be at most"),
    ({"result": PARTIAL, "failed": [{"path": "/a"}]}, "failed must be at most"),
    ({"result": PARTIAL, "failed": [{"path": 3, "reason": "x"}]}, "failed must be at most"),
    ({"result": PARTIAL, "failed": [{"path": "/" * 2000, "reason": "x"}]}, "failed must be at most"),
    ({"result": PARTIAL, "failed": [{"path": "/a", "reason": "x"}] * (MAX_FAILED + 1)}, "failed must be at most"),
])
def test_a_malformed_result_is_refused_on_merge(fields: dict[str, Any], why: str) -> None:
    assert why in _done(**fields)


def test_a_start_without_its_dispatch_cannot_hold_retention_back_for_ever() -> None:
    """A granted agent's start whose dispatch is not in the log keeps its deadline only up to what a dispatch
    could give (7 days and an hour): an open job holds the node's retention back until its deadline."""
    log = Feeds()
    log.add(B, "job.started", job="j1", agent=B.peer_id, term=1, coordinator=COORD.peer_id, deadline=2**39)
    log.add(B, "job.started", job="j2", agent=B.peer_id, term=1, coordinator=COORD.peer_id, deadline=int(T0 + 60))
    jobs = fold(log.events, CLAIMS, {B.peer_id})
    assert jobs["j1"].deadline <= jobs["j1"].started_ms / 1000 + 7 * 86400 + 3600
    assert jobs["j2"].deadline == T0 + 60


# One step of a job's life as any mix of coordinators and agents could log it: a dispatch of attempt n to an
# agent, or an agent's start, done or failed about attempt n (late, early, or of an attempt long replaced).
STEPS = st.tuples(st.sampled_from(["job.dispatched", "job.started", "job.done", "job.failed"]),
                  st.sampled_from(["B", "G", "H"]), st.integers(1, 4))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(STEPS, max_size=14))
def test_only_the_current_attempt_ends_a_job(steps: list[tuple[str, str, int]]) -> None:
    """Issue 16, cause 1: whatever the interleaving, a job ends only by the end of the attempt the latest
    dispatch before it names (its agent, its number); a done job stays done with the result it ended with."""
    log = Log()
    current: tuple[str, int] | None = None  # the attempt that runs the job, as a reader of the log sees it
    state, closed_by = OPEN, -1
    for i, (kind, agent, attempt) in enumerate(steps):
        log.add(kind, T0 + i, job="j", agent=agent, attempt=attempt, n=i,
                **({"deadline": int(T0 + 3600)} if kind == "job.dispatched" else {}))
        if state == DONE:
            continue  # done is final
        if kind == "job.dispatched" or (kind == "job.started" and current is None):
            current, state, closed_by = (agent, attempt), OPEN, -1  # (a start alone: its dispatch is on its way)
        elif (agent, attempt) != current:
            continue  # a replaced attempt's start or end
        elif kind == "job.started" and state == FAILED:
            state = OPEN
        elif kind != "job.started" and state == OPEN:
            state, closed_by = (DONE if kind == "job.done" else FAILED), i
    if current is None:
        assert fold(log.events, None) == {}
        return
    job = fold(log.events, None)["j"]
    assert ((job.agent, job.attempt), job.state) == (current, state)
    assert job.result.get("n", -1) == closed_by



SLOT = int(T0)
SLOT_JOB = job_id("a", "s1", SLOT)
GRACE = 7.0


def test_a_scheduled_job_left_open_past_its_deadline_is_listed_for_the_coordinator_to_log_missed() -> None:
    """Invariant: no slot stays dispatched and never ended. Its agent killed past the point where another could
    take over inside the window, a job would stay open for ever: the coordinator logs its slot missed, once."""
    log = Log()
    deadline = SLOT + 600
    log.add("job.dispatched", T0, job=SLOT_JOB, agent="B", schedule="s1", slot=SLOT, deadline=deadline)
    log.add("job.started", T0 + 1, job=SLOT_JOB, agent="B")
    jobs = fold(log.events, None)
    assert unended("a", jobs, set(), deadline + GRACE - 1, GRACE) == []  # an end may still be on its way
    [st] = unended("a", jobs, set(), deadline + GRACE, GRACE)
    assert st.job == SLOT_JOB and st.agent == "B"
    assert unended("a", jobs, {("s1", SLOT)}, deadline + GRACE, GRACE) == []  # logged missed already: once
    # An end, done or failed, says what became of the slot itself.
    for end in ("job.done", "job.failed"):
        ended = Log()
        ended.events = list(log.events)
        ended.add(end, T0 + 60, job=SLOT_JOB, agent="B")
        assert unended("a", fold(ended.events, None), set(), deadline + 3600, GRACE) == []


def test_only_a_dispatched_job_under_its_own_slots_id_is_listed() -> None:
    """A start whose dispatch is not in the log, or a job whose id is not the slot's it names, is not the
    coordinator's to log: an agent must not choose which slot gets logged missed."""
    log = Log()
    log.add("job.started", T0, job=SLOT_JOB, agent="B", schedule="s1", slot=SLOT, deadline=SLOT + 60)
    log.add("job.dispatched", T0, job="other", agent="B", schedule="s1", slot=SLOT, deadline=SLOT + 60)
    log.add("job.dispatched", T0, job="manual", agent="B", deadline=SLOT + 60)  # a backup by hand: no slot
    assert unended("a", fold(log.events, None), set(), T0 + 3600, GRACE) == []


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(STEPS, max_size=14), st.booleans())
def test_a_slot_is_listed_exactly_when_its_dispatched_job_is_still_open(steps: list[tuple[str, str, int]],
                                                                        missed: bool) -> None:
    """Whatever the interleaving of dispatches, starts and ends: past its deadline, a scheduled job is listed
    when (and only when) it was dispatched and is still open and its slot is not logged missed yet."""
    log = Log()
    for i, (kind, agent, attempt) in enumerate(steps):
        log.add(kind, T0 + i, job=SLOT_JOB, agent=agent, attempt=attempt, schedule="s1", slot=SLOT,
                **({"deadline": SLOT + 600} if kind == "job.dispatched" else {}))
    jobs = fold(log.events, None)
    listed = unended("a", jobs, {("s1", SLOT)} if missed else set(), SLOT + 600 + GRACE, GRACE)
    job = jobs.get(SLOT_JOB)
    expected = job is not None and job.state == OPEN and job.dispatched and not missed
    assert [s.job for s in listed] == ([SLOT_JOB] if expected else [])
