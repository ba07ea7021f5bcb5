"""Repair on an office of daemons in one loop on a virtual clock: DEFAULT timings but for the repair
round, every 60 s instead of 600 s (the product's setting, shortened to keep the test at a few seconds).

Mirrors tests/daemon/test_peerstore.py::test_remove_peer_then_repair_restores_r_copies (real processes,
repair every 1 s, a backup by the command line): here the backup is the agent's, asked of the office.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from peerbackup.storage.store import FileType
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_events, node_office

REPAIR = dataclasses.replace(SETTINGS, repair_interval=60.0)


def held(m: Member) -> set[str]:
    """The node's data files that `m` keeps, read from its disk."""
    base = m.home.path / "held" / "nodes" / NODE / FileType.DATA.value
    return {p.name for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")} if base.exists() else set()


def copies(members: list[Member]) -> Counter[str]:
    return Counter(name for m in members for name in held(m))


@pytest.mark.timeout(120)
def test_a_removed_holders_copies_count_for_nothing_and_the_next_repair_round_restores_r_copies(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, *others = everyone = await node_office(o, ["beta", "gamma", "delta"], replicas=2, files=8, size=300_000)
        out = await a.running.controls.jobs.request(NODE)
        await o.until(lambda: [e for e in node_events(a, "job.done") if e["job"] == out["job"]],
                      3 * REPAIR.heartbeat + REPAIR.request_timeout, "the backup done")
        stored = copies(everyone)
        assert stored and all(n >= 2 for n in stored.values()), stored
        victim = next(m for m in others if held(m))
        rest = [m for m in everyone if m is not victim]

        await a.running.admissions.remove_peer(victim.peer_id, "sold")
        # Removed: its copies count for nothing, at once (no grace); some files are short of a copy now.
        assert min(copies(rest)[f] for f in held(victim)) < 2
        await o.until(lambda: all(copies(rest)[f] >= 2 for f in stored), REPAIR.repair_interval + 2 * REPAIR.heartbeat
                      + REPAIR.request_timeout, "the coordinator's next repair round back to two copies without it")
        assert a.logged("repair.copied") >= 1

    print(f"repair: {run_office(tmp_path / 'office', scenario, REPAIR).summary()}")
