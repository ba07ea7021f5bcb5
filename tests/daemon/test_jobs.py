"""backup NODE: asked anywhere, dispatched by the coordinator to one agent, logged in the node's log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.daemon.harness import Office, Peer, node_log, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, start_office, tree_hashes


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


def test_log_follow_and_since(office: Office, tmp_path: Path) -> None:
    """The command line's side of a backup (its office scenarios are in-process: tests/inproc/test_jobs.py):
    `log --follow` and `--since`, `backup --wait --json` asked on an agent, `snapshots NODE`, `restore NODE`."""
    import subprocess
    import sys
    import threading

    from tests.daemon.harness import daemon_env, stop_group

    (a, b), src, home = node_office(office, tmp_path, ["beta"], 1, 10_000, replicas=1)
    wait_for(lambda: a.status()["config_digest"] == b.status()["config_digest"] and b.status()["coordinator"],
             20, "configuration and a coordinator")
    follow = subprocess.Popen([sys.executable, "-m", "peerbackup", "log", NODE, "--follow", "--json", *home],
                              stdout=subprocess.PIPE, env=daemon_env(), start_new_session=True)
    lines: list[bytes] = []
    assert follow.stdout is not None
    threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, b"")),  # type: ignore[union-attr]
                     daemon=True).start()
    try:
        # Asked on beta (not the coordinator): forwarded, dispatched, waited for.
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", "--home", str(b.home), timeout=120).out)
        assert out["state"] == "done" and len(out["snapshots"]) == 1 and out["agent_name"] == "beta", out
        assert out["coordinator"] == a.peer_id
        wait_for(lambda: any(json.loads(x)["kind"] == "job.done" for x in lines), 20, "job.done followed")
        # One object per line, as they come, the agent by name (which the human listing shows).
        followed = [json.loads(x) for x in lines if json.loads(x)["job"] == out["job"]]
        assert [e["kind"] for e in followed] == ["job.dispatched", "agent.logon", "act_as.issued", "job.started",
                                                 "job.done"]
        assert all(e["agent_name"] == "beta" for e in followed if e["kind"].startswith("job."))
        assert followed[-1]["snapshots"] == out["snapshots"]
    finally:
        stop_group(follow)
    assert len(json.loads(office.cli("log", NODE, "--json", "--since", "1h", *home).out)) >= 3
    assert json.loads(office.cli("log", NODE, "--json", "--since", "2099-01-01T00:00", *home).out) == []
    res = office.cli("log", NODE, "--since", "yesterday-ish", *home, check=False)
    assert res.rc == 2 and "--since" in res.err
    snapshots_and_restore(office, tmp_path, home, src, out)


def snapshots_and_restore(office: Office, tmp_path: Path, home: list[str], src: Path, out: dict[str, Any]) -> None:
    """`snapshots NODE` names each snapshot's agent and job; `restore NODE` restores the tree and is logged in the
    node's log."""
    listed = json.loads(office.cli("snapshots", NODE, "--json", *home).out)
    assert [(s["id"], s["agent"], s["job"]) for s in listed] == [(out["snapshots"][0], out["agent"], out["job"])]
    office.cli("restore", NODE, "latest", "--target", str(tmp_path / "out"), *home)
    assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == tree_hashes(src)
    restores = [e for e in node_log(home, NODE) if e["kind"] == "restore.done"]
    assert [e["snapshot"] for e in restores] == out["snapshots"]
