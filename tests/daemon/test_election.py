"""The coordinator election with real daemons on loopback: agreement, failover, return, fencing."""

from __future__ import annotations

import re
import secrets
import signal
import time
from typing import Any

from peerbackup.net import envelope
from peerbackup.net.proto import coordinator as proto
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home
from tests.daemon.harness import Office, Peer, office_log, post_raw, wait_for

LEASE = 3.0  # tests/daemon/harness.py FAST


def coordinators(peers: list[Peer]) -> set[tuple[Any, Any]]:
    return {(p.status()["coordinator"], p.status()["term"]) for p in peers}


def agreed(peers: list[Peer], who: Peer) -> int | None:
    seen = coordinators(peers)
    if len(seen) == 1:
        coordinator, term = next(iter(seen))
        if coordinator == who.peer_id:
            return int(term)
    return None


def elected_tokens(peers: list[Peer]) -> list[tuple[int, str]]:
    """Every (term, peer) a daemon announced it was elected under, from all logs."""
    out = []
    for p in peers:
        for m in re.finditer(r"coordinator\.elected term=(\d+) peer=(\S+)", p.log.read_text()):
            out.append((int(m.group(1)), m.group(2)))
    return out


def three(office: Office) -> tuple[Peer, Peer, Peer]:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.join("beta", office.invite(a, "--rank", "10"))
    c = office.join("gamma", office.invite(a, "--rank", "20"))
    office.start(b, mdns=False)
    office.start(c, mdns=False)
    return a, b, c


def test_one_coordinator_failover_and_return(office: Office) -> None:
    a, b, c = three(office)
    peers = [a, b, c]
    term1 = wait_for(lambda: agreed(peers, a), 20, "all three to agree on alpha")
    listed = office.cli("peers", "--home", str(c.home), "--json").json()
    assert [x["name"] for x in listed if x["coordinator"]] == ["alpha"]

    office.kill(a)  # SIGKILL: no goodbye, the lease just stops being renewed
    t0 = time.monotonic()
    term2 = wait_for(lambda: agreed([b, c], b), 30, "beta (next rank) to take over")
    failover = time.monotonic() - t0
    print(f"failover after kill -9 with lease {LEASE} s: {failover:.2f} s, term {term1} -> {term2}")
    assert term2 > term1

    office.start(a, mdns=False)
    t1 = time.monotonic()
    term3 = wait_for(lambda: agreed(peers, a), 30, "alpha (best rank) to take the role back")
    print(f"alpha back as coordinator {time.monotonic() - t1:.2f} s after its restart, term {term3}")
    assert term3 > term2

    tokens = elected_tokens(peers)
    assert len(tokens) == len(set(tokens)), f"a token was claimed twice: {tokens}"
    for p in peers:
        mine = [t for t, who in tokens if who == p.peer_id]
        assert mine == sorted(set(mine)), f"{p.name} claimed terms out of order: {mine}"
    # The claims are in the control log, identical everywhere.
    logs = [office_log(p.home) for p in peers]
    wait_for(lambda: len({p.status()["logs_digest"] for p in peers}) == 1, 20, "identical logs")
    logs = [office_log(p.home) for p in peers]
    assert logs[0] == logs[1] == logs[2]
    claims = [(e["fields"]["term"], e["writer"]) for e in logs[0] if e["kind"] == "coordinator.claim"]
    assert (term3, a.peer_id) in claims and (term2, b.peer_id) in claims


def test_stale_coordinator_is_fenced(office: Office) -> None:
    a, b, c = three(office)
    peers = [a, b, c]
    wait_for(lambda: agreed(peers, a), 20, "agreement on alpha")
    # Freeze alpha (SIGSTOP): it cannot renew, beta takes over; when alpha thaws its old token is refused.
    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: agreed([b, c], b), 30, "beta to take over from the frozen alpha")
    finally:
        a.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "coordinator.stepped_down" in a.log.read_text(), 15, "thawed alpha to step down")
    wait_for(lambda: agreed(peers, a) is not None, 30, "alpha to win back the role under a higher term")
    text = b.log.read_text() + c.log.read_text()
    # Either alpha's renewals under the old token were refused, or it had already learned the new term.
    assert "coordinator.fenced" in text or "lease ran out" in a.log.read_text()


