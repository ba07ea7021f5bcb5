"""Several real daemons on loopback: join, discovery (mDNS and static), the admin API, the command line.

Liveness and removal run in-process now: tests/inproc/test_liveness.py, tests/inproc/test_membership.py; what
`peers` and `status` print: tests/daemon/test_nodes.py::test_node_commands_say_what_they_did_and_refuse_mistakes."""

from __future__ import annotations

import json
import shutil
import signal
import stat
import time

from tests.daemon.harness import Office, Peer, wait_for


def all_alive(p: Peer, names: set[str]) -> bool:
    peers = p.peers()
    return names <= set(peers) and all(peers[n]["state"] == "alive" for n in names)


def test_an_invite_gives_its_roles_the_coordinator_role_only_on_purpose_works_once_and_expires(
        office: Office) -> None:
    """Issue 14, finding 7: every invite used to give the coordinator role, and a machine that is agent and
    coordinator can claim a term and sign itself a token that deletes. (One office for what were three tests:
    the invite's roles, a token used twice, a token expired.)"""
    a = office.start(office.init("alpha"), mdns=False)
    plain = office.cli("invite", "--home", str(a.home)).out.strip()  # the product's default, not the harness's
    short = office.invite(a, "--expires", "1s")
    started = time.monotonic()
    office.join("beta", plain)
    res = office.cli("join", "--home", str(office.tmp / "zeta"), "--name", "zeta", plain, check=False)
    assert res.rc == 1 and "used already" in res.err
    assert not (office.tmp / "zeta" / "certificate").exists()
    office.join("gamma", office.invite(a, "--roles", "agent,storage,coordinator"))
    roles = {x["name"]: x["roles"] for x in office.cli("peers", "--home", str(a.home), "--json").json()}
    assert roles["beta"] == ["agent", "storage"]
    assert roles["gamma"] == ["agent", "storage", "coordinator"]
    assert "coordinator" in roles["alpha"]
    time.sleep(max(0.0, 1.5 - (time.monotonic() - started)))
    res = office.cli("join", "--home", str(office.tmp / "eta"), "--name", "eta", short, check=False)
    assert res.rc == 1 and "expired" in res.err


def test_discovery_by_mdns_alone(office: Office) -> None:
    a = office.start(office.init("alpha"))
    b = office.join("beta", office.invite(a))
    c = office.join("gamma", office.invite(a))
    office.kill(a, signal.SIGTERM)
    # Forget every hint the join left behind: beta and gamma know neither each other nor any address.
    for p in (b, c):
        (p.home / "state.db").unlink()
    office.start(b)
    office.start(c)
    t0 = time.monotonic()
    wait_for(lambda: all_alive(b, {"beta", "gamma"}) and all_alive(c, {"beta", "gamma"}), 20,
             "beta and gamma to find each other by mDNS")
    print(f"mDNS discovery to alive on both sides: {time.monotonic() - t0:.2f} s")
    # One side hears the other's announcement; its hello then teaches the other side its address.
    assert "mdns.hint" in b.log.read_text() + c.log.read_text()


