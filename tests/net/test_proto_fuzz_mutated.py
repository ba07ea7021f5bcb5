"""Hostile input for every peer-protocol decoder, (b): valid encodings mutated byte by byte or field by
field; nothing signed that was altered is ever accepted.

Like test_proto_fuzz_random.py: each decoder fails only with its documented error.
"""

from __future__ import annotations

import base64
import dataclasses
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
from peerbackup.net.envelope import NONCE_SIZE, PROTOCOL_VERSION, body_hash, check, open_envelope
from peerbackup.net.proto.join import (
    SECRET_SIZE,
    TOKEN_PREFIX,
    InviteToken,
)
from tests.net._fuzz import (
    ALICE,
    BOB,
    CERT,
    CERT_ERRORS,
    ENVELOPE,
    ENVELOPE_ERRORS,
    FP,
    FUZZ,
    NOW,
    OFFICE_KEY,
    OTHER_OFFICE_KEY,
    PATH,
    PER_KIND,
    PROTO_ERRORS,
    PROTO_SAMPLES,
    REV,
    SECRET,
    SKEW,
    TOKEN,
    accept_envelope,
    mutate,
    mutations,
    near_valid_maps,
    raises_only,
    well_formed,
    well_formed_cert,
)


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
@PER_KIND
@given(ops=mutations())
def test_proto_mutated(kind: str, ops: list[tuple[str, int, int]]) -> None:
    decode, valid = PROTO_SAMPLES[kind]
    msg = raises_only(PROTO_ERRORS, lambda: decode(mutate(valid, ops)))
    if msg is not None:
        well_formed(kind, msg)


@pytest.mark.parametrize("kind", sorted(PROTO_SAMPLES))
@PER_KIND
@given(data=st.data())
def test_proto_near_valid_fields(kind: str, data: st.DataObject) -> None:
    decode, valid = PROTO_SAMPLES[kind]
    obj = data.draw(near_valid_maps(codec.unpack(valid)))
    msg = raises_only(PROTO_ERRORS, lambda: decode(codec.pack(obj)))
    if msg is not None:
        well_formed(kind, msg)


@FUZZ
@given(ops=mutations())
def test_envelope_mutated_is_never_accepted(ops: list[tuple[str, int, int]]) -> None:
    mutated = mutate(ENVELOPE, ops)
    env = raises_only(ENVELOPE_ERRORS, lambda: open_envelope(mutated))
    if env is None:
        return
    try:
        check(env, ALICE.public_key, BOB.peer_id, "POST", PATH, NOW, SKEW)
    except ProtocolError:
        return
    # Accepted: only if nothing that was signed or delivered changed.
    original = open_envelope(ENVELOPE)
    assert (env.header_bytes, env.signature, env.body) == (original.header_bytes, original.signature, original.body)
    assert len(ops) > 1 or mutated == ENVELOPE


def test_envelope_every_single_byte_change_is_refused() -> None:
    """Exhaustive: each bit flip, deletion and insertion anywhere in a sealed envelope is refused."""
    data = ENVELOPE
    variants = [data[:i] + bytes([data[i] ^ (1 << b)]) + data[i + 1:] for i in range(len(data)) for b in range(8)]
    variants += [data[:i] + data[i + 1:] for i in range(len(data))]
    variants += [data[:i] + bytes([x]) + data[i:] for i in range(len(data) + 1) for x in (0x00, 0xC4, 0xFF)]
    for variant in variants:
        assert variant != data
        with pytest.raises(ProtocolError):
            accept_envelope(variant)
    assert accept_envelope(data).body == b"hello body"


@FUZZ
@given(data=st.data())
def test_envelope_near_valid_signed_header(data: st.DataObject) -> None:
    """Headers signed by the right key but saying anything: refused with a ProtocolError or fully valid."""
    valid = {"v": PROTOCOL_VERSION, "iss": ALICE.peer_id, "aud": BOB.peer_id, "ts": NOW * 1000,
             "n": b"\x01" * NONCE_SIZE, "m": "POST", "p": PATH, "bh": body_hash(b"b"), "re": b""}
    header = codec.pack(data.draw(near_valid_maps(valid)))
    body = data.draw(st.sampled_from([b"b", b"", b"other"]))
    raw = codec.pack({"h": header, "s": ALICE.sign(header), "b": body})
    env = raises_only((ProtocolError,), lambda: accept_envelope(raw))
    if env is not None:
        h = env.header
        assert (h.version, h.issuer, h.audience, h.method, h.path, h.reply_to) == (
            PROTOCOL_VERSION, ALICE.peer_id, BOB.peer_id, "POST", PATH, b"")
        assert h.body_hash == body_hash(env.body) and len(h.nonce) == NONCE_SIZE
        assert abs(h.ts_ms / 1000 - NOW) <= SKEW


