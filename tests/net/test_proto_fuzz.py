"""Hostile input for every peer-protocol decoder.

What a peer, an invite or an mDNS record hands us may be anything. Each decoder
must fail only with its documented error, never with a stray library exception;
a signed thing (envelope, certificate, revocation) that was altered in any way
must never be accepted; and every message survives its own encoding.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import codec
from peerbackup.core.certs import COORDINATOR_ROLES, ROLES, Certificate, Office, Revocation, check_name
from peerbackup.core.identity import SigningKey, fingerprint_of, is_fingerprint, is_peer_id, peer_id_of, seal_to
from peerbackup.errors import (
    BadToken,
    FormatError,
    Malformed,
    ProtocolError,
    TooLarge,
    UnsupportedProtocol,
    UnsupportedVersion,
)
from peerbackup.net import envelope
from peerbackup.net.discovery import ServiceHint, parse_service
from peerbackup.net.envelope import MAX_BODY, NONCE_SIZE, PROTOCOL_VERSION, body_hash, check, open_envelope, seal
from peerbackup.net.proto import _wire
from peerbackup.net.proto.heartbeat import Heartbeat
from peerbackup.net.proto.hello import Hello, PeerHint, WhoAmI
from peerbackup.net.proto.join import (
    SECRET_SIZE,
    TOKEN_PREFIX,
    InviteToken,
    JoinReply,
    JoinRequest,
    join_proof,
    token_id,
)
from peerbackup.net.proto.refusal import Refusal

FUZZ = settings(max_examples=250, derandomize=True, deadline=None)
PER_KIND = settings(max_examples=120, derandomize=True, deadline=None)  # run once for each of six messages
FEW = settings(max_examples=60, derandomize=True, deadline=None)  # each example signs and verifies

OFFICE_KEY = SigningKey(b"\x0a" * 32)
OTHER_OFFICE_KEY = SigningKey(b"\x0b" * 32)
ALICE = SigningKey(bytes(range(32)))
BOB = SigningKey(bytes(range(1, 33)))
OFFICE = Office("Smith & Co", OFFICE_KEY.public_key)
FP = OFFICE.fingerprint
NOW = 1_700_000_000
SKEW = 120.0
PATH = "/v1/hello"
SECRET = bytes(range(100, 132))

CERT = Certificate.issue(OFFICE_KEY, ALICE.public_key, "reception", COORDINATOR_ROLES, 100, NOW)
BOB_CERT = Certificate.issue(OFFICE_KEY, BOB.public_key, "lead", ("agent", "admin"), 0, NOW)
REV = Revocation.issue(OFFICE_KEY, BOB.peer_id, NOW + 10, "left")
HINTS = (PeerHint(BOB.peer_id, ("10.0.0.2:7000", "[fe80::1]:7000")),)
ENVELOPE, ENVELOPE_NONCE = seal(ALICE, BOB.peer_id, "POST", PATH, b"hello body", NOW, random.Random(1).randbytes)
TOKEN = InviteToken(FP, ("10.0.0.1:7000", "[fe80::1]:7000"), SECRET, NOW + 86400)

from peerbackup.net.proto.coordinator import Announce, AnnounceReply  # noqa: E402
from peerbackup.net.proto.jobs import (  # noqa: E402
    ActAsReply,
    ActAsRequest,
    Dispatch,
    JobAccepted,
    JobProgress,
    JobReport,
    JobRequest,
    Logon,
    Running,
    RunningJob,
)
from peerbackup.net.proto.logsync import Head, Heads, Pull, PullReply  # noqa: E402
from peerbackup.net.proto.probe import MAX_DETAIL, MAX_PATH, STATES, PathCheck, PathState  # noqa: E402
from peerbackup.net.proto.store import Challenge, FileRef, Listing  # noqa: E402
from peerbackup.net.proto.store import Delete as StoreDelete  # noqa: E402
from peerbackup.net.proto.store import Get as StoreGet  # noqa: E402
from peerbackup.net.proto.store import Put as StorePut  # noqa: E402
from peerbackup.net.proto.store import Reply as StoreReply  # noqa: E402
from peerbackup.net.proto.store import Usage as StoreUsage  # noqa: E402
from peerbackup.storage.store import FileType  # noqa: E402

ProtoDecoder = Callable[[bytes], Any]
PROTO_SAMPLES: dict[str, tuple[ProtoDecoder, bytes]] = {
    "hello": (Hello.from_wire, Hello(CERT.raw, ("10.0.0.1:7000",), (REV.raw,), HINTS).to_wire()),
    "whoami": (WhoAmI.from_wire, WhoAmI(CERT.raw, OFFICE.to_wire()).to_wire()),
    "heartbeat": (Heartbeat.from_wire, Heartbeat(7, b"\x11" * 32).to_wire()),
    "join-request": (JoinRequest.from_wire, JoinRequest(
        token_id(SECRET), ALICE.public_key, "laptop", join_proof(SECRET, ALICE.public_key, "laptop")).to_wire()),
    "join-reply": (JoinReply.from_wire, JoinReply(
        OFFICE.to_wire(), CERT.raw, BOB_CERT.raw, (REV.raw,), HINTS,
        seal_to(ALICE.public_key, OFFICE_KEY.seed)).to_wire()),
    "refusal": (Refusal.from_wire, Refusal("forbidden", "not an admin").to_wire()),
    "log-heads": (Heads.from_wire, Heads((Head("office", ALICE.peer_id, 3, bytes(32)),),
                                         ((b"a" * 40, b"b" * 40),), (b"r" * 50,)).to_wire()),
    "log-pull": (Pull.from_wire, Pull("office", ALICE.peer_id, 1, 256).to_wire()),
    "log-pull-reply": (PullReply.from_wire, PullReply((b"e" * 80,), CERT.raw).to_wire()),
    "coordinator": (Announce.from_wire, Announce((3, ALICE.peer_id), 15000).to_wire()),
    "coordinator-reply": (AnnounceReply.from_wire, AnnounceReply(False, (4, BOB.peer_id)).to_wire()),
    "store-put": (StorePut.from_wire, StorePut(FileRef("accounts", FileType.DATA, "ab" * 32), 64,
                                               b"h" * 32).to_wire()),
    "store-delete": (StoreDelete.from_wire, StoreDelete(FileRef("accounts", FileType.DATA, "ab" * 32),
                                                        b"g" * 100, b"t" * 90).to_wire()),
    "job-request": (JobRequest.from_wire, JobRequest("accounts").to_wire()),
    "job-accepted": (JobAccepted.from_wire, JobAccepted("manual-1", BOB.peer_id, (3, ALICE.peer_id)).to_wire()),
    "job-dispatch": (Dispatch.from_wire, Dispatch("retention-ab", "accounts", (3, ALICE.peer_id), 10**12,
                                                  "retention", True).to_wire()),
    "job-report": (JobReport.from_wire, JobReport("j-1", "accounts", "done", ("s" * 64,)).to_wire()),
    "job-progress": (JobProgress.from_wire, JobProgress("j-1", "accounts", 3, 4000, 9, 9000, 1).to_wire()),
    "job-logon": (lambda raw: Logon.from_wire(raw, answer=True), Logon("accounts", "j-1", b"c" * 32).to_wire()),
    "act-as-request": (ActAsRequest.from_wire, ActAsRequest("accounts", "j-1", b"c" * 32).to_wire()),
    "act-as-reply": (ActAsReply.from_wire, ActAsReply(b"t" * 200).to_wire()),
    "job-running": (Running.from_wire, Running((RunningJob(BOB.peer_id, 1500, JobProgress(
        "j-1", "accounts", 3, 4000, 9, 9000, 0, False, 10, 10000)),)).to_wire()),
    "store-usage": (StoreUsage.from_wire, StoreUsage(1000, -1, (("accounts", 3),)).to_wire()),
    "store-get": (StoreGet.from_wire, StoreGet(FileRef("accounts", FileType.INDEX, "cd" * 32), 5, 10).to_wire()),
    "store-list": (Listing.from_wire, Listing("accounts", FileType.SNAPSHOT).to_wire()),
    "store-challenge": (Challenge.from_wire, Challenge(FileRef("a", FileType.DATA, "ef" * 32), b"n" * 32, 0,
                                                       100).to_wire()),
    "path-check": (PathCheck.from_wire, PathCheck("accounts", "/srv/shared/Accounts 2026").to_wire()),
    "path-state": (PathState.from_wire, PathState("not readable", "permission denied").to_wire()),
    "store-reply": (StoreReply.from_wire, StoreReply(b"data", True, (("x", 1),), 5, b"h" * 32).to_wire()),
}
PROTO_ERRORS = (Malformed, UnsupportedProtocol)
ENVELOPE_ERRORS = (Malformed, TooLarge, UnsupportedProtocol)
CERT_ERRORS = (FormatError, UnsupportedVersion)


# ---- strategies ------------------------------------------------------------------------------

ints = st.integers(-(2**63), 2**64 - 1)
scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=40)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | ints, inner, max_size=4),
    max_leaves=6,
)
peer_ids = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(
    lambda s: "-".join(s[i:i + 4] for i in range(0, 16, 4)))
keys32 = st.binary(min_size=32, max_size=32)
fingerprints = keys32.map(fingerprint_of)
addresses = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cn", "Cs")),
                    max_size=40).filter(str.isprintable)
hints = st.builds(PeerHint, peer_ids, st.lists(addresses, max_size=3).map(tuple))
names = st.text(min_size=1, max_size=64).filter(lambda s: s.isprintable() and s == s.strip())
# A field that is often the right kind of thing and sometimes anything at all.
flat_values = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=4), scalars, max_size=2)
hint_maps = st.fixed_dictionaries({"id": peer_ids | scalars, "addrs": st.lists(addresses, max_size=2) | flat_values})
field_values = (flat_values | st.lists(hint_maps, max_size=2) | st.lists(st.binary(max_size=40), max_size=3)
                | peer_ids | keys32)


@st.composite
def mutations(draw: st.DrawFn, max_ops: int = 4) -> list[tuple[str, int, int]]:
    """Flip, insert or delete bytes at positions taken modulo the length."""
    op = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 2**16), st.integers(1, 255))
    return draw(st.lists(op, min_size=1, max_size=max_ops))


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, pos, byte in ops:
        if kind == "insert":
            out.insert(pos % (len(out) + 1), byte)
        elif not out:
            continue
        elif kind == "flip":
            out[pos % len(out)] ^= byte
        else:
            del out[pos % len(out)]
    return bytes(out)


@st.composite
def near_valid_maps(draw: st.DrawFn, valid: dict[Any, Any]) -> dict[Any, Any]:
    """A valid map with some fields deleted, some replaced by anything, and some added."""
    keys = sorted(valid, key=str)
    obj = dict(valid)
    for k in draw(st.sets(st.sampled_from(keys), max_size=2)):
        del obj[k]
    replace = draw(st.dictionaries(st.sampled_from([*keys, "x", 0]), field_values, max_size=3))
    obj.update(replace)
    return obj


def raises_only(errors: tuple[type[BaseException], ...], fn: Callable[[], Any]) -> Any:
    """fn's result, or None when it raised one of errors; any other exception fails the test."""
    try:
        return fn()
    except errors:
        return None


