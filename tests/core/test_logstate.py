"""The merge rules of the replicated logs (core/logstate.py) and the hybrid logical clock.

Unit tests pin every verdict and reason; Hypothesis then delivers one history
of events (admin adds, coordinator claims, revocations with cutoffs, forks) to
several fresh replicas in arbitrary orders, with duplicates, retrying what is
pending and exchanging fork proofs as anti-entropy would, and checks that
every replica ends in the same state, and the state the rules predict.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import COORDINATOR_ROLES, ROLES, Certificate, Revocation
from peerbackup.core.events import CONTROL_LOG, GENESIS, Event, decode_event, make_event, signed_by
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import (
    ACCEPTED,
    COORDINATOR_CLAIM,
    DUPLICATE,
    FORK,
    MEMBER_ADD,
    MEMBER_REVOKE,
    PENDING,
    REFUSED,
    LogState,
    Outcome,
    valid_log_name,
)
from peerbackup.errors import FormatError

OFFICE_KEY = SigningKey(b"\x51" * 32)
OTHER_OFFICE_KEY = SigningKey(b"\x52" * 32)
ADMIN = SigningKey(b"\x61" * 32)  # A: every role, rank 0
BOB = SigningKey(b"\x62" * 32)  # B: the default roles
CAROL = SigningKey(b"\x63" * 32)  # C: the default roles (the one that forks)
DAVE = SigningKey(b"\x64" * 32)  # D: the default roles (the one that is removed)
PLAIN = SigningKey(b"\x65" * 32)  # an agent only: not coordinator-eligible
NOW = 1_700_000_000
NOW_MS = NOW * 1000
AHEAD_MS = 120_000

CERT_A = Certificate.issue(OFFICE_KEY, ADMIN.public_key, "alpha", ROLES, 0, NOW)
CERT_B = Certificate.issue(OFFICE_KEY, BOB.public_key, "bravo", COORDINATOR_ROLES, 100, NOW)
CERT_C = Certificate.issue(OFFICE_KEY, CAROL.public_key, "charlie", COORDINATOR_ROLES, 100, NOW)
CERT_D = Certificate.issue(OFFICE_KEY, DAVE.public_key, "delta", COORDINATOR_ROLES, 100, NOW)
CERT_PLAIN = Certificate.issue(OFFICE_KEY, PLAIN.public_key, "plain", ("agent",), 100, NOW)
FOREIGN_CERT = Certificate.issue(OTHER_OFFICE_KEY, BOB.public_key, "bravo", COORDINATOR_ROLES, 100, NOW)
ALL_CERTS = (CERT_A, CERT_B, CERT_C, CERT_D, CERT_PLAIN)
NODE_D = "node:dave-files"


def hlc_at(ms: int, counter: int = 0) -> int:
    return hlcmod.pack(ms, counter)


def new_state(*certs: Certificate, node_logs: bool = False) -> LogState:
    s = LogState(office_key=OFFICE_KEY.public_key, max_ahead_ms=AHEAD_MS)
    if node_logs:
        s.known_logs = valid_log_name
    for c in certs:
        s.add_cert(c)
    return s


def claim(term: int) -> dict[str, Any]:
    return {"term": term}


def revoke_fields(peer: SigningKey, cutoff: dict[str, int], office_key: SigningKey = OFFICE_KEY,
                  at: int = NOW, signed: bool = True) -> dict[str, Any]:
    """A member.revoke's fields as remove-peer writes them: the cutoff signed inside the revocation too
    (signed=False: as an older version wrote them, the cutoff in the event only)."""
    rev = Revocation.issue(office_key, peer.peer_id, at, "left", cutoff if signed else None)
    return {"revocation": rev.raw, "cutoff": cutoff}


@dataclass
class Feed:
    """One writer's chain in one log, built by hand so tests control seq, prev and HLC."""

    key: SigningKey
    log: str = CONTROL_LOG
    chain: list[Event] = field(default_factory=list)
    clock: int = NOW_MS - 60_000

    def next(self, kind: str = COORDINATOR_CLAIM, fields: dict[str, Any] | None = None,
             hlc: int | None = None) -> Event:
        prev = self.chain[-1].id if self.chain else GENESIS
        self.clock += 10
        ev = make_event(self.key, self.log, len(self.chain) + 1, prev, hlc_at(self.clock) if hlc is None else hlc,
                        kind, claim(len(self.chain) + 1) if fields is None else fields)
        self.chain.append(ev)
        return ev

    def branch(self, at: int) -> Feed:
        """Another chain that shares this one's events before seq `at`: what a forking writer signs."""
        return Feed(self.key, self.log, list(self.chain[:at - 1]), self.clock + 5)


