"""Who is in the office (Membership) and who is answering (Liveness): pure state, clocks handed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core.certs import CERT_VERSION, COORDINATOR_ROLES, Certificate, Office, Revocation
from peerbackup.core.identity import SigningKey, fingerprint_of
from peerbackup.core.settings import Settings
from peerbackup.errors import (
    Forbidden,
    ForeignOffice,
    FormatError,
    ProtocolError,
    RevokedPeer,
    UnknownPeer,
)
from peerbackup.office.membership.liveness import ALIVE, DEAD, SUSPECT, UNKNOWN, Liveness, StateChange
from peerbackup.office.membership.members import Membership

OFFICE_KEY = SigningKey(b"\x21" * 32)
FOREIGN_KEY = SigningKey(b"\x22" * 32)
OFFICE = Office("Smith & Co", OFFICE_KEY.public_key)
ALICE = SigningKey(b"\x31" * 32)
BOB = SigningKey(b"\x32" * 32)
CAROL = SigningKey(b"\x33" * 32)
NOW = 1_700_000_000
HOUR = 3600


def cert(key: SigningKey = ALICE, issued: int = NOW, validity: int = 10 * HOUR, rank: int = 100,
         roles: tuple[str, ...] = COORDINATOR_ROLES, office_key: SigningKey = OFFICE_KEY,
         name: str = "pc") -> Certificate:
    return Certificate.issue(office_key, key.public_key, name, roles, rank, issued, validity)


def revoke(key: SigningKey, at: int = NOW, office_key: SigningKey = OFFICE_KEY) -> bytes:
    return Revocation.issue(office_key, key.peer_id, at, "gone").raw


def signed(office_key: SigningKey, body_obj: dict[str, Any]) -> bytes:
    body = codec.pack(body_obj)
    return codec.pack({"body": body, "sig": office_key.sign(body)})


# ---- admitting certificates --------------------------------------------------------------------


def test_admit_new_then_known() -> None:
    m = Membership(OFFICE)
    c = cert()
    got, new = m.admit(c.raw, NOW)
    assert (got, new) == (c, True)
    assert m.certs == {ALICE.peer_id: c}
    got, new = m.admit(c.raw, NOW + 1)
    assert (got, new) == (c, False)
    assert m.member(ALICE.peer_id, NOW) == c


def test_later_certificate_replaces_earlier() -> None:
    m = Membership(OFFICE)
    old = cert(issued=NOW, roles=("agent",))
    renewed = cert(issued=NOW + 60, roles=("agent", "admin"))
    m.admit(old.raw, NOW + 120)
    got, new = m.admit(renewed.raw, NOW + 120)
    assert new and got == renewed
    assert m.member(ALICE.peer_id, NOW + 120).has_role("admin")
    # The earlier one, heard again later, does not win back.
    got, new = m.admit(old.raw, NOW + 130)
    assert not new and got == renewed
    assert m.certs[ALICE.peer_id] == renewed


def test_same_issue_time_keeps_the_known_certificate() -> None:
    m = Membership(OFFICE)
    first = cert(name="first")
    second = cert(name="second")
    m.admit(first.raw, NOW)
    got, new = m.admit(second.raw, NOW)
    assert (got.name, new) == ("first", False)


def test_foreign_office_certificate() -> None:
    m = Membership(OFFICE)
    foreign = cert(office_key=FOREIGN_KEY)
    with pytest.raises(ForeignOffice) as info:
        m.admit(foreign.raw, NOW)
    assert info.value.args == (fingerprint_of(FOREIGN_KEY.public_key),)
    assert info.value.code == "foreign-office" and info.value.status == 403
    assert m.certs == {}


def test_certificate_claiming_our_office_with_a_bad_signature_is_forbidden() -> None:
    m = Membership(OFFICE)
    body = {"v": CERT_VERSION, "office": OFFICE.fingerprint, "id": ALICE.peer_id, "key": ALICE.public_key,
            "name": "pc", "roles": ["agent"], "rank": 1, "issued": NOW, "expires": NOW + HOUR}
    with pytest.raises(Forbidden, match="signature does not verify"):
        m.admit(signed(FOREIGN_KEY, body), NOW)
    assert m.certs == {}


def test_revoked_peer_is_refused() -> None:
    m = Membership(OFFICE)
    assert m.add_revocation(revoke(ALICE)) is not None
    with pytest.raises(RevokedPeer) as info:
        m.admit(cert().raw, NOW)
    assert info.value.args == (ALICE.peer_id,)
    # Even a certificate issued after the revocation: a removed machine stays removed.
    with pytest.raises(RevokedPeer):
        m.admit(cert(issued=NOW + HOUR).raw, NOW + HOUR)
    assert ALICE.peer_id not in m.certs


@pytest.mark.parametrize("now", [NOW + 10 * HOUR, NOW + 100 * HOUR, NOW - 301])
def test_expired_or_not_yet_valid_certificate_is_forbidden(now: int) -> None:
    m = Membership(OFFICE)
    with pytest.raises(Forbidden, match="not valid now"):
        m.admit(cert().raw, now)
    assert m.certs == {}


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b"\xc1", codec.pack({"body": b"x", "sig": b"y"}), codec.pack([1, 2]),
    codec.pack({"body": codec.pack({"v": 1}), "sig": b""}),
])
def test_garbage_is_forbidden(raw: bytes) -> None:
    m = Membership(OFFICE)
    with pytest.raises(Forbidden, match="certificate refused"):
        m.admit(raw, NOW)


def test_tampered_certificate_is_forbidden_not_foreign() -> None:
    m = Membership(OFFICE)
    outer = codec.unpack_map(cert(name="reception").raw, "test")
    outer["body"] = outer["body"].replace(b"reception", b"receptioN")
    with pytest.raises(Forbidden):
        m.admit(codec.pack(outer), NOW)


@pytest.mark.parametrize("signer", [FOREIGN_KEY, OFFICE_KEY])
def test_certificate_of_a_newer_version_is_refused_with_a_protocol_error(signer: SigningKey) -> None:
    # Anyone can send this in a hello: the version is read before the signature is checked.
    m = Membership(OFFICE)
    raw = signed(signer, {"v": CERT_VERSION + 1, "office": OFFICE.fingerprint})
    with pytest.raises(ProtocolError):
        m.admit(raw, NOW)


def test_revocation_of_a_newer_version_is_a_format_error() -> None:
    m = Membership(OFFICE)
    with pytest.raises(FormatError):
        m.add_revocation(signed(FOREIGN_KEY, {"v": CERT_VERSION + 1}))


# ---- members -----------------------------------------------------------------------------------


def test_member_refusals() -> None:
    m = Membership(OFFICE)
    m.admit(cert(ALICE).raw, NOW)
    m.admit(cert(BOB).raw, NOW)
    with pytest.raises(UnknownPeer) as unknown:
        m.member(CAROL.peer_id, NOW)
    assert unknown.value.args == (CAROL.peer_id,) and unknown.value.code == "unknown-peer"
    m.add_revocation(revoke(BOB))
    with pytest.raises(RevokedPeer):
        m.member(BOB.peer_id, NOW)
    m.add_revocation(revoke(CAROL))
    with pytest.raises(RevokedPeer):  # revoked before ever being known
        m.member(CAROL.peer_id, NOW)
    with pytest.raises(Forbidden, match="not valid now"):
        m.member(ALICE.peer_id, NOW + 10 * HOUR)
    assert m.member(ALICE.peer_id, NOW).peer_id == ALICE.peer_id


def test_members_sorted_by_rank_without_revoked() -> None:
    m = Membership(OFFICE)
    for key, rank in ((ALICE, 100), (BOB, 0), (CAROL, 50)):
        m.admit(cert(key, rank=rank).raw, NOW)
    assert [c.peer_id for c in m.members()] == [BOB.peer_id, CAROL.peer_id, ALICE.peer_id]
    m.add_revocation(revoke(CAROL))
    assert [c.peer_id for c in m.members()] == [BOB.peer_id, ALICE.peer_id]


def test_equal_ranks_sorted_by_peer_id() -> None:
    m = Membership(OFFICE)
    for key in (ALICE, BOB, CAROL):
        m.admit(cert(key, rank=5).raw, NOW)
    ids = [c.peer_id for c in m.members()]
    assert ids == sorted(ids) and len(ids) == 3


# ---- revocations -------------------------------------------------------------------------------


def test_add_revocation_new_known_and_forged() -> None:
    m = Membership(OFFICE)
    raw = revoke(ALICE)
    rev = m.add_revocation(raw)
    assert rev is not None and rev.peer_id == ALICE.peer_id and rev.raw == raw
    assert m.add_revocation(raw) is None
    assert m.add_revocation(revoke(ALICE, at=NOW + 5)) is None  # a second revocation of the same peer
    with pytest.raises(FormatError):
        m.add_revocation(revoke(BOB, office_key=FOREIGN_KEY))
    with pytest.raises(FormatError):
        m.add_revocation(b"junk")
    assert set(m.revocations) == {ALICE.peer_id}


def test_revocations_digest_changes_with_each_revocation() -> None:
    m = Membership(OFFICE)
    empty = m.revocations_digest()
    assert len(empty) == 32
    m.add_revocation(revoke(ALICE))
    one = m.revocations_digest()
    m.add_revocation(revoke(ALICE, at=NOW + 1))  # not new: no change
    assert m.revocations_digest() == one
    m.add_revocation(revoke(BOB))
    two = m.revocations_digest()
    assert len({empty, one, two}) == 3


def test_revocations_digest_is_order_independent() -> None:
    raws = [revoke(ALICE), revoke(BOB), revoke(CAROL)]
    digests, lists = set(), set()
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        m = Membership(OFFICE)
        for i in order:
            m.add_revocation(raws[i])
        digests.add(m.revocations_digest())
        lists.add(m.revocation_list())
    assert len(digests) == 1 and len(lists) == 1
    assert set(next(iter(lists))) == set(raws)


def test_revocations_digest_names_peers_not_revocation_bytes() -> None:
    # Two offices agreeing on who is revoked agree on the digest, whatever the reason or time recorded.
    a, b = Membership(OFFICE), Membership(OFFICE)
    a.add_revocation(revoke(ALICE, at=NOW))
    b.add_revocation(revoke(ALICE, at=NOW + 99))
    assert a.revocations_digest() == b.revocations_digest()


# ---- liveness --------------------------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


SETTINGS = Settings(heartbeat=1, suspect=3, dead=6)
P, Q = ALICE.peer_id, BOB.peer_id


def test_never_heard_is_dead_and_not_reported() -> None:
    live = Liveness(SETTINGS)
    assert live.state(P, 0) == DEAD
    assert live.changes([P, Q], 0) == []


def test_alive_suspect_dead_thresholds() -> None:
    live = Liveness(SETTINGS)
    live.heard(P, 100.0)
    for t, expected in ((100.0, ALIVE), (102.99, ALIVE), (103.0, SUSPECT), (105.99, SUSPECT), (106.0, DEAD),
                        (10_000.0, DEAD)):
        assert live.state(P, t) == expected, t


def test_changes_reports_each_transition_exactly_once() -> None:
    clock = Clock()
    live = Liveness(SETTINGS)
    live.heard(P, clock.now)
    assert live.changes([P], clock.now) == [StateChange(P, UNKNOWN, ALIVE, 0.0)]
    assert live.changes([P], clock.now) == []
    for _ in range(5):  # heartbeats each second keep it alive, silently
        live.heard(P, clock.advance(1))
        assert live.changes([P], clock.now) == []
    clock.advance(2.5)
    assert live.changes([P], clock.now) == []
    clock.advance(0.5)  # 3 s of silence
    assert live.changes([P], clock.now) == [StateChange(P, ALIVE, SUSPECT, 3.0)]
    clock.advance(2)
    assert live.changes([P], clock.now) == []
    clock.advance(1)  # 6 s of silence
    assert live.changes([P], clock.now) == [StateChange(P, SUSPECT, DEAD, 6.0)]
    clock.advance(100)
    assert live.changes([P], clock.now) == []


def test_recovery_dead_to_alive_and_suspect_to_alive() -> None:
    clock = Clock()
    live = Liveness(SETTINGS)
    live.heard(P, clock.now)
    live.changes([P], clock.now)
    clock.advance(10)
    assert [(c.old, c.new) for c in live.changes([P], clock.now)] == [(ALIVE, DEAD)]  # slept past both thresholds
    live.heard(P, clock.advance(1))
    assert live.changes([P], clock.now) == [StateChange(P, DEAD, ALIVE, 0.0)]
    clock.advance(4)
    assert [(c.old, c.new) for c in live.changes([P], clock.now)] == [(ALIVE, SUSPECT)]
    live.heard(P, clock.now)
    assert [(c.old, c.new) for c in live.changes([P], clock.now)] == [(SUSPECT, ALIVE)]
    assert live.changes([P], clock.now) == []


def test_changes_per_peer_and_only_for_listed_peers() -> None:
    clock = Clock()
    live = Liveness(SETTINGS)
    live.heard(P, clock.now)
    live.heard(Q, clock.now)
    assert [c.peer_id for c in live.changes([P], clock.now)] == [P]
    assert [c.peer_id for c in live.changes([P, Q], clock.now)] == [Q]  # Q's change is still pending
    live.heard(Q, clock.advance(4))
    changes = live.changes([P, Q], clock.now)
    assert changes == [StateChange(P, ALIVE, SUSPECT, 4.0)]


def test_an_older_now_is_the_clock_stepped_back() -> None:
    """Callers hand in the clock's now when they hear a peer, never a message's own time: an older now is
    the wall clock stepped back, and every peer's silence is measured on the new clock."""
    live = Liveness(SETTINGS)
    live.heard(P, 100.0)
    live.heard(Q, 98.0 + 2.0)
    live.heard(P, 50.0)  # the clock stepped back 50 s, and P was heard again at once
    assert live.last_heard == {P: 50.0, Q: 50.0}
    assert live.state(P, 54.0) == SUSPECT and live.state(Q, 56.0) == DEAD


