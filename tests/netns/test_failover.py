"""Failover across hosts: the coordinator's process is killed (-9), the next-ranked live peer takes over
under a higher term, and the old coordinator, restarted on its host, takes the role back after its
start-up wait under a higher term still."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.daemon.harness import wait_for
from tests.netns.lan import HEARTBEAT, LEASE, Lan, NetOffice, Node, agreed, claims

# Real daemons on several network namespaces: seconds, not milliseconds; bounded well below 300 s.
pytestmark = pytest.mark.timeout(180)


def elected(n: Node) -> list[tuple[float, int]]:
    """(time, term) of each coordinator.elected line of n's current run."""
    out = []
    for t, line in n.events("coordinator.elected", since_last_start=True):
        m = re.search(r" term=(\d+) ", line)
        assert m is not None, line
        out.append((t, int(m.group(1))))
    return out


def test_failover_and_return_across_hosts(make_lan: Callable[[int], Lan], office: NetOffice) -> None:
    lan = make_lan(3)
    h1, h2, h3 = lan.hosts
    a = office.start(office.init("alpha", h1))
    b, c = office.join_all(a, ("beta", h2, ("--rank", "10")), ("gamma", h3, ("--rank", "20")))
    office.start_all(b, c)
    term1 = wait_for(lambda: agreed(office, [a, b, c], a), 25, "alpha, beta and gamma to agree on alpha")

    # kill -9: no goodbye, alpha's lease simply stops being renewed.
    t_kill = time.time()
    office.kill(a)
    term2 = wait_for(lambda: agreed(office, [b, c], b), 6 * LEASE, "beta (next rank) to take over from alpha")
    polled = time.time() - t_kill
    (t_elected,) = [t for t, term in elected(b) if term == term2]
    failover = t_elected - t_kill
    print(f"\n[netns] failover after kill -9 (lease {LEASE} s): beta elected {failover:.2f} s after the kill "
          f"(both survivors agreed by the poll at {polled:.2f} s); term {term1} -> {term2}")
    assert term2 > term1
    # The lease must run out first (alpha renewed at most `renew` before the kill), then a few ticks.
    assert failover <= LEASE + 6 * HEARTBEAT, f"failover took {failover:.2f} s"
    assert not [t for t, _ in elected(c) if t >= t_kill], "gamma (rank 20) claimed although beta (rank 10) was alive"

    # alpha comes back on its host, same home, same address.
    office.start(a)
    term3 = wait_for(lambda: agreed(office, [a, b, c], a), 6 * LEASE, "alpha to take the role back")
    polled = time.time() - a.spawned_at
    assert term3 > term2
    t_back = min(t for t, _ in elected(a))
    print(f"[netns] alpha back: claimed {t_back - a.spawned_at:.2f} s after its restart (start-up wait: one lease, "
          f"{LEASE} s), all three agreed by the poll at {polled:.2f} s; term {term2} -> {term3}")
    # It waited one lease after starting before claiming, and heard beta's term meanwhile.
    assert t_back - a.spawned_at >= LEASE, f"alpha claimed {t_back - a.spawned_at:.2f} s after its restart"
    follows = [t for t, line in a.events("coordinator.follows", since_last_start=True) if f"peer={b.peer_id}" in line]
    assert follows and min(follows) < t_back, a.log_text()
    assert any(f"term={term2}" in line for _, line in b.events("coordinator.stepped_down", since_last_start=True))

    # The control log holds the three claims, each token once.
    wait_for(lambda: len({st["logs_digest"] for st in office.statuses([a, b, c])}) == 1, 15,
             "the three logs to agree")
    toks = claims(office.office_log(a))
    assert sorted(toks)[-3:] == [(term1, a.peer_id), (term2, b.peer_id), (term3, a.peer_id)], toks
    assert len(toks) == len(set(toks)), toks
