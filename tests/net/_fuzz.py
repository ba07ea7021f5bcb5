"""Shared by the hostile-input tests of the peer protocol (test_proto_*.py): a valid sample of every
message, envelope, certificate, revocation and invite token; Hypothesis strategies and byte mutations;
and what an accepted message must look like.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from peerbackup.core.certs import COORDINATOR_ROLES, ROLES, Certificate, Office, Revocation, check_name
from peerbackup.core.identity import SigningKey, fingerprint_of, is_peer_id, peer_id_of, seal_to
from peerbackup.errors import (
    FormatError,
    Malformed,
    TooLarge,
    UnsupportedProtocol,
    UnsupportedVersion,
)
from peerbackup.net import envelope
from peerbackup.net.envelope import check, open_envelope, seal
from peerbackup.net.proto import _wire
from peerbackup.net.proto.coordinator import Announce, AnnounceReply
from peerbackup.net.proto.heartbeat import Heartbeat
from peerbackup.net.proto.hello import Hello, PeerHint, WhoAmI
from peerbackup.net.proto.jobs import (
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
from peerbackup.net.proto.join import (
    InviteToken,
    JoinReply,
    JoinRequest,
    join_proof,
    token_id,
)
from peerbackup.net.proto.logsync import Head, Heads, Pull, PullReply
from peerbackup.net.proto.probe import MAX_DETAIL, MAX_PATH, STATES, PathCheck, PathState
from peerbackup.net.proto.refusal import Refusal
from peerbackup.net.proto.store import Challenge, FileRef, Listing
from peerbackup.net.proto.store import Delete as StoreDelete
from peerbackup.net.proto.store import Get as StoreGet
from peerbackup.net.proto.store import Put as StorePut
from peerbackup.net.proto.store import Reply as StoreReply
from peerbackup.net.proto.store import Usage as StoreUsage
from peerbackup.storage.store import FileType

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
    elif kind.startswith("store-"):
        well_formed_store(kind, msg)
    elif kind == "path-check":
        assert 0 < len(msg.node) <= 64 and msg.path.startswith("/") and len(msg.path) <= MAX_PATH
        assert "\0" not in msg.path
    elif kind == "path-state":
        assert msg.state in STATES and isinstance(msg.detail, str) and len(msg.detail) <= MAX_DETAIL
    elif kind.startswith(("job-", "act-as-")):
        well_formed_job(kind, msg)
    else:  # pragma: no cover
        raise AssertionError(kind)


def well_formed_store(kind: str, msg: Any) -> None:
    if kind in ("store-put", "store-get", "store-challenge", "store-delete"):
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
