"""Coordinator election by lease, simulated: 3 to 5 Elections (office/coordination/election.py) on a
discrete clock through crashes, restarts, laptop sleeps and partitions; tokens stay fenced, and once
the network is whole and stable, exactly one peer, the best-ranked live one, coordinates and
everybody agrees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from peerbackup.office.coordination.election import NO_TOKEN, Claim, Election, SteppedDown, Token, Woke
from tests.office._election import T0, S

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