def raw_event(signer: SigningKey, body_obj: dict[str, Any]) -> bytes:
    body = codec.pack(body_obj)
    return codec.pack({"e": body, "s": signer.sign(body)})


def body_of(ev: Event) -> dict[str, Any]:
    return codec.unpack_map(ev.body, "event")


def add(s: LogState, ev: Event | bytes, now_ms: int = NOW_MS) -> Outcome:
    return s.add(ev.raw if isinstance(ev, Event) else ev, now_ms)


# ---- the hybrid logical clock ---------------------------------------------------------------


def test_hlc_pack_round_trip() -> None:
    t = hlcmod.pack(NOW_MS, 7)
    assert (hlcmod.wall_ms(t), hlcmod.counter(t)) == (NOW_MS, 7)
    assert hlcmod.pack(NOW_MS, 0) > hlcmod.pack(NOW_MS - 1, 65535)


def test_hlc_tick_follows_the_wall_clock_and_never_goes_back() -> None:
    assert hlcmod.tick(0, NOW_MS) == hlcmod.pack(NOW_MS, 0)
    last = hlcmod.pack(NOW_MS, 3)
    assert hlcmod.tick(last, NOW_MS + 1) == hlcmod.pack(NOW_MS + 1, 0)
    assert hlcmod.tick(last, NOW_MS) == hlcmod.pack(NOW_MS, 4)  # same millisecond: the counter moves
    assert hlcmod.tick(last, NOW_MS - 5000) == hlcmod.pack(NOW_MS, 4)  # the wall clock went back: still forward


def test_hlc_counter_overflow_moves_to_the_next_millisecond() -> None:
    full = hlcmod.pack(NOW_MS, 65535)
    assert hlcmod.tick(full, NOW_MS) == hlcmod.pack(NOW_MS + 1, 0)
    assert hlcmod.tick(full, NOW_MS - 10) == hlcmod.pack(NOW_MS + 1, 0)


def test_hlc_receive_moves_past_the_remote_time() -> None:
    mine = hlcmod.pack(NOW_MS, 0)
    remote = hlcmod.pack(NOW_MS + 50_000, 9)
    got = hlcmod.receive(mine, remote, NOW_MS, AHEAD_MS)
    assert got == hlcmod.pack(NOW_MS + 50_000, 10)
    # A remote time behind ours leaves the wall clock in charge.
    assert hlcmod.receive(mine, hlcmod.pack(NOW_MS - 9000, 0), NOW_MS + 1, AHEAD_MS) == hlcmod.pack(NOW_MS + 1, 0)
    # Exactly at the limit is accepted.
    assert hlcmod.receive(mine, hlcmod.pack(NOW_MS + AHEAD_MS, 0), NOW_MS, AHEAD_MS) > mine


def test_hlc_receive_refuses_a_remote_far_ahead() -> None:
    with pytest.raises(FormatError, match="ahead"):
        hlcmod.receive(0, hlcmod.pack(NOW_MS + AHEAD_MS + 1, 0), NOW_MS, AHEAD_MS)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(-3, 3), st.integers(0, 65535)), min_size=1, max_size=40))
def test_hlc_is_monotonic(steps: list[tuple[bool, int, int]]) -> None:
    last, wall = 0, NOW_MS
    for is_receive, delta, remote_counter in steps:
        wall += delta  # the wall clock may go back, too
        if is_receive:
            remote = hlcmod.pack(wall + delta * 100, remote_counter)
            t = hlcmod.receive(last, remote, wall, AHEAD_MS)
            assert t > remote
        else:
            t = hlcmod.tick(last, wall)
        assert t > last
        assert hlcmod.wall_ms(t) >= wall
        last = t


# ---- accepted, duplicate, pending ---------------------------------------------------------------


