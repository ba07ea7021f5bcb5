"""The README's node steps as a new user types them: `grant`, then at once the agent's
`repo backup --repo office:NODE` (a backup by hand, run as a job of the node); and `backup --wait`
through a coordinator change."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from peerbackup.core.actas import ActAs
from peerbackup.core.crypto import content_hash
from peerbackup.office.membership.home import Home
from tests.daemon.harness import FAST, Office, Peer, node_log, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, start_office
from tests.daemon.test_storage import put

# Heartbeats rare enough that a change spreads by them only seconds later: what `grant` waits for is
# then its own doing. Liveness scaled to match; the election as fast as usual.
SLOW_BEATS = {"heartbeat": "10", "suspect": "25", "dead": "60"}


def holds_keys(peer: Peer) -> bool:
    code, nodes = peer.api("GET", "/v1/nodes")
    assert code == 200, nodes
    return any(n["node"] == NODE and n["i_hold_keys"] for n in nodes)


def test_grant_returns_once_every_live_peer_holds_it(office: Office, tmp_path: Path) -> None:
    a, b, c = start_office(office, ["beta", "gamma"], timings=SLOW_BEATS)
    assert not holds_keys(b)
    out = office.cli("grant", NODE, "beta", "--home", str(a.home))
    # Straight after: the agent opens the keys, and every live peer (the coordinator that lets it act as the
    # node, the storage peers that take its writes) has the same configuration. Heartbeats alone take 10 s.
    assert holds_keys(b), "the agent does not hold the keys when grant returns"
    assert len({p.status()["config_digest"] for p in (a, b, c)}) == 1
    assert out.out.strip() == f"{NODE}: granted; agents now beta" and out.err == ""

    src = tmp_path / "docs"
    make_tree(src, 3, 20_000)
    wait_for(lambda: all(p.status()["coordinator"] for p in (a, b, c)), 20, "a coordinator")
    backup = office.cli("repo", "backup", "--repo", f"office:{NODE}", "--home", str(b.home), str(src), timeout=120)
    assert "saved" in backup.out


def test_grant_names_the_peers_it_could_not_wait_for(office: Office) -> None:
    a, b, c = start_office(office, ["beta", "gamma"])
    office.kill(c)
    wait_for(lambda: a.peers()["gamma"]["state"] == "dead", 20, "gamma dead")
    started = time.monotonic()
    out = office.cli("grant", NODE, "beta", "--home", str(a.home))
    assert time.monotonic() - started < 10  # a dead peer is not waited for
    assert "gamma not alive now: gets the change when back" in out.err
    assert holds_keys(b)
    # --no-wait: the change is made, nothing is said about who has it.
    out = office.cli("revoke", NODE, "beta", "--no-wait", "--home", str(a.home))
    assert out.err == "" and "revoked" in out.out


def test_backup_by_hand_on_an_agent_waits_for_a_coordinator_and_is_a_job_of_the_node(
        office: Office, tmp_path: Path) -> None:
    # A lease long enough that the backup is asked before any coordinator is elected, as in the README (three
    # daemons and a grant took over 40 s on a loaded 2-core machine: the lease had run out before the check).
    a, b, _c = start_office(office, ["beta", "gamma"], timings={"lease": "60", "renew": "15"})
    office.cli("grant", NODE, "beta", "--home", str(a.home))
    assert b.status()["coordinator"] is None
    src = tmp_path / "docs"
    make_tree(src, 3, 20_000)
    out = office.cli("repo", "backup", "--json", "--repo", f"office:{NODE}", "--home", str(b.home), str(src),
                     timeout=150)
    assert "waiting for the office's coordinator" in out.err
    snapshot = json.loads(out.out)["snapshot"]["id"]

    coordinator = a.status()["coordinator"]
    events = [e for e in node_log(b.home, NODE) if str(e["job"]).startswith("adhoc-")]
    assert [e["kind"] for e in events] == ["agent.logon", "act_as.issued", "job.started", "job.done"], events
    logon, issued, started, done = events
    assert {e["job"] for e in events} == {started["job"]}
    assert logon["writer"] == issued["writer"] == coordinator and issued["agent"] == b.peer_id
    assert issued["scope"] == "backup"  # it only adds: deleting takes a retention job's token
    assert started["writer"] == done["writer"] == b.peer_id and started["coordinator"] == coordinator
    assert started["adhoc"] is True and started["paths"] == [str(src)] and started["agent_name"] == "beta"
    assert done["snapshots"] == [snapshot] and done["errors"] == 0 and done["added"] > 0

    # An admin writes with its own grant: no act-as, no job.
    office.cli("repo", "backup", "--repo", f"office:{NODE}", "--home", str(a.home), str(src), timeout=120)
    assert len([e for e in node_log(a.home, NODE) if e["kind"] == "job.started"]) == 1


def test_an_open_backup_by_hand_is_never_given_to_another_agent(office: Office, tmp_path: Path) -> None:
    """Only its command knows what it backs up: a coordinator that sees it silent leaves it alone, and the
    command's word ends it."""
    a, b, c = start_office(office, ["beta", "gamma"], timings={**FAST, "progress_interval": "0.5", "stall_after": "1"})
    office.cli("grant", NODE, "beta", "gamma", "--home", str(a.home))
    wait_for(lambda: a.status()["coordinator"], 20, "a coordinator")
    # As `repo backup` does it, and then nothing: the command was killed before it said how it ended.
    code, access = b.api("POST", "/v1/store/backup", {"node": NODE, "paths": [str(tmp_path)]})
    assert code == 200 and access["job"].startswith("adhoc-") and access["act_as"], access
    job = access["job"]
    wait_for(lambda: [e for e in node_log(a.home, NODE) if e["job"] == job and e["kind"] == "job.started"], 20,
             "the start on the coordinator")
    time.sleep(3)  # stall_after three times over
    assert [e["kind"] for e in node_log(a.home, NODE) if e["job"] == job] == \
        ["agent.logon", "act_as.issued", "job.started"]

    code, answer = b.api("POST", "/v1/store/backup-end", {"node": NODE, "job": job, "state": "failed",
                                                          "reason": "interrupted"})
    assert code == 200, answer
    failed = [e for e in node_log(b.home, NODE) if e["job"] == job][-1]
    assert (failed["kind"], failed["reason"], failed["writer"]) == ("job.failed", "interrupted", b.peer_id)
    code, answer = b.api("POST", "/v1/store/backup-end", {"node": NODE, "job": job, "state": "done",
                                                          "snapshots": []})
    assert code == 400 and "no backup of accounts by hand is open" in answer["error"]
    # Another peer cannot end it either (it is beta's job).
    code, answer = c.api("POST", "/v1/store/backup-end", {"node": NODE, "job": job, "state": "failed"})
    assert code == 400


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


