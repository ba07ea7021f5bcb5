"""The verdicts of the replicated logs (core/logstate.py) on one event: accepted, duplicate, pending
until its predecessor or writer is known, and every reason an event is refused (malformed, forged, a
broken chain, a clock too far ahead, an unknown log, a writer without the authority).
"""

from __future__ import annotations

from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.certs import ROLES, Certificate, Revocation
from peerbackup.core.events import CONTROL_LOG, GENESIS, decode_event, make_event, signed_by
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import (
    ACCEPTED,
    COORDINATOR_CLAIM,
    DUPLICATE,
    MEMBER_ADD,
    MEMBER_REVOKE,
    PENDING,
    REFUSED,
    Outcome,
)
from tests.core._logstate import (
    ADMIN,
    AHEAD_MS,
    ALL_CERTS,
    BOB,
    CAROL,
    CERT_A,
    CERT_B,
    CERT_PLAIN,
    DAVE,
    FOREIGN_CERT,
    NOW,
    NOW_MS,
    OFFICE_KEY,
    OTHER_OFFICE_KEY,
    PLAIN,
    Feed,
    add,
    body_of,
    claim,
    hlc_at,
    new_state,
    raw_event,
    revoke_fields,
)


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
