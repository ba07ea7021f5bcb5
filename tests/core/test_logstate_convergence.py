"""Convergence of the replicated logs (core/logstate.py): Hypothesis delivers one history of events
(admin adds, coordinator claims, revocations with cutoffs, forks) to several fresh replicas in
arbitrary orders, with duplicates, retrying what is pending and exchanging fork proofs as
anti-entropy would, and checks that every replica ends in the same state, and the state the rules
predict.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from peerbackup.core.events import CONTROL_LOG, Event, decode_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import (
    ACCEPTED,
    COORDINATOR_CLAIM,
    MEMBER_ADD,
    MEMBER_REVOKE,
    PENDING,
    REFUSED,
    LogState,
)
from tests.core._logstate import (
    ADMIN,
    ALL_CERTS,
    BOB,
    CAROL,
    CERT_A,
    CERT_B,
    CERT_C,
    CERT_D,
    DAVE,
    NODE_D,
    NOW,
    NOW_MS,
    Feed,
    add,
    claim,
    hlc_at,
    new_state,
    revoke_fields,
)


@dataclass
class Fork:
    at: int  # the seq signed twice
    extra: int  # events the second branch continues with


@dataclass
class Scenario:
    events: list[Event]
    duplicates: list[Event]
    cutoffs: list[dict[str, int]]  # one per revocation of Dave, as written
    fork_c: Fork | None
    fork_d: Fork | None
    chains: dict[tuple[str, str], list[Event]]  # the main chain of every feed
    admin_added: bool  # Alpha recorded its own member.add

    def __repr__(self) -> str:  # events are long: say what happened, in order
        steps = [f"{e.feed[:4]}#{e.seq}@{e.log[:6]}:{e.kind}{e.fields.get('term', e.fields.get('cutoff', ''))}"
                 for e in self.events]
        return (f"Scenario(steps={steps}, duplicates={[(e.feed[:4], e.seq) for e in self.duplicates]}, "
                f"cutoffs={self.cutoffs}, fork_c={self.fork_c}, fork_d={self.fork_d})")


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """One office history: Alpha adds the others, everyone claims terms, Dave may be removed (once or twice,
    relayed by Alpha or Bravo), Charlie (and sometimes Dave) may sign two events at one position."""
    clock = [NOW_MS - 3_600_000]

    def tick() -> int:
        clock[0] += draw(st.integers(0, 1))  # equal times make the feed order matter
        return hlc_at(clock[0], draw(st.integers(0, 1)))

    feeds = {k.peer_id: Feed(k) for k in (ADMIN, BOB, CAROL, DAVE)}
    node_d = Feed(DAVE, log=NODE_D)
    a = feeds[ADMIN.peer_id]
    events: list[Event] = []
    admin_added = draw(st.booleans())
    adds = [CERT_A, CERT_B, CERT_C, CERT_D] if admin_added else [CERT_B, CERT_C, CERT_D]
    for c in adds:
        events.append(a.next(MEMBER_ADD, {"cert": c.raw}, hlc=tick()))
    counts = {ADMIN.peer_id: draw(st.integers(0, 2)), BOB.peer_id: draw(st.integers(0, 3)),
              CAROL.peer_id: draw(st.integers(1, 4)), DAVE.peer_id: draw(st.integers(0, 4))}
    n_node = draw(st.integers(0, 2))
    n_revs = draw(st.integers(0, 2))
    script = [p for p, n in counts.items() for _ in range(n)] + ["node"] * n_node + ["revoke"] * n_revs
    term = 0
    cutoffs: list[dict[str, int]] = []
    for step in draw(st.permutations(script)):
        if step == "node":
            events.append(node_d.next("job.progress", {"job": "j1", "files": len(node_d.chain)}, hlc=tick()))
        elif step == "revoke":
            cutoff: dict[str, int] = {}
            office = draw(st.none() | st.integers(0, counts[DAVE.peer_id]))
            if office is not None:
                cutoff[CONTROL_LOG] = office
            node = draw(st.none() | st.integers(0, n_node))
            if node is not None:
                cutoff[NODE_D] = node
            cutoffs.append(cutoff)
            signed = draw(st.booleans())  # as written now, or by an older version (cutoff in the event only)
            events.append(a.next(MEMBER_REVOKE, revoke_fields(DAVE, cutoff, at=NOW + len(cutoffs), signed=signed),
                                 hlc=tick()))
        else:
            term += 1
            events.append(feeds[step].next(COORDINATOR_CLAIM, claim(term), hlc=tick()))

    def fork(who: SigningKey) -> Fork | None:
        n = counts[who.peer_id]
        if n == 0 or not draw(st.booleans()):
            return None
        f = Fork(at=draw(st.integers(1, n)), extra=draw(st.integers(0, 2)))
        branch = feeds[who.peer_id].branch(f.at)
        for i in range(1 + f.extra):
            events.append(branch.next(COORDINATOR_CLAIM, claim(10_000 + i), hlc=tick()))
        return f

    fork_c = fork(CAROL)
    fork_d = fork(DAVE) if draw(st.integers(0, 2)) == 0 else None
    duplicates = draw(st.lists(st.sampled_from(events), max_size=4))
    chains = {(CONTROL_LOG, p): f.chain for p, f in feeds.items()}
    chains[(NODE_D, DAVE.peer_id)] = node_d.chain
    return Scenario(events, duplicates, cutoffs, fork_c, fork_d, chains, admin_added)


CONVERGE_NOW = NOW_MS  # an hour after every event of a scenario


def settle(states: list[LogState], deliveries: list[list[bytes]]) -> None:
    """Deliver, retry what is pending while that makes progress, and swap fork proofs until nothing changes."""
    pending: list[list[bytes]] = [[] for _ in states]
    for i, (s, raws) in enumerate(zip(states, deliveries, strict=True)):
        for raw in raws:
            if s.add(raw, CONVERGE_NOW).verdict == PENDING:
                pending[i].append(raw)
    changed, rounds = True, 0
    while changed:
        rounds += 1
        assert rounds < 50, "the replicas never settle: fork proofs or pending events keep changing them"
        changed = False
        for i, s in enumerate(states):
            progress = True
            while progress and pending[i]:
                progress, still = False, []
                for raw in pending[i]:
                    out = s.add(raw, CONVERGE_NOW)
                    if out.verdict == PENDING:
                        still.append(raw)
                    elif out.verdict == ACCEPTED or out.proof is not None:
                        progress = changed = True
                pending[i] = still
        for s in states:
            for t in states:
                if s is not t:
                    for a, b in t.proofs():
                        if s.add_fork_proof(a, b).proof is not None:
                            changed = True


def expected_ids(sc: Scenario) -> tuple[set[bytes], dict[tuple[str, str], int]]:
    """What the rules predict: each main chain, cut below a fork and above Dave's lowest cutoff per log."""
    ids: set[bytes] = set()
    frozen: dict[tuple[str, str], int] = {}
    for (log, feed), chain in sc.chains.items():
        limit = len(chain)
        fork = sc.fork_c if feed == CAROL.peer_id else sc.fork_d if feed == DAVE.peer_id and log == CONTROL_LOG \
            else None
        cut = min((c.get(log, 0) for c in sc.cutoffs), default=None) if feed == DAVE.peer_id else None
        if fork is not None and (cut is None or fork.at <= cut):
            # A fork within what stays is found everywhere; one above the cutoff only where the
            # events came before the revocation (then its proof spreads), so it is checked apart.
            frozen[(log, feed)] = fork.at
            limit = min(limit, fork.at - 1)
        if cut is not None:
            limit = min(limit, cut)
        ids |= {ev.id for ev in chain[:limit]}
    return ids, frozen