@pytest.mark.parametrize(("sample", "decode"), [
    (CERT.raw, Certificate.from_bytes), (REV.raw, Revocation.from_bytes),
], ids=["cert", "revocation"])
@FUZZ
@given(ops=mutations())
def test_certs_mutated_are_never_accepted(sample: bytes, decode: Callable[[bytes, bytes], Any],
                                          ops: list[tuple[str, int, int]]) -> None:
    mutated = mutate(sample, ops)
    result = raises_only(CERT_ERRORS, lambda: decode(mutated, OFFICE_KEY.public_key))
    if result is None:
        return
    original = decode(sample, OFFICE_KEY.public_key)
    outer, outer_original = codec.unpack_map(mutated, "m"), codec.unpack_map(sample, "o")
    assert (outer["body"], outer["sig"]) == (outer_original["body"], outer_original["sig"])
    assert result == dataclasses.replace(original, raw=mutated)
    assert len(ops) > 1 or mutated == sample


@pytest.mark.parametrize(("sample", "decode"), [
    (CERT.raw, Certificate.from_bytes), (REV.raw, Revocation.from_bytes),
], ids=["cert", "revocation"])
def test_certs_every_single_byte_change_is_refused(sample: bytes, decode: Callable[[bytes, bytes], Any]) -> None:
    variants = [sample[:i] + bytes([sample[i] ^ (1 << b)]) + sample[i + 1:]
                for i in range(len(sample)) for b in range(8)]
    variants += [sample[:i] + sample[i + 1:] for i in range(len(sample))]
    variants += [sample[:i] + bytes([x]) + sample[i:] for i in range(len(sample) + 1) for x in (0x00, 0xC4, 0xFF)]
    for variant in variants:
        with pytest.raises(CERT_ERRORS):
            decode(variant, OFFICE_KEY.public_key)
    assert decode(sample, OFFICE_KEY.public_key).raw == sample


def office_signed_near(data: st.DataObject, sample: bytes, what: str) -> bytes:
    """A body near the sample's that the office really signed: its signature checks, its fields say anything."""
    valid = codec.unpack_map(codec.unpack_map(sample, what)["body"], "b")
    body = codec.pack(data.draw(near_valid_maps(valid)))
    return codec.pack({"body": body, "sig": OFFICE_KEY.sign(body)})


@FUZZ
@given(data=st.data())
def test_cert_near_valid_signed_body(data: st.DataObject) -> None:
    """Bodies the office really signed but that say anything: refused cleanly, or a well-formed certificate."""
    raw = office_signed_near(data, CERT.raw, "c")
    cert = raises_only(CERT_ERRORS, lambda: Certificate.from_bytes(raw, OFFICE_KEY.public_key))
    if cert is not None:
        well_formed_cert(cert)
    # Under another office's key the same bytes are always refused.
    with pytest.raises(CERT_ERRORS):
        Certificate.from_bytes(raw, OTHER_OFFICE_KEY.public_key)


@FUZZ
@given(data=st.data())
def test_revocation_near_valid_signed_body(data: st.DataObject) -> None:
    raw = office_signed_near(data, REV.raw, "r")
    rev = raises_only(CERT_ERRORS, lambda: Revocation.from_bytes(raw, OFFICE_KEY.public_key))
    if rev is not None:
        assert rev.office == FP and is_peer_id(rev.peer_id)
        assert isinstance(rev.at, int) and isinstance(rev.reason, str)


@FUZZ
@given(ops=mutations())
def test_invite_token_mutated(ops: list[tuple[str, int, int]]) -> None:
    text = TOKEN.encode()
    mutated = mutate(text.encode(), ops).decode("latin-1")
    token = raises_only((BadToken,), lambda: InviteToken.decode(mutated))
    if token is not None:
        assert is_fingerprint(token.office) and len(token.secret) == SECRET_SIZE


@FUZZ
@given(data=st.data())
def test_invite_token_near_valid_fields(data: st.DataObject) -> None:
    valid = {"o": FP, "a": ["10.0.0.1:7000"], "s": SECRET, "e": NOW}
    raw = codec.pack(data.draw(near_valid_maps(valid)))
    text = TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    token = raises_only((BadToken,), lambda: InviteToken.decode(text))
    if token is not None:
        assert is_fingerprint(token.office) and len(token.secret) == SECRET_SIZE
        assert isinstance(token.expires, int) and not isinstance(token.expires, bool)
