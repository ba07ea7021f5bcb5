"""A schedule on a three-daemon office in one loop on a virtual clock, DEFAULT timings.

Mirrors tests/daemon/test_jobs.py::test_a_schedule_fires_and_each_slot_runs_once (real processes,
every 4 s with FAST timings): here every 60 s (the product's shortest, min_schedule_interval), each
slot checked after a clock step: nothing before it, exactly one run, on one agent, after it.
"""

from __future__ import annotations

import math
import random
import time
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
EVERY = 60.0
SLOTS = 3


def events(m: Member, kind: str) -> list[dict[str, Any]]:
    """The `kind` events of the node's log as `m` has it: each one's fields and writer."""
    return [{**e["fields"], "writer": e["writer"]} for e in m.running.logs.listing(node_log(NODE)) if e["kind"] == kind]


def make_tree(root: Path) -> None:
    rng = random.Random(7)
    for i in range(4):
        p = root / f"dir{i % 2}" / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(50_000))


@pytest.mark.timeout(180)
def test_each_slot_of_a_schedule_runs_once_on_one_agent_after_its_time_not_before(tmp_path: Path) -> None:
    src = tmp_path / "shared"
    make_tree(src)
    seen: dict[str, Any] = {}

    async def scenario(o: InprocOffice) -> None:
        a = await o.init("alpha")
        b = await o.join("beta", a, rank=10)
        c = await o.join("gamma", a, rank=20)
        everyone = [a, b, c]

        async def all_alive() -> bool:
            return all(p["state"] == "alive" for p in await a.running.view.peers())

        await o.until(all_alive, 3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "every peer alive")
        await o.until(lambda: a.running.coordination.status()[0] == a.peer_id, 3 * SETTINGS.lease, "alpha leads")
        nodes = a.running.controls.nodes
        await nodes.add(NODE, 2)
        for agent in (b, c):
            await nodes.grant(NODE, agent.peer_id)
        await nodes.add_dataset(NODE, Dataset(str(src), (), ()))
        await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY / 2))
        added = o.now()
        first = math.ceil((o.epoch + added) / EVERY) * EVERY - o.epoch  # virtual time of the first slot

        def done(n: int) -> bool:
            return len(events(b, "job.done")) >= n

        await o.advance(first - added - 1)
        assert events(a, "job.dispatched") == [], "a slot was dispatched before its time"
        for k in range(SLOTS):
            slot = first + k * EVERY
            await o.until(partial(done, k + 1), slot + EVERY - 1 - o.now(),
                          f"slot {k + 1} done (its time: {slot:.0f} virtual s)")
            await o.advance(slot + EVERY - 1 - o.now())  # until just before the next slot: no second run
            assert len(events(b, "job.done")) == k + 1, f"slot {k + 1} ran more than once"

        dispatched = events(c, "job.dispatched")
        started = events(c, "job.started")
        assert len(dispatched) == len(started) == SLOTS
        assert len({e["job"] for e in dispatched}) == SLOTS and len({e["job"] for e in started}) == SLOTS
        assert all(e["writer"] == a.peer_id for e in dispatched)  # the coordinator
        assert {e["agent"] for e in dispatched} <= {b.peer_id, c.peer_id}
        slots = sorted(int(e["slot"]) for e in dispatched)
        assert slots == [int(o.epoch + first + k * EVERY) for k in range(SLOTS)]
        seen.update(virtual=o.now(), logs={m.name: len(m.running.logs.listing(node_log(NODE))) for m in everyone})

    t = time.monotonic()
    office = run_office(tmp_path / "office", scenario, SETTINGS)
    print(f"schedule: {office.loop.time():.0f} virtual s in {time.monotonic() - t:.1f} real s "
          f"({office.loop.jumps} jumps, {office.loop.flowed:.1f} s at the real rate), {seen}")
