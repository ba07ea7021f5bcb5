"""Schedules on an office of daemons in one loop on a virtual clock, DEFAULT timings, each step of a
slot's life checked right after a clock step: nothing before its time, one run after it, retries at
their back-off times and no more.

Mirrors (real processes, FAST timings, fixed sleeps):
- tests/daemon/test_jobs.py::test_a_schedule_fires_and_each_slot_runs_once
- tests/daemon/test_jobs.py::test_a_failed_scheduled_job_is_retried_with_back_off_then_given_up
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.nodelog import node_log
from peerbackup.core.nodes import Dataset
from peerbackup.core.schedule import Schedule
from peerbackup.core.settings import Settings
from tests.inproc.harness import InprocOffice, Member, run_office

SETTINGS = Settings()
NODE = "accounts"
EVERY = 60.0  # the product's shortest interval (min_schedule_interval)
TICK = SETTINGS.heartbeat + 1  # the scheduler looks every heartbeat; a dispatch and its run take a moment


def events(m: Member, kind: str) -> list[dict[str, Any]]:
    """The `kind` events of the node's log as `m` has it: each one's fields and writer."""
    return [{**e["fields"], "writer": e["writer"]} for e in m.running.logs.listing(node_log(NODE))
            if e["kind"] == kind]


def make_tree(root: Path) -> None:
    rng = random.Random(7)
    for i in range(4):
        p = root / f"dir{i % 2}" / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(50_000))


async def node_office(o: InprocOffice, src: Path, agents: list[str], replicas: int = 2,
                      storage_quota: int | None = None) -> list[Member]:
    """alpha (admin, the coordinator) and `agents` (ranks 10, 20...), all alive; node `accounts` backing up
    `src`, granted to the agents. `storage_quota` for every member."""
    a = await o.init("alpha", storage_quota=storage_quota)
    members = [a]
    for i, name in enumerate(agents):
        members.append(await o.join(name, a, rank=10 * (i + 1), storage_quota=storage_quota))

    async def all_alive() -> bool:
        return all(p["state"] == "alive" for p in await a.running.view.peers())

    await o.until(all_alive, 3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "every peer alive")
    await o.until(lambda: a.running.coordination.status()[0] == a.peer_id, 3 * SETTINGS.lease, "alpha leads")
    nodes = a.running.controls.nodes
    await nodes.add(NODE, replicas)
    for agent in members[1:]:
        await nodes.grant(NODE, agent.peer_id)
    await nodes.add_dataset(NODE, Dataset(str(src), (), ()))
    return members


def first_slot(o: InprocOffice) -> float:
    """The virtual time of the first slot after now (slots count from the Unix epoch)."""
    return math.ceil((o.epoch + o.now()) / EVERY) * EVERY - o.epoch


@pytest.mark.timeout(180)
def test_each_slot_of_a_schedule_runs_once_on_one_agent_after_its_time_not_before(tmp_path: Path) -> None:
    src = tmp_path / "shared"
    make_tree(src)
    slots = 3

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, src, ["beta", "gamma"])
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY / 2))
        first = first_slot(o)

        def done(n: int) -> bool:
            return len(events(b, "job.done")) >= n

        await o.advance(first - o.now() - 1)
        assert events(a, "job.dispatched") == [], "a slot was dispatched before its time"
        for k in range(slots):
            slot = first + k * EVERY
            await o.until(partial(done, k + 1), slot + EVERY - 1 - o.now(),
                          f"slot {k + 1} done (its time: {slot:.0f} virtual s)")
            await o.advance(slot + EVERY - 1 - o.now())  # until just before the next slot: no second run
            assert len(events(b, "job.done")) == k + 1, f"slot {k + 1} ran more than once"

        dispatched = events(c, "job.dispatched")
        started = events(c, "job.started")
        assert len(dispatched) == len(started) == slots
        assert len({e["job"] for e in dispatched}) == slots and len({e["job"] for e in started}) == slots
        assert all(e["writer"] == a.peer_id for e in dispatched)  # the coordinator
        assert {e["agent"] for e in dispatched} <= {b.peer_id, c.peer_id}
        assert sorted(int(e["slot"]) for e in dispatched) == [int(o.epoch + first + k * EVERY) for k in range(slots)]

    _timed(tmp_path, scenario, "each slot once")


@pytest.mark.timeout(180)
def test_a_failed_slot_is_retried_at_its_back_off_times_then_given_up(tmp_path: Path) -> None:
    src = tmp_path / "shared"
    make_tree(src)
    delay = 10.0  # retry n may start at slot + delay * (2**n - 1): slot + 10 s, then slot + 30 s

    async def scenario(o: InprocOffice) -> None:
        # Storage peers with almost no room: every backup fails to store its pack, a real failure.
        a, _beta = await node_office(o, src, ["beta"], replicas=1, storage_quota=2048)
        await a.running.controls.nodes.add_schedule(NODE, Schedule(
            id="", node=NODE, every=EVERY, window=2 * 3600, retries=2, retry_delay=delay))
        slot = first_slot(o)

        def attempts() -> list[tuple[int, str]]:
            evs = [(kind, e) for kind in ("job.dispatched", "job.failed") for e in events(a, kind)]
            first = next((e["job"] for kind, e in evs if kind == "job.dispatched"), None)
            return sorted((int(e.get("attempt", 1)), kind) for kind, e in evs if e["job"] == first)

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

    _timed(tmp_path, scenario, "retries")


def _timed(tmp_path: Path, scenario: Callable[[InprocOffice], Awaitable[None]], what: str) -> None:
    t = time.monotonic()
    office = run_office(tmp_path / "office", scenario, SETTINGS)
    print(f"schedule ({what}): {office.loop.time():.0f} virtual s in {time.monotonic() - t:.1f} real s "
          f"({office.loop.jumps} jumps, {office.loop.flowed:.1f} s at the real rate)")