def test_a_chain_is_accepted_in_order() -> None:
    s = new_state(*ALL_CERTS)
    f = Feed(BOB)
    evs = [f.next() for _ in range(3)]
    for i, ev in enumerate(evs, 1):
        out = add(s, ev)
        assert (out.verdict, out.reason, out.event) == (ACCEPTED, "", ev)
        assert s.heads[(CONTROL_LOG, BOB.peer_id)] == i
    assert [s.events[(CONTROL_LOG, BOB.peer_id, i)] for i in (1, 2, 3)] == evs
    assert s.head_list() == [(CONTROL_LOG, BOB.peer_id, 3, evs[-1].id)]
    assert s.hlc >= evs[-1].hlc


def test_the_same_event_again_is_a_duplicate() -> None:
    s = new_state(*ALL_CERTS)
    f = Feed(BOB)
    e1, e2 = f.next(), f.next()
    add(s, e1)
    add(s, e2)
    before = s.digest()
    for ev in (e1, e2):
        out = add(s, ev)
        assert out.verdict == DUPLICATE and out.event == ev and out.removed == ()
    assert s.digest() == before


def test_a_gap_is_pending_until_the_predecessor_arrives() -> None:
    s = new_state(*ALL_CERTS)
    f = Feed(BOB)
    e1, e2, e3 = f.next(), f.next(), f.next()
    for ev in (e3, e2):
        out = add(s, ev)
        assert out.verdict == PENDING
        assert "gap" in out.reason
    assert (CONTROL_LOG, BOB.peer_id) not in s.heads
    assert add(s, e1).verdict == ACCEPTED
    assert add(s, e3).verdict == PENDING  # still one missing
    assert add(s, e2).verdict == ACCEPTED
    assert add(s, e3).verdict == ACCEPTED
    assert s.heads[(CONTROL_LOG, BOB.peer_id)] == 3


def test_an_unknown_writer_is_pending_until_its_certificate_is_known() -> None:
    s = new_state(CERT_A)
    e1 = Feed(BOB).next()
    out = add(s, e1)
    assert out.verdict == PENDING and BOB.peer_id in out.reason and "not known" in out.reason
    s.add_cert(CERT_B)
    assert add(s, e1).verdict == ACCEPTED


def test_an_unknown_writer_is_learnt_from_member_add() -> None:
    s = new_state(CERT_A)
    b1 = Feed(BOB).next()
    assert add(s, b1).verdict == PENDING
    out = add(s, Feed(ADMIN).next(MEMBER_ADD, {"cert": CERT_B.raw}))
    assert out.verdict == ACCEPTED
    assert s.certs[BOB.peer_id] == CERT_B
    assert add(s, b1).verdict == ACCEPTED


def test_add_cert_keeps_the_latest_issued() -> None:
    s = new_state(CERT_B)
    renewed = Certificate.issue(OFFICE_KEY, BOB.public_key, "bravo", ROLES, 100, NOW + 60)
    s.add_cert(renewed)
    s.add_cert(CERT_B)
    assert s.certs[BOB.peer_id] == renewed


# ---- refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\xc1", codec.pack([1, 2]), codec.pack({"e": b"x", "s": b"y"}),
                                 codec.pack({"e": codec.pack({"v": 1}), "s": bytes(64)}), b"\x00" * 70_000])
def test_malformed_bytes_are_refused(raw: bytes) -> None:
    s = new_state(*ALL_CERTS)
    out = add(s, raw)
    assert out.verdict == REFUSED and out.reason.startswith("malformed event") and out.event is None
    assert s.events == {}


def test_an_event_of_a_newer_version_is_refused_as_malformed() -> None:
    ev = Feed(BOB).next()
    raw = raw_event(BOB, {**body_of(ev), "v": 2})
    out = add(new_state(*ALL_CERTS), raw)
    assert out.verdict == REFUSED and "malformed" in out.reason and "version" in out.reason


def test_an_event_signed_by_another_key_is_refused_as_forged() -> None:
    s = new_state(*ALL_CERTS)
    genuine = Feed(BOB).next()
    forged = raw_event(CAROL, body_of(genuine))  # claims to be Bob's, signed by Carol
    out = add(s, forged)
    assert out.verdict == REFUSED and "forged or tampered" in out.reason and BOB.peer_id in out.reason
    assert s.events == {}
    assert add(s, genuine).verdict == ACCEPTED


def test_a_body_changed_after_signing_is_refused() -> None:
    s = new_state(*ALL_CERTS)
    ev = Feed(BOB).next()
    changed = codec.pack({**body_of(ev), "f": claim(99)})
    tampered = codec.pack({"e": changed, "s": ev.sig})
    out = add(s, tampered)
    assert out.verdict == REFUSED and "forged or tampered" in out.reason


