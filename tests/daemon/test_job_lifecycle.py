"""A job seen from the command line and from a peer whose clock is wrong, with real daemons (the office scenarios
of a job's life are in-process: tests/inproc/test_failover.py, test_retention.py, test_dispatch.py)."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from tests.daemon.harness import Office, Peer, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, make_tree


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
