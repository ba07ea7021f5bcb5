"""The soak's judging on made-up records: a duplicate, a silent miss, a partition's extra run, a coordinator
gap and a backup that overlapped a change must each be seen for what they are."""

from __future__ import annotations

from typing import Any

from tests.soak.invariants import NetFault, coordinator_gaps, expected_slots, judge_jobs, open_jobs
from tests.soak.report import broken
from tests.soak.user import State, compare

NAMES = {"P-b": "beta", "P-c": "gamma", "P-a": "alpha"}
EVERY, WINDOW = 60.0, 45.0


def ev(kind: str, job: str, writer: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"{kind}-{job}-{writer}-{len(fields)}", "kind": kind, "writer": writer,
            "fields": {"job": job, **fields}}


def snap(job: str, agent: str, path: str) -> dict[str, Any]:
    return {"id": f"s-{job}-{agent}-{path}", "paths": [path], "extra": {"job": job, "agent": agent}}


def test_slots_are_those_whose_window_closed_and_carry_the_schedules_job_ids() -> None:
    slots = expected_slots(EVERY, WINDOW, "sc1", "data", since=1000.0, until=1300.0)
    assert [t for t, _ in slots] == [1020.0, 1080.0, 1140.0, 1200.0]  # 1260's window closes at 1305
    assert len({j for _, j in slots}) == 4


def test_duplicates_silent_misses_and_logged_misses_are_told_apart() -> None:
    (s1, j1), (s2, j2), (s3, j3), (s4, j4) = expected_slots(EVERY, WINDOW, "sc1", "data", 1000.0, 1300.0)
    events = [ev("job.dispatched", j1, "P-a"), ev("job.done", j1, "P-b"),
              ev("job.done", j2, "P-b"), ev("job.done", j2, "P-c", late=1),  # a replaced agent finished too
              {"id": "m", "kind": "job.missed", "writer": "P-a", "fields": {"slot": int(s3), "reason": "no agent"}}]
    # j4: nothing in the log, but a snapshot: its agent died after saving, before logging its end.
    snaps = [snap(j1, "P-b", "/d"), snap(j4, "P-c", "/d")]
    v1, v2, jobs = judge_jobs([(s1, j1), (s2, j2), (s3, j3), (s4, j4)], WINDOW, events, snaps, [], NAMES, {})
    states = {r["job"]: r["state"] for r in jobs["slots"]}
    assert states == {j1: "done once", j2: "run more than once", j3: "missed", j4: "done once"}
    assert not v1.ok and "1 run more than once" in v1.figure and "0 silently missed" in v1.figure
    assert v2.ok
    v1, _, jobs = judge_jobs([(s1, j1), (s3, j3)], WINDOW, [], [], [], NAMES, {})
    assert [r["state"] for r in jobs["slots"]] == ["silently missed", "silently missed"] and not v1.ok


def test_a_dispatch_no_agent_took_is_a_failure_with_its_reason_and_a_retaken_one_is_not() -> None:
    """CI of b1e7016: a partition healed as the slot came due, and every agent refused the coordinator's token
    of the term before: the job's last word is job.dispatch_failed (with why), which the daemons count failed.
    A dispatch refused by one agent and taken by the next that never ends is still never ended."""
    (s1, j1), (s2, j2) = expected_slots(EVERY, WINDOW, "sc1", "data", 1000.0, 1100.0 + WINDOW)
    events = [ev("job.dispatched", j1, "P-a"), ev("job.dispatch_failed", j1, "P-a", reason="stale fencing token"),
              ev("job.dispatched", j2, "P-a"), ev("job.dispatch_failed", j2, "P-a", reason="refused"),
              ev("job.dispatched", j2, "P-a", agent="P-c"), ev("job.started", j2, "P-c")]
    v1, _, jobs = judge_jobs([(s1, j1), (s2, j2)], WINDOW, events, [], [], NAMES, {})
    states = {r["job"]: (r["state"], r.get("reason")) for r in jobs["slots"]}
    assert states == {j1: ("failed", "stale fencing token"), j2: ("never ended", None)}
    assert not v1.ok and "1 dispatched and never ended" in v1.figure


