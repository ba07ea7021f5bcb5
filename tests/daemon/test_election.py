"""The coordinator election with real daemons on loopback: a peer paused by SIGSTOP (a suspended laptop).

Failover, return, fencing, removal and a member without the coordinator role run in-process now:
tests/inproc/test_election.py and tests/inproc/test_membership.py (their docstrings say what each mirrors)."""

from __future__ import annotations

import signal
import time
from typing import Any

from tests.daemon.harness import Office, Peer, wait_for

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


def three(office: Office) -> tuple[Peer, Peer, Peer]:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.join("beta", office.invite(a, "--rank", "10"))
    c = office.join("gamma", office.invite(a, "--rank", "20"))
    office.start(b, mdns=False)
    office.start(c, mdns=False)
    return a, b, c


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
