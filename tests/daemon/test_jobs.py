"""backup NODE: asked anywhere, dispatched by the coordinator to one agent, logged in the node's log."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.daemon.harness import Office, Peer, node_log, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, repo, start_office, tree_hashes


def node_office(office: Office, tmp_path: Path, agents: list[str], files: int, size: int,
                extra_peers: tuple[str, ...] | list[str] = (), **kw: Any) -> tuple[list[Peer], Path, list[str]]:
    """alpha (admin), the agents and extra peers; node `accounts` granted to the agents, backing up a fresh
    tree."""
    peers = start_office(office, [*agents, *extra_peers], **kw)
    src = tmp_path / "shared"
    make_tree(src, files, size)
    home = ["--home", str(peers[0].home)]
    office.cli("grant", NODE, *agents, *home)
    office.cli("dataset", "add", NODE, str(src), *home)
    return peers, src, home


def test_backup_now_runs_once_on_one_agent_and_every_peer_logs_it(office: Office, tmp_path: Path) -> None:
    a, b, c = start_office(office, ["beta", "gamma"])
    src = tmp_path / "shared"
    make_tree(src, 5, 500_000)
    home = {p.name: ["--home", str(p.home)] for p in (a, b, c)}
    office.cli("grant", NODE, "beta", "gamma", *home["alpha"])
    office.cli("dataset", "add", NODE, str(src), *home["alpha"])
    peers = (a, b, c)
    wait_for(lambda: len({p.status()["config_digest"] for p in peers}) == 1
             and all(p.status()["coordinator"] for p in peers), 20, "configuration and a coordinator everywhere")
    coordinator = a.status()["coordinator"]

    # Asked on gamma (not the coordinator): forwarded, dispatched to one agent, waited for.
    out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home["gamma"], timeout=120).out)
    assert out["state"] == "done" and len(out["snapshots"]) == 1
    assert out["coordinator"] == coordinator and out["agent_name"] in ("beta", "gamma")
    job = out["job"]

    def events(p: Peer) -> list[dict[str, object]]:
        return [e for e in node_log(home[p.name], NODE)
                if e["job"] == job and str(e["kind"]).startswith("job.")]

    wait_for(lambda: all(len(events(p)) == 3 for p in peers), 20, "the job's events on every peer")
    logs = [events(p) for p in peers]
    assert logs[0] == logs[1] == logs[2]  # the same events, in the same order, everywhere
    kinds = [e["kind"] for e in logs[0]]
    assert kinds == ["job.dispatched", "job.started", "job.done"]
    for e in logs[0]:
        assert e["node"] == NODE and e["agent"] == out["agent"] and e["term"] == out["term"]
        assert e["agent_name"] == out["agent_name"]  # the agent by name, which the human listing shows
    assert logs[0][0]["writer"] == coordinator and logs[0][2]["writer"] == out["agent"]
    assert logs[0][2]["snapshots"] == out["snapshots"]
    # The agent acted as the node with the coordinator's token, and the coordinator logged giving it.
    issued = [e for e in node_log(home["beta"], NODE)
              if e["kind"] == "act_as.issued" and e["job"] == job]
    assert [(e["writer"], e["agent"], e["term"]) for e in issued] == [(coordinator, out["agent"], out["term"])]
    # Exactly one snapshot, made as the node by that agent.
    snaps = json.loads(repo(office, a, "snapshots", "--json").out)
    assert [s["id"] for s in snaps] == out["snapshots"] and snaps[0]["extra"]["agent"] == out["agent"]
    # The node-level commands: snapshots name their agent; a restore is logged in the node's log.
    listed = json.loads(office.cli("snapshots", NODE, "--json", *home["alpha"]).out)
    assert [(s["id"], s["agent"], s["job"]) for s in listed] == [(out["snapshots"][0], out["agent"], job)]
    office.cli("restore", NODE, "latest", "--target", str(tmp_path / "out"), *home["alpha"])
    assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == tree_hashes(src)
    wait_for(lambda: [e for e in node_log(home["beta"], NODE)
                      if e["kind"] == "restore.done"], 20, "the restore in beta's copy of the log")
    restores = [e for e in node_log(home["beta"], NODE)
                if e["kind"] == "restore.done"]
    assert restores[0]["agent"] == a.peer_id and restores[0]["snapshot"] == out["snapshots"][0]

    # The next backup goes to the agent that succeeded last (its file cache is warm).
    again = json.loads(office.cli("backup", NODE, "--wait", "--json", *home["alpha"], timeout=120).out)
    assert again["agent"] == out["agent"] and again["state"] == "done"


def test_a_schedule_fires_and_each_slot_runs_once(office: Office, tmp_path: Path) -> None:
    (a, b, c), _src, home = node_office(office, tmp_path, ["beta", "gamma"], 3, 200_000)
    added = time.time()
    office.cli("schedule", "add", NODE, "--every", "4s", "--window", "1m", *home)

    def done_slots() -> list[dict[str, object]]:
        evs = node_log(b.home, NODE)
        return [e for e in evs if e["kind"] == "job.done"]

    wait_for(lambda: len(done_slots()) >= 2, 60, "two scheduled slots done")
    evs = node_log(c.home, NODE)
    dispatched = [e for e in evs if e["kind"] == "job.dispatched"]
    started = [e for e in evs if e["kind"] == "job.started"]
    # Every slot is dispatched once, to one agent, and started once: job ids never repeat.
    assert len({e["job"] for e in dispatched}) == len(dispatched)
    assert len({e["job"] for e in started}) == len(started)
    assert all(e["schedule"] and isinstance(e["slot"], int) for e in dispatched)
    assert all(e["writer"] == a.peer_id for e in dispatched)  # the coordinator
    slots = sorted(int(e["slot"]) for e in dispatched)
    assert all(y - x >= 4 and (y - x) % 4 == 0 for x, y in itertools.pairwise(slots))
    # No slot from before the schedule existed, though its window would allow catching one up.
    assert slots[0] >= int(added)


def test_log_follow_and_since(office: Office, tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading

    from tests.daemon.harness import daemon_env, stop_group

    (a, b), _src, home = node_office(office, tmp_path, ["beta"], 1, 10_000, replicas=1)
    wait_for(lambda: a.status()["config_digest"] == b.status()["config_digest"] and a.status()["coordinator"],
             20, "configuration and a coordinator")
    follow = subprocess.Popen([sys.executable, "-m", "peerbackup", "log", NODE, "--follow", "--json", *home],
                              stdout=subprocess.PIPE, env=daemon_env(), start_new_session=True)
    lines: list[bytes] = []
    assert follow.stdout is not None
    threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, b"")),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
        wait_for(lambda: any(json.loads(x)["kind"] == "job.done" for x in lines), 20, "job.done followed")
        # One object per line, as they come.
        kinds = [json.loads(x)["kind"] for x in lines if json.loads(x)["job"] == out["job"]]
        assert kinds == ["job.dispatched", "agent.logon", "act_as.issued", "job.started", "job.done"]
    finally:
        stop_group(follow)
    assert len(json.loads(office.cli("log", NODE, "--json", "--since", "1h", *home).out)) >= 3
    assert json.loads(office.cli("log", NODE, "--json", "--since", "2099-01-01T00:00", *home).out) == []
    res = office.cli("log", NODE, "--since", "yesterday-ish", *home, check=False)
    assert res.rc == 2 and "--since" in res.err


def test_a_failed_scheduled_job_is_retried_with_back_off_then_given_up(office: Office, tmp_path: Path) -> None:
    # Storage peers with almost no room: every backup fails to store its pack, a real failure.
    tiny = ["--storage-quota", "2K"]
    _, _, home = node_office(office, tmp_path, ["beta"], 1, 100_000, replicas=1,
                             extra={"alpha": tiny, "beta": tiny})
    office.cli("schedule", "add", NODE, "--every", "30s", "--window", "2h", "--retries", "2", "--retry-delay", "1s",
               *home)
    # The first slot (within 30 s) fails, is retried after 1 s and after 2 s more, and is then left failed;
    # the next slot, 30 s later, is a job of its own.

    def attempts() -> list[tuple[str, object]]:
        evs = node_log(home, NODE)
        first = next((e["job"] for e in evs if e["kind"] == "job.dispatched"), None)
        return [(e["kind"], e.get("attempt")) for e in evs
                if e["kind"] in ("job.dispatched", "job.failed") and e["job"] == first]

    wait_for(lambda: sum(kind == "job.failed" for kind, _ in attempts()) >= 3, 60, "three failed attempts")
    time.sleep(3)  # no fourth attempt comes
    got = attempts()
    # Each attempt numbered, in its dispatch and in its agent's end (only the current attempt's end counts).
    assert got == [("job.dispatched", n) if i % 2 == 0 else ("job.failed", n)
                   for n in (1, 2, 3) for i in (0, 1)], got
