"""Configuration that can be undone, with real daemons: schedule remove|pause|resume, dataset remove,
node remove / restore-config / purge (docs/nodes.md, "What undoing never does")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peerbackup.net.proto import store as proto
from peerbackup.storage.store import FileType
from tests.daemon.harness import Office, Peer, node_log, office_log, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, start_office
from tests.daemon.test_storage import call


def _dispatched(office: Office, p: Peer, schedule: str) -> list[int]:
    evs = node_log(p.home, NODE)
    return sorted(int(e["slot"]) for e in evs if e["kind"] == "job.dispatched" and e.get("schedule") == schedule)


def _done(office: Office, p: Peer) -> int:
    evs = node_log(p.home, NODE)
    return sum(1 for e in evs if e["kind"] == "job.done")


def test_schedule_pause_resume_remove_duplicates_and_the_minimum(office: Office, tmp_path: Path) -> None:
    a, b = start_office(office, ["beta"], timings={"min_schedule_interval": "3s"}, replicas=1)
    home = ["--home", str(a.home)]
    make_tree(tmp_path / "shared", 2, 10_000)
    office.cli("grant", NODE, "beta", *home)
    office.cli("dataset", "add", NODE, str(tmp_path / "shared"), *home)

    # Below the office's minimum (a setting, 3 s here): refused, saying so. Then a duplicate.
    res = office.cli("schedule", "add", NODE, "--every", "2s", *home, check=False)
    assert res.rc == 2 and "below the office's minimum of 3 s" in res.err, res
    sid = office.cli("schedule", "add", NODE, "--every", "3s", "--window", "1m", "--tz", "UTC", "--json",
                     *home).json()["schedule"]["id"]
    res = office.cli("schedule", "add", NODE, "--every", "3s", "--window", "1m", "--tz", "UTC", *home, check=False)
    assert res.rc == 2 and f"has this schedule already (id {sid})" in res.err, res
    # Another window is another schedule (same interval, different window).
    other = office.cli("schedule", "add", NODE, "--every", "3s", "--window", "2m", "--tz", "UTC", "--json",
                       *home).json()["schedule"]["id"]
    office.cli("schedule", "remove", NODE, other, *home)
    wait_for(lambda: _done(office, a) >= 1, 60, "a scheduled backup done")

    # Paused: listed as paused everywhere, not dispatched; only admins pause and resume.
    office.cli("schedule", "pause", NODE, sid, *home)
    paused_at = time.time()
    rows = office.cli("schedule", "list", NODE, "--json", *home).json()
    assert [(r["id"], r["state"]) for r in rows] == [(sid, "paused")] and rows[0]["paused"] > 0
    wait_for(lambda: [r["state"] for r in office.cli("schedule", "list", "--json", "--home", str(b.home)).json()]
             == ["paused"], 20, "beta to see the pause")
    res = office.cli("schedule", "resume", NODE, sid, "--home", str(b.home), check=False)
    assert res.rc != 0 and "office key" in res.err, res
    res = office.cli("schedule", "pause", NODE, sid, *home, check=False)
    assert res.rc == 2 and "paused already" in res.err
    res = office.cli("schedule", "pause", NODE, "nosuch", *home, check=False)
    assert res.rc == 2 and f"has no schedule 'nosuch' (it has: {sid}" in res.err
    time.sleep(7)  # two slots or more
    resumed_at = time.time()
    assert not [s for s in _dispatched(office, a, sid) if s > paused_at]

    # Resumed: runs again from now on; none of the slots missed while paused is run afterwards.
    office.cli("schedule", "resume", NODE, sid, *home)
    wait_for(lambda: [s for s in _dispatched(office, a, sid) if s >= resumed_at], 30, "a slot after the resume")
    assert not [s for s in _dispatched(office, a, sid) if paused_at < s < resumed_at]

    # Removed: gone from the list, never dispatched again.
    office.cli("schedule", "remove", NODE, sid, *home)
    removed_at = time.time()
    assert office.cli("schedule", "list", "--json", *home).json() == []
    time.sleep(4)
    assert not [s for s in _dispatched(office, a, sid) if s > removed_at]
    log = office.cli("office", "log", *home).out
    assert "node.schedule_pause" in log and "node.schedule_resume" in log and "node.schedule_remove" in log


def _files(peers: list[Peer]) -> dict[str, int]:
    """How many files of the node each peer holds (outside its trash), read from its disk."""
    out = {}
    for p in peers:
        base = p.home / "held" / "nodes" / NODE
        out[p.name] = sum(1 for f in base.rglob("*") if f.is_file() and not f.name.startswith(".")) \
            if base.exists() else 0
    return out


def _snapshots(office: Office, p: Peer) -> list[dict[str, Any]]:
    return list(office.cli("snapshots", NODE, "--json", "--home", str(p.home), timeout=120).json())


def test_dataset_and_node_removal_keep_data_and_restore_config_brings_it_all_back(office: Office,
                                                                                   tmp_path: Path) -> None:
    grace = 40.0
    a, b = peers = start_office(office, ["beta"], timings={"node_grace": f"{grace:g}s"}, replicas=1)
    home = ["--home", str(a.home)]
    one, two = tmp_path / "one", tmp_path / "two"
    make_tree(one, 2, 20_000, seed=1)
    make_tree(two, 2, 20_000, seed=2)
    office.cli("grant", NODE, "beta", *home)
    for src in (one, two):
        office.cli("dataset", "add", NODE, str(src), *home)
    office.cli("schedule", "add", NODE, "--cron", "0 3 * * *", "--tz", "Europe/Paris", *home)
    paused = office.cli("schedule", "add", NODE, "--every", "1h", "--json", *home).json()["schedule"]["id"]
    office.cli("schedule", "pause", NODE, paused, *home)
    office.cli("node", "policy", NODE, "--keep-last", "5", *home)
    wait_for(lambda: a.status()["config_digest"] == b.status()["config_digest"], 20, "configuration on beta")
    assert office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).json()["state"] == "done"

    # A data set removed: gone from the configuration, its snapshots stay, the next backup skips it.
    res = office.cli("dataset", "remove", NODE, "/not/there", *home, check=False)
    assert res.rc == 2 and "has no data set '/not/there'" in res.err
    office.cli("dataset", "remove", NODE, str(one), *home)
    assert [d["path"] for d in office.cli("node", "show", NODE, "--json", *home).json()["datasets"]] == [str(two)]
    assert office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).json()["state"] == "done"
    snaps = _snapshots(office, a)
    assert sorted(tuple(s["paths"]) for s in snaps) == [(str(one),), (str(two),), (str(two),)]

    # The node removed: not listed, no job, its keys in the log, its files where they were.
    before = office.cli("node", "show", NODE, "--json", *home).json()
    held = _files(peers)
    assert sum(held.values()) > 0
    code, issued = a.api("POST", "/v1/store/delete-grant", {"node": NODE})
    assert code == 200
    grant = bytes.fromhex(issued["grant"])
    removed = office.cli("node", "remove", NODE, "--json", *home).json()
    assert removed["removed"] > 0 and abs(removed["restorable_until"] - (removed["removed"] + grace)) < 2
    assert office.cli("node", "list", "--json", *home).json() == []
    listed = office.cli("node", "list", "--removed", "--json", *home).json()
    assert [(n["node"], n["purged"]) for n in listed] == [(NODE, 0)]
    assert "RESTORABLE UNTIL" in office.cli("node", "list", "--removed", *home).out
    wait_for(lambda: office.cli("node", "list", "--json", "--home", str(b.home)).json() == [], 20,
             "beta to see the removal")
    res = office.cli("backup", NODE, *home, check=False)
    assert res.rc == 2 and "was removed" in res.err and "restore-config" in res.err
    assert office.cli("schedule", "list", "--json", *home).json() == []
    res = office.cli("node", "add", NODE, *home, check=False)
    assert res.rc == 2 and "was removed" in res.err
    res = office.cli("node", "purge", NODE, *home, check=False)
    assert res.rc == 2 and "inside its grace" in res.err
    # Even an admin holding a delete grant issued before cannot delete a removed node's file meanwhile.
    snap_file = next((a.home / "held" / "nodes" / NODE / FileType.SNAPSHOT.value).rglob("*")) \
        if held["alpha"] else next((b.home / "held" / "nodes" / NODE / FileType.SNAPSHOT.value).rglob("*"))
    holder = a if held["alpha"] else b
    code, msg = call(a, holder, proto.DELETE_PATH,
                     proto.Delete(proto.FileRef(NODE, FileType.SNAPSHOT, snap_file.name), grant).to_wire())
    assert code == "forbidden" and "its files stay until an admin purges it" in msg
    kinds = [e["kind"] for e in office_log(home)]
    assert {"node.add", "node.grant", "node.remove"} <= set(kinds)
    assert _files(peers) == held

    # restore-config inside the grace: exactly as it was, and it backs up again.
    office.cli("node", "restore-config", NODE, *home)
    after = office.cli("node", "show", NODE, "--json", *home).json()
    assert after == before
    assert [(r["id"], r["state"]) for r in office.cli("schedule", "list", "--json", *home).json()
            if r["id"] == paused] == [(paused, "paused")]
    assert office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).json()["state"] == "done"
    assert len(_snapshots(office, a)) == 4

    # Removed again and the grace over: no restore; a purge by the admin deletes the files everywhere.
    office.cli("node", "remove", NODE, *home)
    ends = office.cli("node", "list", "--removed", "--json", *home).json()[0]["restorable_until"]
    time.sleep(max(0.0, ends - time.time()) + 1)
    res = office.cli("node", "restore-config", NODE, *home, check=False)
    assert res.rc == 2 and "can no longer be restored" in res.err
    res = office.cli("node", "purge", NODE, "--home", str(b.home), check=False)
    assert res.rc != 0 and "office key" in res.err  # only admins
    held = _files(peers)
    out = office.cli("node", "purge", NODE, "--json", *home, timeout=120).json()
    assert out["deleted"] == sum(held.values()) > 0
    assert set(out["peers"]) == {"alpha", "beta"} and all(isinstance(v, int) for v in out["peers"].values())
    assert sum(_files(peers).values()) == 0
    assert any((p.home / "held" / "trash").exists() for p in peers)  # in the trash until gc_grace
    purged = office.cli("node", "list", "--removed", "--json", *home).json()[0]
    assert purged["purged"] > 0
    kinds = [e["kind"] for e in office_log(home)]
    assert kinds.count("node.purge") == 1 and "node.delete_grant" in kinds
    res = office.cli("node", "restore-config", NODE, *home, check=False)
    assert res.rc == 2 and "purged" in res.err
