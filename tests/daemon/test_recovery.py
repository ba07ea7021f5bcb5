"""Lost and damaged state, removed peers, and the messages a user sees for bad input."""

from __future__ import annotations

import signal
import time

from tests.daemon.harness import Office, Peer, office_log, wait_for


def logs_equal(peers: list[Peer]) -> bool:
    return len({p.status()["logs_digest"] for p in peers}) == 1


def test_admin_that_lost_its_events_db_relearns_its_feed_before_writing(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), mdns=False)
    wait_for(lambda: logs_equal([a, b]) and len(office_log(b.home))
             >= 3, 20, "beta to hold alpha's events")
    before = office_log(b.home)
    office.kill(a, signal.SIGTERM)
    for name in ("events.db", "events.db-wal", "events.db-shm"):
        (a.home / name).unlink(missing_ok=True)
    office.start(a, mdns=False)
    wait_for(lambda: logs_equal([a, b]), 20, "alpha to fetch its history back from beta")
    after = office_log(a.home)
    assert [e["id"] for e in after][:len(before)] == [e["id"] for e in before]
    # It can still change the office: no fork of its own feed anywhere.
    office.cli("invite", "--home", str(a.home))
    c = office.join("gamma", office.invite(a))
    office.cli("remove-peer", "--home", str(a.home), "gamma")
    wait_for(lambda: logs_equal([a, b]), 20, "the removal to reach beta")
    for p in (a, b):
        assert "log.fork" not in p.log.read_text()
        assert p.status()["log_alerts"] == []
    assert c.home.exists()


def test_damaged_databases_give_a_clear_error_and_no_hang(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    office.kill(a, signal.SIGTERM)
    for name in ("state.db", "events.db"):
        db = a.home / name
        saved = db.read_bytes()
        db.write_bytes(b"this is not a database" * 500)
        t0 = time.monotonic()
        res = office.cli("up", "--home", str(a.home), "--listen", "127.0.0.1:0", "--no-mdns", check=False, timeout=30)
        assert res.rc == 1, res.err
        assert f"{name} is damaged" in res.err and "move the file aside" in res.err
        assert "Traceback" not in res.err
        assert time.monotonic() - t0 < 20
        db.write_bytes(saved)


def test_removed_peer_never_coordinates_and_says_so(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    d = office.start(office.join("delta", office.invite(a)), mdns=False)
    wait_for(lambda: d.status()["coordinator"] == a.peer_id, 20, "delta to follow alpha")
    office.cli("remove-peer", "--home", str(a.home), "delta")
    wait_for(lambda: d.status()["removed"], 10, "delta to learn of its removal")
    time.sleep(4)  # more than a lease (3 s) with every member refusing it
    st = d.status()
    assert st["coordinator"] != d.peer_id
    assert "coordinator.elected" not in d.log.read_text()
    assert "REMOVED" in office.cli("status", "--home", str(d.home)).out
    # A second removal is refused, by name (no longer a member) and by id.
    res = office.cli("remove-peer", "--home", str(a.home), "delta", check=False)
    assert res.rc == 2 and "no member is named 'delta'" in res.err
    res = office.cli("remove-peer", "--home", str(a.home), d.peer_id, check=False)
    assert res.rc == 2 and "removed already" in res.err


def test_bad_input_messages(office: Office) -> None:
    empty = office.tmp / "empty.txt"
    empty.write_text("")
    res = office.cli("init", "--home", str(office.tmp / "x"), "--office", "X", "--password-file", str(empty),
                     check=False)
    assert res.rc == 2 and "is empty" in res.err
    assert not (office.tmp / "x" / "certificate").exists()
    res = office.cli("join", "--home", str(office.tmp / "y"), "pbinvite1-AAAA", check=False)
    assert res.rc == 2 and "damaged or cut short" in res.err and "unpack" not in res.err
    res = office.cli("init", "--home", str(office.tmp / "z"), "--office", "Z", "--name", "n" * 65, check=False)
    assert res.rc == 2 and "peer name" in res.err
    a = office.start(office.init("alpha"), mdns=False)
    res = office.cli("remove-peer", "--home", str(a.home), "nobody", check=False)
    assert res.rc == 2 and "no member is named 'nobody'" in res.err
    res = office.cli("remove-peer", "--home", str(a.home), a.peer_id, check=False)
    assert res.rc == 2 and "cannot remove itself" in res.err
    port = a.address.rsplit(":", 1)[1]
    b = office.join("beta", office.invite(a))
    res = office.cli("up", "--home", str(b.home), "--listen", f"127.0.0.1:{port}", "--no-mdns", check=False)
    assert res.rc == 1 and "Cannot start the daemon: cannot listen" in res.err
    kit = a.home / "recovery-kit.pbkit"
    res = office.cli("admin", "recover", "--home", str(office.tmp / "r"), str(kit), check=False,
                     env={"PEERBACKUP_KIT_PASSWORD": "wrong"})
    assert res.rc == 1 and "Wrong passphrase for this recovery kit" in res.err
    token = office.invite(a)
    office.kill(a, signal.SIGTERM)
    res = office.cli("join", "--home", str(office.tmp / "w"), token, check=False)
    assert res.rc == 1 and "is its daemon running?" in res.err
