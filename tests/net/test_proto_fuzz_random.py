"""Hostile input for every peer-protocol decoder, (a): random bytes and random msgpack, for the
messages, envelopes, certificates, revocations, invite tokens and mDNS records.

What a peer, an invite or an mDNS record hands us may be anything. Each decoder
must fail only with its documented error, never with a stray library exception;
a signed thing (envelope, certificate, revocation) that was altered in any way
must never be accepted; and every message survives its own encoding.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core.certs import Certificate, Revocation
from peerbackup.core.identity import is_fingerprint, is_peer_id
from peerbackup.errors import (
    BadToken,
    ProtocolError,
)
from peerbackup.net.discovery import parse_service
from peerbackup.net.envelope import PROTOCOL_VERSION, open_envelope
from peerbackup.net.proto.join import (
    SECRET_SIZE,
    TOKEN_PREFIX,
    InviteToken,
)
from tests.net._fuzz import (
    CERT_ERRORS,
    ENVELOPE_ERRORS,
    FP,
    FUZZ,
    OFFICE_KEY,
    PER_KIND,
    PROTO_ERRORS,
    PROTO_SAMPLES,
    accept_envelope,
    peer_ids,
    raises_only,
    values,
    well_formed,
)


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
@PER_KIND
@given(data=st.binary(max_size=300))
def test_proto_random_bytes(kind: str, data: bytes) -> None:
    decode = PROTO_SAMPLES[kind][0]
    msg = raises_only(PROTO_ERRORS, lambda: decode(data))
    if msg is not None:
        well_formed(kind, msg)


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
@PER_KIND
@given(obj=values)
def test_proto_random_msgpack(kind: str, obj: Any) -> None:
    decode = PROTO_SAMPLES[kind][0]
    msg = raises_only(PROTO_ERRORS, lambda: decode(codec.pack(obj)))
    if msg is not None:
        well_formed(kind, msg)


@FUZZ
@given(data=st.binary(max_size=400))
def test_envelope_random_bytes(data: bytes) -> None:
    env = raises_only(ENVELOPE_ERRORS, lambda: open_envelope(data))
    if env is not None:
        assert is_peer_id(env.header.issuer) and is_peer_id(env.header.audience)
    # Whatever opened still never passes check against Alice's key.
    with pytest.raises(ProtocolError):
        accept_envelope(data)


@FUZZ
@given(obj=values)
def test_envelope_random_msgpack(obj: Any) -> None:
    data = codec.pack(obj)
    raises_only(ENVELOPE_ERRORS, lambda: open_envelope(data))
    with pytest.raises(ProtocolError):
        accept_envelope(data)


@FUZZ
@given(text=st.text(max_size=200) | st.text(max_size=200).map(lambda t: TOKEN_PREFIX + t))
def test_invite_token_random_text(text: str) -> None:
    token = raises_only((BadToken,), lambda: InviteToken.decode(text))
    if token is not None:
        assert is_fingerprint(token.office) and len(token.secret) == SECRET_SIZE


@FUZZ
@given(raw=st.binary(max_size=200) | values.map(codec.pack))
def test_invite_token_random_payload(raw: bytes) -> None:
    text = TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    token = raises_only((BadToken,), lambda: InviteToken.decode(text))
    if token is not None:
        assert is_fingerprint(token.office) and len(token.secret) == SECRET_SIZE
        assert all(isinstance(a, str) for a in token.addresses)


@pytest.mark.parametrize("decode", [Certificate.from_bytes, Revocation.from_bytes], ids=["cert", "revocation"])
@FUZZ
@given(data=st.binary(max_size=300) | values.map(codec.pack))
def test_certs_random_bytes(decode: Callable[[bytes, bytes], Any], data: bytes) -> None:
    # Without the office's signature nothing decodes: the body would need one.
    with pytest.raises(CERT_ERRORS):
        decode(data, OFFICE_KEY.public_key)


@FUZZ
@given(body=st.binary(max_size=200) | values.map(codec.pack), sig=st.binary(max_size=70))
def test_certs_random_body_and_signature(body: bytes, sig: bytes) -> None:
    data = codec.pack({"body": body, "sig": sig})
    with pytest.raises(CERT_ERRORS):
        Certificate.from_bytes(data, OFFICE_KEY.public_key)
    with pytest.raises(CERT_ERRORS):
        Revocation.from_bytes(data, OFFICE_KEY.public_key)
    raises_only(CERT_ERRORS, lambda: Certificate.office_of(data))


@FUZZ
@given(properties=st.dictionaries(st.binary(max_size=10), st.none() | st.binary(max_size=30), max_size=6),
       ips=st.lists(st.text(max_size=40), max_size=4), port=st.none() | st.integers(-(2**20), 2**20))
def test_parse_service_random_garbage(properties: dict[bytes, bytes | None], ips: list[str], port: int | None) -> None:
    hint = parse_service(properties, ips, port, FP)
    if hint is not None:  # only when the garbage happened to hold a whole valid record
        assert properties.get(b"office") == FP.encode() and is_peer_id(hint.peer_id)


@FUZZ
@given(peer_id=peer_ids | st.text(max_size=20), office=st.sampled_from([FP, "", "other"]),
       version=st.sampled_from(["1", "01", "2", "0", "", "v1", "1.0"]) | st.text("0123456789", max_size=4)
       | st.text(max_size=3),
       name=st.none() | st.binary(max_size=80),
       ips=st.lists(st.ip_addresses().map(str) | st.text(max_size=20), max_size=3),
       port=st.none() | st.integers(-1, 70000))
def test_parse_service_structured(peer_id: str, office: str, version: str, name: bytes | None, ips: list[str],
                                  port: int | None) -> None:
    props: dict[bytes, bytes | None] = {b"id": peer_id.encode(), b"office": office.encode(), b"v": version.encode()}
    if name is not None:
        props[b"name"] = name
    hint = parse_service(props, ips, port, FP)
    if hint is None:
        return
    assert hint.peer_id == peer_id and is_peer_id(hint.peer_id)
    assert hint.office == FP == office
    assert int(version) == PROTOCOL_VERSION
    assert port is not None and 0 < port < 65536
    assert hint.addresses and all(a.endswith(f":{port}") for a in hint.addresses)
    assert len(hint.name) <= 64