def test_a_signature_of_another_body_is_refused() -> None:
    s = new_state(*ALL_CERTS)
    ev = Feed(BOB).next()
    other = codec.pack({**body_of(ev), "f": claim(99)})
    swapped = codec.pack({"e": ev.body, "s": BOB.sign(other)})
    out = add(s, swapped)
    assert out.verdict == REFUSED and "forged or tampered" in out.reason
    assert not signed_by(decode_event(swapped), BOB.public_key)


def test_a_broken_chain_is_refused() -> None:
    s = new_state(*ALL_CERTS)
    e1 = Feed(BOB).next()
    add(s, e1)
    stray = make_event(BOB, CONTROL_LOG, 2, b"\x07" * 32, hlc_at(NOW_MS - 100), COORDINATOR_CLAIM, claim(2))
    out = add(s, stray)
    assert out.verdict == REFUSED and "broken chain" in out.reason
    assert s.heads[(CONTROL_LOG, BOB.peer_id)] == 1


def test_an_hlc_time_too_far_ahead_is_refused() -> None:
    s = new_state(*ALL_CERTS)
    far = make_event(BOB, CONTROL_LOG, 1, GENESIS, hlc_at(NOW_MS + AHEAD_MS + 1), COORDINATOR_CLAIM, claim(1))
    out = add(s, far)
    assert out.verdict == REFUSED and "ahead" in out.reason
    assert s.events == {} and s.hlc == 0
    # The same event is fine once our clock has caught up, and exactly at the limit it is fine, too.
    assert add(s, far, NOW_MS + 1).verdict == ACCEPTED
    edge = make_event(CAROL, CONTROL_LOG, 1, GENESIS, hlc_at(NOW_MS + AHEAD_MS), COORDINATOR_CLAIM, claim(1))
    assert add(s, edge).verdict == ACCEPTED
    assert s.hlc > far.hlc


def test_an_unknown_log_is_refused() -> None:
    ev = Feed(BOB, log="node:bob-files").next("job.started", {"job": "j1", "agent": BOB.peer_id})
    out = add(new_state(*ALL_CERTS), ev)
    assert out.verdict == REFUSED and "unknown log" in out.reason
    # Refused before the writer is even looked up.
    assert add(new_state(), ev).verdict == REFUSED
    assert add(new_state(*ALL_CERTS, node_logs=True), ev).verdict == ACCEPTED
    # A node log is named by a well-formed node name; nothing else is a log.
    for bad in ("node:", "node:../x", "node:Bob", "nodes:bob", "other"):
        out = add(new_state(*ALL_CERTS, node_logs=True), Feed(BOB, log=bad).next("job.started", {}))
        assert out.verdict == REFUSED and "unknown log" in out.reason, bad


@pytest.mark.parametrize(("writer", "kind", "fields", "reason"), [
    (BOB, MEMBER_ADD, {"cert": CERT_PLAIN.raw}, "not an admin and cannot add members"),
    (ADMIN, MEMBER_ADD, {}, "member.add without a certificate"),
    (ADMIN, MEMBER_ADD, {"cert": FOREIGN_CERT.raw}, "member.add: "),
    (ADMIN, MEMBER_ADD, {"cert": b"not a certificate"}, "member.add: "),
    (PLAIN, COORDINATOR_CLAIM, claim(1), "is not coordinator-eligible"),
    (BOB, COORDINATOR_CLAIM, {"term": "one"}, "coordinator.claim: term must be an integer from 1"),
    (BOB, COORDINATOR_CLAIM, {"term": True}, "coordinator.claim: term must be an integer from 1"),
    (BOB, COORDINATOR_CLAIM, {}, "coordinator.claim without a term"),
    # Issue 14, finding 2: a term no honest peer can follow (term + 1 would not fit in 64 bits), or one
    # beyond a term a second of the claim's own time, or none at all.
    (BOB, COORDINATOR_CLAIM, {"term": 2**64 - 1}, "never outrun"),
    (BOB, COORDINATOR_CLAIM, {"term": NOW}, "never outrun one a second"),
    (BOB, COORDINATOR_CLAIM, {"term": 0}, "never outrun"),
    (BOB, "schedule.set", {"at": "02:00"}, "unknown control event 'schedule.set' from a non-admin"),
    (ADMIN, MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0}, office_key=OTHER_OFFICE_KEY), "member.revoke: "),
    (ADMIN, MEMBER_REVOKE, {"revocation": Revocation.issue(OFFICE_KEY, DAVE.peer_id, NOW).raw},
     "member.revoke without a revocation or a well-formed cutoff"),
    (ADMIN, MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: -1}, signed=False), "member.revoke: cutoff must be"),
    (ADMIN, MEMBER_REVOKE, {**revoke_fields(DAVE, {}), "cutoff": {1: 2}}, "member.revoke: cutoff must be"),
    (ADMIN, MEMBER_REVOKE, {**revoke_fields(DAVE, {CONTROL_LOG: 3}), "cutoff": {}},
     "a cutoff other than the one its revocation signs"),
    (BOB, MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0}), "cannot write a member's removal"),
    (BOB, MEMBER_REVOKE, revoke_fields(DAVE, {}, signed=False), "cannot write a member's removal"),
])
def test_authority_is_checked_per_control_kind(writer: SigningKey, kind: str, fields: dict[str, Any],
                                               reason: str) -> None:
    s = new_state(*ALL_CERTS)
    out = add(s, Feed(writer).next(kind, fields))
    assert out.verdict == REFUSED
    assert reason in out.reason
    assert s.events == {} and s.cutoffs == {}


