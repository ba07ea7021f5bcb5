"""A coordinator lost between its dispatch and its agent's logon (DEFAULT timings): the agent logs on to the
next coordinator instead of failing the job (office/jobs/runner.py `_act_as`). Before, a backup asked by
hand failed "cannot reach alpha" and, being no slot of a schedule, was never tried again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.inproc.harness import InprocOffice, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_events, node_office
from tests.inproc.test_failover import DONE_WITHIN, ends
from tests.inproc.test_jobs import TICK, job_events

NEW_COORDINATOR = SETTINGS.lease + SETTINGS.dead + 2 * SETTINGS.heartbeat


@pytest.mark.timeout(120)
def test_the_coordinator_lost_before_its_agent_logs_on_the_agent_logs_on_to_the_next_and_the_job_completes_once(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=4, size=100_000)
        out = await a.running.controls.jobs.request(NODE)
        agent, other = (b, c) if out["agent_name"] == "beta" else (c, b)
        await o.stop(a)  # at once: the agent has not logged on yet
        assert not [e for e in job_events(agent, out["job"]) if e["kind"] == "job.started"]
        [done] = await o.until(lambda: [e for e in ends(agent, out["job"]) if e["kind"] in ("job.done", "job.failed")],
                               NEW_COORDINATOR + DONE_WITHIN, "the job ended")
        assert done["kind"] == "job.done", done
        coordinator = agent.running.coordination.status()[0]
        assert coordinator in (b.peer_id, c.peer_id)
        # It logged on to the new coordinator, which let it act as the node; the job names that one.
        [started] = [e for e in job_events(agent, out["job"]) if e["kind"] == "job.started"]
        assert started["coordinator"] == done["coordinator"] == coordinator
        issued = await o.until(lambda: [e for e in node_events(agent, "act_as.issued") if e["job"] == out["job"]],
                               3 * SETTINGS.heartbeat, "the new coordinator's act_as.issued on the agent")
        assert [e["writer"] for e in issued] == [coordinator]
        # Once: nobody else runs it, and the new coordinator sends it to no one.
        await o.advance(SETTINGS.lease + 2 * TICK)
        for m in (agent, other):
            evs = job_events(m, out["job"])
            assert [e["kind"] for e in evs].count("job.done") == 1 and "job.failed" not in [e["kind"] for e in evs]
            assert all(e["writer"] == a.peer_id for e in evs if e["kind"] == "job.dispatched")

    print(f"logon failover: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
