"""Schedules on an office of daemons in one loop on a virtual clock, DEFAULT timings, each step of a
slot's life checked right after a clock step: nothing before its time, one run after it, retries at
their back-off times and no more.

Mirrors (real processes, FAST timings, fixed sleeps):
- tests/daemon/test_jobs.py::test_a_schedule_fires_and_each_slot_runs_once
- tests/daemon/test_jobs.py::test_a_failed_scheduled_job_is_retried_with_back_off_then_given_up
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from peerbackup.core.schedule import Schedule
from tests.inproc.harness import InprocOffice, run_office
from tests.inproc.scenarios import NODE, SETTINGS, first_slot, node_events, node_office

EVERY = 60.0  # the product's shortest interval (min_schedule_interval)
TICK = SETTINGS.heartbeat + 1  # the scheduler looks every heartbeat; a dispatch and its run take a moment


@pytest.mark.timeout(180)
def test_each_slot_of_a_schedule_runs_once_on_one_agent_after_its_time_not_before(tmp_path: Path) -> None:
    slots = 3

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"])
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY / 2))
        first = first_slot(o, EVERY)

        def done(n: int) -> bool:
            return len(node_events(b, "job.done")) >= n

        await o.advance(first - o.now() - 1)
        assert node_events(a, "job.dispatched") == [], "a slot was dispatched before its time"
        for k in range(slots):
            slot = first + k * EVERY
            await o.until(partial(done, k + 1), slot + EVERY - 1 - o.now(),
                          f"slot {k + 1} done (its time: {slot:.0f} virtual s)")
            await o.advance(slot + EVERY - 1 - o.now())  # until just before the next slot: no second run
            assert len(node_events(b, "job.done")) == k + 1, f"slot {k + 1} ran more than once"

        dispatched = node_events(c, "job.dispatched")
        started = node_events(c, "job.started")
        assert len(dispatched) == len(started) == slots
        assert len({e["job"] for e in dispatched}) == slots and len({e["job"] for e in started}) == slots
        assert all(e["writer"] == a.peer_id for e in dispatched)  # the coordinator
        assert all(e["schedule"] and isinstance(e["slot"], int) for e in dispatched)
        assert {e["agent"] for e in dispatched} <= {b.peer_id, c.peer_id}
        assert sorted(int(e["slot"]) for e in dispatched) == [int(o.epoch + first + k * EVERY) for k in range(slots)]

    print(f"schedule (each slot once): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(180)
def test_a_failed_slot_is_retried_at_its_back_off_times_then_given_up(tmp_path: Path) -> None:
    delay = 10.0  # retry n may start at slot + delay * (2**n - 1): slot + 10 s, then slot + 30 s

    async def scenario(o: InprocOffice) -> None:
        # Storage peers with almost no room: every backup fails to store its pack, a real failure.
        a, _beta = await node_office(o, ["beta"], replicas=1, storage_quota=2048)
        await a.running.controls.nodes.add_schedule(NODE, Schedule(
            id="", node=NODE, every=EVERY, window=2 * 3600, retries=2, retry_delay=delay))
        slot = first_slot(o, EVERY)

        def attempts() -> list[tuple[int, str]]:
            evs = [e for e in node_events(a) if e["kind"] in ("job.dispatched", "job.failed")]
            first = next((e["job"] for e in evs if e["kind"] == "job.dispatched"), None)
            # In the log's order: each attempt numbered, in its dispatch and in its agent's end.
            return [(int(e["attempt"]), e["kind"]) for e in evs if e["job"] == first]

        failed = [(1, "job.dispatched"), (1, "job.failed")]
        await o.until(lambda: attempts() == failed, slot + TICK - o.now(), "the slot's first attempt failed")
        await o.advance(slot + delay - 1 - o.now())
        assert attempts() == failed, "retried before its back-off"
        failed += [(2, "job.dispatched"), (2, "job.failed")]
        await o.until(lambda: attempts() == failed, 1 + TICK, "the second attempt, a back-off after the slot")
        await o.advance(slot + 3 * delay - 1 - o.now())
        assert attempts() == failed, "retried again before its doubled back-off"
        failed += [(3, "job.dispatched"), (3, "job.failed")]
        await o.until(lambda: attempts() == failed, 1 + TICK, "the third attempt, three back-offs after the slot")
        await o.advance(slot + EVERY - 1 - o.now())
        assert attempts() == failed, "retried after its retries were spent"

    print(f"schedule (retries): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")

