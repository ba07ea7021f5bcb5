"""Peer-protocol decoders on explicit cases the generators are unlikely to reach: other protocol versions,
limits, bad fields, odd mDNS records, and the body limit enforced before the signature.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.errors import (
    BadToken,
    Malformed,
    TooLarge,
    UnsupportedProtocol,
)
from peerbackup.net.discovery import ServiceHint, parse_service
from peerbackup.net.envelope import MAX_BODY, open_envelope, seal
from peerbackup.net.proto import _wire
from peerbackup.net.proto.hello import Hello
from peerbackup.net.proto.join import (
    InviteToken,
    JoinReply,
    JoinRequest,
    join_proof,
    token_id,
)
from tests.net._fuzz import ALICE, BOB, FP, NOW, PATH, PROTO_SAMPLES, SECRET, TOKEN, well_formed


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
@pytest.mark.parametrize("version", [0, 2, -1, 2**64 - 1])
def test_proto_other_versions_are_unsupported(kind: str, version: int) -> None:
    decode, valid = PROTO_SAMPLES[kind]
    obj = codec.unpack(valid)
    obj["v"] = version
    with pytest.raises(UnsupportedProtocol):
        decode(codec.pack(obj))


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
def test_proto_samples_decode(kind: str) -> None:
    decode, valid = PROTO_SAMPLES[kind]
    well_formed(kind, decode(valid))


def test_hello_limits() -> None:
    base = codec.unpack(PROTO_SAMPLES["hello"][1])
    too_many = dict(base, revoked=[b"r"] * (_wire.MAX_ITEMS + 1))
    long_addr = dict(base, addrs=["a" * (_wire.MAX_ADDRESS + 1)])
    unprintable = dict(base, addrs=["10.0.0.1:7000\n"])
    bad_hint = dict(base, peers=[{"id": "nobody", "addrs": []}])
    for obj in (too_many, long_addr, unprintable, bad_hint):
        with pytest.raises(Malformed):
            Hello.from_wire(codec.pack(obj))
    at_limit = dict(base, revoked=[b"r"] * _wire.MAX_ITEMS, addrs=["a" * _wire.MAX_ADDRESS])
    assert len(Hello.from_wire(codec.pack(at_limit)).revocations) == _wire.MAX_ITEMS


def test_join_reply_refuses_bad_hint_peer_id() -> None:
    obj = codec.unpack(PROTO_SAMPLES["join-reply"][1])
    obj["peers"] = [{"id": "../../etc", "addrs": ["10.0.0.9:7000"]}]
    with pytest.raises(Malformed):
        JoinReply.from_wire(codec.pack(obj))


@pytest.mark.parametrize(("field", "value"), [
    ("tid", b"t" * 15), ("key", b"k" * 31), ("proof", b"p" * 33), ("name", ""), ("name", "n" * 65),
])
def test_join_request_bad_fields(field: str, value: Any) -> None:
    obj = codec.unpack(PROTO_SAMPLES["join-request"][1])
    obj[field] = value
    with pytest.raises(Malformed):
        JoinRequest.from_wire(codec.pack(obj))


@pytest.mark.parametrize("text", [
    "", "pbinvite1-", "pbinvite2-" + TOKEN.encode()[10:], TOKEN.encode()[:-3], TOKEN.encode()[10:],
    TOKEN.encode() + "é", TOKEN.encode()[:-1] + "*", "pbinvite1-" + "A" * 5,
    "pbinvite1-" + base64.urlsafe_b64encode(codec.pack({"o": FP, "a": [1], "s": SECRET, "e": 0})).decode(),
    "pbinvite1-" + base64.urlsafe_b64encode(codec.pack({"o": FP, "a": [], "s": SECRET[:31], "e": 0})).decode(),
    "pbinvite1-" + base64.urlsafe_b64encode(codec.pack({"o": "office", "a": [], "s": SECRET, "e": 0})).decode(),
    "pbinvite1-" + base64.urlsafe_b64encode(codec.pack({"o": FP, "a": [], "s": SECRET, "e": True})).decode(),
])
def test_invite_token_refusals(text: str) -> None:
    with pytest.raises(BadToken):
        InviteToken.decode(text)


def test_token_id_and_proof_are_bound_to_the_secret() -> None:
    assert len(token_id(SECRET)) == 16 and token_id(SECRET) != token_id(bytes(32))
    assert SECRET not in token_id(SECRET)
    proof = join_proof(SECRET, ALICE.public_key, "laptop")
    assert len(proof) == 32
    assert proof != join_proof(SECRET, BOB.public_key, "laptop")
    assert proof == join_proof(SECRET, ALICE.public_key, "laptop")


@pytest.mark.parametrize(("props", "ips", "port"), [
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, ["10.0.0.1"], 0),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, ["10.0.0.1"], None),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, ["10.0.0.1"], 65536),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, ["not an ip", ""], 7000),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, [], 7000),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"2"}, ["10.0.0.1"], 7000),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode()}, ["10.0.0.1"], 7000),
    ({b"id": BOB.peer_id.lower().encode(), b"office": FP.encode(), b"v": b"1"}, ["10.0.0.1"], 7000),
    ({b"id": BOB.peer_id.encode(), b"office": b"\xff", b"v": b"1"}, ["10.0.0.1"], 7000),
    ({b"\xff": b"x", b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1"}, ["10.0.0.1"], 7000),
    ({"id": BOB.peer_id, "office": FP, "v": "1"}, ["10.0.0.1"], 7000),
    ({b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": "1"}, ["10.0.0.1"], 7000),
    ({}, ["10.0.0.1"], 7000),
])
def test_parse_service_garbage_is_none(props: Any, ips: list[str], port: int | None) -> None:
    assert parse_service(props, ips, port, FP) is None


def test_parse_service_skips_bad_ips_and_brackets_ipv6() -> None:
    props: dict[bytes, bytes | None] = {b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": b"1",
                                        b"name": None}
    hint = parse_service(props, ["junk", "10.0.0.1", "fe80::1", "300.1.1.1"], 7000, FP)
    assert hint == ServiceHint(BOB.peer_id, FP, "", ("10.0.0.1:7000", "[fe80::1]:7000"))


@pytest.mark.parametrize("version", ["²", "1²", "9" * 5000])
def test_parse_service_never_raises_on_odd_versions(version: str) -> None:
    props: dict[bytes, bytes | None] = {b"id": BOB.peer_id.encode(), b"office": FP.encode(), b"v": version.encode()}
    assert parse_service(props, ["10.0.0.1"], 7000, FP) is None


def test_parse_service_refuses_peer_id_with_newline() -> None:
    props: dict[bytes, bytes | None] = {b"id": BOB.peer_id.encode() + b"\n", b"office": FP.encode(), b"v": b"1"}
    assert parse_service(props, ["10.0.0.1"], 7000, FP) is None


def test_body_limit_is_enforced_before_the_signature() -> None:
    data, _ = seal(ALICE, BOB.peer_id, "POST", PATH, b"x" * (MAX_BODY + 1), NOW, random.Random(2).randbytes)
    with pytest.raises(TooLarge):
        open_envelope(data)
