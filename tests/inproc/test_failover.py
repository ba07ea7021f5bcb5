"""A member killed in the middle of a job, in one loop on a virtual clock, DEFAULT timings: the job ends once,
on another agent, on the agent itself after its restart, or on the next coordinator's watch.

Mirrors (real processes, FAST timings; kill -9 there, `o.stop` here: the daemon says goodbye to no one and
its job's task dies with it; the engine's thread, held on a gate after its first pack, then finds the
daemon's session closed and writes nothing more):
- tests/daemon/test_jobs.py::test_kill_9_the_agent_mid_backup_and_another_finishes, with the progress
  heartbeats of tests/daemon/test_job_lifecycle.py::test_heartbeats_carry_progress_and_a_stalled_agent_is_replaced
- tests/daemon/test_jobs.py::test_an_agent_killed_mid_backup_and_back_at_once_ends_its_lost_run
- tests/daemon/test_jobs.py::test_kill_the_coordinator_right_after_dispatch_the_job_completes_once
- tests/daemon/test_missed.py::test_a_slot_whose_window_passes_with_no_coordinator_is_logged_missed_by_the_next
  (SIGSTOP there, a stop and a start here)
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.nodes import Dataset
from peerbackup.core.schedule import Schedule
from peerbackup.office.peerstore.store import PeerStore
from peerbackup.storage.store import FileType, Payload
from tests.daemon.test_peerstore import tree_hashes
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.nodeops import restore
from tests.inproc.scenarios import NODE, SETTINGS, first_slot, make_tree, node_events, node_office
from tests.inproc.test_jobs import TICK, job_events

BEATS = dataclasses.replace(SETTINGS, progress_interval=0.5)  # 5 s by default: the same, ten times as often
DONE_WITHIN = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # a small backup, dispatched and logged


class MidBackup:
    """The first backup of any member so prepared stops after its first pack is stored, its engine's thread
    held until `release`: the moment a kill -9 lands mid-backup (data sent, no index, no snapshot)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.released = threading.Event()
        self.who: list[str] = []

    def prepare(self, m: Member) -> None:
        agent = m.running.agent
        original = agent._store

        async def store(node: Any, job: str, act_as: bytes) -> PeerStore:
            ps = await original(node, job, act_as)
            put = ps.put

            def put_then_hold(ftype: FileType, name: str, data: Payload) -> None:
                put(ftype, name, data)
                if ftype == FileType.DATA and not self.reached.is_set():
                    self.who.append(m.name)
                    self.reached.set()
                    self.released.wait(10)  # real seconds: the test releases it at once after the kill

            ps.put = put_then_hold  # type: ignore[method-assign]
            return ps

        agent._store = store  # type: ignore[method-assign]

    async def kill(self, o: InprocOffice, m: Member) -> None:
        """`m` stopped while its engine is held; then the engine goes on, into a daemon that is gone."""
        await o.stop(m)
        self.released.set()


def ends(m: Member, job: str) -> list[dict[str, Any]]:
    return [e for e in job_events(m, job) if e["kind"] in ("job.done", "job.failed")]


@pytest.mark.timeout(120)
def test_an_agent_killed_mid_backup_is_replaced_after_dead_and_the_job_completes_once(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=4, size=100_000)
        d = await o.join("delta", a, rank=30, roles=("storage",))  # storage only: beta and gamma are the agents
        await o.until(lambda: d.running.logs.state.config().digest() == a.running.logs.state.config().digest(),
                      3 * SETTINGS.heartbeat, "the node known to delta")
        mid = MidBackup()
        for m in (b, c):
            mid.prepare(m)
        out = await a.running.controls.jobs.request(NODE)
        job = out["job"]
        victim, other = (b, c) if out["agent"] == b.peer_id else (c, b)
        await o.until(mid.reached.is_set, DONE_WITHIN, "the agent's first pack stored")
        assert mid.who == [victim.name] and [e["writer"] for e in job_events(victim, job)
                                             if e["kind"] == "job.started"] == [victim.peer_id]
        # The coordinator hears the job's counters move (bytes read, files found by the scan): its heartbeats
        # come every progress_interval, at the real rate while the engine is held (hence a short one here).
        seen = await o.until(lambda: (a.running.controls.jobs.running_jobs().get(job) or {}).get("bytes"),
                             2 * BEATS.progress_interval, "a heartbeat of the job's progress on the coordinator")
        running = a.running.controls.jobs.running_jobs()[job]
        assert seen > 0 and running["agent"] == victim.peer_id and running["files_seen"] >= 1 and running["rate"] > 0
        await mid.kill(o, victim)
        assert ends(a, job) == []  # killed mid-backup
        await o.advance(SETTINGS.dead - 2 * SETTINGS.heartbeat)
        assert [e["agent"] for e in job_events(a, job) if e["kind"] == "job.dispatched"] == [victim.peer_id], \
            "dispatched again before the agent was dead"
        await o.until(lambda: [e for e in ends(a, job) if e["writer"] == other.peer_id],
                      SETTINGS.dead + 2 * TICK + DONE_WITHIN, "the other agent finishes the job")
        redispatch = [e for e in job_events(a, job) if e["kind"] == "job.dispatched" and e["agent"] == other.peer_id]
        assert redispatch and redispatch[0]["replaces"] == victim.peer_id
        await o.advance(2 * TICK)
        assert [(e["kind"], e["writer"]) for e in ends(a, job)] == [("job.done", other.peer_id)]  # exactly once
        src = o.root / "shared"
        await restore(a, tmp_path / "out")
        assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == tree_hashes(src)

    print(f"failover (agent killed): {run_office(tmp_path / 'office', scenario, BEATS).summary()}")


