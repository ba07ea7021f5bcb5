"""A job's life beyond dispatch, with real daemons: logon, progress heartbeats, stalls, retention."""

from __future__ import annotations

import json
import os
import random
import re
import signal
from pathlib import Path
from typing import Any

from peerbackup.core.jobs import retention_job_id
from tests.daemon.harness import Office, Peer, wait_for
from tests.daemon.test_dashboard_api import get
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, make_tree, repo, tree_hashes


def node_events(p: Peer, job: str | None = None) -> list[dict[str, Any]]:
    _code, evs = p.api("GET", f"/v1/log?log=node:{NODE}")
    return [e for e in evs if job is None or e["fields"].get("job") == job]


def test_retention_forgets_by_policy_and_prunes_as_a_job_of_the_node(office: Office, tmp_path: Path) -> None:
    (a, b, c), src, home = node_office(office, tmp_path, ["beta", "gamma"], 3, 300_000,
                                       timings={"prune_interval": "0"})
    office.cli("node", "policy", NODE, "--keep-last", "2", *home)
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1
             and a.status()["coordinator"] == a.peer_id, 20, "the policy everywhere, alpha coordinating")
    rng = random.Random(3)
    jobs = []
    for i in range(3):
        (src / "changing.bin").write_bytes(rng.randbytes(400_000))  # each backup leaves packs of its own
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
        assert out["state"] == "done", out
        jobs.append(out["job"])
        retention = retention_job_id(NODE, out["job"])
        # After each successful backup the coordinator dispatches the node's retention job, once.
        wait_for(lambda: any(e["kind"] in ("job.done", "job.failed") for e in node_events(a, retention)),  # noqa: B023
                 60, f"retention job {i + 1}")
    evs = node_events(a, retention)
    kinds = [e["kind"] for e in evs]
    assert kinds == ["job.dispatched", "agent.logon", "act_as.issued", "job.started", "job.done"], kinds
    assert evs[0]["fields"]["job_kind"] == "retention" and evs[0]["fields"]["prune"] is True
    assert evs[2]["fields"]["scope"] == "prune"  # this token may delete; a backup's may not
    done = evs[-1]["fields"]
    assert done["kept"] == 2 and len(done["forgotten"]) == 1 and done["pruned"] is True
    assert done["packs_deleted"] >= 1 and done["bytes_freed"] > 0
    # Every backup job's token was a backup one: only retention jobs got the prune scope.
    scopes = {e["fields"]["job"]: e["fields"]["scope"] for e in node_events(a) if e["kind"] == "act_as.issued"}
    assert {scopes[j] for j in jobs} == {"backup"}
    snaps = json.loads(office.cli("snapshots", NODE, "--json", *home).out)
    assert len(snaps) == 2
    # What is left is whole: the newest snapshot restores, and every pack checks out.
    repo(office, a, "restore", "latest", "--target", str(tmp_path / "out"))
    assert tree_hashes(tmp_path / "out" / src.relative_to("/")) == tree_hashes(src)
    check = repo(office, a, "check", "--read-data")
    assert "no errors found" in check.out
    # No retention job without a new backup: the coordinator does not prune in a loop.
    assert sum(1 for e in node_events(a) if e["kind"] == "job.dispatched"
               and e["fields"].get("job_kind") == "retention") == 3


def test_the_readme_policy_keeps_every_data_set_of_a_node(office: Office, tmp_path: Path) -> None:
    """The data loss a new user met: two data sets and the README's own policy kept only one folder, because
    retention applied the policy to all of the node's snapshots together. Grouped by data set, each folder
    keeps its own newest snapshots; a snapshot of a path that is not a data set (an ad-hoc backup) is held."""
    (a, _b, _c), src, home = node_office(office, tmp_path, ["beta", "gamma"], 3, 100_000,
                                         timings={"prune_interval": "0"})
    second = tmp_path / "second"
    make_tree(second, 2, 50_000)
    office.cli("dataset", "add", NODE, str(second), *home)
    office.cli("node", "policy", NODE, "--keep-daily", "7", "--keep-weekly", "4", *home)
    wait_for(lambda: a.status()["coordinator"] == a.peer_id, 20, "alpha coordinating")
    for i in range(2):
        (src / "changing.bin").write_bytes(os.urandom(10_000 + i))
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
        assert out["state"] == "done" and len(out["snapshots"]) == 2, out
        retention = retention_job_id(NODE, out["job"])
        wait_for(lambda: any(e["kind"] in ("job.done", "job.failed") for e in node_events(a, retention)),  # noqa: B023
                 60, f"retention job {i + 1}")
    done = node_events(a, retention)[-1]
    assert done["kind"] == "job.done", done
    groups = {g["path"]: g for g in done["fields"]["groups"]}
    assert set(groups) == {str(src), str(second)}
    # Both backups fall on one day: each data set keeps the newer one, for the daily and the weekly rule.
    assert all(g["kept"] == 1 and g["removed"] == 1 for g in groups.values()), groups
    assert all(set(next(iter(g["why"].values())).split(",")) == {"daily", "weekly"} for g in groups.values())
    snaps = json.loads(office.cli("snapshots", NODE, "--json", *home).out)
    assert sorted(p for s in snaps for p in s["paths"]) == sorted([str(src), str(second)])
    # The dashboard shows, per snapshot, what the next retention does with it and why.
    code, body, _ = get(a, f"/v1/ui/snapshots?node={NODE}")
    shown = json.loads(body)
    assert code == 200 and [s["retention"] for s in shown] == [{"keep": True, "why": "daily, weekly"}] * 2
    for path in (src, second):
        target = tmp_path / f"out-{path.name}"
        repo(office, a, "restore", "latest", "--path", str(path), "--target", str(target))
        assert tree_hashes(target / path.relative_to("/")) == tree_hashes(path)
    # A data set removed from the configuration is held whole by the next retention jobs: removing
    # configuration never deletes data.
    office.cli("dataset", "remove", NODE, str(second), *home)
    wait_for(lambda: str(second) not in {d["path"] for d in json.loads(
        office.cli("node", "show", NODE, "--json", *home).out)["datasets"]}, 20, "the data set removed")
    for _ in range(2):
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
        assert out["state"] == "done" and len(out["snapshots"]) == 1, out
        retention = retention_job_id(NODE, out["job"])
        wait_for(lambda: any(e["kind"] in ("job.done", "job.failed") for e in node_events(a, retention)),  # noqa: B023
                 60, "retention after the data set's removal")
    groups = {g["path"]: g for g in node_events(a, retention)[-1]["fields"]["groups"]}
    assert groups[str(second)]["held"] and groups[str(second)]["removed"] == 0 and groups[str(second)]["kept"] == 1
    assert groups[str(src)]["kept"] == 1 and groups[str(src)]["removed"] == 1


