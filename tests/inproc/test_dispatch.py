"""Dispatches, heartbeats and logons sent by hand between daemons in one loop, DEFAULT timings: what an agent
and a coordinator refuse, and what they adopt instead of running twice.

Mirrors (real processes, FAST timings, each request made with a member's key from the test process):
- tests/daemon/test_jobs.py::test_agents_refuse_stale_or_foreign_dispatches and
  tests/daemon/test_agent_run.py::test_an_agent_without_the_grant_or_the_data_is_refused (one office here)
- tests/daemon/test_jobs.py::test_a_revoked_agent_is_not_dispatched_to_and_refuses
- tests/daemon/test_jobs.py::test_a_second_dispatch_of_a_running_job_adopts_the_run (the run held on a gate
  while the second dispatch comes, instead of a backup long enough to be still running)
- tests/daemon/test_jobs.py::test_the_coordinator_adopts_a_running_job_it_hears_of_before_its_log_shows_it and
  tests/daemon/test_job_lifecycle.py::test_logon_challenges_and_act_as_refusals (one office here)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peerbackup.core.nodes import Dataset
from peerbackup.errors import PeerBackupError
from peerbackup.net.proto import jobs as proto
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.nodeops import refused, run_here, same_config, send, snapshots
from tests.inproc.scenarios import NODE, SETTINGS, node_events, node_office
from tests.inproc.test_jobs import TICK, hang_first_run, job_events

DONE_WITHIN = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # a small backup, dispatched and logged


def dispatch(job: str, term: int | None, coordinator: Member) -> bytes:
    """A backup's dispatch under the fencing token (term, coordinator), with no deadline."""
    return proto.Dispatch(job, NODE, (term or 0, coordinator.peer_id), 0).to_wire()


