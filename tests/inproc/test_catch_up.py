"""An agent runs a job only under the configuration it was dispatched under, or a later one (the dispatch
carries the coordinator's configuration digest: office/jobs/runner.py `_catch_up`), DEFAULT timings.

The cases where the agent catches up in time (a data set added, removed, a node restored just before the
backup) are in test_results.py and test_node_removal.py; here the agent cannot: it refuses, says why, and
nothing runs under the old configuration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peerbackup.core.nodes import Dataset
from peerbackup.errors import PeerBackupError
from tests.inproc.harness import InprocOffice, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_events, node_office


@pytest.mark.timeout(120)
def test_an_agent_that_cannot_catch_up_with_the_dispatchs_configuration_refuses_and_runs_nothing(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=10_000)

        async def never(_peer: str) -> bool:  # every sync of beta's fails (a partition of the log pulls only)
            return False

        synced = b.running.logs.sync_with
        b.running.logs.sync_with = never  # type: ignore[method-assign,assignment]
        second = o.root / "second"
        await asyncio.to_thread(second.mkdir)
        await asyncio.to_thread((second / "letter.txt").write_text, "dear")
        await a.running.controls.nodes.add_dataset(NODE, Dataset(str(second)))
        with pytest.raises(PeerBackupError) as refused:
            await a.running.controls.jobs.request(NODE)
        assert "configuration is behind the coordinator's" in str(refused.value)
        assert not node_events(b, "job.started") and not node_events(a, "job.done")

        b.running.logs.sync_with = synced  # type: ignore[method-assign]
        await o.until(lambda: a.running.logs.state.config().digest() == b.running.logs.state.config().digest(),
                      3 * SETTINGS.heartbeat, "beta in step again")
        job = (await a.running.controls.jobs.request(NODE))["job"]
        [done] = await o.until(lambda: [e for e in node_events(a, "job.done") if e["job"] == job],
                               3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "the backup done")
        assert len(done["snapshots"]) == 2  # a snapshot per data set: the new one too

    print(f"cannot catch up: {run_office(tmp_path, scenario).summary()}")