def faketime(offset: str) -> dict[str, str]:
    """The environment that runs a daemon with its wall clock moved by `offset` (libfaketime, installed by
    .ci/run; Debian package faketime)."""
    libs = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")) + \
        sorted(Path("/usr/lib/faketime").glob("libfaketime.so.1"))
    assert libs, "libfaketime is missing: apt-get install faketime (.ci/run does)"
    # FORCE_MONOTONIC_FIX=0: with a true monotonic clock, libfaketime 0.9.10 otherwise turns every timed wait of
    # a thread into a futex spin (40 % of a core per idle daemon, measured by the soak, tests/soak/office.py).
    return {"LD_PRELOAD": str(libs[0]), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_FORCE_MONOTONIC_FIX": "0"}


def test_an_agent_with_a_wrong_clock_is_refused_and_told_why(office: Office, tmp_path: Path) -> None:
    (a, b, c), _src, home = node_office(office, tmp_path, ["beta", "gamma"], 2, 50_000)
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1
             and a.status()["coordinator"] == a.peer_id, 20, "configuration, alpha coordinating")
    address = c.address  # gamma comes back where the others know it is, so they keep knocking
    office.kill(c, signal.SIGTERM)
    office.start(c, "--peer", a.address, "--listen", address, mdns=False,
                 env=faketime("+10m"))  # gamma's clock: 10 minutes fast
    # Each side says so in `status`: alpha names gamma's clock, gamma learns that the others refuse it.
    wait_for(lambda: "gamma" in a.status()["clock"]["peers_off"], 30, "alpha to see gamma's clock")
    assert 590 <= a.status()["clock"]["peers_off"]["gamma"] <= 610
    wait_for(lambda: c.status()["clock"]["refused_by"], 30, "gamma to hear it is refused")
    assert "away from this peer's clock" in next(iter(c.status()["clock"]["refused_by"].values()))
    out = office.cli("status", "--home", str(c.home)).out
    assert "refuse this peer's messages" in out and "NTP" in out
    # gamma refuses the others too (signed refusals of their requests), but that makes no one else doubt
    # its own clock, nor stops its jobs.
    wait_for(lambda: "gamma" in a.status()["clock"]["refused_by"], 30, "alpha to hear gamma refuse it")
    assert "probably the wrong one" in office.cli("status", "--home", str(a.home)).out
    assert c.status()["clock"]["this_clock_suspect"] is True
    assert a.status()["clock"]["this_clock_suspect"] is False and b.status()["clock"]["this_clock_suspect"] is False
    assert "gamma's clock is 6" in office.cli("status", "--home", str(a.home)).out
    # The coordinator never gives gamma a job: it cannot be heard. beta does the backups.
    wait_for(lambda: a.peers()["gamma"]["state"] == "dead", 20, "gamma dead to alpha")
    for _ in range(2):
        out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
        assert out["state"] == "done" and out["agent_name"] == "beta"
    # Asked on gamma, a backup fails with the reason, whatever gamma believes about who coordinates.
    res = office.cli("backup", NODE, "--wait", "--home", str(c.home), "--timeout", "60s", check=False, timeout=90)
    assert res.rc != 0 and "refuse this peer's messages because of its clock" in res.err, res
    assert "away from this peer's clock" in res.err and "NTP" in res.err


def test_backup_wait_on_a_terminal_shows_the_jobs_progress(office: Office, tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    (a, b, c), src, _home = node_office(office, tmp_path, ["beta", "gamma"], 40, 5_000_000,
                                       timings={"progress_interval": "0.2"})
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1
             and a.status()["coordinator"] == a.peer_id, 20, "configuration, alpha coordinating")
    def on_a_terminal(peer: Peer) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "peerbackup", "backup", NODE, "--wait", "--home",
                                 str(peer.home)], stdin=follower, stdout=follower, stderr=follower,
                                env={**office.env, "TERM": "xterm"})
        os.close(follower)
        out = b""
        try:
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(leader)
        text = out.decode(errors="replace")
        assert proc.wait(timeout=120) == 0, text
        return text

    # Asked on alpha (the coordinator, which lists the job before its first heartbeat) and on gamma (which
    # asks the coordinator): the counters as a share of the counted whole, then the job's outcome.
    for seed, peer in enumerate((a, c)):
        make_tree(src, 40, 5_000_000, seed=seed + 10)  # new data: a full backup to watch each time
        text = on_a_terminal(peer)
        assert re.search(r"\d+/40 files .*\(\d+%\)", text), text
        assert "done: snapshot" in text
    # Ended jobs leave the coordinator's running list (a report may come before the log shows the end).
    wait_for(lambda: a.api("GET", "/v1/jobs")[1]["running"] == {}, 20, "no job left running")