# ---- what an accepted message must look like -------------------------------------------------


def well_formed(kind: str, msg: Any) -> None:
    if kind == "hello":
        assert isinstance(msg, Hello) and isinstance(msg.certificate, bytes)
        assert all(is_peer_id(h.peer_id) for h in msg.peers)
        assert all(isinstance(a, str) and a.isprintable() and len(a) <= _wire.MAX_ADDRESS
                   for a in (*msg.addresses, *(a for h in msg.peers for a in h.addresses)))
        assert all(isinstance(r, bytes) for r in msg.revocations)
        assert len(msg.revocations) <= _wire.MAX_ITEMS and len(msg.peers) <= _wire.MAX_ITEMS
    elif kind == "whoami":
        assert isinstance(msg.certificate, bytes) and isinstance(msg.office, dict)
    elif kind == "heartbeat":
        assert isinstance(msg.seq, int) and not isinstance(msg.seq, bool) and 0 <= msg.seq < 2**63
        assert isinstance(msg.revocations_digest, bytes) and len(msg.revocations_digest) == 32
    elif kind == "join-request":
        assert len(msg.token_id) == 16 and len(msg.public_key) == 32 and len(msg.proof) == 32
        assert isinstance(msg.name, str) and 1 <= len(msg.name) <= 64
    elif kind == "join-reply":
        assert isinstance(msg.office, dict) and isinstance(msg.office_key_box, bytes)
        assert isinstance(msg.certificate, bytes) and isinstance(msg.inviter_certificate, bytes)
        assert all(isinstance(r, bytes) for r in msg.revocations)
        assert all(isinstance(h.peer_id, str) for h in msg.peers)
    elif kind == "refusal":
        assert isinstance(msg.code, str) and len(msg.code) <= 64
        assert isinstance(msg.message, str) and len(msg.message) <= 1000
    elif kind == "log-heads":
        assert all(is_peer_id(h.feed) and 0 < h.seq < 2**63 and len(h.id) == 32 for h in msg.heads)
        assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in msg.forks)
        assert all(isinstance(r, bytes) for r in msg.revocations)
    elif kind == "log-pull":
        assert is_peer_id(msg.feed) and 0 < msg.limit <= 256 and msg.start > 0
    elif kind == "log-pull-reply":
        assert len(msg.events) <= 256 and all(isinstance(e, bytes) for e in msg.events)
    elif kind in ("coordinator", "coordinator-reply"):
        token = msg.token if kind == "coordinator" else msg.highest
        assert isinstance(token[0], int) and not isinstance(token[0], bool) and token[0] >= 0
        assert token[1] == "" or is_peer_id(token[1])
    elif kind in ("store-put", "store-get", "store-challenge", "store-delete"):
        assert isinstance(msg.ref.node, str) and 0 < len(msg.ref.node) <= 64 and isinstance(msg.ref.ftype, FileType)
        assert isinstance(msg.ref.name, str) and 0 < len(msg.ref.name) <= 128
        if kind == "store-put":
            assert 0 <= msg.size <= 32 * 1024 * 1024 and len(msg.hash) == 32
        if kind == "store-delete":
            assert isinstance(msg.grant, bytes) and len(msg.grant) <= 4096
    elif kind == "store-usage":
        assert all(isinstance(v, int) for v in (msg.used, msg.quota))
        assert all(isinstance(n, str) and isinstance(c, int) for n, c in msg.packs)
    elif kind == "store-list":
        assert isinstance(msg.node, str) and isinstance(msg.ftype, FileType)
    elif kind == "store-reply":
        assert isinstance(msg.data, bytes) and isinstance(msg.stored, bool) and len(msg.data) <= 1024
        assert all(isinstance(n, str) and isinstance(z, int) for n, z in msg.items)
        assert 0 <= msg.size <= 32 * 1024 * 1024 and len(msg.hash) == 32
    elif kind == "path-check":
        assert 0 < len(msg.node) <= 64 and msg.path.startswith("/") and len(msg.path) <= MAX_PATH
        assert "\0" not in msg.path
    elif kind == "path-state":
        assert msg.state in STATES and isinstance(msg.detail, str) and len(msg.detail) <= MAX_DETAIL
    elif kind.startswith(("job-", "act-as-")):
        well_formed_job(kind, msg)
    else:  # pragma: no cover
        raise AssertionError(kind)


