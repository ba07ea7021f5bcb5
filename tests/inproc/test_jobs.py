"""Dispatch on an office of daemons in one loop on a virtual clock, DEFAULT timings.

Mirrors (real processes, FAST timings, fixed sleeps):
- tests/daemon/test_jobs.py::test_backup_now_runs_once_on_one_agent_and_every_peer_logs_it (without its
  restore and CLI listings: those are the command line's, which stays a real-process test)
- tests/daemon/test_missed.py::test_a_slot_refused_for_want_of_an_agent_waits_for_one_or_is_logged_missed
- tests/daemon/test_job_lifecycle.py::test_heartbeats_carry_progress_and_a_stalled_agent_is_replaced (SIGSTOP
  there, with slow liveness; here the agent is up and answering but its job hangs before its engine starts; its
  progress heartbeats are checked in test_failover.py)
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.nodelog import node_log
from peerbackup.core.nodes import Dataset
from peerbackup.core.schedule import Schedule
from peerbackup.office.jobs.agent import JobRecord
from tests.daemon.test_peerstore import tree_hashes
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.nodeops import restore, snapshots
from tests.inproc.scenarios import NODE, SETTINGS, first_slot, node_events, node_office

TICK = SETTINGS.heartbeat + 1  # the scheduler looks every heartbeat; a dispatch takes a moment
STALL = dataclasses.replace(SETTINGS, stall_after=60.0)  # 600 s by default: the same, ten times as long


async def restored_whole(o: InprocOffice, m: Member, target: Path) -> None:
    """The node's latest snapshot, restored by `m`, is the tree it backed up; the restore, logged as the dashboard
    logs it, reaches the node's log on every member (the audit trail: who read what)."""
    [path] = list(m.running.nodes.nodes()[NODE].datasets)
    await restore(m, target)
    assert tree_hashes(target / path.lstrip("/")) == tree_hashes(Path(path))
    await m.running.controls.jobs.log_restore(NODE, {"snapshot": "latest", "target": str(target)})
    await o.until(lambda: all([e["agent"] for e in node_events(x, "restore.done")] == [m.peer_id]
                              for x in o.members.values() if x.daemon is not None),
                  3 * SETTINGS.heartbeat, "the restore in every member's copy of the node's log")


def job_events(m: Member, job: str) -> list[dict[str, Any]]:
    return [e for e in node_events(m) if e.get("job") == job and str(e["kind"]).startswith("job.")]


@pytest.mark.timeout(120)
def test_backup_now_asked_anywhere_runs_once_on_one_agent_and_every_peer_logs_it(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await node_office(o, ["beta", "gamma"], files=5, size=200_000)
        await o.until(lambda: all(m.running.coordination.status()[0] == a.peer_id for m in everyone),
                      3 * SETTINGS.heartbeat, "every member follows alpha")

        # Asked on gamma (not the coordinator): forwarded, dispatched to one agent.
        out = await c.running.controls.jobs.request(NODE)
        assert out["coordinator"] == a.peer_id and out["agent_name"] in ("beta", "gamma")
        job = out["job"]
        await o.until(lambda: all(len(job_events(m, job)) == 3 for m in everyone),
                      3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "the job's three events on every member")
        logs = [job_events(m, job) for m in everyone]
        assert logs[0] == logs[1] == logs[2]  # the same events, in the same order, everywhere
        assert [e["kind"] for e in logs[0]] == ["job.dispatched", "job.started", "job.done"]
        for e in logs[0]:
            assert e["node"] == NODE and e["agent"] == out["agent"] and e["term"] == out["term"]
        assert logs[0][0]["writer"] == a.peer_id and logs[0][2]["writer"] == out["agent"]
        # Exactly one snapshot, made as the node by that agent, for that job.
        snaps = await snapshots(a)
        assert [(s["id"], s["agent"], s["agent_name"], s["job"]) for s in snaps] == \
            [(logs[0][2]["snapshots"][0], out["agent"], out["agent_name"], job)]
        await restored_whole(o, a, o.root / "restored")
        # The agent acted as the node with the coordinator's token, and the coordinator logged giving it.
        issued = [e for e in node_events(b, "act_as.issued") if e["job"] == job]
        assert [(e["writer"], e["agent"], e["term"]) for e in issued] == [(a.peer_id, out["agent"], out["term"])]

        await o.advance(2 * SETTINGS.lease)  # nothing more of that job: it ran once
        assert job_events(a, job) == logs[0]
        # The next backup goes to the agent that succeeded last (its file cache is warm).
        again = await a.running.controls.jobs.request(NODE)
        assert again["agent"] == out["agent"] and again["job"] != job
        await o.until(lambda: node_events(a, "job.done")[1:], 3 * SETTINGS.heartbeat + SETTINGS.request_timeout,
                      "the second backup done")

    print(f"jobs (backup now): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_slot_refused_for_want_of_an_agent_waits_for_one_inside_its_window_or_is_logged_missed(
        tmp_path: Path) -> None:
    every, window = 60.0, 20.0

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=20_000)
        await o.stop(b)  # the node's only agent is off

        async def beta_dead() -> bool:
            return {p["name"]: p["state"] for p in await a.running.view.peers()}.get("beta") == "dead"

        await o.until(beta_dead, SETTINGS.dead + 2 * SETTINGS.heartbeat, "beta dead on the coordinator")
        # Clear of a slot: the schedule's first slot is the next whole minute, whatever the run.
        await o.advance(first_slot(o, every) - o.now() + 5)
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=every, window=window))
        first = first_slot(o, every)

        # Its window passes without an agent: the slot is in the node's log as missed, once, with the refusal.
        await o.advance(first + window - 1 - o.now())
        assert node_events(a, "job.missed") == [], "logged missed while its window was open"
        [missed] = await o.until(lambda: node_events(a, "job.missed"), 1 + TICK, "the first slot logged missed")
        assert missed["slot"] == int(o.epoch + first) and missed["node"] == NODE and missed["writer"] == a.peer_id
        assert missed["coordinator"] == a.peer_id and missed["term"] == a.running.coordination.status()[1]
        assert "window closed" in missed["reason"] and "no agent of accounts can take the backup" in missed["reason"]
        assert node_events(a, "job.dispatched") == []

        # The next slot comes due with no agent either; the agent is back a few seconds later, inside the
        # window: the slot starts then.
        second = first + every
        await o.advance(second + 3 - o.now())
        assert node_events(a, "job.dispatched") == []
        await o.start(b)
        [dispatched] = await o.until(lambda: node_events(a, "job.dispatched"), second + window - o.now(),
                                     "the second slot dispatched inside its window")
        assert dispatched["slot"] == int(o.epoch + second) and dispatched["agent"] == b.peer_id
        await o.advance(second + every - 1 - o.now())
        assert [e["slot"] for e in node_events(a, "job.missed")] == [int(o.epoch + first)]  # never logged twice
        assert a.logged("job.not_started") >= 1 and a.logged("job.missed") == 1

    print(f"jobs (missed slot): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")



