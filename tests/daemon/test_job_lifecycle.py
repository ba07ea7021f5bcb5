"""A job seen from the command line, with real daemons: `backup --wait` on a terminal (the office scenarios of a
job's life are in-process: tests/inproc/test_failover.py, test_retention.py, test_dispatch.py, test_wrong_clock.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.daemon.harness import Office, Peer, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, make_tree

FILES, SIZE = 40, 250_000


def test_backup_wait_on_a_terminal_shows_the_jobs_progress(office: Office, tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    # 10 MB a backup, each copy sent at most 10 MB/s: a second or more of progress to draw on any machine, for
    # half the CPU of a backup long enough without the limit (200 MB each: 11.9 CPU-s for the test, now 6).
    limit = ["--limit-upload", "10M"]
    (a, b, c), src, _home = node_office(office, tmp_path, ["beta", "gamma"], FILES, SIZE,
                                       timings={"progress_interval": "0.2"}, extra={"beta": limit, "gamma": limit})
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
        make_tree(src, FILES, SIZE, seed=seed + 10)  # new data: a full backup to watch each time
        text = on_a_terminal(peer)
        assert re.search(rf"\d+/{FILES} files .*\(\d+%\)", text), text
        assert "done: snapshot" in text
    # Ended jobs leave the coordinator's running list (a report may come before the log shows the end).
    wait_for(lambda: a.api("GET", "/v1/jobs")[1]["running"] == {}, 20, "no job left running")