def well_formed_job(kind: str, msg: Any) -> None:
    job_id = re.compile(r"[a-z0-9-]{1,64}")
    if hasattr(msg, "node"):
        assert isinstance(msg.node, str) and 0 < len(msg.node) <= 64
    if hasattr(msg, "job"):
        assert isinstance(msg.job, str) and job_id.fullmatch(msg.job)
    if kind in ("job-accepted", "job-dispatch"):
        term, coordinator = msg.token
        assert isinstance(term, int) and isinstance(coordinator, str)
    if kind == "job-dispatch":
        assert msg.kind in ("backup", "retention") and isinstance(msg.prune, bool)
        assert isinstance(msg.deadline_ms, int) and not isinstance(msg.deadline_ms, bool)
    elif kind == "job-report":
        assert msg.state in ("done", "failed") and all(isinstance(x, str) for x in msg.snapshots)
    elif kind == "job-progress":
        counters = (msg.files, msg.nbytes, msg.files_seen, msg.nbytes_seen, msg.errors)
        assert all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counters)
        assert isinstance(msg.waiting, bool)
        assert all(isinstance(t, int) and not isinstance(t, bool) and t >= -1
                   for t in (msg.files_total, msg.nbytes_total))
    elif kind in ("job-logon", "act-as-request"):
        assert isinstance(msg.challenge, bytes) and len(msg.challenge) == 32
    elif kind == "act-as-reply":
        assert isinstance(msg.token, bytes) and len(msg.token) <= 4096
    elif kind == "job-running":
        for r in msg.jobs:
            assert isinstance(r.agent, str) and isinstance(r.elapsed_ms, int)
            well_formed_job("job-progress", r.progress)


