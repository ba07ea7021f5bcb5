"""The replicated logs (core/logstate.py) on a writer that forks and on a removed member: a fork
freezes the feed at its lowest fork point, and a revocation's cutoff drops and refuses what lies beyond.
"""

from __future__ import annotations

from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.logstate import (
    ACCEPTED,
    DUPLICATE,
    FORK,
    MEMBER_REVOKE,
    PENDING,
    REFUSED,
)
from tests.core._logstate import (
    ADMIN,
    ALL_CERTS,
    BOB,
    CAROL,
    CERT_A,
    CERT_D,
    DAVE,
    NODE_D,
    NOW,
    Feed,
    add,
    body_of,
    claim,
    forked_carol,
    new_state,
    raw_event,
    revoke_fields,
)


def test_a_second_event_at_a_held_position_is_a_fork() -> None:
    s = new_state(*ALL_CERTS)
    main, other = forked_carol()
    for ev in main[:3]:
        add(s, ev)
    out = add(s, other[0])
    assert out.verdict == FORK
    assert "signed two events at seq 2" in out.reason and "frozen at seq 1" in out.reason
    assert out.proof == (main[1].raw, other[0].raw)
    assert out.removed == (main[1], main[2])
    assert s.frozen[(CONTROL_LOG, CAROL.peer_id)] == (2, main[1].raw, other[0].raw)
    assert s.heads[(CONTROL_LOG, CAROL.peer_id)] == 1
    assert set(s.events) == {(CONTROL_LOG, CAROL.peer_id, 1)}
    assert s.proofs() == [(main[1].raw, other[0].raw)]
    # Everything from the fork point on is refused now; what came before is still known.
    for ev in (main[1], main[2], main[3], other[1]):
        again = add(s, ev)
        assert again.verdict == REFUSED and "frozen at seq 1" in again.reason
    assert add(s, main[0]).verdict == DUPLICATE


def test_a_fork_proof_from_a_peer_freezes_the_feed() -> None:
    main, other = forked_carol()
    s = new_state(*ALL_CERTS)
    for ev in main:
        add(s, ev)
    out = s.add_fork_proof(main[1].raw, other[0].raw)
    assert out.verdict == FORK and out.proof is not None
    assert out.removed == tuple(main[1:])
    assert s.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 2
    assert s.heads[(CONTROL_LOG, CAROL.peer_id)] == 1
    # Either order of the pair, whether we hold one of its events or neither, freezes the same way.
    for pair in [(main[1].raw, other[0].raw), (other[0].raw, main[1].raw)]:
        held = new_state(*ALL_CERTS)
        for ev in main:
            add(held, ev)
        fresh = new_state(*ALL_CERTS)
        for t in (held, fresh):
            got = t.add_fork_proof(*pair)
            assert got.verdict == FORK and got.proof is not None and set(got.proof) == set(pair)
            assert t.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 2
        assert held.digest() == s.digest()
        assert add(fresh, main[0]).verdict == ACCEPTED
        assert add(fresh, main[1]).verdict == REFUSED
        assert fresh.digest() == s.digest()


def test_the_lowest_fork_point_wins() -> None:
    a = Feed(CAROL)
    main = [a.next() for _ in range(5)]
    low = a.branch(2).next(fields=claim(500))
    high = a.branch(4).next(fields=claim(700))
    for first, second in [((main[3], high), (main[1], low)), ((main[1], low), (main[3], high))]:
        s = new_state(*ALL_CERTS)
        for ev in main:
            add(s, ev)
        out1 = s.add_fork_proof(first[0].raw, first[1].raw)
        out2 = s.add_fork_proof(second[0].raw, second[1].raw)
        assert out1.verdict == out2.verdict == FORK
        assert s.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 2
        assert s.heads[(CONTROL_LOG, CAROL.peer_id)] == 1
        assert set(s.events) == {(CONTROL_LOG, CAROL.peer_id, 1)}
        if first[0] is main[1]:
            assert out2.proof is None and "already frozen at 1" in out2.reason  # nothing new to spread


def test_a_fork_seen_in_events_after_a_higher_freeze_moves_it_down() -> None:
    a = Feed(CAROL)
    main = [a.next() for _ in range(4)]
    low = a.branch(2).next(fields=claim(500))
    high = a.branch(3).next(fields=claim(700))
    s = new_state(*ALL_CERTS)
    for ev in main:
        add(s, ev)
    assert add(s, high).verdict == FORK
    assert s.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 3
    out = add(s, low)
    assert out.verdict == FORK and out.proof == (main[1].raw, low.raw)
    assert s.frozen[(CONTROL_LOG, CAROL.peer_id)][0] == 2


