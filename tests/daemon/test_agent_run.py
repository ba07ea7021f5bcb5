"""An agent's daemon backs up a node's data sets into the peer store, as the node (issue 6, begun)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon.harness import Office, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, repo, start_office, tree_hashes


def test_two_agents_back_up_the_node_and_share_its_history(office: Office, tmp_path: Path) -> None:
    a, b, c = start_office(office, ["beta", "gamma"])
    src = tmp_path / "shared"
    make_tree(src, 6, 1_000_000)
    home_a = ["--home", str(a.home)]
    office.cli("grant", NODE, "beta", "gamma", *home_a)
    office.cli("dataset", "add", NODE, str(src), "--exclude", "*.skip", *home_a)
    (src / "dir0" / "junk.skip").write_bytes(b"excluded")
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1, 20, "configuration everywhere")

    code, first = b.api("POST", "/v1/agent/run", {"node": NODE})
    assert code == 200 and first["state"] == "done", first
    (snap1,) = first["snapshots"]
    assert snap1["path"] == str(src) and snap1["parent"] is None
    # Another agent, with a cold cache, after a change: the parent is the first agent's snapshot
    # (per node and data set, not per host), and only the change is stored.
    (src / "dir1" / "new.bin").write_bytes(b"n" * 300_000)
    code, second = c.api("POST", "/v1/agent/run", {"node": NODE})
    assert code == 200, second
    (snap2,) = second["snapshots"]
    assert snap2["parent"] == snap1["id"]
    assert snap2["summary"]["bytes_added"] < 400_000 < first["snapshots"][0]["summary"]["bytes_added"]

    snaps = json.loads(repo(office, a, "snapshots", "--json").out)
    assert [s["host"] for s in snaps] == [NODE, NODE]
    assert [s["extra"]["agent_name"] for s in snaps] == ["beta", "gamma"]
    assert {s["extra"]["node"] for s in snaps} == {NODE} and all(s["extra"]["job"] for s in snaps)
    repo(office, a, "restore", snap2["id"][:8], "--target", str(tmp_path / "out"))
    want = {k: v for k, v in tree_hashes(src).items() if not k.endswith(".skip")}
    assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == want
    assert "agent.backup_done" in b.log.read_text()
