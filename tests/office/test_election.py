"""Coordinator election by lease (office/coordination/election.py): pure state, clock handed in.

Unit tests walk one Election through its rules with a fake clock: claiming, renewing and stepping
down, announcements and fencing. The simulated offices are in test_election_simulation.py, pauses
and wall-clock steps in test_election_pauses.py.
"""

from __future__ import annotations

import pytest

from peerbackup.office.coordination.election import NO_TOKEN, Claim, SteppedDown, Woke
from tests.office._election import T0, S, claims, election


def test_a_lone_peer_claims_after_its_start_up_wait() -> None:
    e = election()
    others = {"PEER-B": e.rank, "PEER-Z": e.rank + 50}  # another member is known, but silent
    for t in (0.0, 1.0, 2.0, S.lease - 0.01):
        assert e.tick(T0 + t, [], others) == []
        assert e.current(T0 + t) is None and not e.i_am
    assert e.tick(T0 + S.lease, [], others) == [Claim((1, "PEER-B"), new_term=True)]
    assert e.i_am and e.coordinator == "PEER-B" and e.token == e.highest == (1, "PEER-B")
    assert e.lease_until == T0 + 2 * S.lease
    assert e.current(T0 + S.lease) == "PEER-B"
    assert e.history == [((1, "PEER-B"), T0 + S.lease)]


def test_a_peer_that_knows_no_other_member_claims_at_once() -> None:
    e = election()
    assert e.tick(T0, [], {"PEER-B": e.rank}) == [Claim((1, "PEER-B"), new_term=True)]
    assert e.i_am


def test_the_claimed_term_is_one_above_the_highest_seen() -> None:
    e = election(highest=(41, "PEER-Z"))
    assert e.tick(T0 + S.lease, [], {}) == [Claim((42, "PEER-B"), new_term=True)]
    assert e.highest == (42, "PEER-B")


def test_a_peer_without_the_role_never_claims() -> None:
    e = election(eligible=False)
    t = T0
    while t < T0 + 30:
        assert e.tick(t, [], {}) == []
        t += 0.25
    assert not e.i_am and e.history == [] and e.highest == NO_TOKEN
    # It still follows whoever announces.
    assert e.on_announce("PEER-A", (3, "PEER-A"), t)
    assert e.current(t) == "PEER-A"


@pytest.mark.parametrize(("alive", "claims_it"), [
    ([(0, "PEER-Z")], False),  # a better rank
    ([(100, "PEER-A")], False),  # the same rank, a lower id
    ([(100, "PEER-C")], True),  # the same rank, a higher id
    ([(200, "PEER-A"), (150, "PEER-C")], True),  # only worse ones
    ([(200, "PEER-A"), (5, "PEER-C")], False),
])
def test_a_better_ranked_live_peer_blocks_claiming(alive: list[tuple[int, str]], claims_it: bool) -> None:
    e = election()
    t = T0 + S.lease
    for _ in range(20):
        got = claims(e.tick(t, alive, {}))
        if claims_it:
            break
        assert got == []
        t += 0.5
    assert e.i_am is claims_it


def test_a_worse_ranked_holder_is_taken_over_after_the_start_up_wait() -> None:
    worse = election(me="PEER-W", rank=100, started=T0 - S.lease)
    assert worse.tick(T0, [], {}) == [Claim((1, "PEER-W"), new_term=True)]
    best = election(me="PEER-A", rank=0, started=T0)
    assert best.on_announce("PEER-W", worse.token, T0)
    assert best.current(T0) == "PEER-W"
    rank_of = {"PEER-A": 0, "PEER-W": 100}
    t = T0 + 0.5
    while t < T0 + S.lease:
        assert best.tick(t, [(100, "PEER-W")], rank_of) == []  # waiting, though the holder is worse
        for a in claims(worse.tick(t, [(0, "PEER-A")], rank_of)):  # the holder just renews meanwhile
            assert a == Claim((1, "PEER-W"), new_term=False)
            assert best.on_announce("PEER-W", a.token, t)
        t += 0.5
    took = best.tick(T0 + S.lease, [(100, "PEER-W")], rank_of)
    assert took == [Claim((2, "PEER-A"), new_term=True)]
    assert worse.on_announce("PEER-A", (2, "PEER-A"), T0 + S.lease)  # the announcement reaches it
    assert not worse.i_am and worse.current(T0 + S.lease) == "PEER-A"
    # And it does not claim back while the better one is alive.
    assert worse.tick(T0 + S.lease + 1, [(0, "PEER-A")], rank_of) == []