def test_refusals_name_peers_by_name(office: Office) -> None:
    """What a storage peer says when it refuses an agent names the peers by name, as members know them."""
    a, b, g = start_office(office, ["beta", "gamma"])
    office.cli("grant", NODE, "beta", "--home", str(a.home))
    wait_for(lambda: {p.status()["coordinator"] for p in (a, b, g)} == {a.peer_id}, 20, "alpha coordinator")
    term = int(a.status()["term"])
    a_key, b_key = Home(a.home).load().key, Home(b.home).load().key

    def token(signer: Any = a_key, agent: str = b.peer_id) -> bytes:
        return ActAs.issue(signer, term, agent, NODE, "job-1", int(time.time()), 600).raw

    data = b"x" * 1000
    for act_as, said in ((b"", "beta is an agent of accounts: writing as the node takes the coordinator's"),
                         (token(agent=a.peer_id), "the act-as token names alpha, not the peer that sent it"),
                         (token(signer=b_key), "beta was not the coordinator of term")):
        code, msg = put(b, g, NODE, content_hash(data).hex(), data, act_as=act_as)
        assert code == "forbidden" and said in msg, msg
        assert a.peer_id not in msg and b.peer_id not in msg


def test_log_of_an_unknown_node_is_a_usage_error(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    home = ["--home", str(a.home)]
    for command in (["log", "nosuch"], ["log", "nosuch", "--follow"], ["snapshots", "nosuch"]):
        res = office.cli(*command, *home, check=False, timeout=20)
        assert (res.rc, res.out) == (2, ""), (command, res)
        assert "no backup node named 'nosuch'" in res.err, (command, res)
    office.cli("node", "add", NODE, *home)
    assert office.cli("log", NODE, *home).rc == 0  # a node with nothing logged yet is no mistake