def hang_first_run(m: Member, gate: asyncio.Event, hung: list[str]) -> None:
    """The first backup any member so prepared is asked to run hangs before its engine starts, until `gate`
    is set: an agent up and answering whose job makes no progress. A test-only stand-in (the agent's `run`
    wrapped on this instance), as a stuck disk would be; no thread waits, so the clock still jumps."""
    agent = m.running.agent
    original = agent.run

    async def run(node: str, job: str, act_as: bytes = b"", deadline: float | None = None) -> JobRecord:
        if not hung:
            hung.append(m.name)
            await gate.wait()
        return await original(node, job, act_as, deadline)

    agent.run = run  # type: ignore[method-assign,assignment]


@pytest.mark.timeout(120)
def test_an_agent_whose_job_hangs_is_replaced_after_stall_after_and_its_late_end_is_superseded(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=4, size=100_000)
        gate = asyncio.Event()
        hung: list[str] = []
        for m in (b, c):
            hang_first_run(m, gate, hung)
        out = await a.running.controls.jobs.request(NODE)
        job, t0 = out["job"], o.now()
        victim, other = (b, c) if out["agent"] == b.peer_id else (c, b)
        await o.until(lambda: hung, TICK, "the agent's job hangs")
        assert hung == [victim.name]

        await o.advance(t0 + STALL.stall_after - 1 - o.now())
        assert node_events(a, "job.stalled") == [], "replaced before stall_after"
        await o.until(lambda: [e for e in job_events(a, job) if e["kind"] == "job.done"
                               and e["writer"] == other.peer_id],
                      2 * TICK + STALL.request_timeout, "the other agent finishes the stalled job")
        [stalled] = node_events(a, "job.stalled")
        assert stalled["job"] == job and stalled["agent"] == victim.peer_id and stalled["quiet"] >= STALL.stall_after
        redispatch = [e for e in job_events(a, job) if e["kind"] == "job.dispatched" and e["agent"] == other.peer_id]
        assert redispatch and redispatch[0]["replaces"] == victim.peer_id and redispatch[0]["stalled"] is True

        # The replaced agent wakes up and carries on: its attempt ends failed as superseded, and that end does
        # not touch the job the other agent finished.
        gate.set()

        def victims_end() -> dict[str, dict[str, Any]]:
            return {e["kind"]: e for e in job_events(a, job)
                    if e["writer"] == victim.peer_id and e["kind"] in ("job.done", "job.failed")}

        ends = await o.until(victims_end, 2 * STALL.progress_interval + 3 * STALL.heartbeat + STALL.request_timeout,
                             "the replaced agent's end")
        assert list(ends) == ["job.failed"] and str(ends["job.failed"]["reason"]).startswith("superseded"), ends
        assert [e["writer"] for e in job_events(a, job) if e["kind"] == "job.done"] == [other.peer_id]
        assert [s["agent"] for s in await snapshots(a) if s["job"] == job] == [other.peer_id]  # one snapshot
        await restored_whole(o, a, o.root / "restored")

    print(f"jobs (stall): {run_office(tmp_path / 'office', scenario, STALL).summary()}")