def test_a_worse_holder_that_sees_the_higher_token_steps_down() -> None:
    worse = election(me="PEER-W")
    worse.tick(T0 + S.lease, [], {})
    stepped = worse.see((2, "PEER-A"))
    assert stepped == SteppedDown((1, "PEER-W"), "a higher token (2, 'PEER-A') was seen")
    assert not worse.i_am and worse.highest == (2, "PEER-A")


def test_a_silent_better_ranked_holder_is_replaced_only_when_its_lease_ran_out() -> None:
    e = election(me="PEER-B", rank=100)
    rank_of = {"PEER-A": 0, "PEER-B": 100}
    heard = T0 + 5
    assert e.on_announce("PEER-A", (7, "PEER-A"), heard)
    t = heard
    while t < heard + S.lease:
        # PEER-A went silent at once: liveness no longer lists it, but its lease still runs.
        assert e.tick(t, [], rank_of) == []
        assert e.current(t) == "PEER-A"
        t += 0.25
    assert e.current(heard + S.lease) is None
    assert e.tick(heard + S.lease, [], rank_of) == [Claim((8, "PEER-B"), new_term=True)]


def test_a_silent_worse_ranked_or_unknown_holder_does_not_block() -> None:
    for holder, rank_of in [("PEER-W", {"PEER-W": 500}), ("PEER-X", {})]:
        e = election(me="PEER-B", rank=100)
        assert e.on_announce(holder, (4, holder), T0 + S.lease - 1)
        assert e.tick(T0 + S.lease, [], rank_of) == [Claim((5, "PEER-B"), new_term=True)]


# ---- renewing, stepping down -------------------------------------------------------------------------


def test_renewals_every_renew_keep_the_token() -> None:
    e = election()
    start = T0 + S.lease
    e.tick(start, [], {})
    renewals = []
    t = start
    for _ in range(40):
        t += 0.25
        for a in e.tick(t, [], {}):
            assert isinstance(a, Claim) and not a.new_term and a.token == (1, "PEER-B")
            renewals.append(t)
        assert e.i_am and e.lease_until > t
    assert renewals == [start + k * S.renew for k in range(1, 11)]
    assert e.lease_until == renewals[-1] + S.lease
    assert len(e.history) == 1


def test_renewal_continues_while_a_better_peer_is_alive() -> None:
    # Taking over is the better peer's move (a higher term); the holder keeps renewing until it sees it.
    e = election(me="PEER-W")
    e.tick(T0 + S.lease, [], {})
    assert e.tick(T0 + S.lease + S.renew, [(0, "PEER-A")], {"PEER-A": 0}) == [Claim((1, "PEER-W"), new_term=False)]


def test_a_coordinator_whose_lease_ran_out_steps_down_and_claims_a_new_term() -> None:
    e = election()
    e.tick(T0 + S.lease, [], {})
    woke = T0 + S.lease + S.lease + 0.5  # a laptop that slept through its renewals
    actions = e.tick(woke, [], {})  # alone in its office: no start-up wait, nor one after a pause
    assert actions == [Woke(S.lease + 0.5), SteppedDown((1, "PEER-B"), "the lease ran out before it was renewed"),
                       Claim((2, "PEER-B"), new_term=True)]
    assert e.token == (2, "PEER-B") and e.lease_until == woke + S.lease
    assert [tok for tok, _ in e.history] == [(1, "PEER-B"), (2, "PEER-B")]
    # With a better-ranked peer alive by then, it only steps down.
    f = election()
    f.tick(T0 + S.lease, [], {})
    assert f.tick(woke, [(0, "PEER-A")], {}) == [Woke(S.lease + 0.5),
                                                  SteppedDown((1, "PEER-B"), "the lease ran out before it was renewed")]
    assert not f.i_am and f.current(woke) is None


