"""Reading the replicated logs' state (core/logstate.py): the configuration (members, revocations,
terms), its digest, the total order of events, and building the next event to append.
"""

from __future__ import annotations

from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import COORDINATOR_ROLES, Certificate
from peerbackup.core.events import CONTROL_LOG, GENESIS, signed_by
from peerbackup.core.logstate import (
    ACCEPTED,
    COORDINATOR_CLAIM,
    MEMBER_ADD,
    MEMBER_REVOKE,
    REFUSED,
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
    NOW,
    NOW_MS,
    OFFICE_KEY,
    PLAIN,
    Feed,
    add,
    claim,
    forked_carol,
    hlc_at,
    new_state,
    revoke_fields,
)


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
