"""Undoing a node's configuration with real daemons in one loop on a virtual clock, DEFAULT timings but a
node_grace of minutes (7 days by default: days of virtual heartbeats for nothing): a data set or a node
removed keeps every file, restore-config brings it all back, and only a purge after the grace deletes.

Ported from tests/daemon/test_config_undo.py::
test_dataset_and_node_removal_keep_data_and_restore_config_brings_it_all_back (real processes, FAST timings,
deleted there; the commands' own output and exit codes stay in
tests/daemon/test_nodes.py::test_node_commands_say_what_they_did_and_refuse_mistakes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.nodes import Dataset
from peerbackup.core.schedule import Schedule
from peerbackup.errors import NotAdmin
from peerbackup.office.peerstore.client import StoreClient
from peerbackup.storage.store import FileType
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import NODE, SETTINGS, make_tree, node_events, node_office
from tests.inproc.test_config import described, kinds, refused

GRACE = dataclasses.replace(SETTINGS, node_grace=300.0)
RUN = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # a dispatch, a small backup and its end logged


async def two_members(o: InprocOffice) -> list[Member]:
    """alpha (the admin, the coordinator) and beta (the agent); node `accounts` of one copy, a small tree."""
    return await node_office(o, ["beta"], replicas=1, files=2, size=20_000)


def held(m: Member) -> int:
    """How many files of the node `m` holds (outside its trash), read from its disk."""
    base = m.home.path / "held" / "nodes" / NODE
    return sum(1 for f in base.rglob("*") if f.is_file() and not f.name.startswith(".")) if base.exists() else 0


async def backup(o: InprocOffice, a: Member) -> dict[str, Any]:
    """A backup now, done: its job.done event."""
    job = (await a.running.controls.jobs.request(NODE))["job"]
    end = await o.until(lambda: [e for e in node_events(a) if e.get("job") == job
                                 and e["kind"] in ("job.done", "job.failed")], RUN, f"backup {job} ended")
    assert [e["kind"] for e in end] == ["job.done"], end
    return dict(end[0])


def in_step(a: Member, b: Member) -> bool:
    return a.running.logs.state.config().digest() == b.running.logs.state.config().digest()


async def snapshot_paths(a: Member) -> list[tuple[str, ...]]:
    """Each snapshot's paths, read from the node's repository in the peer store (what `snapshots` lists)."""
    repo = await a.running.controls.access.open_node_repo(NODE)
    try:
        return sorted(tuple(s.paths) for s in await asyncio.to_thread(repo.snapshots))
    finally:
        await asyncio.to_thread(repo.close)


async def configure(o: InprocOffice, a: Member, b: Member) -> tuple[str, str, str]:
    """A second data set, a cron schedule, a paused one and a policy, on every member: (one, two, paused id)."""
    nodes = a.running.controls.nodes
    one = str(o.root / "shared")  # node_office's data set
    two = o.root / "two"
    await asyncio.to_thread(make_tree, two, 3, 20_000)
    await nodes.add_dataset(NODE, Dataset(str(two)))
    await nodes.add_schedule(NODE, Schedule(id="", node=NODE, cron="0 3 * * *", tz="Europe/Paris"))
    _n, paused = await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=3600, tz="UTC"))
    await nodes.schedule_state(NODE, paused.id, "pause")
    await nodes.set_policy(NODE, {"last": 5})
    await o.until(lambda: in_step(a, b), 3 * SETTINGS.heartbeat, "the configuration on beta")
    return one, str(two), paused.id


async def remove_a_data_set(o: InprocOffice, a: Member, b: Member, one: str, two: str) -> None:
    """Gone from the configuration, its snapshots stay, the next backup skips it."""
    nodes = a.running.controls.nodes
    await refused(lambda: nodes.remove_dataset(NODE, "/not/there"), "has no data set '/not/there'")
    await nodes.remove_dataset(NODE, one)
    assert [d["path"] for d in described(a)["datasets"]] == [two]
    # Asked at once instead: the test below (the agent catches up with the dispatch's configuration).
    await o.until(lambda: in_step(a, b), 3 * SETTINGS.heartbeat, "the removal on beta")
    await backup(o, a)
    assert await snapshot_paths(a) == sorted([(one,), (two,), (two,)])


async def delete_with(a: Member, holder: Member, grant: bytes) -> str:
    """What `holder` answers `a`'s delete of one of the node's snapshot files under `grant`."""
    snap = next(f for f in (holder.home.path / "held" / "nodes" / NODE / FileType.SNAPSHOT.value).rglob("*")
                if f.is_file())
    peer = next(p for p in await a.running.roster.storage_peers() if p.peer_id == holder.peer_id)
    try:
        await StoreClient(a.running.client, NODE).delete(peer, FileType.SNAPSHOT, snap.name, grant)
    except Exception as exc:  # the refusal, whatever its class: its words are what is checked
        return str(exc)
    return "(deleted)"


async def remove_the_node(o: InprocOffice, a: Member, b: Member, grant: bytes) -> dict[str, int]:
    """Not listed, no job, its files where they were, even against a delete grant issued before."""
    nodes = a.running.controls.nodes
    files = {m.name: held(m) for m in (a, b)}
    assert sum(files.values()) > 0
    gone = nodes.describe(await nodes.remove(NODE))
    assert gone["removed"] > 0 and abs(gone["restorable_until"] - (gone["removed"] + GRACE.node_grace)) < 2
    assert nodes.nodes() == {} and [(n, g.purged) for n, g in nodes.removed().items()] == [(NODE, 0)]
    await o.until(lambda: NODE not in b.running.controls.nodes.nodes(), 3 * SETTINGS.heartbeat,
                  "beta sees the removal")
    await refused(lambda: a.running.controls.jobs.request(NODE), "restore-config")
    await refused(lambda: a.running.controls.jobs.request(NODE), "was removed")
    await refused(lambda: nodes.add(NODE), "was removed")
    await refused(lambda: nodes.purge(NODE), "inside its grace")
    said = await delete_with(a, a if files["alpha"] else b, grant)
    assert "its files stay until an admin purges it" in said, said
    assert {"node.add", "node.grant", "node.remove"} <= set(kinds(a))
    assert {m.name: held(m) for m in (a, b)} == files
    return files


async def purge_after_the_grace(o: InprocOffice, a: Member, b: Member) -> None:
    """Removed again and the grace over: no restore; a purge by the admin deletes the files everywhere."""
    nodes = a.running.controls.nodes
    await nodes.remove(NODE)
    await o.advance(nodes.removed()[NODE].restorable_until - o.clock() + 1)
    await refused(lambda: nodes.restore(NODE), "can no longer be restored")
    await refused(lambda: b.running.controls.access.purge_node(NODE), "office key", NotAdmin)
    files = held(a) + held(b)
    out = await a.running.controls.access.purge_node(NODE)
    assert out["deleted"] == files > 0
    assert set(out["peers"]) == {"alpha", "beta"} and all(isinstance(v, int) for v in out["peers"].values())
    assert held(a) + held(b) == 0
    assert any((m.home.path / "held" / "trash").exists() for m in (a, b))  # in the trash until gc_grace
    assert nodes.removed()[NODE].purged > 0
    assert kinds(a).count("node.purge") == 1 and "node.delete_grant" in kinds(a)
    await refused(lambda: nodes.restore(NODE), "purged")


@pytest.mark.timeout(180)
def test_a_removed_data_set_or_node_keeps_its_files_restore_config_brings_it_all_back_purge_only_after_grace(
        tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b = await two_members(o)
        one, two, paused = await configure(o, a, b)
        await backup(o, a)
        await remove_a_data_set(o, a, b, one, two)

        before: dict[str, Any] = described(a)
        grant = await a.running.controls.access.delete_grant(NODE)
        await remove_the_node(o, a, b, grant)

        # restore-config inside the grace: exactly as it was (the paused schedule paused), and it backs up again.
        await a.running.controls.nodes.restore(NODE)
        assert described(a) == before
        # Asked at once instead: the test below (the agent catches up with the dispatch's configuration).
        await o.until(lambda: in_step(a, b), 3 * SETTINGS.heartbeat, "the restore on beta")
        assert [bool(s["paused"]) for s in described(a)["schedules"] if s["id"] == paused] == [True]
        await backup(o, a)
        assert len(await snapshot_paths(a)) == 4

        await purge_after_the_grace(o, a, b)

    print(f"node removal: {run_office(tmp_path / 'office', scenario, GRACE).summary()}")


@pytest.mark.timeout(120)
def test_a_backup_asked_right_after_a_data_set_was_removed_skips_it_on_an_agent_whose_log_was_behind(
        tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b = await two_members(o)
        one, _two, _paused = await configure(o, a, b)
        await a.running.controls.nodes.remove_dataset(NODE, one)
        done = await backup(o, a)  # at once: no heartbeat has carried the removal to beta yet
        assert len(done["snapshots"]) == 1, f"{len(done['snapshots'])} snapshots: the removed {one} backed up too"

    print(f"data set removed then backup: {run_office(tmp_path / 'office', scenario, GRACE).summary()}")


@pytest.mark.timeout(120)
def test_a_backup_asked_right_after_restore_config_runs_on_an_agent_whose_log_was_behind(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b = await two_members(o)
        nodes = a.running.controls.nodes
        await nodes.remove(NODE)
        await o.until(lambda: in_step(a, b), 3 * SETTINGS.heartbeat, "the removal on beta")
        await nodes.restore(NODE)
        await backup(o, a)  # at once: no heartbeat has carried the restore to beta yet

    print(f"restore-config then backup: {run_office(tmp_path / 'office', scenario, GRACE).summary()}")
