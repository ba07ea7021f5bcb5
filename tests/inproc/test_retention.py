"""A node's history on an office of daemons in one loop on a virtual clock, DEFAULT timings: agents that share
it, and the retention job the coordinator dispatches after each backup.

Mirrors (real processes, FAST timings, the repository read with `repo` commands there, with the daemon's own
reader here):
- tests/daemon/test_job_lifecycle.py::test_retention_forgets_by_policy_and_prunes_as_a_job_of_the_node
- tests/daemon/test_job_lifecycle.py::test_the_readme_policy_keeps_every_data_set_of_a_node
- tests/daemon/test_agent_run.py::test_two_agents_back_up_the_node_and_share_its_history
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.jobs import retention_job_id
from peerbackup.core.nodes import Dataset
from tests.daemon.test_peerstore import tree_hashes
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.nodeops import check_all, restore, run_here, same_config, snapshots
from tests.inproc.scenarios import NODE, SETTINGS, make_tree, node_events, node_office
from tests.inproc.test_jobs import TICK

PRUNE = dataclasses.replace(SETTINGS, prune_interval=0.0)  # every retention job prunes (a day apart by default)
DONE_WITHIN = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # a small job, dispatched and logged


def events_of(m: Member, job: str) -> list[dict[str, Any]]:
    return [e for e in node_events(m) if e.get("job") == job]


async def backup_then_retention(o: InprocOffice, a: Member, changing: Path, seed: int,
                                snapshots_each: int) -> tuple[str, list[dict[str, Any]]]:
    """A backup of new data asked of the coordinator, done with `snapshots_each` snapshots, then the retention
    job the coordinator dispatches after it, ended: (the backup's job, the retention job's events)."""
    await asyncio.to_thread(changing.write_bytes, random.Random(seed).randbytes(100_000))
    job = (await a.running.controls.jobs.request(NODE))["job"]
    [done] = await o.until(lambda: [e for e in events_of(a, job) if e["kind"] in ("job.done", "job.failed")],
                           DONE_WITHIN, f"backup {job} ended")
    assert done["kind"] == "job.done" and len(done["snapshots"]) == snapshots_each, done
    retention = retention_job_id(NODE, job)
    await o.until(lambda: [e for e in events_of(a, retention) if e["kind"] in ("job.done", "job.failed")],
                  2 * TICK + DONE_WITHIN, f"the retention job after {job} ended")
    return job, events_of(a, retention)


@pytest.mark.timeout(120)
def test_retention_forgets_by_policy_and_prunes_as_a_job_of_the_node(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, _b, _c = everyone = await node_office(o, ["beta", "gamma"], files=3, size=100_000)
        src = o.root / "shared"
        await a.running.controls.nodes.set_policy(NODE, {"last": 2})
        await same_config(o, everyone, "the policy everywhere")
        jobs = [(await backup_then_retention(o, a, src / "changing.bin", i, 1)) for i in range(3)]
        evs = jobs[-1][1]
        # The coordinator's events, then the agent's (two writers' events in one virtual millisecond may list in
        # either order: nothing but their times orders them).
        by = {e["writer"]: [x for x in evs if x["writer"] == e["writer"]] for e in evs}
        [(coordinator, ours), (_agent, theirs)] = sorted(by.items(), key=lambda kv: kv[0] != a.peer_id)
        assert coordinator == a.peer_id and [e["kind"] for e in ours] == ["job.dispatched", "agent.logon",
                                                                          "act_as.issued"], evs
        assert [e["kind"] for e in theirs] == ["job.started", "job.done"], evs
        assert ours[0]["job_kind"] == "retention" and ours[0]["prune"] is True
        assert ours[2]["scope"] == "prune"  # this token may delete; a backup's may not
        done = theirs[-1]
        assert done["kept"] == 2 and len(done["forgotten"]) == 1 and done["pruned"] is True
        assert done["packs_deleted"] >= 1 and done["bytes_freed"] > 0
        # Every backup job's token was a backup one: only retention jobs got the prune scope.
        scopes = {e["job"]: e["scope"] for e in node_events(a, "act_as.issued")}
        assert {scopes[job] for job, _ in jobs} == {"backup"}
        assert len(await snapshots(a)) == 2
        # What is left is whole: the newest snapshot restores, and every pack checks out.
        await restore(a, tmp_path / "out")
        assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == tree_hashes(src)
        assert await check_all(a) == []
        # No retention job without a new backup: the coordinator does not prune in a loop.
        await o.advance(3 * TICK)
        assert sum(1 for e in node_events(a, "job.dispatched") if e.get("job_kind") == "retention") == 3

    print(f"retention (forget, prune): {run_office(tmp_path / 'office', scenario, PRUNE).summary()}")


@pytest.mark.timeout(120)
def test_the_readme_policy_keeps_every_data_set_of_a_node(tmp_path: Path) -> None:
    """The data loss a new user met: two data sets and the README's own policy kept only one folder, because
    retention applied the policy to all of the node's snapshots together. Grouped by data set, each folder
    keeps its own newest snapshots; a snapshot of a path that is not a data set (any more) is held."""

    async def scenario(o: InprocOffice) -> None:
        a, _b, _c = everyone = await node_office(o, ["beta", "gamma"], files=3, size=50_000)
        src, second = o.root / "shared", o.root / "second"
        await asyncio.to_thread(make_tree, second, 2, 20_000)
        nodes = a.running.controls.nodes
        await nodes.add_dataset(NODE, Dataset(str(second)))
        await nodes.set_policy(NODE, {"daily": 7, "weekly": 4})
        await same_config(o, everyone, "the data set and the policy everywhere")
        for i in range(2):
            _job, evs = await backup_then_retention(o, a, src / "changing.bin", i, 2)
        done = evs[-1]
        assert done["kind"] == "job.done", done
        groups = {g["path"]: g for g in done["groups"]}
        assert set(groups) == {str(src), str(second)}
        # Both backups fall on one day: each data set keeps the newer one, for the daily and the weekly rule.
        assert all(g["kept"] == 1 and g["removed"] == 1 for g in groups.values()), groups
        assert all(set(next(iter(g["why"].values())).split(",")) == {"daily", "weekly"} for g in groups.values())
        # The dashboard shows, per snapshot, what the next retention does with it and why.
        shown = await snapshots(a, with_policy=True)
        assert sorted(p for s in shown for p in s["paths"]) == sorted([str(src), str(second)])
        assert [s["retention"] for s in shown] == [{"keep": True, "why": "daily, weekly"}] * 2
        for path in (src, second):
            target = o.root / f"out-{path.name}"
            [latest] = [s["id"] for s in shown if str(path) in s["paths"]]  # as `restore NODE latest --path`
            await restore(a, target, snapshot=latest, path=str(path))
            assert tree_hashes(target / path.relative_to("/")) == tree_hashes(path)
        await a_removed_data_set_is_held(o, a, src, second)

    print(f"retention (README policy): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")


async def a_removed_data_set_is_held(o: InprocOffice, a: Member, src: Path, second: Path) -> None:
    """A data set removed from the configuration is held whole by the next retention jobs: removing
    configuration never deletes data."""
    await a.running.controls.nodes.remove_dataset(NODE, str(second))
    await o.until(lambda: all(str(second) not in m.running.nodes.nodes()[NODE].datasets
                              for m in o.members.values()), 3 * SETTINGS.heartbeat, "the data set removed everywhere")
    for i in range(2):
        _job, evs = await backup_then_retention(o, a, src / "changing.bin", 10 + i, 1)
    groups = {g["path"]: g for g in evs[-1]["groups"]}
    assert groups[str(second)]["held"] and groups[str(second)]["removed"] == 0 and groups[str(second)]["kept"] == 1
    assert groups[str(src)]["kept"] == 1 and groups[str(src)]["removed"] == 1


@pytest.mark.timeout(120)
def test_two_agents_back_up_the_node_and_share_its_history(tmp_path: Path) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=6, size=100_000)
        src = o.root / "shared"
        await a.running.controls.nodes.add_dataset(NODE, Dataset(str(src), exclude=("*.skip",)))
        await same_config(o, [a, b, c], "the exclusion known to the agents, alpha coordinating")
        await asyncio.to_thread((src / "dir0" / "junk.skip").write_bytes, b"excluded")

        first = await run_here(b)
        assert first.state == "done", first
        [snap1] = first.snapshots
        assert snap1["path"] == str(src) and snap1["parent"] is None
        # Another agent, with a cold cache, after a change: the parent is the first agent's snapshot
        # (per node and data set, not per host), and only the change is stored.
        await asyncio.to_thread((src / "dir1" / "new.bin").write_bytes, b"n" * 300_000)
        [snap2] = (await run_here(c)).snapshots
        assert snap2["parent"] == snap1["id"]
        assert snap2["summary"]["bytes_added"] < 400_000 < snap1["summary"]["bytes_added"]

        snaps = await snapshots(a)
        assert [s["agent_name"] for s in snaps] == ["beta", "gamma"]
        assert all(s["job"] for s in snaps) and [s["parent"] for s in snaps] == [None, snap1["id"]]
        await restore(a, tmp_path / "out", snapshot=snap2["id"][:8])
        want = {k: v for k, v in tree_hashes(src).items() if not k.endswith(".skip")}
        assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == want
        assert b.logged("agent.backup_done") == 1

    print(f"retention (shared history): {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
