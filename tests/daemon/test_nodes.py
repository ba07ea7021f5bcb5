"""Backup nodes, keys and grants with real daemons: admin commands replicated through the control log."""

from __future__ import annotations

from typing import Any

from tests.daemon.harness import Office, Peer, office_log, wait_for


def test_node_add_grant_revoke_everywhere(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), mdns=False)
    c = office.start(office.join("gamma", office.invite(a, "--roles", "storage")), mdns=False)
    wait_for(lambda: len({p.status()["logs_digest"] for p in (a, b, c)}) == 1, 20, "logs in step")

    out = office.cli("node", "add", "accounts", "--replicas", "3", "--home", str(a.home), "--json").json()
    assert out["node"] == "accounts" and out["replicas"] == 3 and out["holder_names"] == ["alpha"]
    out = office.cli("grant", "accounts", "beta", "--home", str(a.home), "--json").json()
    assert out["agent_names"] == ["beta"]

    def shown(p: Peer) -> dict[str, Any] | None:
        nodes = office.cli("node", "list", "--home", str(p.home), "--json").json()
        return dict(nodes[0]) if nodes else None

    wait_for(lambda: (shown(b) or {}).get("agents") == [b.peer_id], 20, "beta to see its grant")
    assert (shown(b) or {})["i_hold_keys"] is True
    wait_for(lambda: shown(c) is not None, 20, "gamma to see the node")
    assert (shown(c) or {})["i_hold_keys"] is False  # a storage peer holds no keys
    grants = office.cli("grants", "accounts", "--home", str(c.home), "--json").json()
    assert grants == [{"node": "accounts", "agents": [b.peer_id], "agent_names": ["beta"]}]

    # Refusals: only admins change nodes; an agent must have the agent role; bad names.
    res = office.cli("node", "add", "x", "--home", str(b.home), check=False)
    assert res.rc == 1 and "office key" in res.err
    res = office.cli("grant", "accounts", "gamma", "--home", str(a.home), check=False)
    assert res.rc == 2 and "agent role" in res.err
    res = office.cli("node", "add", "../etc", "--home", str(a.home), check=False)
    assert res.rc == 2 and "node name" in res.err
    res = office.cli("node", "add", "accounts", "--home", str(a.home), check=False)
    assert res.rc == 2 and "exists already" in res.err
    res = office.cli("grant", "nosuch", "beta", "--home", str(a.home), check=False)
    assert res.rc == 2 and "no backup node" in res.err

    out = office.cli("revoke", "accounts", "beta", "--home", str(a.home), "--json").json()
    assert out["agents"] == [] and out["epoch"] == 1 and out["holders"] == [a.peer_id]
    wait_for(lambda: (shown(b) or {}).get("epoch") == 1, 20, "beta to see the revocation")
    assert (shown(b) or {})["i_hold_keys"] is False
    log = office_log(c.home)
    kinds = [e["kind"] for e in log if e["kind"].startswith("node.")]
    assert kinds == ["node.add", "node.grant", "node.revoke"]
    assert "keys_for" in log[[e["kind"] for e in log].index("node.grant")]["fields"]
    text = office.cli("node", "show", "accounts", "--home", str(a.home)).out
    assert "key epoch 1" in text and "agents    -" in text


def test_revoke_by_name_an_agent_removed_from_the_office(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), mdns=False)
    wait_for(lambda: len({p.status()["logs_digest"] for p in (a, b)}) == 1, 20, "logs in step")
    home = ["--home", str(a.home)]
    office.cli("node", "add", "accounts", *home)
    office.cli("grant", "accounts", "beta", *home)
    office.cli("remove-peer", "beta", "--reason", "stolen", *home)
    # beta is no member now, but still an agent of accounts until revoked: by name, as it was granted.
    res = office.cli("grant", "accounts", "beta", *home, check=False)
    assert res.rc == 2 and "no member is named 'beta'" in res.err
    out = office.cli("revoke", "accounts", "beta", *home, "--json").json()
    assert out["agents"] == [] and out["epoch"] == 1
    res = office.cli("revoke", "accounts", "nobody", *home, check=False)
    assert res.rc == 2 and "no member is named 'nobody'" in res.err
    # What `remove-peer` did, as the commands show it (the removal itself: tests/inproc/test_membership.py).
    text = office.cli("office", "log", *home).out
    assert "member.revoke" in text and "beta" in text and "stolen" in text
    wait_for(lambda: b.status()["removed"], 20, "beta to learn it was removed")
    assert "REMOVED" in office.cli("status", "--home", str(b.home)).out