def test_what_authority_allows() -> None:
    s = new_state(*ALL_CERTS)
    a, b = Feed(ADMIN), Feed(BOB)
    assert add(s, a.next(MEMBER_ADD, {"cert": CERT_B.raw})).verdict == ACCEPTED
    assert add(s, a.next("schedule.set", {"at": "02:00"})).verdict == ACCEPTED  # any kind from an admin
    assert add(s, b.next(COORDINATOR_CLAIM, claim(1))).verdict == ACCEPTED
    # Only an admin writes a removal: a member relaying a public revocation is refused, whatever its cutoff.
    out = add(s, b.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0})))
    assert out.verdict == REFUSED and "cannot write a member's removal" in out.reason
    assert s.cutoffs == {}
    out = add(s, a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0})))
    assert out.verdict == ACCEPTED
    assert s.cutoffs == {DAVE.peer_id: {CONTROL_LOG: 0}}
    # In a node's log (core/nodelog.py): only its own kinds, each from the role that writes it, naming
    # its writer where it names one.
    def node_event(key: SigningKey, kind: str, fields: dict[str, Any]) -> Outcome:
        # Each the first event of its writer's feed, in a state of its own.
        n = new_state(*ALL_CERTS, node_logs=True)
        return add(n, Feed(key, log="node:plain-files").next(kind, {"job": "j1", **fields}))

    plain, bob = PLAIN.peer_id, BOB.peer_id
    assert node_event(PLAIN, "job.started", {"agent": plain}).verdict == ACCEPTED
    assert node_event(BOB, "job.dispatched", {"agent": plain, "coordinator": bob, "term": 1}).verdict == ACCEPTED
    assert node_event(ADMIN, "restore.done", {"agent": ADMIN.peer_id}).verdict == ACCEPTED
    for key, kind, fields, why in (
            (PLAIN, MEMBER_ADD, {"anything": 1}, "not an event of a backup node's log"),
            (PLAIN, COORDINATOR_CLAIM, {}, "not an event of a backup node's log"),
            (PLAIN, "job.dispatched", {"agent": plain, "coordinator": plain}, "no coordinator role"),
            (PLAIN, "act_as.issued", {"agent": plain}, "no coordinator role"),
            (PLAIN, "job.dispatch_failed", {"agent": plain}, "no coordinator role"),
            (BOB, "job.dispatched", {"agent": plain, "coordinator": ADMIN.peer_id}, "names"),
            (BOB, "job.done", {"agent": plain}, "not its writer"),
            (PLAIN, "job.failed", {"agent": plain, "node": "other"}, "for node 'other'"),
            (PLAIN, "job.progress", {"agent": plain, "job": 7}, "job must be text")):
        out = node_event(key, kind, fields)
        assert out.verdict == REFUSED and why in out.reason, (kind, out.reason)


def test_a_refused_event_leaves_the_clock_alone() -> None:
    s = new_state(*ALL_CERTS)
    out = add(s, Feed(PLAIN).next(COORDINATOR_CLAIM, claim(1), hlc=hlc_at(NOW_MS + 1000)))
    assert out.verdict == REFUSED and s.hlc == 0