def well_formed_cert(cert: Certificate) -> None:
    assert is_peer_id(cert.peer_id) and cert.peer_id == peer_id_of(cert.public_key)
    assert cert.office == FP
    assert set(cert.roles) <= set(ROLES)
    assert check_name(cert.name) == cert.name
    assert 0 <= cert.rank < 2**32
    assert isinstance(cert.issued, int) and isinstance(cert.expires, int)


def accept_envelope(data: bytes) -> envelope.Envelope:
    env = open_envelope(data)
    check(env, ALICE.public_key, BOB.peer_id, "POST", PATH, NOW, SKEW)
    return env


# ---- (a) random bytes ------------------------------------------------------------------------


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


# ---- (b) mutated valid encodings ---------------------------------------------------------------


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


@FUZZ
@given(data=st.data())
def test_cert_near_valid_signed_body(data: st.DataObject) -> None:
    """Bodies the office really signed but that say anything: refused cleanly, or a well-formed certificate."""
    valid = codec.unpack_map(codec.unpack_map(CERT.raw, "c")["body"], "b")
    body = codec.pack(data.draw(near_valid_maps(valid)))
    raw = codec.pack({"body": body, "sig": OFFICE_KEY.sign(body)})
    cert = raises_only(CERT_ERRORS, lambda: Certificate.from_bytes(raw, OFFICE_KEY.public_key))
    if cert is not None:
        well_formed_cert(cert)
    # Under another office's key the same bytes are always refused.
    with pytest.raises(CERT_ERRORS):
        Certificate.from_bytes(raw, OTHER_OFFICE_KEY.public_key)


@FUZZ
@given(data=st.data())
def test_revocation_near_valid_signed_body(data: st.DataObject) -> None:
    valid = codec.unpack_map(codec.unpack_map(REV.raw, "r")["body"], "b")
    body = codec.pack(data.draw(near_valid_maps(valid)))
    raw = codec.pack({"body": body, "sig": OFFICE_KEY.sign(body)})
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


# ---- round trips -------------------------------------------------------------------------------


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


# ---- explicit cases the generators are unlikely to reach --------------------------------------------


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