@pytest.mark.timeout(120)
def test_an_agent_refuses_stale_foreign_or_ungranted_dispatches_and_backs_up_only_what_it_may(
        tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a = await o.init("alpha")
        b = await o.join("beta", a, rank=10)
        nodes = a.running.controls.nodes
        await nodes.add(NODE, 1)
        await nodes.add_dataset(NODE, Dataset(str(o.root), on=(a.peer_id,)))  # beta is no agent yet
        await same_config(o, [a, b], "the node on beta, alpha coordinating")
        # A dispatch under a token older than the one beta knows: refused (fencing).
        stale = dispatch("manual-1", 0, a)
        code, msg = await refused(a, b, proto.DISPATCH_PATH, stale)
        assert code == "forbidden" and "stale fencing token" in msg
        # One that names another peer as its coordinator: refused.
        term = b.running.coordination.status()[1]
        code, msg = await refused(a, b, proto.DISPATCH_PATH, dispatch("manual-2", term, b))
        assert code == "forbidden" and "fencing token names" in msg
        # A current one, but beta holds no keys of the node (not granted): refused, and nothing ran.
        code, msg = await refused(a, b, proto.DISPATCH_PATH, dispatch("manual-3", term, a))
        assert code == "forbidden" and "only its admins and granted agents" in msg
        assert b.running.controls.agent.jobs == {}
        # Its own daemon refuses to back the node up, naming who may.
        with pytest.raises(PeerBackupError, match=r"only its admins and granted agents do \(alpha\)"):
            await run_here(b)
        # And the coordinator does not pick an agent that cannot do it: a clear error, nothing dispatched.
        with pytest.raises(PeerBackupError, match="no agent of accounts can take the backup now"):
            await b.running.controls.jobs.request(NODE)
        assert node_events(a, "job.dispatched") == []
        # Granted, beta still backs up nothing of a data set given to alpha only.
        await nodes.grant(NODE, b.peer_id)
        await same_config(o, [a, b], "the grant on beta")
        with pytest.raises(PeerBackupError, match="only on"):
            await run_here(b)

    print(f"dispatch (refusals): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_revoked_agent_is_not_dispatched_to_and_refuses(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await node_office(o, ["beta", "gamma"], files=2, size=20_000)
        await a.running.controls.nodes.revoke(NODE, b.peer_id)
        await same_config(o, everyone, "the revocation everywhere")
        for n in (1, 2):
            out = await a.running.controls.jobs.request(NODE)
            assert out["agent_name"] == "gamma", out
            await o.until(lambda: [e for e in job_events(a, out["job"]) if e["kind"] == "job.done"],  # noqa: B023
                          DONE_WITHIN, f"backup {n} done")
        # Dispatched by hand to beta anyway: beta no longer holds the node's current keys.
        term = a.running.coordination.status()[1]
        code, msg = await refused(a, b, proto.DISPATCH_PATH, dispatch("manual-9", term, a))
        assert code == "forbidden" and "only its admins and granted agents" in msg
        # And its own daemon refuses to back the node up.
        with pytest.raises(PeerBackupError, match="does not hold the keys"):
            await run_here(b)
        assert {e["agent"] for e in node_events(c, "job.dispatched")} == {c.peer_id}

    print(f"dispatch (revoked): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


def job_kinds(m: Member, job: str) -> list[str]:
    return [e["kind"] for e in node_events(m) if e.get("job") == job]


@pytest.mark.timeout(120)
def test_a_second_dispatch_of_a_running_or_done_job_is_adopted_never_run_twice(tmp_path: Path) -> None:
    """Issue 16, cause 3: a coordinator whose log did not show its predecessor's dispatch sends the same job to
    the agent already running it. The agent goes on with one run, under the new dispatch, and never logs on
    for a second one; sent once the job is done, it is reported done again and not run."""

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=2, size=20_000)
        gate, hung = asyncio.Event(), list[str]()
        hang_first_run(b, gate, hung)
        out = await a.running.controls.jobs.request(NODE)
        job, term = out["job"], out["term"]
        await o.until(lambda: hung, TICK, "beta's run under way")
        again = proto.Dispatch(job, NODE, (term, a.peer_id), int((o.clock() + 600) * 1000), attempt=1).to_wire()
        assert await send(a, b, proto.DISPATCH_PATH, again) == b""
        assert b.logged("job.adopted") == 1
        gate.set()
        await o.until(lambda: "job.done" in job_kinds(b, job), DONE_WITHIN, "the job done")
        await o.advance(2 * TICK)  # a second run, had one started, would have logged on at once
        kinds = job_kinds(b, job)
        assert kinds.count("agent.logon") == 1 and kinds.count("job.done") == 1 and "job.failed" not in kinds, kinds

        # Once done (a coordinator across a partition that just healed sent a slot the agent had finished
        # moments before): taken, reported done again, never run a second time.
        assert await send(a, b, proto.DISPATCH_PATH, again) == b""
        assert b.logged("job.already_done") == 1
        await o.advance(2 * TICK)
        assert job_kinds(b, job) == kinds
        assert [s["job"] for s in await snapshots(a)] == [job]

    print(f"dispatch (adopted): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_the_coordinator_adopts_a_heartbeat_of_a_job_its_log_lacks_and_logons_are_checked(tmp_path: Path) -> None:
    """Issue 16, cause 3: an agent's progress heartbeat about a job the coordinator's log does not show yet is
    taken as that job running (so the slot is not sent again); a member that is no agent of the node is
    refused that, and a logon or act-as token. A challenge is good for its agent, its job and once."""

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1, files=1, size=1_000)
        c = await o.join("gamma", a, rank=20)  # a member, no agent of the node
        await same_config(o, [a, b, c], "gamma knows the node")
        beat = proto.JobProgress("slot-elsewhere", NODE, 3, 3000, 5, 5000, 0, False, 10, 10000).to_wire()
        code, msg = await refused(c, a, proto.PROGRESS_PATH, beat)
        assert code == "forbidden" and "not running on gamma" in msg
        assert await send(b, a, proto.PROGRESS_PATH, beat) == b""
        running = await c.running.view.jobs.running_anywhere()  # asked of the coordinator
        assert running["slot-elsewhere"]["agent"] == b.peer_id and running["slot-elsewhere"]["files"] == 3
        await logons_are_checked(a, b, c)

    print(f"dispatch (heartbeat, logon): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


async def logons_are_checked(a: Member, b: Member, c: Member) -> None:
    """alpha coordinates, beta is the node's agent, gamma a member only."""

    async def logon(m: Member, job: str) -> bytes:
        reply = await send(m, a, proto.LOGON_PATH, proto.Logon(NODE, job).to_wire())
        assert isinstance(reply, bytes), reply
        return proto.Logon.from_wire(reply, answer=True).challenge

    def act_as(job: str, challenge: bytes) -> bytes:
        return proto.ActAsRequest(NODE, job, challenge).to_wire()

    async def refused_act_as(m: Member, job: str, challenge: bytes) -> tuple[str, str]:
        return await refused(m, a, proto.ACT_AS_PATH, act_as(job, challenge))

    # No logon, or a challenge made up: refused.
    code, msg = await refused_act_as(b, "job-1", bytes(32))
    assert code == "forbidden" and "log on first" in msg
    # A challenge issued to beta is worth nothing to gamma, nor for another job, nor twice.
    assert (await refused_act_as(c, "job-1", await logon(b, "job-1")))[0] == "forbidden"
    code, msg = await refused_act_as(b, "job-2", await logon(b, "job-1"))
    assert code == "forbidden" and "log on first" in msg
    ch = await logon(b, "job-1")
    assert isinstance(await send(b, a, proto.ACT_AS_PATH, act_as("job-1", ch)), bytes)
    code, msg = await refused_act_as(b, "job-1", ch)
    assert code == "forbidden" and "log on first" in msg
    # gamma, a member but no agent of the node, is refused, and the node's log shows it tried.
    code, msg = await refused_act_as(c, "job-3", await logon(c, "job-3"))
    assert code == "forbidden" and "not a granted agent" in msg
    assert any(e["agent"] == c.peer_id for e in node_events(a, "act_as.refused"))
    issued = node_events(a, "act_as.issued")
    assert [(e["job"], e["agent"], e["scope"]) for e in issued] == \
        [("job-1", b.peer_id, "backup")]  # not a retention job the coordinator dispatched: no prune scope
    assert [e["job"] for e in node_events(a, "agent.logon")] == ["job-1"]