@pytest.mark.timeout(120)
def test_a_slot_whose_only_agent_is_killed_mid_job_is_logged_missed_after_its_deadline_never_left_open(
        tmp_path: Path) -> None:
    """Invariant: no slot stays dispatched and never ended (the 3-minute soak found one: an agent killed with
    no other agent to take its job over inside the window). Past the deadline and a grace for a late end, the
    coordinator logs the slot missed, with the agent's name, once."""
    every, window = 60.0, 20.0

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=20_000)
        gate, hung = asyncio.Event(), list[str]()  # never set: beta is stopped while its job hangs
        hang_first_run(b, gate, hung)
        await o.advance(first_slot(o, every) - o.now() + 5)
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=every, window=window))
        first = first_slot(o, every)
        await o.advance(first - o.now())
        [dispatched] = await o.until(lambda: node_events(a, "job.dispatched"), 2 * TICK, "the slot dispatched")
        await o.until(lambda: hung, TICK, "beta's job hangs")
        await o.stop(b)  # killed mid-job; alpha is no agent of the node, nobody can take it over

        grace = SETTINGS.progress_interval + SETTINGS.request_timeout
        await o.advance(first + window + grace - 1 - o.now())
        assert node_events(a, "job.missed") == [], "logged missed before its deadline and grace passed"
        [missed] = await o.until(lambda: node_events(a, "job.missed"), 2 * TICK, "the slot logged missed")
        assert missed["slot"] == dispatched["slot"] == int(o.epoch + first) and missed["writer"] == a.peer_id
        assert "dispatched to beta (attempt 1)" in missed["reason"] and "no end by the deadline" in missed["reason"]
        assert [e["kind"] for e in node_events(a) if e.get("job") == dispatched["job"]
                and e["kind"] in ("job.done", "job.failed")] == []  # nobody wrote an end for it
        await o.advance(3 * every)  # later slots (also missed: no agent) never log this one again
        assert [e["slot"] for e in node_events(a, "job.missed")].count(missed["slot"]) == 1

    print(f"jobs (killed agent): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_slot_whose_every_dispatch_failed_is_tried_again_a_lease_later_inside_its_window(tmp_path: Path) -> None:
    """The soak lost a slot so: a partition healed as it came due and every agent refused the coordinator's
    token of the term before; nothing ran, yet the retry waited the 10-minute back-off, past the window. Now a
    job no agent ever started is tried again a lease later, while the window and the retries last."""
    every, window = 60.0, 50.0

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=20_000)
        await o.advance(first_slot(o, every) - o.now() + 5)
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=every, window=window))
        first = first_slot(o, every)
        await o.advance(first - 1 - o.now())
        o.cut(a, b)  # beta is still alive to alpha: the dispatch is sent, and cannot arrive
        [unsent] = await o.until(lambda: node_events(a, "job.dispatch_failed"), 2 * TICK, "the dispatch failed")
        o.restore(a, b)
        await o.advance(SETTINGS.lease - 2 * TICK)
        assert len(node_events(a, "job.dispatched")) == 1, "tried again before a lease passed"
        [done] = await o.until(lambda: node_events(a, "job.done"), 2 * TICK + 3 * SETTINGS.heartbeat,
                               "the slot done on its second attempt")
        dispatched = node_events(a, "job.dispatched")
        assert [d["attempt"] for d in dispatched] == [1, 2] and done["job"] == unsent["job"] == dispatched[0]["job"]
        assert o.now() < first + window and node_events(a, "job.missed") == []

    print(f"jobs (unsent): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_backup_asked_right_after_its_data_set_was_added_runs_on_an_agent_whose_log_was_behind(
        tmp_path: Path) -> None:
    """`dataset add` then `backup` at once (as the README does): the agent's copy of the office log may not
    have the data set yet. It caught up with the coordinator before answering, instead of refusing with
    "nothing of NODE can be backed up here" (CI, under load, on test_readme)."""

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=20_000)
        nodes = a.running.controls.nodes
        await nodes.add("payroll", 1)
        await nodes.grant("payroll", b.peer_id)
        await o.until(lambda: "payroll" in b.running.nodes.nodes() and b.peer_id in
                      b.running.nodes.nodes()["payroll"].agents, 3 * SETTINGS.heartbeat, "beta granted payroll")
        o.cut(a, b)  # beta hears nothing of what follows, for less than it takes to call alpha suspect
        await nodes.add_dataset("payroll", Dataset(str(o.root / "shared"), (), ()))
        await o.advance(1)
        assert not b.running.nodes.nodes()["payroll"].datasets
        o.restore(a, b)
        out = await a.running.controls.jobs.request("payroll")  # at once: no heartbeat has carried it yet
        assert out["agent"] == b.peer_id
        await o.until(lambda: [e for e in b.running.logs.listing(node_log("payroll")) if e["kind"] == "job.done"],
                      3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "the backup done")

    print(f"jobs (agent behind): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