def test_forget_resets_a_peer() -> None:
    live = Liveness(SETTINGS)
    live.heard(P, 100.0)
    assert live.changes([P], 100.0) == [StateChange(P, UNKNOWN, ALIVE, 0.0)]
    live.forget(P)
    assert live.state(P, 100.0) == DEAD
    # Forgotten means starting over as never heard: dead, and nothing reported.
    assert live.changes([P], 100.0) == []
    live.forget(P)  # forgetting twice is harmless
    live.heard(P, 101.0)
    assert live.changes([P], 101.0) == [StateChange(P, UNKNOWN, ALIVE, 0.0)]


def test_silent_for_is_none_when_never_heard() -> None:
    live = Liveness(SETTINGS)
    live.heard(P, 1.0)
    assert [c.new for c in live.changes([P], 1.0)] == [ALIVE]
    del live.last_heard[P]  # the record is gone but the reported state stays
    assert live.changes([P], 5.0) == [StateChange(P, ALIVE, DEAD, None)]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.floats(0.5, 500), st.floats(0, 5.9))
def test_a_clock_stepped_back_does_not_keep_a_silent_peer_alive(back: float, before: float) -> None:
    """Heard, then the wall clock steps back by `back` seconds (`before` seconds after hearing it): the peer
    is dead once `dead` seconds of real silence have passed, not `dead` plus the step."""
    live = Liveness(SETTINGS)
    live.heard(P, 1000.0)
    assert live.state(P, 1000.0 + before) == (ALIVE if before < SETTINGS.suspect else SUSPECT)
    stepped = 1000.0 + before - back
    assert live.state(P, stepped) != DEAD
    assert live.state(P, stepped + SETTINGS.dead - before) == DEAD
    live.heard(P, stepped + SETTINGS.dead - before + 1)  # heard after the step: alive again, by the new clock
    assert live.state(P, stepped + SETTINGS.dead - before + 1) == ALIVE