CONVERGE = settings(max_examples=130, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@CONVERGE
@given(sc=scenarios(), data=st.data())
def test_any_delivery_order_converges(sc: Scenario, data: st.DataObject) -> None:
    raws = [ev.raw for ev in sc.events + sc.duplicates]
    n = data.draw(st.integers(2, 4), label="replicas")
    every_cert = [data.draw(st.booleans(), label=f"replica {i} knows every certificate") for i in range(n)]
    states = [new_state(*(ALL_CERTS if full else (CERT_A,)), node_logs=True) for full in every_cert]
    orders = [data.draw(st.permutations(raws), label=f"order {i}") for i in range(n)]
    settle(states, orders)
    event(f"{len(sc.events)//10*10}+ events, {len(sc.cutoffs)} revocations, fork C: {sc.fork_c is not None}, "
          f"fork D: {sc.fork_d is not None}, frozen: {len(states[0].frozen)}")

    first = states[0]
    ids, frozen_expected = expected_ids(sc)
    for s in states:
        assert {ev.id for ev in s.events.values()} == ids
        assert s.head_list() == first.head_list()
        assert {k: v[0] for k, v in s.frozen.items()} == {k: v[0] for k, v in first.frozen.items()}
        assert s.digest() == first.digest()
        assert [ev.id for ev in s.ordered()] == [ev.id for ev in first.ordered()]
        cfg, cfg0 = s.config(), first.config()
        assert cfg == cfg0
        assert cfg.digest() == cfg0.digest()
        # What the rules predict, not only what the replicas agree on.
        for key, point in frozen_expected.items():
            assert s.frozen[key][0] == point
        for key, (point, raw_a, raw_b) in s.frozen.items():
            a, b = decode_event(raw_a), decode_event(raw_b)
            assert (a.log, a.feed, a.seq) == (b.log, b.feed, b.seq) == (*key, point) and a.id != b.id
        revoked = bool(sc.cutoffs)
        members = {BOB.peer_id, CAROL.peer_id} | ({ADMIN.peer_id} if sc.admin_added else set())
        assert set(cfg.members) == members | (set() if revoked else {DAVE.peer_id})
        if revoked:
            listed = {log for c in sc.cutoffs for log in c}
            assert cfg.revoked == {DAVE.peer_id: {log: min(c.get(log, 0) for c in sc.cutoffs) for log in listed}}
        else:
            assert cfg.revoked == {}
        for ev in s.events.values():  # nothing of Dave's beyond a cutoff survives, whatever the order
            if ev.feed == DAVE.peer_id and revoked:
                assert ev.seq <= min(c.get(ev.log, 0) for c in sc.cutoffs)


def test_convergence_example_with_every_rule_at_once() -> None:
    """A fixed history that exercises fork, revocation and learnt certificates together, in many orders."""
    a, b, c, d = Feed(ADMIN), Feed(BOB), Feed(CAROL), Feed(DAVE)
    events = [a.next(MEMBER_ADD, {"cert": cert.raw}) for cert in (CERT_A, CERT_B, CERT_C, CERT_D)]
    events += [b.next(), c.next(), d.next(), c.next(), d.next(), c.next(), d.next(), a.next()]
    events.append(a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 2})))
    branch = c.branch(2)
    events += [branch.next(fields=claim(77)), branch.next(fields=claim(78))]
    rng = random.Random(7)
    raws = [ev.raw for ev in events]
    states = []
    orders = []
    for i in range(12):
        order = raws + raws[:3]
        rng.shuffle(order)
        orders.append(order)
        states.append(new_state(*(ALL_CERTS if i % 2 else (CERT_A,))))
    settle(states, orders)
    expected = {ev.id for ev in a.chain + b.chain + c.chain[:1] + d.chain[:2]}
    for s in states:
        assert {ev.id for ev in s.events.values()} == expected
        assert s.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 2
        assert s.digest() == states[0].digest()
        assert s.config().digest() == states[0].config().digest()
        assert set(s.config().members) == {ADMIN.peer_id, BOB.peer_id, CAROL.peer_id}


def test_a_term_pushed_up_to_its_bound_is_overtaken_a_second_later() -> None:
    """The largest term a claim may carry is its own time in seconds: a member that claims it holds the
    office's highest term for one second, after which an honest claim of term + 1 is accepted."""
    s = new_state(*ALL_CERTS)
    b, c = Feed(BOB), Feed(CAROL)
    b.clock = c.clock = NOW_MS - 5000
    top = b.next(COORDINATOR_CLAIM, claim((NOW_MS - 5000) // 1000))
    assert add(s, top).verdict == ACCEPTED
    too_soon = c.next(COORDINATOR_CLAIM, claim((NOW_MS - 5000) // 1000 + 1))
    assert add(s, too_soon).verdict == REFUSED
    c2 = Feed(CAROL)
    c2.clock = NOW_MS - 3990
    later = c2.next(COORDINATOR_CLAIM, claim((NOW_MS - 5000) // 1000 + 1))
    s2 = new_state(*ALL_CERTS)
    assert add(s2, top).verdict == ACCEPTED and add(s2, later).verdict == ACCEPTED
    assert max(s2.config().coordinator_terms) == ((NOW_MS - 5000) // 1000 + 1, CAROL.peer_id)
