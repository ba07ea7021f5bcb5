"""mDNS discovery across hosts: two daemons that know no address find each other over the bridge."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.daemon.harness import wait_for
from tests.netns.lan import Lan, NetOffice, Node

# Real daemons on several network namespaces: seconds, not milliseconds; bounded well below 300 s.
pytestmark = pytest.mark.timeout(180)


def sees_alive(office: NetOffice, n: Node, other: Node) -> bool:
    p = office.peers(n).get(other.name)
    return p is not None and p["state"] == "alive" and p["address"] == other.address


def test_mdns_discovery_across_hosts(make_lan: Callable[[int], Lan], office: NetOffice) -> None:
    lan = make_lan(3)
    h1, h2, h3 = lan.hosts
    a = office.start(office.init("alpha", h1))
    # join runs on the new host and reaches alpha across the bridge (the token names 10.77.0.11:7420).
    b, c = office.join_all(a, ("beta", h2, ()), ("gamma", h3, ()))
    assert office.kill(a, signal.SIGTERM) == 0
    # Forget every address the join left behind: beta and gamma know no one's address.
    for n in (b, c):
        for suffix in ("", "-wal", "-shm"):
            (n.home / f"state.db{suffix}").unlink(missing_ok=True)

    t0 = time.monotonic()
    office.start_all(b, c)
    wait_for(lambda: all(office.each(lambda n: sees_alive(office, n, b if n is c else c), [b, c])), 20,
             "beta and gamma to find each other by mDNS over the bridge")
    polled = time.monotonic() - t0

    # From the daemons' own log timestamps (one machine, one clock): gamma's spawn, the first mDNS
    # hint either side got, and the moment the second side marked the other alive.
    def alive_lines() -> list[float | None]:
        return [min((t for t, line in n.events("peer.alive", since_last_start=True) if f"name={other.name}" in line),
                    default=None) for n, other in ((b, c), (c, b))]

    # The state the poll saw is logged at the end of the daemon's next heartbeat round: wait for the line.
    first_alive = wait_for(lambda: (lambda v: v if None not in v else None)(alive_lines()), 10,
                           "both peer.alive log lines")
    hints = [t for n in (b, c) for t, _ in n.events("mdns.hint", since_last_start=True)]
    assert None not in first_alive and hints, (b.log_text(), c.log_text())
    both_alive = max(t for t in first_alive if t is not None)
    print(f"\n[netns] mDNS discovery across hosts: both alive {both_alive - c.spawned_at:.2f} s after gamma's "
          f"spawn (Python start-up, 1.5 s duplicate probe, registration), {both_alive - min(hints):.2f} s after "
          f"the first mDNS hint; the test's poll saw it {polled:.2f} s after the spawns")
    # The hint came from mDNS, with the other host's bridge address (no loopback, no join hint).
    text = b.log_text() + c.log_text()
    assert f"mdns.hint peer={c.peer_id} addresses={c.address}" in text or \
        f"mdns.hint peer={b.peer_id} addresses={b.address}" in text, text
    # alpha is down and nobody told them about it: neither has an address for it.
    for n in (b, c):
        alpha = office.peers(n).get("alpha")
        assert alpha is None or alpha["state"] != "alive", alpha
