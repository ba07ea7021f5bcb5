"""Every peer-protocol message, certificate, revocation, invite token and mDNS record survives its own
encoding, for any value Hypothesis draws; out-of-range values are refused as malformed.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbackup.core.certs import ROLES, Certificate, Office, Revocation
from peerbackup.core.identity import SigningKey
from peerbackup.errors import (
    FormatError,
    Malformed,
)
from peerbackup.net.discovery import ServiceHint, parse_service
from peerbackup.net.envelope import PROTOCOL_VERSION
from peerbackup.net.proto.heartbeat import Heartbeat
from peerbackup.net.proto.hello import Hello, PeerHint, WhoAmI
from peerbackup.net.proto.join import (
    TOKEN_PREFIX,
    InviteToken,
    JoinReply,
    JoinRequest,
    join_proof,
    token_id,
)
from peerbackup.net.proto.probe import MAX_DETAIL, STATES, PathCheck, PathState
from peerbackup.net.proto.refusal import Refusal
from tests.net._fuzz import (
    FEW,
    FP,
    FUZZ,
    OFFICE_KEY,
    OTHER_OFFICE_KEY,
    addresses,
    fingerprints,
    hints,
    ints,
    keys32,
    names,
    peer_ids,
)


@FUZZ
@given(cert=st.binary(max_size=300), addrs=st.lists(addresses, max_size=4),
       revs=st.lists(st.binary(max_size=100), max_size=4), peers=st.lists(hints, max_size=3))
def test_hello_round_trip(cert: bytes, addrs: list[str], revs: list[bytes], peers: list[PeerHint]) -> None:
    msg = Hello(cert, tuple(addrs), tuple(revs), tuple(peers))
    assert Hello.from_wire(msg.to_wire()) == msg


@FUZZ
@given(cert=st.binary(max_size=300), name=names, key=keys32)
def test_whoami_round_trip(cert: bytes, name: str, key: bytes) -> None:
    office = Office(name, key)
    msg = WhoAmI(cert, office.to_wire())
    back = WhoAmI.from_wire(msg.to_wire())
    assert back == msg
    assert Office.from_wire(back.office) == office


@FUZZ
@given(seq=st.integers(0, 2**63 - 1), digest=keys32)
def test_heartbeat_round_trip(seq: int, digest: bytes) -> None:
    msg = Heartbeat(seq, digest)
    assert Heartbeat.from_wire(msg.to_wire()) == msg


@FUZZ
@given(seq=st.integers(2**63, 2**64 - 1) | st.integers(-(2**63), -1), digest=st.binary(max_size=64))
def test_heartbeat_out_of_range_is_malformed(seq: int, digest: bytes) -> None:
    with pytest.raises(Malformed):
        Heartbeat.from_wire(Heartbeat(seq, digest).to_wire())


@FUZZ
@given(secret=keys32, key=keys32, name=st.text(min_size=1, max_size=64))
def test_join_request_round_trip(secret: bytes, key: bytes, name: str) -> None:
    msg = JoinRequest(token_id(secret), key, name, join_proof(secret, key, name))
    assert JoinRequest.from_wire(msg.to_wire()) == msg
    assert join_proof(secret, key, name) != join_proof(secret, key, name + "x")
    assert join_proof(secret, key, name) != join_proof(bytes(b ^ 1 for b in secret), key, name)


@FUZZ
@given(name=names, key=keys32, cert=st.binary(max_size=200), inviter=st.binary(max_size=200),
       revs=st.lists(st.binary(max_size=100), max_size=3), peers=st.lists(hints, max_size=3),
       box=st.binary(max_size=100))
def test_join_reply_round_trip(name: str, key: bytes, cert: bytes, inviter: bytes, revs: list[bytes],
                               peers: list[PeerHint], box: bytes) -> None:
    msg = JoinReply(Office(name, key).to_wire(), cert, inviter, tuple(revs), tuple(peers), box)
    back = JoinReply.from_wire(msg.to_wire())
    assert back == msg


@FUZZ
@given(code=st.text(max_size=100), message=st.text(max_size=1200), evidence=st.binary(max_size=5000))
def test_refusal_round_trip_truncates(code: str, message: str, evidence: bytes) -> None:
    back = Refusal.from_wire(Refusal(code, message, evidence).to_wire())
    # Evidence larger than any revocation is dropped; the refusal itself still reads.
    assert back == Refusal(code[:64], message[:1000], evidence if len(evidence) <= 4096 else b"")
    # A refusal without evidence is the same bytes as before there was any.
    assert Refusal(code, message).to_wire() == Refusal(code, message, b"").to_wire()


@FUZZ
@given(node=names, path=st.text(max_size=80).map(lambda t: "/" + t), state=st.sampled_from(STATES),
       detail=st.text(max_size=400))
def test_path_check_and_state_round_trip(node: str, path: str, state: str, detail: str) -> None:
    if "\0" not in path:
        assert PathCheck.from_wire(PathCheck(node, path).to_wire()) == PathCheck(node, path)
    else:
        with pytest.raises(Malformed):
            PathCheck.from_wire(PathCheck(node, path).to_wire())
    assert PathState.from_wire(PathState(state, detail).to_wire()) == PathState(state, detail[:MAX_DETAIL])


@FUZZ
@given(office=fingerprints,
       addrs=st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40), max_size=4),
       secret=keys32, expires=ints,
       cuts=st.lists(st.integers(0, 1000), max_size=4))
def test_invite_token_round_trip(office: str, addrs: list[str], secret: bytes, expires: int, cuts: list[int]) -> None:
    token = InviteToken(office, tuple(addrs), secret, expires)
    text = token.encode()
    assert text.startswith(TOKEN_PREFIX) and text.isascii() and "=" not in text
    assert InviteToken.decode(text) == token
    # Pasted from a mail, broken across lines and indented: still the same token.
    wrapped = text
    for cut in sorted(cuts, reverse=True):
        wrapped = wrapped[:cut % (len(wrapped) + 1)] + "\n  " + wrapped[cut % (len(wrapped) + 1):]
    assert InviteToken.decode(f"  {wrapped}\n") == token


@FEW
@given(name=names, roles=st.lists(st.sampled_from(ROLES), max_size=6), rank=st.integers(0, 2**32 - 1),
       now=st.integers(0, 2**40), validity=st.integers(1, 2**40), seed=keys32)
def test_certificate_round_trip(name: str, roles: list[str], rank: int, now: int, validity: int, seed: bytes) -> None:
    key = SigningKey(seed)
    cert = Certificate.issue(OFFICE_KEY, key.public_key, name, tuple(roles), rank, now, validity)
    back = Certificate.from_bytes(cert.raw, OFFICE_KEY.public_key)
    assert back == cert
    assert (back.peer_id, back.name, back.rank, back.issued, back.expires) == (key.peer_id, name, rank, now,
                                                                              now + validity)
    assert set(back.roles) == set(roles) and list(back.roles) == sorted(set(roles), key=ROLES.index)
    assert back.valid_at(now) and not back.valid_at(now + validity)
    with pytest.raises(FormatError):
        Certificate.from_bytes(cert.raw, OTHER_OFFICE_KEY.public_key)


@FEW
@given(peer_id=peer_ids, at=st.integers(-(2**63), 2**63 - 1), reason=st.text(max_size=300))
def test_revocation_round_trip(peer_id: str, at: int, reason: str) -> None:
    rev = Revocation.issue(OFFICE_KEY, peer_id, at, reason)
    back = Revocation.from_bytes(rev.raw, OFFICE_KEY.public_key)
    assert back == rev
    assert (back.peer_id, back.at, back.reason) == (peer_id, at, reason[:200])


@FUZZ
@given(peer_id=peer_ids, name=st.text(max_size=100),
       ips=st.lists(st.ip_addresses().map(str), min_size=1, max_size=4), port=st.integers(1, 65535))
def test_parse_service_round_trip(peer_id: str, name: str, ips: list[str], port: int) -> None:
    props: dict[bytes, bytes | None] = {b"id": peer_id.encode(), b"office": FP.encode(),
                                        b"v": str(PROTOCOL_VERSION).encode(), b"name": name.encode()}
    hint = parse_service(props, ips, port, FP)
    expected = tuple(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips)
    assert hint == ServiceHint(peer_id=peer_id, office=FP, name=name[:64], addresses=expected)
    # The same record seen by a peer of another office is no hint at all.
    assert parse_service(props, ips, port, "OTHER") is None
