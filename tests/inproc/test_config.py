"""Configuration through the control log with real daemons in one loop on a virtual clock, DEFAULT timings:
nodes, grants, data sets, schedules and policies reach every member; schedules paused, resumed and removed.

Ported from (real processes, FAST timings, deleted there; each command's own output and exit codes stay in
tests/daemon/test_nodes.py and tests/daemon/test_schedules.py, one small test per family of commands):
- tests/daemon/test_schedules.py::test_configuration_commands_reach_every_peer (the replication)
- tests/daemon/test_nodes.py::test_node_add_grant_revoke_everywhere (the replication and the refusals)
- tests/daemon/test_config_undo.py::test_schedule_pause_resume_remove_duplicates_and_the_minimum
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.nodes import Dataset
from peerbackup.core.schedule import Schedule
from peerbackup.errors import NotAdmin, PeerBackupError
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import NODE, SETTINGS, first_slot, node_events, node_office

EVERY = SETTINGS.min_schedule_interval  # the product's shortest interval
TICK = SETTINGS.heartbeat + 1  # the scheduler looks every heartbeat; a dispatch takes a moment


async def refused(call: Callable[[], Awaitable[Any]], said: str, kind: type[Exception] = PeerBackupError) -> None:
    """`call` is refused with an error of `kind` saying `said`."""
    try:
        await call()
    except kind as exc:
        assert said in str(exc), f"refused, but saying {exc!r}, not {said!r}"
    else:
        raise AssertionError(f"not refused (expected {said!r})")


def in_step(members: list[Member]) -> bool:
    return len({m.running.logs.state.config().digest() for m in members}) == 1


def kinds(m: Member, prefix: str = "node.") -> list[str]:
    return [e["kind"] for e in m.running.logs.listing(CONTROL_LOG) if e["kind"].startswith(prefix)]


def described(m: Member, node: str = NODE) -> dict[str, Any]:
    """The node as `m` describes it (what `node show --json` and `node list --json` print there)."""
    nodes = m.running.controls.nodes
    return nodes.describe(nodes.node(node))


@pytest.mark.timeout(120)
def test_nodes_and_grants_reach_every_member_and_only_admins_change_them(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a = await o.init("alpha")
        b = await o.join("beta", a, rank=10)
        c = await o.join("gamma", a, rank=20, roles=("storage",))
        everyone = [a, b, c]
        await o.until(lambda: in_step(everyone), 3 * SETTINGS.heartbeat, "logs in step")
        nodes = a.running.controls.nodes
        out = nodes.describe(await nodes.add(NODE, 3))
        assert (out["node"], out["replicas"], out["holder_names"]) == (NODE, 3, ["alpha"])
        assert nodes.describe(await nodes.grant(NODE, b.peer_id))["agent_names"] == ["beta"]
        await o.until(lambda: in_step(everyone), 3 * SETTINGS.heartbeat, "the grant on every member")
        assert (described(b)["agents"], described(b)["i_hold_keys"]) == ([b.peer_id], True)
        assert (described(c)["agent_names"], described(c)["i_hold_keys"]) == (["beta"], False)  # storage: no keys

        # Refusals: only admins change nodes; an agent must have the agent role; bad names.
        await refused(lambda: b.running.controls.nodes.add("x"), "office key", NotAdmin)
        await refused(lambda: nodes.grant(NODE, c.peer_id), "agent role")
        await refused(lambda: nodes.add("../etc"), "node name")
        await refused(lambda: nodes.add(NODE), "exists already")
        await refused(lambda: nodes.grant("nosuch", b.peer_id), "no backup node")

        out = nodes.describe(await nodes.revoke(NODE, b.peer_id))
        assert (out["agents"], out["epoch"], out["holders"]) == ([], 1, [a.peer_id])
        await o.until(lambda: in_step(everyone), 3 * SETTINGS.heartbeat, "the revocation on every member")
        assert (described(b)["epoch"], described(b)["i_hold_keys"]) == (1, False)
        assert kinds(c) == ["node.add", "node.grant", "node.revoke"]
        grant = next(e for e in c.running.logs.listing(CONTROL_LOG) if e["kind"] == "node.grant")
        assert "keys_for" in grant["fields"]

    print(f"nodes and grants: {run_office(tmp_path, scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_data_sets_schedules_and_policies_reach_every_member_and_mistakes_write_nothing(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a = await o.init("alpha")
        b = await o.join("beta", a, rank=10)
        nodes = a.running.controls.nodes
        await nodes.add(NODE)
        await nodes.add_dataset(NODE, Dataset("/srv/accounts", (b.peer_id,), ("*.tmp",)))
        _node, cron = await nodes.add_schedule(NODE, Schedule(id="", node=NODE, cron="0 2 * * *", tz="Europe/Paris",
                                                               window=7200))
        assert (cron.tz, cron.window) == ("Europe/Paris", 7200)
        await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, tz="UTC"))
        await nodes.set_policy(NODE, {"last": 3, "daily": 7})
        await o.until(lambda: in_step([a, b]), 3 * SETTINGS.heartbeat, "the configuration on beta")
        node = described(b)
        assert {sc["cron"] or sc["every"] for sc in node["schedules"]} == {"0 2 * * *", EVERY}
        assert all(sc["tz"] for sc in node["schedules"])
        assert node["datasets"] == [{"path": "/srv/accounts", "on": [b.peer_id], "exclude": ["*.tmp"]}]
        assert node["policy"] == {"last": 3, "daily": 7}
        assert {"node.schedule", "node.dataset", "node.policy"} <= set(kinds(b))

        # Mistakes get a reason, and nothing is written.
        written = kinds(a)
        for schedule, said in ((Schedule(id="", node=NODE, cron="61 * * * *"), "invalid cron expression"),
                               (Schedule(id="", node=NODE, every=EVERY, tz="Mars/Base"), "unknown time zone"),
                               (Schedule(id="", node="nosuch", every=EVERY), "no backup node named 'nosuch'")):
            await refused(partial(nodes.add_schedule, schedule.node, schedule), said)
        await refused(lambda: nodes.add_dataset(NODE, Dataset("relative/dir")), "absolute")
        await refused(lambda: b.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY)),
                      "office key", NotAdmin)
        assert kinds(a) == written and len(described(a)["schedules"]) == 2

    print(f"configuration: {run_office(tmp_path, scenario, SETTINGS).summary()}")


def dispatched(m: Member, schedule: str) -> list[float]:
    """The slots (wall-clock seconds) of `schedule` the coordinator dispatched, as `m` has them logged."""
    return sorted(float(e["slot"]) for e in node_events(m, "job.dispatched") if e.get("schedule") == schedule)


async def refusals_of_schedules(o: InprocOffice, a: Member, b: Member, sid: str) -> None:
    """Below the office's minimum, a duplicate, and the pause/resume mistakes: each refused, saying so."""
    nodes = a.running.controls.nodes
    low = EVERY / 2
    await refused(lambda: nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=low)),
                  f"below the office's minimum of {EVERY:g} s")
    await refused(lambda: nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY / 2, tz="UTC")),
                  f"has this schedule already (id {sid})")
    await refused(lambda: b.running.controls.nodes.schedule_state(NODE, sid, "resume"), "office key", NotAdmin)
    await refused(lambda: nodes.schedule_state(NODE, sid, "pause"), "paused already")
    await refused(lambda: nodes.schedule_state(NODE, "nosuch", "pause"), f"has no schedule 'nosuch' (it has: {sid}")