def test_discovery_by_static_peer_without_mdns(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.join("beta", office.invite(a))
    (b.home / "state.db").unlink()
    office.kill(a, signal.SIGTERM)
    a = office.start(a, mdns=False)
    office.start(b, "--peer", a.address, mdns=False)
    wait_for(lambda: all_alive(a, {"alpha", "beta"}) and all_alive(b, {"alpha", "beta"}), 20,
             "alpha and beta to meet through --peer")


def test_admin_invite_carries_office_key_and_recovery_kit_rebuilds_admin(office: Office) -> None:
    a = office.start(office.init("alpha"))
    b = office.join("beta", office.invite(a, "--roles", "admin,coordinator", "--rank", "5"))
    assert (b.home / "office.key").exists()
    assert (b.home / "office.key").read_bytes() == (a.home / "office.key").read_bytes()
    st = office.cli("join", "--home", str(office.tmp / "x"), "bad-token", check=False)
    assert st.rc == 2 and "not an invite token" in st.err
    # The recovery kit rebuilds an admin on a new machine, with a new peer key.
    kit = a.home / "recovery-kit.pbkit"
    r = office.cli("admin", "recover", "--home", str(office.tmp / "delta"), "--name", "delta", str(kit), "--json")
    assert r.json()["office"] == "Acme"
    wrong = office.cli("admin", "recover", "--home", str(office.tmp / "eps"), str(kit), check=False,
                       env={"PEERBACKUP_KIT_PASSWORD": "wrong"})
    assert wrong.rc == 1 and "Wrong passphrase" in wrong.err
    d = office.start(office.peer("delta"))
    wait_for(lambda: all_alive(d, {"alpha", "delta"}), 20, "recovered admin to join its office")
    token = office.invite(d)
    office.join("zeta", token)


def test_attack_tool_sees_replay_and_forgery_refused(office: Office) -> None:
    import subprocess
    import sys

    a = office.start(office.init("alpha"), mdns=False)
    b = office.join("beta", office.invite(a))
    out = subprocess.run([sys.executable, "-m", "tests.tools.attack", "--home", str(b.home), a.address],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "valid   : 200 accepted" in out
    assert "replayed: 409 replay" in out
    assert "forged  : 401 bad-signature" in out


def test_one_daemon_guards_its_admin_api_and_its_home_logs_json_and_stops_cleanly_on_sigterm(office: Office) -> None:
    """One daemon for what were five tests, each about it as a process: its admin API's token and Host
    checks, `up` and `init` refused on its home (and on an empty one), a copy of its home refused, its JSON
    log, and a clean SIGTERM."""
    res = office.cli("up", "--home", str(office.tmp / "empty"), check=False)
    assert res.rc == 1 and "peerbackup init" in res.err and "peerbackup join" in res.err
    a = office.start(office.init("alpha"), "--log-json")  # with mDNS, which finds the copy below
    _admin_api_token_and_host_are_checked(a)
    res = office.cli("up", "--home", str(a.home), "--listen", "127.0.0.1:0", "--no-mdns", check=False)
    assert res.rc == 1 and "in use by another peerbackup process" in res.err
    res = office.cli("init", "--home", str(a.home), "--office", "Other", check=False)
    assert res.rc == 1 and "already belongs to office 'Acme'" in res.err
    _copied_home_fails_loudly(office, a)

    assert office.kill(a, signal.SIGTERM) == 0
    assert not (a.home / "admin.json").exists() and not (a.home / "admin.token").exists()
    lines = [json.loads(line) for line in a.log.read_text().splitlines() if line.strip()]  # one object a line
    events = [x["event"] for x in lines]
    assert "daemon.started" in events and "daemon.stopping" in events and "daemon.stopped" in events
    started = lines[events.index("daemon.started")]
    assert started["name"] == "alpha" and started["level"] == "info" and "ts" in started
    res = office.cli("status", "--home", str(a.home), check=False)
    assert res.rc == 1 and "No daemon is running" in res.err


def _admin_api_token_and_host_are_checked(a: Peer) -> None:
    mode = stat.S_IMODE((a.home / "admin.token").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((a.home / "identity.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((a.home / "office.key").stat().st_mode) == 0o600
    code, body = a.api("GET", "/v1/status", token="")
    assert code == 401 and "token" in body["error"]
    code, body = a.api("GET", "/v1/status", token="wrong")
    assert code == 401
    code, body = a.api("GET", "/v1/status", headers={"Host": "evil.example:80"})
    assert code == 403 and "Host" in body["error"]
    code, body = a.api("GET", "/v1/status")
    assert code == 200 and body["name"] == "alpha"
    # The token is never accepted from a cookie.
    tok = (a.home / "admin.token").read_text().strip()
    code, _ = a.api("GET", "/v1/status", token="", headers={"Cookie": f"X-Peerbackup-Token={tok}"})
    assert code == 401


def _copied_home_fails_loudly(office: Office, a: Peer) -> None:
    copy = office.peer("copy")
    shutil.copytree(a.home, copy.home, ignore=shutil.ignore_patterns("lock", "admin.*"))
    res = office.cli("up", "--home", str(copy.home), "--listen", "127.0.0.1:0", "--mdns-interface", "127.0.0.1",
                     check=False, timeout=30)
    assert res.rc == 1 and "is a copy of this home running elsewhere" in res.err, res.err