def test_exactly_at_the_lease_end_is_too_late() -> None:
    e = election()
    e.tick(T0 + S.lease, [], {})
    actions = e.tick(e.lease_until, [(0, "PEER-A")], {})
    assert [type(a) for a in actions] == [Woke, SteppedDown]  # not ticked for a lease: a pause, too


# ---- announcements, fencing ---------------------------------------------------------------------------


def test_on_announce_refuses_lower_tokens_and_accepts_equal_or_higher() -> None:
    e = election(me="PEER-B", eligible=False, highest=(5, "PEER-M"))
    now = T0 + 10
    assert not e.on_announce("PEER-A", (4, "PEER-A"), now)  # lower term
    assert not e.on_announce("PEER-A", (5, "PEER-A"), now)  # same term, lower id
    assert e.current(now) is None and e.highest == (5, "PEER-M")
    assert not e.on_announce("PEER-Q", (9, "PEER-A"), now)  # a token that is not the sender's
    assert e.highest == (5, "PEER-M")
    assert e.on_announce("PEER-M", (5, "PEER-M"), now)  # equal: a renewal
    assert e.current(now) == "PEER-M" and e.lease_until == now + S.lease
    assert e.on_announce("PEER-N", (5, "PEER-N"), now + 1)  # same term, higher id
    assert e.current(now + 1) == "PEER-N" and e.token == (5, "PEER-N") and e.highest == (5, "PEER-N")
    assert not e.on_announce("PEER-M", (5, "PEER-M"), now + 2)  # the old one is fenced off now
    assert e.current(now + 2) == "PEER-N"
    assert e.current(now + 1 + S.lease) is None


def test_an_announcement_of_a_higher_token_makes_a_coordinator_step_down() -> None:
    e = election(me="PEER-B")
    e.tick(T0 + S.lease, [], {})
    assert e.on_announce("PEER-C", (2, "PEER-C"), T0 + S.lease + 0.5)
    assert not e.i_am and e.coordinator == "PEER-C" and e.token == (2, "PEER-C")
    # Its own renewal would not be accepted anywhere that has seen the higher token.
    assert not e.check_fence((1, "PEER-B"))


def test_see_raises_the_highest_and_fences_a_coordinator() -> None:
    e = election(me="PEER-B")
    e.tick(T0 + S.lease, [], {})
    assert e.see((1, "PEER-B")) is None and e.see((1, "PEER-A")) is None and e.see(NO_TOKEN) is None
    assert e.i_am and e.highest == (1, "PEER-B")
    stepped = e.see((1, "PEER-C"))  # same term, higher id: higher
    assert isinstance(stepped, SteppedDown) and stepped.token == (1, "PEER-B")
    assert not e.i_am and e.highest == (1, "PEER-C")
    # A follower only raises its highest.
    f = election(me="PEER-F")
    assert f.see((3, "PEER-A")) is None and f.highest == (3, "PEER-A")
    assert f.see((2, "PEER-Z")) is None and f.highest == (3, "PEER-A")


def test_check_fence() -> None:
    e = election(highest=(4, "PEER-M"))
    assert e.check_fence((4, "PEER-M"))
    assert e.check_fence((4, "PEER-N")) and e.check_fence((5, "PEER-A"))
    assert not e.check_fence((4, "PEER-L")) and not e.check_fence((3, "PEER-Z")) and not e.check_fence(NO_TOKEN)
    assert election().check_fence(NO_TOKEN)


def test_a_restart_with_the_persisted_highest_never_reuses_a_term() -> None:
    e = election()
    e.tick(T0 + S.lease, [], {})
    again = election(started=T0 + 10, highest=e.highest)
    assert again.tick(T0 + 10 + S.lease, [], {}) == [Claim((2, "PEER-B"), new_term=True)]