def test_fork_proofs_that_are_not() -> None:
    main, other = forked_carol()
    s = new_state(*ALL_CERTS)
    same = s.add_fork_proof(main[1].raw, main[1].raw)
    assert same.verdict == REFUSED and "not a fork proof" in same.reason
    apart = s.add_fork_proof(main[1].raw, other[1].raw)  # seq 2 and seq 3
    assert apart.verdict == REFUSED and "not a fork proof" in apart.reason
    bad = s.add_fork_proof(b"junk", other[0].raw)
    assert bad.verdict == REFUSED and "malformed fork proof" in bad.reason
    forged = raw_event(BOB, body_of(other[0]))
    assert s.add_fork_proof(main[1].raw, forged).verdict == REFUSED
    assert s.frozen == {}
    unknown = new_state(CERT_A).add_fork_proof(main[1].raw, other[0].raw)
    assert unknown.verdict == PENDING and "not known" in unknown.reason


# ---- revocations and cutoffs ----------------------------------------------------------------------


def test_a_revocation_drops_and_refuses_events_beyond_the_cutoff() -> None:
    s = new_state(*ALL_CERTS)
    d = Feed(DAVE)
    evs = [d.next() for _ in range(4)]
    for ev in evs:
        add(s, ev)
    out = add(s, Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 2})))
    assert out.verdict == ACCEPTED
    assert out.removed == (evs[2], evs[3])
    assert s.heads[(CONTROL_LOG, DAVE.peer_id)] == 2
    assert s.cutoffs == {DAVE.peer_id: {CONTROL_LOG: 2}}
    for ev in (evs[2], evs[3], d.next()):
        again = add(s, ev)
        assert again.verdict == REFUSED and "after its removal (last accepted seq 2)" in again.reason
    assert add(s, evs[1]).verdict == DUPLICATE


def test_events_at_or_below_the_cutoff_arriving_after_the_revocation_are_accepted() -> None:
    s = new_state(*ALL_CERTS)
    d = Feed(DAVE)
    evs = [d.next() for _ in range(3)]
    assert add(s, Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 2}))).verdict == ACCEPTED
    assert add(s, evs[1]).verdict == PENDING
    assert add(s, evs[0]).verdict == ACCEPTED
    assert add(s, evs[1]).verdict == ACCEPTED
    assert add(s, evs[2]).verdict == REFUSED
    assert s.heads[(CONTROL_LOG, DAVE.peer_id)] == 2


def test_a_log_the_revocation_did_not_list_gets_cutoff_zero() -> None:
    s = new_state(*ALL_CERTS, node_logs=True)
    d, n = Feed(DAVE), Feed(DAVE, log=NODE_D)
    office_evs = [d.next() for _ in range(2)]
    node_evs = [n.next("job.progress", {"job": "j1", "agent": DAVE.peer_id}) for _ in range(2)]
    for ev in office_evs + node_evs:
        assert add(s, ev).verdict == ACCEPTED
    out = add(s, Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1})))
    assert {ev.id for ev in out.removed} == {ev.id for ev in (office_evs[1], *node_evs)}
    assert s.head_list() == sorted([(CONTROL_LOG, ADMIN.peer_id, 1, s.events[(CONTROL_LOG, ADMIN.peer_id, 1)].id),
                                    (CONTROL_LOG, DAVE.peer_id, 1, office_evs[0].id)])
    assert add(s, node_evs[0]).verdict == REFUSED
    assert add(s, n.next("job.progress", {"job": "j1", "agent": DAVE.peer_id})).verdict == REFUSED


def test_several_revocations_the_lowest_cutoff_wins() -> None:
    d = Feed(DAVE)
    evs = [d.next() for _ in range(4)]
    a = Feed(ADMIN)
    r3 = a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 3}))
    r1 = a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1}, at=NOW + 1))
    b = Feed(ADMIN)  # the same two cutoffs, written in the other order
    b1 = b.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1}, at=NOW + 1))
    b3 = b.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 3}))
    for revs in ([r3, r1], [b1, b3]):
        s = new_state(*ALL_CERTS)
        for ev in evs + revs:
            assert add(s, ev).verdict == ACCEPTED
        assert s.cutoffs[DAVE.peer_id] == {CONTROL_LOG: 1}
        assert s.heads[(CONTROL_LOG, DAVE.peer_id)] == 1
        assert add(s, evs[1]).verdict == REFUSED


def test_a_revocation_of_an_unknown_peer_applies_when_its_events_come() -> None:
    s = new_state(CERT_A)
    d = Feed(DAVE)
    evs = [d.next() for _ in range(2)]
    assert add(s, Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1}))).verdict == ACCEPTED
    assert add(s, evs[0]).verdict == PENDING  # no certificate yet
    s.add_cert(CERT_D)
    assert add(s, evs[0]).verdict == ACCEPTED
    assert add(s, evs[1]).verdict == REFUSED