@pytest.mark.timeout(120)
def test_an_agent_killed_mid_backup_and_back_at_once_ends_its_lost_run(tmp_path: Path) -> None:
    """Issue 16 (the soak): an agent restarted faster than `dead` was never seen dead, so its job stayed open,
    neither done nor re-dispatched, until its window closed. The restarted agent ends the attempt it lost."""

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=50_000)
        mid = MidBackup()
        mid.prepare(b)
        job = (await a.running.controls.jobs.request(NODE))["job"]
        await o.until(mid.reached.is_set, DONE_WITHIN, "beta's first pack stored")
        await mid.kill(o, b)
        assert ends(a, job) == []  # killed mid-backup
        await o.start(b)
        [end] = await o.until(lambda: ends(a, job), SETTINGS.dead - 2 * SETTINGS.heartbeat,
                              "the restarted agent ends the attempt it lost, before it could be seen dead")
        assert end["kind"] == "job.failed" and end["writer"] == b.peer_id and end["reason"].startswith("lost")
        assert end["attempt"] == 1 and b.logged("job.lost") == 1

    print(f"failover (agent back at once): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_the_coordinator_killed_right_after_a_dispatch_the_job_completes_once(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=4, size=100_000)
        out = await a.running.controls.jobs.request(NODE)
        agent, survivor = (b, c) if out["agent_name"] == "beta" else (c, b)
        # The coordinator dies right after the dispatch, once its agent has logged on (before that, the
        # agent cannot act as the node and the job fails; a command line's kill -9 comes later than that).
        await o.until(lambda: [e for e in job_events(agent, out["job"]) if e["kind"] == "job.started"], TICK,
                      "the agent started")
        await o.stop(a)
        await o.until(lambda: [e for e in ends(survivor, out["job"]) if e["kind"] == "job.done"], DONE_WITHIN,
                      "the job done")
        await o.until(lambda: survivor.running.coordination.status()[0] not in (None, a.peer_id),
                      SETTINGS.lease + SETTINGS.dead + 2 * SETTINGS.heartbeat, "a new coordinator")
        # Exactly once: the new coordinator, which finds the job ended in the log (the agent's job.started
        # names the job and its coordinator, even if alpha's job.dispatched reached no one before it died),
        # dispatches it to nobody else.
        await o.advance(SETTINGS.lease + 2 * TICK)
        evs = job_events(survivor, out["job"])
        assert [e["kind"] for e in evs].count("job.done") == 1
        assert all(e["writer"] == a.peer_id for e in evs if e["kind"] == "job.dispatched")

    print(f"failover (coordinator killed): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_slot_whose_window_passes_with_no_coordinator_is_logged_missed_by_the_next(tmp_path: Path) -> None:
    """The soak's silent misses: a coordinator stopped (or stepping down after a clock step) over a slot's whole
    window, and the next coordinator looked back one window only, so the slot was in no log. Now the next
    coordinator settles every slot after the last one the log shows: it logs that one missed."""
    every, window = 60.0, 20.0

    async def scenario(o: InprocOffice) -> None:
        await asyncio.to_thread(make_tree, o.root / "shared", 2, 20_000)
        a = await o.init("alpha")
        b = await o.join("beta", a, rank=10, roles=("agent", "storage"))  # no coordinator but alpha
        nodes = a.running.controls.nodes
        await nodes.add(NODE, 1)
        await nodes.grant(NODE, b.peer_id)
        await nodes.add_dataset(NODE, Dataset(str(o.root / "shared")))
        await o.advance(first_slot(o, every) - o.now() + 5)  # clear of a slot
        await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=every, window=window))
        first = first_slot(o, every)
        await o.until(lambda: node_events(a, "job.done"), first + DONE_WITHIN - o.now(), "the first slot done")
        # alpha, the only coordinator, is off from before the next slot until well after its window closed.
        second = first + every
        await o.advance(second - 4 - o.now())
        await o.stop(a)
        await o.advance(second + window + SETTINGS.lease - o.now())
        await o.start(a)

        def missed() -> list[dict[str, Any]]:
            return [e for e in node_events(a, "job.missed") if e["slot"] == int(o.epoch + second)]

        [m] = await o.until(missed, 2 * SETTINGS.lease + 2 * TICK, "the slot of alpha's absence logged missed")
        assert "window closed" in m["reason"] or "replaces it" in m["reason"], m
        assert int(o.epoch + second) not in {e["slot"] for e in node_events(a, "job.dispatched")}

    print(f"failover (no coordinator): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
