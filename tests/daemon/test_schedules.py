"""dataset, schedule and node policy: admin commands, replicated through the control log."""

from __future__ import annotations

import json

from tests.daemon.harness import Office, wait_for


def test_configuration_commands_reach_every_peer(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), "--peer", a.address, mdns=False)
    home_a, home_b = ["--home", str(a.home)], ["--home", str(b.home)]
    office.cli("node", "add", "accounts", *home_a)
    office.cli("dataset", "add", "accounts", "/srv/accounts", "--on", "beta", "--exclude", "*.tmp", "--allow-missing",
               *home_a)
    out = json.loads(office.cli("schedule", "add", "accounts", "--cron", "0 2 * * *", "--tz", "Europe/Paris",
                                "--window", "2h", "--json", *home_a).out)
    assert out["schedule"]["tz"] == "Europe/Paris" and out["schedule"]["window"] == 7200
    office.cli("schedule", "add", "accounts", "--every", "30s", *home_a)  # the admin's own zone, written out
    office.cli("node", "policy", "accounts", "--keep-last", "3", "--keep-daily", "7", *home_a)
    wait_for(lambda: len(json.loads(office.cli("schedule", "list", "--json", *home_b).out)) == 2, 20,
             "both schedules on beta")
    rows = json.loads(office.cli("schedule", "list", "--json", *home_b).out)
    assert {r["cron"] or r["every"] for r in rows} == {"0 2 * * *", 30.0}
    assert all(r["tz"] and r["next"] for r in rows)
    node = json.loads(office.cli("node", "show", "accounts", "--json", *home_b).out)
    assert node["datasets"] == [{"path": "/srv/accounts", "on": [b.peer_id], "exclude": ["*.tmp"]}]
    assert node["policy"] == {"last": 3, "daily": 7}
    log = office.cli("office", "log", *home_b).out
    assert "node.schedule" in log and "node.dataset" in log and "node.policy" in log

    # Mistakes get a reason, and nothing is written.
    for args, message in (
        (["schedule", "add", "accounts", "--cron", "61 * * * *"], "invalid cron expression"),
        (["schedule", "add", "accounts", "--every", "30s", "--tz", "Mars/Base"], "unknown time zone"),
        (["schedule", "add", "accounts", "--every", "soon"], "not a duration"),
        (["schedule", "add", "accounts"], "--cron EXPRESSION or --every"),
        (["dataset", "add", "accounts", "relative/dir"], "absolute path"),
        (["node", "policy", "accounts"], "at least one --keep"),
        (["schedule", "add", "nosuch", "--every", "1m"], "no backup node named 'nosuch'"),
    ):
        res = office.cli(*args, *home_a, check=False)
        assert res.rc == 2 and message in res.err, (args, res)
    # Only admins configure nodes.
    res = office.cli("schedule", "add", "accounts", "--every", "1m", *home_b, check=False)
    assert res.rc != 0 and "admin" in res.err
    assert len(json.loads(office.cli("schedule", "list", "--json", *home_a).out)) == 2
