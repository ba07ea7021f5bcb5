"""Coordinator election by lease (office/coordination/election.py): pure state, clock handed in.

Unit tests walk one Election through its rules with a fake clock; a simulation
then runs 3 to 5 of them on a discrete clock through crashes, restarts,
laptop sleeps and partitions, and checks that tokens stay fenced and that once
the network is whole and stable, exactly one peer, the best-ranked live one,
coordinates and everybody agrees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from peerbackup.core.settings import Settings
from peerbackup.office.coordination.election import NO_TOKEN, Action, Claim, Election, SteppedDown, Token, Woke

S = Settings(heartbeat=0.5, suspect=1.5, dead=3, lease=3, renew=1)
T0 = 1_700_000_000.0


def election(me: str = "PEER-B", rank: int = 100, eligible: bool = True, started: float = T0,
             highest: Token = NO_TOKEN) -> Election:
    return Election(me=me, rank=rank, eligible=eligible, settings=S, started=started, highest=highest)


def claims(actions: list[Action]) -> list[Claim]:
    return [a for a in actions if isinstance(a, Claim)]


# ---- claiming ------------------------------------------------------------------------------------


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


# ---- simulation ----------------------------------------------------------------------------------------------

DT = 0.25


@dataclass
class Peer:
    id: str
    rank: int
    eligible: bool
    election: Election | None = None  # None: down
    asleep: bool = False
    persisted: Token = NO_TOKEN  # what State keeps across a restart
    claimed: list[Token] = field(default_factory=list)  # every new term it ever claimed, across restarts
    heard: dict[str, float] = field(default_factory=dict)  # liveness: when each other peer was last heard

    @property
    def up(self) -> bool:
        return self.election is not None and not self.asleep


@dataclass
class Net:
    peers: dict[str, Peer]
    rng: random.Random
    now: float = T0
    group: dict[str, int] = field(default_factory=dict)  # partition: peers hear each other within a group
    claims_by_token: dict[Token, str] = field(default_factory=dict)
    new_terms: int = 0
    step_downs: int = 0
    most_believers: int = 0  # the most peers that believed themselves coordinator at one time

    def connected(self, a: str, b: str) -> bool:
        return self.group.get(a, 0) == self.group.get(b, 0)

    def start(self, p: Peer) -> None:
        p.election = Election(me=p.id, rank=p.rank, eligible=p.eligible, settings=S, started=self.now,
                              highest=p.persisted)
        p.asleep = False
        p.heard = {}

    def crash(self, p: Peer) -> None:
        p.election = None

    def reachable(self, p: Peer) -> list[Peer]:
        return [q for q in self.peers.values() if q is not p and q.up and self.connected(p.id, q.id)]

    def step(self) -> None:
        self.now += DT
        if round(self.now / DT) % round(S.heartbeat / DT) == 0:
            for p in self.peers.values():
                if p.up:
                    for q in self.reachable(p):
                        p.heard[q.id] = self.now
        rank_of = {p.id: p.rank for p in self.peers.values()}
        order = [p for p in self.peers.values() if p.up]
        self.rng.shuffle(order)
        for p in order:
            e = p.election
            assert e is not None
            alive = [(q.rank, q.id) for q in self.peers.values()
                     if q is not p and q.eligible and self.now - p.heard.get(q.id, -1e9) < S.suspect]
            for action in e.tick(self.now, alive, rank_of):
                if isinstance(action, SteppedDown):
                    self.step_downs += 1
                    continue
                if isinstance(action, Woke):
                    continue
                self.claim(p, action)
        believers = sum(1 for p in self.peers.values() if p.election is not None and p.election.i_am)
        self.most_believers = max(self.most_believers, believers)

    def claim(self, p: Peer, action: Claim) -> None:
        e = p.election
        assert e is not None
        token = action.token
        assert token[1] == p.id
        # Safety: a token names one peer, and a peer's new terms strictly increase, restarts included.
        assert self.claims_by_token.setdefault(token, p.id) == p.id
        if action.new_term:
            assert not p.claimed or token[0] > p.claimed[-1][0], (p.id, p.claimed, token)
            p.claimed.append(token)
            p.persisted = max(p.persisted, e.highest)  # persisted before it is announced
            self.new_terms += 1
        else:
            assert p.claimed and token == p.claimed[-1]  # a renewal is of its current term
        for q in self.reachable(p):
            qe = q.election
            assert qe is not None
            before = qe.highest
            accepted = qe.on_announce(p.id, token, self.now)
            assert accepted == (token >= before)  # fencing: refused exactly when lower than seen
            assert qe.highest >= before and qe.check_fence(token) == accepted
            if qe.highest != before:
                q.persisted = max(q.persisted, qe.highest)
            stepped = e.see(qe.highest)  # the reply carries the highest token the receiver knows
            if stepped is not None:
                self.step_downs += 1
            if not e.i_am:
                return  # fenced off: the rest of this announcement is moot

    def best_up(self) -> str | None:
        candidates = [(p.rank, p.id) for p in self.peers.values() if p.up and p.eligible]
        return min(candidates)[1] if candidates else None

    def check_settled(self) -> None:
        believers = [p.id for p in self.peers.values() if p.up and p.election is not None and p.election.i_am]
        best = self.best_up()
        views = {p.id: p.election.current(self.now) for p in self.peers.values() if p.election is not None}
        if best is None:
            assert believers == [] and set(views.values()) <= {None}, (self.now, views)
        else:
            assert believers == [best], (self.now, believers, best, views)
            assert set(views.values()) == {best}, (self.now, views, best)
            for p in self.peers.values():
                if p.election is not None:
                    assert p.election.check_fence(self.peers[best].claimed[-1])


@dataclass(frozen=True)
class World:
    ranks: list[int]
    eligible: list[bool]
    chaos: float  # seconds of failures before the network heals
    crashes: bool
    sleeps: bool
    partitions: bool
    seed: int


worlds = st.builds(
    World,
    ranks=st.lists(st.integers(0, 3), min_size=3, max_size=5),
    eligible=st.lists(st.integers(0, 3).map(bool), min_size=5, max_size=5),  # mostly eligible
    chaos=st.integers(0, 4).map(lambda k: 10.0 * k),
    crashes=st.booleans(),
    sleeps=st.booleans(),
    partitions=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)


def run(world: World) -> Net:
    rng = random.Random(world.seed)
    peers = {}
    for i, rank in enumerate(world.ranks):
        pid = f"PEER-{chr(ord('A') + i)}{rng.randrange(10)}"
        peers[pid] = Peer(pid, rank, world.eligible[i])
    net = Net(peers, rng)
    for p in peers.values():  # they start within a few seconds of each other
        net.now = T0 + rng.choice([0.0, 0.0, 0.5, 2.0])
        net.start(p)
    net.now = T0 + 2.0
    while net.now < T0 + 2.0 + S.lease + 1:  # a first coordinator, before anything goes wrong
        net.step()
    end = net.now + world.chaos
    while net.now < end:
        for p in peers.values():
            roll = rng.random()
            if world.crashes and roll < 0.03:
                if p.election is None:
                    net.start(p)
                else:
                    net.crash(p)
            elif world.sleeps and roll < 0.06 and p.election is not None:
                p.asleep = not p.asleep  # a laptop lid, closed or opened: its state stays
        if world.partitions and rng.random() < 0.08:
            net.group = {pid: rng.randrange(2) for pid in peers}
        net.step()
    # The network heals and stays whole; who is down stays down, some come back now.
    net.group = {}
    for p in peers.values():
        p.asleep = False
        if p.election is None and rng.random() < 0.5:
            net.start(p)
    healed = net.now
    while net.now < healed + 2 * S.lease:
        net.step()
    settled_terms = net.new_terms
    while net.now < healed + 2 * S.lease + 3:
        net.step()
        net.check_settled()
    assert net.new_terms == settled_terms  # no flapping once settled
    return net


@settings(max_examples=150, derandomize=True, deadline=None)
@given(world=worlds)
def test_simulated_offices_settle_on_the_best_live_peer(world: World) -> None:
    net = run(world)
    event(f"new terms: {min(net.new_terms, 6)}{'+' if net.new_terms > 6 else ''}")
    event(f"at most {net.most_believers} coordinators at once")
    event("no eligible peer up at the end" if net.best_up() is None else "a coordinator at the end")
    calm = world.chaos == 0 or not (world.crashes or world.sleeps or world.partitions)
    if calm:
        # Nothing went wrong: one election, of the best peer, and no needless terms after it.
        best = net.best_up()
        assert net.new_terms == (0 if best is None else 1)
        assert net.step_downs == 0
        if best is not None:
            assert net.peers[best].claimed == [(1, best)]


@pytest.mark.parametrize("seed", range(20))
def test_simulated_long_chaos_settles(seed: int) -> None:
    # Longer runs than Hypothesis's, with everything going wrong at once.
    rng = random.Random(seed)
    n = rng.randint(3, 5)
    world = World(ranks=[rng.randint(0, 2) for _ in range(n)], eligible=[rng.random() < 0.8 for _ in range(5)],
                  chaos=60.0, crashes=True, sleeps=True, partitions=True, seed=seed)
    net = run(world)
    assert any(p.claimed for p in net.peers.values()) or not any(world.eligible[:n])


def test_simulation_of_a_partition_healing() -> None:
    """Two sides elect their own coordinators; when the network heals, the better-ranked one remains."""
    peers = {pid: Peer(pid, rank, True) for pid, rank in [("PEER-A", 0), ("PEER-B", 1), ("PEER-C", 2)]}
    net = Net(peers, random.Random(3))
    for p in peers.values():
        net.start(p)
    net.group = {"PEER-A": 0, "PEER-B": 1, "PEER-C": 1}
    while net.now < T0 + 10:
        net.step()
    assert peers["PEER-A"].election is not None and peers["PEER-A"].election.i_am
    assert peers["PEER-B"].election is not None and peers["PEER-B"].election.i_am
    assert peers["PEER-C"].election is not None and peers["PEER-C"].election.current(net.now) == "PEER-B"
    net.group = {}
    healed = net.now
    while net.now < healed + 2 * S.lease:
        net.step()
    net.check_settled()
    assert net.best_up() == "PEER-A"
    b = peers["PEER-B"].election
    assert b is not None and peers["PEER-B"].claimed and not b.i_am


# ---- waking from a pause (issue 16, cause 6) ---------------------------------------------------------


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
