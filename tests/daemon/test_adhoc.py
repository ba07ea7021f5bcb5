"""The README's node steps as a new user types them: `grant`, then at once the agent's
`repo backup --repo office:NODE` (a backup by hand, run as a job of the node); and `backup --wait`
through a coordinator change. What the daemons do meanwhile (the grant spreading, the job of the node, the
refusals) runs in-process: tests/inproc/test_adhoc.py."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.daemon.harness import Office, node_log, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, start_office


def test_backup_by_hand_on_an_agent_prints_what_it_waits_for_and_its_end_reaches_the_log(
        office: Office, tmp_path: Path) -> None:
    """The command's part of a backup by hand: what it prints while it waits for a coordinator, its snapshot,
    and its word on how it ended in the node's log (the job itself: tests/inproc/test_adhoc.py)."""
    # A lease long enough that the backup is asked before any coordinator is elected, as in the README.
    a, b = start_office(office, ["beta"], timings={"lease": "60", "renew": "15"})
    out = office.cli("grant", NODE, "beta", "--home", str(a.home))
    assert out.out.strip() == f"{NODE}: granted; agents now beta" and out.err == ""  # every peer alive has it
    assert b.status()["coordinator"] is None
    src = tmp_path / "docs"
    make_tree(src, 3, 20_000)
    out = office.cli("repo", "backup", "--repo", f"office:{NODE}", "--home", str(b.home), str(src), timeout=150)
    assert "waiting for the office's coordinator" in out.err
    saved = re.search(r"snapshot (\S+) saved", out.out)
    assert saved, out
    done = [e for e in node_log(b.home, NODE) if e["kind"] == "job.done"]
    assert [(len(e["snapshots"]), e["agent_name"], e["job"][:6]) for e in done] == [(1, "beta", "adhoc-")], done
    assert done[0]["snapshots"][0].startswith(saved.group(1))


def test_backup_wait_follows_the_job_through_a_coordinator_change(office: Office, tmp_path: Path) -> None:
    """On a terminal `backup --wait` shows the progress the coordinator hears; the coordinator dies mid-job:
    the wait goes on (the agent finishes and logs the end) and names the next coordinator."""
    slow = ["--limit-upload", "400K"]
    a, b, c = start_office(office, ["beta", "gamma"], extra={"beta": slow, "gamma": slow})
    src = tmp_path / "shared"
    make_tree(src, 4, 1_000_000)  # about 4.5 MB at 400 KiB/s: over ten seconds
    home = ["--home", str(a.home)]
    office.cli("grant", NODE, "beta", "gamma", *home)
    office.cli("dataset", "add", NODE, str(src), *home)
    wait_for(lambda: all(p.status()["coordinator"] == a.peer_id for p in (a, b, c)), 20, "alpha coordinator")

    master, slave = pty.openpty()  # stderr a terminal: the progress line, read from the coordinator
    proc = subprocess.Popen([sys.executable, "-m", "peerbackup", "backup", NODE, "--wait", "--home", str(c.home)],
                            stdout=subprocess.PIPE, stderr=slave, env={**office.env, "TERM": "xterm"},
                            start_new_session=True)
    os.close(slave)
    terminal: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            terminal.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_for(lambda: [e for e in node_log(c.home, NODE) if e["kind"] == "job.started"], 30, "the job started")
        time.sleep(1.0)  # a few progress reads from alpha
        office.kill(a)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)
        os.close(master)
    err = b"".join(terminal).decode(errors="replace")
    notes = "\n".join(line for line in err.replace("\r", "\n").splitlines() if "peerbackup:" in line)
    assert proc.returncode == 0, f"{stdout.decode()}\n{err}"
    assert "by coordinator alpha (term " in stdout.decode() and "done: snapshot" in stdout.decode()
    assert "the coordinator does not answer" in notes and "following the job in the node's log" in notes, notes
    assert "coordinator now " in notes, notes
    assert "(alpha)" in notes, notes  # the peer that did not answer, by name