def test_a_partition_allows_one_run_per_side_and_no_more() -> None:
    (s1, j1), (s2, j2) = expected_slots(EVERY, WINDOW, "sc1", "data", 1000.0, 1100.0 + WINDOW)
    cut = NetFault(s1 - 10, s2 + WINDOW, (("gamma",), ("alpha", "beta")))
    events = [ev("job.done", j1, "P-b"), ev("job.done", j1, "P-c"),  # once a side: fine
              ev("job.done", j2, "P-b"), ev("job.done", j2, "P-b", again=1)]  # twice on one side
    v1, v2, jobs = judge_jobs([(s1, j1), (s2, j2)], WINDOW, events, [], [cut], NAMES, {})
    assert v1.ok  # extra runs under a partition are (2)'s to judge
    assert not v2.ok and [r["job"] for r in v2.details] == [j2]
    assert jobs["slots"][0]["runs_per_side"] == {"gamma": 1, "alpha,beta": 1}


def test_retention_jobs_run_once() -> None:
    events = [ev("job.done", "retention-x", "P-b"), ev("job.done", "retention-x", "P-c")]
    v1, _, _ = judge_jobs([], WINDOW, events, [], [], NAMES, {})
    assert not v1.ok and "1 of 1 retention jobs run more than once" in v1.figure


def test_coordinator_gaps_count_seconds_when_no_daemon_holds_the_lease() -> None:
    ids = {"alpha": "A", "beta": "B"}
    samples: list[tuple[float, dict[str, str | None]]] = [
        (0.0, {"alpha": "A", "beta": "A"}), (1.0, {"alpha": None, "beta": "A"}),  # beta's view is stale
               (2.0, {"beta": None}), (3.0, {"beta": "B"}), (4.0, {"alpha": "A", "beta": "B"})]
    gaps = coordinator_gaps(samples, ids)
    assert gaps == {"samples": 5, "without_s": 2.0, "longest_gap_s": 2.0, "two_or_more_s": 1.0}


def test_a_restore_may_mix_the_states_current_while_the_backup_ran_and_nothing_else() -> None:
    s0 = State(0.0, 12.0, {"a": "h1", "b": "h2"})
    s1 = State(10.0, 22.0, {"a": "h3", "b": "h2"})  # a rewritten
    s2 = State(20.0, None, {"a": "h3"})  # b deleted
    assert compare({"a": "h1", "b": "h2"}, [s0, s1]) == []
    assert compare({"a": "h3"}, [s1, s2]) == []
    assert compare({"a": "h1"}, [s1, s2]) == ["a: restored h1, source had h3"]
    assert compare({"a": "h3", "b": "h9"}, [s1, s2])[0].startswith("b: restored h9")


def test_the_broken_list_names_each_broken_invariant_with_its_figure() -> None:
    report = {"invariants": [{"key": "exactly_once", "ok": False, "figure": "3 run more than once"},
                             {"key": "restores", "ok": True, "figure": "9 of 9"}]}
    assert broken(report) == ["exactly_once: 3 run more than once"]


def test_a_job_done_before_its_dispatch_in_log_order_is_not_open() -> None:
    """Seed 5: an agent's clock ran 70 s behind, so its start and end sort before the dispatch; the daemons
    count the job done (done is final) and the soak waited its whole settling time for it."""
    def ev(kind: str, job: str) -> dict[str, Any]:
        return {"kind": kind, "fields": {"job": job, "deadline": 2000}}

    events = [ev("job.started", "r1"), ev("job.done", "r1"), ev("job.dispatched", "r1"),
              ev("job.dispatched", "b1"), ev("job.started", "b1"), ev("job.dispatched", "b2"), ev("job.failed", "b2")]
    assert open_jobs(events, 1000) == ["b1"]
    assert open_jobs(events, 3000) == []
    assert open_jobs(events, 2005, grace=7) == ["b1"]  # the coordinator logs it missed after a grace
    missed = {"kind": "job.missed", "fields": {"schedule": "s", "slot": 60}}
    slotted = [{"kind": k, "fields": {"job": "b3", "deadline": 2000, "schedule": "s", "slot": 60}}
               for k in ("job.dispatched", "job.started")]
    assert open_jobs(slotted, 1000) == ["b3"] and open_jobs([*slotted, missed], 1000) == []
