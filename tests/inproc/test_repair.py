"""Repair on an office of daemons in one loop on a virtual clock: DEFAULT timings but for the repair
round, every 60 s instead of 600 s (the product's setting, shortened to keep the test at a few seconds).

Mirrors tests/daemon/test_peerstore.py::test_remove_peer_then_repair_restores_r_copies (real processes,
repair every 1 s, a backup and restore by the command line): here the backup is the agent's, asked of
the office, and the restore is read through the admin's daemon.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.inproc.harness import InprocOffice, run_office
from tests.inproc.scenarios import SETTINGS, node_office
from tests.inproc.store import backup, copies, held, restored_as_backed_up

REPAIR = dataclasses.replace(SETTINGS, repair_interval=60.0)


@pytest.mark.timeout(120)
def test_a_removed_holders_copies_count_for_nothing_and_the_next_repair_round_restores_r_copies(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, *others = everyone = await node_office(o, ["beta", "gamma", "delta"], replicas=2, files=8, size=300_000)
        await backup(o, a)
        stored = copies(everyone)
        assert stored and all(n >= 2 for n in stored.values()), stored
        victim = next(m for m in others if held(m))
        rest = [m for m in everyone if m is not victim]

        await a.running.admissions.remove_peer(victim.peer_id, "sold")
        # Removed: its copies count for nothing, at once (no grace); some files are short of a copy now.
        assert min(copies(rest)[f] for f in held(victim)) < 2
        await o.until(lambda: all(copies(rest)[f] >= 2 for f in stored), REPAIR.repair_interval + 2 * REPAIR.heartbeat
                      + REPAIR.request_timeout, "the coordinator's next repair round back to two copies without it")
        assert set(copies(rest)) >= held(victim)
        assert a.logged("repair.copied") >= 1
        assert await a.running.controls.repair.under_replicated() == 0
        await restored_as_backed_up(o, a)

    print(f"repair: {run_office(tmp_path / 'office', scenario, REPAIR).summary()}")