def test_remove_peer_is_a_control_log_event_everywhere(office: Office) -> None:
    a, b, c = three(office)
    peers = [a, b, c]
    wait_for(lambda: len({p.status()["logs_digest"] for p in peers}) == 1, 20, "identical logs")
    office.cli("remove-peer", "--home", str(a.home), "gamma", "--reason", "laptop stolen")
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b)}) == 1, 20, "alpha and beta to agree")
    log = office_log(b.home)
    revokes = [e for e in log if e["kind"] == "member.revoke"]
    assert len(revokes) == 1 and revokes[0]["fields"]["name"] == "gamma"
    assert revokes[0]["fields"]["reason"] == "laptop stolen"
    assert revokes[0]["writer"] == a.peer_id
    adds = [e["fields"]["name"] for e in log if e["kind"] == "member.add"]
    assert adds == ["alpha", "beta", "gamma"]
    text = office.cli("office", "log", "--home", str(b.home)).out
    assert "member.revoke" in text and "gamma" in text


def test_a_member_without_the_coordinator_role_is_not_followed(office: Office) -> None:
    a, b, c = three(office)
    peers = [a, b, c]
    # sybil joined with the storage role only; the test speaks for it with its real key.
    sybil = Home(office.join("sybil", office.invite(a, "--roles", "storage")).home).load()
    term = wait_for(lambda: agreed(peers, a), 20, "agreement on alpha")
    wait_for(lambda: "sybil" in b.peers(), 20, "beta to know sybil")
    bid = b.status()["peer_id"]
    body = proto.Announce((int(term) + 100, sybil.peer_id), 600_000).to_wire()
    data, _ = envelope.seal(sybil.key, bid, "POST", proto.PATH, body, time.time(), secrets.token_bytes)
    status, raw = post_raw(b.address, proto.PATH, data)
    refusal = Refusal.from_wire(envelope.open_envelope(raw).body)
    assert status == 403 and "has no coordinator role" in refusal.message, (status, refusal)
    assert "coordinator.refused" in b.log.read_text()
    # Nobody follows sybil, and alpha was not made to step down by its higher term.
    time.sleep(2 * LEASE)
    assert agreed(peers, a) == term


def test_a_peer_removed_while_it_was_off_learns_it_when_it_comes_back(office: Office) -> None:
    a, b, c = three(office)
    wait_for(lambda: len({p.status()["logs_digest"] for p in (a, b, c)}) == 1, 20, "identical logs")
    office.kill(c, signal.SIGTERM)
    office.cli("remove-peer", "--home", str(a.home), "gamma", "--reason", "sold")
    wait_for(lambda: b.status()["config_digest"] == a.status()["config_digest"], 20, "beta to learn the removal")
    office.start(c, mdns=False)
    # Every member refuses gamma; the refusal carries the office-signed revocation, which gamma checks.
    wait_for(lambda: c.status()["removed"], 30, "gamma to learn it was removed")
    assert "member.revoked" in c.log.read_text() and "me=True" in c.log.read_text()
    assert "REMOVED" in office.cli("status", "--home", str(c.home)).out
    # It stops knocking (no more refusals on the others' side) and never coordinates.
    time.sleep(1)
    refusals = a.log.read_text().count("code=revoked") + b.log.read_text().count("code=revoked")
    time.sleep(2 * LEASE)
    assert a.log.read_text().count("code=revoked") + b.log.read_text().count("code=revoked") == refusals
    assert c.status()["coordinator"] != c.peer_id


def test_a_peer_woken_from_a_pause_neither_claims_nor_makes_the_others_suspect(office: Office) -> None:
    """Issue 16, causes 5 and 6. beta (rank 10) is paused (SIGSTOP) for two leases, as a suspended laptop
    is: on waking it found every peer silent and every lease run out, claimed at once and deposed alpha, a
    healthy coordinator; meanwhile the heartbeats the others sent it held their rounds, and they suspected
    each other. Now it listens a lease first and follows alpha; nobody else noticed more than its silence."""
    a, b, c = three(office)
    peers = [a, b, c]
    term = wait_for(lambda: agreed(peers, a), 20, "agreement on alpha")
    time.sleep(1)
    assert b.proc is not None
    mark = {p.name: len(p.log.read_text()) for p in peers}
    b.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2 * LEASE)
        assert agreed([a, c], a) == term  # beta's silence alone changes nothing
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "coordinator.woke" in b.log.read_text()[mark["beta"]:], 10, "beta to see it was paused")
    wait_for(lambda: agreed(peers, a) == term, 10, "beta to follow alpha again")
    time.sleep(2 * LEASE)  # past beta's wait: it must still follow, never claim
    assert agreed(peers, a) == term, coordinators(peers)
    assert "coordinator.elected" not in b.log.read_text()[mark["beta"]:]
    for p, other in ((a, c), (c, a)):  # the two that answered all along never suspected each other
        assert f"peer.suspect peer={other.peer_id}" not in p.log.read_text()[mark[p.name]:], p.name