# ---- forks -----------------------------------------------------------------------------------------


def forked_carol(length: int = 4, at: int = 2) -> tuple[list[Event], list[Event]]:
    """Carol's chain of `length` events, and a second chain signed by her that differs from seq `at` on."""
    a = Feed(CAROL)
    main = [a.next() for _ in range(length)]
    b = a.branch(at)
    other = [b.next(fields=claim(1000 + i)) for i in range(2)]
    return main, other


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


# ---- reading: config, digest, order, append ----------------------------------------------------------


def test_config_members_revocations_and_terms() -> None:
    s = new_state(CERT_A)
    a = Feed(ADMIN)
    for c in (CERT_A, CERT_B, CERT_C, CERT_D):
        assert add(s, a.next(MEMBER_ADD, {"cert": c.raw})).verdict == ACCEPTED
    assert add(s, a.next(COORDINATOR_CLAIM, claim(1))).verdict == ACCEPTED
    assert add(s, Feed(BOB).next(COORDINATOR_CLAIM, claim(2))).verdict == ACCEPTED
    assert add(s, Feed(DAVE).next(COORDINATOR_CLAIM, claim(3))).verdict == ACCEPTED
    before = s.config()
    assert before.members == {c.peer_id: c for c in (CERT_A, CERT_B, CERT_C, CERT_D)}
    assert before.revoked == {}
    assert add(s, a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1}))).verdict == ACCEPTED
    cfg = s.config()
    assert cfg.members == {c.peer_id: c for c in (CERT_A, CERT_B, CERT_C)}
    assert cfg.revoked == {DAVE.peer_id: {CONTROL_LOG: 1}}
    assert sorted(cfg.coordinator_terms) == sorted([(1, ADMIN.peer_id), (2, BOB.peer_id), (3, DAVE.peer_id)])
    claims = [e for e in s.ordered() if e.kind == COORDINATOR_CLAIM]
    assert cfg.coordinator_terms == [(int(e.fields["term"]), e.feed) for e in claims]
    assert cfg.digest() != before.digest()
    # A certificate known only from a hello is no member of the configuration.
    assert PLAIN.peer_id not in new_state(*ALL_CERTS).config().members


def test_config_keeps_the_last_member_add_of_a_peer() -> None:
    s = new_state(CERT_A)
    a = Feed(ADMIN)
    renewed = Certificate.issue(OFFICE_KEY, BOB.public_key, "bravo-2", COORDINATOR_ROLES, 50, NOW + 60)
    add(s, a.next(MEMBER_ADD, {"cert": CERT_B.raw}))
    add(s, a.next(MEMBER_ADD, {"cert": renewed.raw}))
    assert s.config().members[BOB.peer_id] == renewed


def test_digest_follows_heads_and_freezes() -> None:
    s, t = new_state(*ALL_CERTS), new_state(*ALL_CERTS)
    assert s.digest() == t.digest()
    main, other = forked_carol(length=3)
    seen = {s.digest()}
    for ev in main:
        add(s, ev)
        assert s.digest() not in seen
        seen.add(s.digest())
    for ev in reversed(main):  # another order, the same digest
        add(t, ev)
    for ev in main:
        add(t, ev)
    assert t.digest() == s.digest()
    add(s, other[0])
    frozen = s.digest()
    assert frozen not in seen
    # Same heads, but only one of them knows of the fork: the digests differ.
    u = new_state(*ALL_CERTS)
    add(u, main[0])
    assert u.head_list() == s.head_list()
    assert u.digest() != frozen
    u.add_fork_proof(*s.proofs()[0])
    assert u.digest() == frozen


def test_ordered_is_by_hlc_then_feed_then_seq() -> None:
    s = new_state(*ALL_CERTS)
    t = hlc_at(NOW_MS - 1000)
    b, c = Feed(BOB), Feed(CAROL)
    b1 = b.next(hlc=t + 5)
    b2 = b.next(hlc=t)  # an HLC time lower than its predecessor's: order by time, not by seq
    c1 = c.next(hlc=t)
    c2 = c.next(hlc=t + 1)
    for ev in (c1, c2, b1, b2):
        add(s, ev)
    expected = sorted([b1, b2, c1, c2], key=lambda e: (e.hlc, e.feed, e.seq))
    assert s.ordered() == expected
    assert s.ordered()[0].hlc == s.ordered()[1].hlc == t
    assert [e.feed for e in s.ordered()[:2]] == sorted([BOB.peer_id, CAROL.peer_id])
    assert s.ordered("node:bob-files") == []


