"""Coordinator election by lease (office/coordination/election.py) across a pause and a wall clock
stepped: a peer that wakes from a pause listens a lease before it claims (issue 16, cause 6), and a
clock stepped forward or back costs a lone coordinator at most one lease (the soak's 89 s without a
coordinator, seed 2).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.office.coordination.election import Claim, Election, Woke
from tests.office._election import T0, S, claims, election


def follower_of_a(started: float = T0) -> Election:
    """PEER-B (rank 100) following PEER-A (rank 0), the coordinator, renewing every `renew`."""
    e = election(started=started)
    assert e.on_announce("PEER-A", (4, "PEER-A"), T0 + S.lease + 1)
    assert claims(e.tick(T0 + S.lease + 1, [(0, "PEER-A")], RANKS)) == []
    return e


RANKS = {"PEER-A": 0, "PEER-B": 100, "PEER-C": 200}


def test_a_peer_waking_from_a_pause_listens_a_lease_before_it_claims() -> None:
    """Paused past the lease (SIGSTOP, a suspended laptop), it wakes to find every peer silent and every lease
    run out: it used to claim at once, deposing a healthy coordinator. Now it waits a lease, as at a start,
    and hears the coordinator's next renewal first."""
    e = follower_of_a()
    woke = T0 + S.lease + 1 + 2 * S.lease  # nothing ticked, nothing heard for two leases
    actions = e.tick(woke, [], RANKS)
    assert actions == [Woke(2 * S.lease)] and e.current(woke) is None and e.highest == (4, "PEER-A")
    t = woke
    while t < woke + S.lease - S.heartbeat:  # still nobody heard alive: it waits all the same
        t += S.heartbeat
        assert claims(e.tick(t, [], RANKS)) == []
    assert e.on_announce("PEER-A", (4, "PEER-A"), t)  # the coordinator's renewal arrives inside the wait
    for _ in range(20):
        t += S.heartbeat
        assert claims(e.tick(t, [(0, "PEER-A")], RANKS)) == []
    assert e.token == (4, "PEER-A") and e.highest == (4, "PEER-A")  # the term never moved


def test_a_woken_peer_claims_after_the_lease_if_the_coordinator_is_really_gone() -> None:
    e = follower_of_a()
    woke = T0 + S.lease + 1 + 2 * S.lease
    assert claims(e.tick(woke, [], RANKS)) == []
    t = woke
    while t + S.heartbeat < woke + S.lease:
        t += S.heartbeat
        assert claims(e.tick(t, [], RANKS)) == []
    assert claims(e.tick(woke + S.lease, [], RANKS)) == [Claim((5, "PEER-B"), new_term=True)]


def test_ticks_a_little_late_are_no_pause() -> None:
    e = follower_of_a()
    t = T0 + S.lease + 1
    for _ in range(10):
        t += S.suspect  # late, but not more than `suspect`
        assert e.on_announce("PEER-A", (4, "PEER-A"), t)
        assert [a for a in e.tick(t, [(0, "PEER-A")], RANKS) if isinstance(a, Woke)] == []


# ---- wall-clock steps (the soak's 89 s without a coordinator, seed 2) -----------------------------------


def coordinator_a() -> Election:
    """PEER-A (rank 0) coordinating, PEER-B a known member that has gone silent."""
    e = election(me="PEER-A", rank=0)
    t = T0 + S.lease
    assert claims(e.tick(t, [], RANKS)) == [Claim((1, "PEER-A"), new_term=True)]
    return e


def test_a_clock_stepped_forward_then_back_costs_one_lease_not_the_step() -> None:
    """alpha's clock jumped 74 s ahead and came back 12 s later: it stepped down (its lease ran out by its
    clock) and waited a lease from the jump, by its clock. When the clock came back (within the lease), that
    wait was 74 s longer in real time, and the others, hearing alpha alive and better ranked, waited for it:
    89 s with no coordinator. A step back now moves every deadline the election set back with it."""
    e = coordinator_a()
    real = T0 + S.lease
    step = 74.0
    held_until = real
    while real < T0 + S.lease + 60:
        real += S.heartbeat
        ahead = step if T0 + S.lease + 2 <= real < T0 + S.lease + 2 + 4 * S.heartbeat else 0.0
        e.tick(real + ahead, [], RANKS)
        if e.i_am:
            held_until = real
        elif real > T0 + S.lease + 2:
            assert real - held_until <= S.lease + 2 * S.heartbeat, f"no coordinator for {real - held_until} s"
    assert e.i_am


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 40), st.floats(-300, 300)), min_size=1, max_size=8))
def test_any_clock_step_costs_a_lone_coordinator_at_most_a_lease(steps: list[tuple[int, float]]) -> None:
    """Whatever the wall clock does (steps forward or back, at any tick), a coordinator whose peers are
    silent is without its lease no longer than a lease and two heartbeats after the latest step (a step
    forward looks like a pause and costs a lease of listening; a step back costs nothing)."""
    e = coordinator_a()
    real, offset = T0 + S.lease, 0.0
    held_until = real
    for ticks, jump in steps:
        offset += jump
        stepped = real + S.heartbeat
        for _ in range(ticks):
            real += S.heartbeat
            e.tick(real + offset, [], RANKS)
            if e.i_am:
                held_until = real
            without = real - max(held_until, stepped)
            assert without <= S.lease + 2 * S.heartbeat, (without, steps)
    for _ in range(int((S.lease + 2 * S.heartbeat) / S.heartbeat) + 1):
        real += S.heartbeat
        e.tick(real + offset, [], RANKS)
    assert e.i_am