@pytest.mark.timeout(180)
def test_a_paused_schedule_runs_no_slot_resumed_runs_from_then_on_and_removed_never_again(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1)
        nodes = a.running.controls.nodes
        _n, sc = await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY / 2, tz="UTC"))
        sid = sc.id
        # Another window is another schedule (same interval): accepted, then removed.
        _n, other = await nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=EVERY, tz="UTC"))
        await nodes.schedule_state(NODE, other.id, "remove")
        slot = first_slot(o, EVERY)
        await o.until(lambda: node_events(a, "job.done"), slot + TICK - o.now(), "a scheduled backup done")

        # Paused: listed as paused everywhere, not dispatched; only admins pause and resume.
        await nodes.schedule_state(NODE, sid, "pause")
        paused_at = o.clock()
        assert [(s["id"], bool(s["paused"])) for s in described(a)["schedules"]] == [(sid, True)]
        await o.until(lambda: [s["paused"] > 0 for s in described(b)["schedules"]] == [True],
                      3 * SETTINGS.heartbeat, "beta sees the pause")
        await refusals_of_schedules(o, a, b, sid)
        await o.advance(2 * EVERY + TICK)  # two slots or more
        resumed_at = o.clock()
        assert not [s for s in dispatched(a, sid) if s > paused_at], "a paused schedule's slot was dispatched"

        # Resumed: runs again from now on; none of the slots missed while paused is run afterwards.
        await nodes.schedule_state(NODE, sid, "resume")
        await o.until(lambda: [s for s in dispatched(a, sid) if s >= resumed_at], EVERY + TICK,
                      "a slot after the resume")
        assert not [s for s in dispatched(a, sid) if paused_at < s < resumed_at], "a slot missed while paused ran"

        # Removed: gone from the list, never dispatched again.
        await nodes.schedule_state(NODE, sid, "remove")
        removed_at = o.clock()
        assert described(a)["schedules"] == []
        await o.advance(2 * EVERY + TICK)
        assert not [s for s in dispatched(a, sid) if s > removed_at], "a removed schedule's slot was dispatched"
        assert {"node.schedule_pause", "node.schedule_resume", "node.schedule_remove"} <= set(kinds(b))

    print(f"schedule pause/resume/remove: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
