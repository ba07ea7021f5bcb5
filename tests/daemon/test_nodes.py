"""The commands that configure backup nodes, with real daemons: what each prints and its exit code.

What the configuration does in the office (every member has it, schedules paused, resumed and removed, nodes
removed, restored and purged) runs in-process: tests/inproc/test_config.py and tests/inproc/test_node_removal.py.
The commands' own output and exit codes are here, in one office for every family of them."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import pytest

from peerbackup.cli.main import main
from tests.daemon.harness import Office, Peer, wait_for
from tests.helpers import Result

GRACE = 3.0  # node_grace: short, so that the purge is reached in real time
NODE = "accounts"


class Admin:
    """Commands run on one peer's home (an admin's unless told otherwise). Each runs the command line's own
    `main` in this process, against the real daemons: its output and exit code as a shell would see them,
    without an interpreter's start each (that the entry point itself runs: every other test's commands)."""

    def __init__(self, office: Office, home: Peer) -> None:
        self.office, self.home = office, ["--home", str(home.home)]

    def run(self, *args: str, check: bool = True) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                rc = main([*args, *self.home])
            except SystemExit as exc:  # argparse's usage errors
                rc = exc.code if isinstance(exc.code, int) else 1
        res = Result(rc, out.getvalue(), err.getvalue())
        assert not check or rc == 0, (args, res)
        return res

    def ok(self, *args: str) -> Result:
        return self.run(*args)

    def json(self, *args: str) -> Any:
        return self.run(*args, "--json").json()

    def refused(self, *args: str, rc: int | None = 2, said: str) -> None:
        res = self.run(*args, check=False)
        assert ((rc is None and res.rc != 0) or res.rc == rc) and said in res.err, (args, res)


def test_node_commands_say_what_they_did_and_refuse_mistakes(office: Office, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in office.env.items():  # the commands' environment, as Office.cli gives it
        monkeypatch.setenv(k, v)
    timings = {"node_grace": f"{GRACE:g}s", "min_schedule_interval": "3s"}
    a = office.start(office.init("alpha"), mdns=False, timings=timings)
    b = office.start(office.join("beta", office.invite(a)), "--peer", a.address, mdns=False, timings=timings)
    office.join("gamma", office.invite(a, "--roles", "storage"))  # a member without the agent role, never started
    wait_for(lambda: len({p.status()["logs_digest"] for p in (a, b)}) == 1, 20, "logs in step")
    admin, member = Admin(office, a), Admin(office, b)
    _peers_and_status(admin, member, b)
    _nodes_and_grants(admin, member, b)
    sid = _datasets_schedules_policies(admin, b)
    _schedule_states(admin, sid)
    _undo(admin)
    _revoke_by_name_an_agent_removed_from_the_office(admin, office, b)
    _log_of_an_unknown_node_is_a_usage_error(admin)


def _peers_and_status(admin: Admin, member: Admin, b: Peer) -> None:
    """Was tests/daemon/test_office.py::test_three_daemons_join_and_see_each_other (joining and liveness:
    every scenario of tests/inproc; the election: tests/inproc/test_election.py)."""
    coordinator = wait_for(lambda: member.json("status")["coordinator"], 20, "a coordinator")
    out = admin.json("peers")
    assert sorted(x["name"] for x in out) == ["alpha", "beta", "gamma"]
    assert [x["name"] for x in out if x["self"]] == ["alpha"]
    assert [x["peer_id"] for x in out if x["coordinator"]] == [coordinator]  # the one the office agrees on
    assert {x["name"]: x["state"] for x in out if x["name"] != "gamma"} == {"alpha": "alive", "beta": "alive"}
    for x in out:
        assert set(x) >= {"peer_id", "name", "address", "roles", "state", "coordinator", "self"}
        assert isinstance(x["coordinator"], bool)
    st = member.json("status")
    assert st["name"] == "beta" and st["office"] == "Acme" and st["roles"] == ["agent", "storage", "coordinator"]
    assert st["peer_id"] == b.peer_id and "term" in st


def _log_of_an_unknown_node_is_a_usage_error(admin: Admin) -> None:
    """Was tests/daemon/test_adhoc.py::test_log_of_an_unknown_node_is_a_usage_error."""
    for command in (["log", "nosuch"], ["log", "nosuch", "--follow"], ["snapshots", "nosuch"]):
        res = admin.run(*command, check=False)
        assert (res.rc, res.out) == (2, ""), (command, res)
        assert "no backup node named 'nosuch'" in res.err, (command, res)
    assert admin.ok("log", "payroll").rc == 0  # a node with nothing logged yet is no mistake


def _nodes_and_grants(admin: Admin, member: Admin, b: Peer) -> None:
    out = admin.json("node", "add", NODE, "--replicas", "3")
    assert out["node"] == NODE and out["replicas"] == 3 and out["holder_names"] == ["alpha"]
    res = admin.ok("grant", NODE, "beta")  # it waits for every live peer, and says who was down
    assert res.out.strip() == f"{NODE}: granted; agents now beta", res
    assert "gamma not alive now: gets the change when back" in res.err, res
    assert admin.json("grants", NODE) == [{"node": NODE, "agents": [b.peer_id], "agent_names": ["beta"]}]
    member.refused("node", "add", "x", rc=1, said="office key")
    admin.refused("grant", NODE, "gamma", said="agent role")  # the others: tests/inproc/test_config.py
    res = admin.ok("revoke", NODE, "beta", "--no-wait")  # made, and nothing said about who has it
    assert res.err == "" and "revoked" in res.out, res
    text = admin.ok("node", "show", NODE).out
    assert "key epoch 1" in text and "agents    -" in text


def _datasets_schedules_policies(admin: Admin, b: Peer) -> str:
    admin.ok("dataset", "add", NODE, "/srv/accounts", "--on", "beta", "--exclude", "*.tmp", "--allow-missing")
    out = admin.json("schedule", "add", NODE, "--cron", "0 2 * * *", "--tz", "Europe/Paris", "--window", "2h")
    assert out["schedule"]["tz"] == "Europe/Paris" and out["schedule"]["window"] == 7200
    every = ["schedule", "add", NODE, "--every", "3s", "--window", "1m", "--tz", "UTC"]
    sid = str(admin.json(*every)["schedule"]["id"])
    admin.ok("node", "policy", NODE, "--keep-last", "3", "--keep-daily", "7")
    rows = admin.json("schedule", "list")
    assert {r["cron"] or r["every"] for r in rows} == {"0 2 * * *", 3.0} and all(r["tz"] and r["next"] for r in rows)
    node = admin.json("node", "show", NODE)
    assert node["datasets"] == [{"path": "/srv/accounts", "on": [b.peer_id], "exclude": ["*.tmp"]}]
    assert node["policy"] == {"last": 3, "daily": 7}
    # Mistakes the command itself finds (the daemon's refusals, each saying why: tests/inproc/test_config.py).
    for args, message in (
        (["schedule", "add", NODE, "--every", "soon"], "not a duration"),
        (["schedule", "add", NODE], "--cron EXPRESSION or --every"),
        (["dataset", "add", NODE, "relative/dir"], "absolute path"),
        (["node", "policy", NODE], "at least one --keep"),
    ):
        admin.refused(*args, said=message)
    return sid


def _schedule_states(admin: Admin, sid: str) -> None:
    admin.ok("schedule", "pause", NODE, sid)
    rows = admin.json("schedule", "list", NODE)
    assert [(r["id"], r["state"]) for r in rows if r["id"] == sid] == [(sid, "paused")]
    assert [r["paused"] > 0 for r in rows if r["id"] == sid] == [True]
    admin.ok("schedule", "resume", NODE, sid)
    admin.ok("schedule", "remove", NODE, sid)
    assert [r["id"] for r in admin.json("schedule", "list")] != [sid] and len(admin.json("schedule", "list")) == 1
    log = admin.ok("office", "log").out
    for kind in ("node.schedule", "node.dataset", "node.policy", "node.schedule_pause", "node.schedule_resume",
                 "node.schedule_remove"):
        assert kind in log, kind


def _undo(admin: Admin) -> None:
    admin.ok("dataset", "remove", NODE, "/srv/accounts")
    before = admin.json("node", "show", NODE)
    assert before["datasets"] == []
    removed = admin.json("node", "remove", NODE)
    assert removed["removed"] > 0 and abs(removed["restorable_until"] - (removed["removed"] + GRACE)) < 2
    assert admin.json("node", "list") == []
    assert [(n["node"], n["purged"]) for n in admin.json("node", "list", "--removed")] == [(NODE, 0)]
    assert "RESTORABLE UNTIL" in admin.ok("node", "list", "--removed").out
    admin.refused("backup", NODE, said="restore-config")
    admin.refused("node", "purge", NODE, said="inside its grace")
    admin.ok("node", "restore-config", NODE)
    assert admin.json("node", "show", NODE) == before

    removed = admin.json("node", "remove", NODE)
    time.sleep(max(0.0, removed["restorable_until"] - time.time()) + 1)
    admin.refused("node", "restore-config", NODE, said="can no longer be restored")
    res = admin.run("node", "purge", NODE, "--json", check=False)
    out = res.json()
    assert res.rc == 1, res  # not everywhere: a storage peer was down
    assert out["deleted"] == 0 and out["peers"]["alpha"] == 0 and out["peers"]["beta"] == 0, out
    assert out["peers"]["gamma"].startswith("down"), out  # never started: named, not waited for
    assert admin.json("node", "list", "--removed")[0]["purged"] > 0


def _revoke_by_name_an_agent_removed_from_the_office(admin: Admin, office: Office, b: Peer) -> None:
    """Was test_revoke_by_name_an_agent_removed_from_the_office, with `remove-peer`'s own output."""
    admin.ok("node", "add", "payroll")
    admin.ok("grant", "payroll", "beta")
    admin.ok("remove-peer", "beta", "--reason", "stolen")
    # beta is no member now, but still an agent of payroll until revoked: by name, as it was granted.
    admin.refused("grant", "payroll", "beta", said="no member is named 'beta'")
    out = admin.json("revoke", "payroll", "beta")
    assert out["agents"] == [] and out["epoch"] == 1
    admin.refused("revoke", "payroll", "nobody", said="no member is named 'nobody'")
    # What `remove-peer` did, as the commands show it (the removal itself: tests/inproc/test_membership.py).
    text = admin.ok("office", "log").out
    assert "member.revoke" in text and "beta" in text and "stolen" in text
    wait_for(lambda: b.status()["removed"], 20, "beta to learn it was removed")
    assert "REMOVED" in Admin(office, b).ok("status").out