def test_append_builds_the_next_event() -> None:
    s = new_state(*ALL_CERTS)
    out1 = s.append(BOB, CONTROL_LOG, COORDINATOR_CLAIM, claim(1), NOW_MS)
    out2 = s.append(BOB, CONTROL_LOG, COORDINATOR_CLAIM, claim(2), NOW_MS)  # same millisecond
    assert out1.verdict == out2.verdict == ACCEPTED
    assert out1.event is not None and out2.event is not None
    assert (out1.event.seq, out1.event.prev) == (1, GENESIS)
    assert (out2.event.seq, out2.event.prev) == (2, out1.event.id)
    assert out1.event.hlc == hlc_at(NOW_MS)
    assert hlcmod.wall_ms(out2.event.hlc) == NOW_MS and out2.event.hlc > out1.event.hlc
    assert s.hlc >= out2.event.hlc
    assert signed_by(out2.event, BOB.public_key)
    # After a remote event from the future (within the skew), our next event comes after it.
    remote = Feed(CAROL).next(hlc=hlc_at(NOW_MS + 30_000, 4))
    add(s, remote)
    out3 = s.append(BOB, CONTROL_LOG, COORDINATOR_CLAIM, claim(3), NOW_MS + 1)
    assert out3.event is not None and out3.event.hlc > remote.hlc
    # An append the rules refuse is not kept.
    refused = s.append(PLAIN, CONTROL_LOG, COORDINATOR_CLAIM, claim(4), NOW_MS)
    assert refused.verdict == REFUSED and (CONTROL_LOG, PLAIN.peer_id) not in s.heads
    # The events travel: another replica accepts them as they are.
    t = new_state(*ALL_CERTS)
    for ev in (remote, out1.event, out2.event, out3.event):
        assert add(t, ev).verdict == ACCEPTED
    assert t.digest() == s.digest()


def test_config_digest_ignores_a_log_listed_with_cutoff_zero() -> None:
    # The representation that does converge: every revocation lists the log it cuts.
    d = Feed(DAVE)
    d1 = d.next()
    rev = Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0}))
    x, y = new_state(*ALL_CERTS), new_state(*ALL_CERTS)
    for ev in (d1, rev):
        add(x, ev)
    for ev in (rev, d1):
        add(y, ev)
    assert x.config() == y.config()
    assert x.config().digest() == y.config().digest()


def test_config_digest_does_not_depend_on_delivery_order_of_a_revocation() -> None:
    d = Feed(DAVE)
    d1 = d.next()
    rev = Feed(ADMIN).next(MEMBER_REVOKE, revoke_fields(DAVE, {}))  # as remove-peer writes it for a silent peer
    x, y = new_state(*ALL_CERTS), new_state(*ALL_CERTS)
    for ev in (d1, rev):
        add(x, ev)
    for ev in (rev, d1):
        add(y, ev)
    assert {k: ev.id for k, ev in x.events.items()} == {k: ev.id for k, ev in y.events.items()}
    assert x.digest() == y.digest()
    assert x.config().digest() == y.config().digest()


def test_a_revocation_in_a_feed_that_forks_applies_the_same_everywhere() -> None:
    a = Feed(ADMIN)
    adds = [a.next(MEMBER_ADD, {"cert": c.raw}) for c in (CERT_B, CERT_C, CERT_D)]
    other = a.branch(4).next(fields=claim(9))  # e.g. the admin's disk restored from an old image
    revoke = a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 0}))
    d1 = Feed(DAVE).next()
    x, y = new_state(*ALL_CERTS), new_state(*ALL_CERTS)
    for ev in [*adds, d1, revoke, other]:
        add(x, ev)
    for ev in [*adds, d1, other, revoke]:
        add(y, ev)
    for s in (x, y):
        assert s.frozen[(CONTROL_LOG, ADMIN.peer_id)][0] == 4
    # Both hold the same events (or at least agree on Dave's) and the same configuration.
    assert {ev.id for ev in x.events.values()} == {ev.id for ev in y.events.values()}
    assert x.config().revoked == y.config().revoked


# ---- convergence: any delivery order, the same state ---------------------------------------------------------

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
