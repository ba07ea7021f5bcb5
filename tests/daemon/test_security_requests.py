"""The peer protocol's defences, attacked over the wire against real daemons (tests/daemon/wire.py): requests
of every size and shape, versions and routes (section 9), the happy path checked as strictly as the refusals
(10), a forged join (11), and the bugs found here, each test stating the behaviour we want.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import secrets
import select
import time

import pytest

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey, verify
from peerbackup.errors import ProtocolError
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import heartbeat, hello, join
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home
from tests.daemon.harness import Office
from tests.daemon.wire import SKEW, Target, acme, forged, heartbeat_body, sealed, stranger

# ---- 9: size, parsing, versions, routes -------------------------------------------------------


def test_oversized_malformed_unversioned_and_unrouted_requests_are_refused(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    path = heartbeat.PATH

    # Over the envelope limit: refused by its Content-Length, before a byte of it is parsed.
    r = alpha.refused(path, b"\x00" * (envelope.MAX_ENVELOPE + 1), 413, "too-large")
    assert str(envelope.MAX_ENVELOPE) in r.message

    # Not msgpack, msgpack that is not an envelope, an envelope missing a field, random bytes, nothing.
    rng = random.Random(9)
    for junk in (b"\xc1", b"\x92\x01\x02", codec.pack({"h": b"x", "s": bytes(64)}), codec.pack("hello"),
                 rng.randbytes(300), b"", codec.pack({"h": b"\x00", "s": bytes(64), "b": b""})):
        alpha.refused(path, junk, 400, "malformed")
    # Header fields of the wrong shape, signed properly.
    for bad in ({"iss": "not-a-peer-id"}, {"n": b"short"}, {"re": b"x"}, {"p": "/" + "x" * 300}, {"ts": "now"}):
        alpha.refused(path, forged(beta.key, heartbeat_body(), **{"aud": alpha.id, "p": path, **bad}), 400,
                      "malformed")
    # A valid envelope from a member, carrying garbage where the heartbeat goes.
    for body in (b"garbage", codec.pack({"v": 1, "seq": -1, "rd": bytes(32)}), codec.pack({"v": 1}),
                 codec.pack({"v": 1, "seq": 1, "rd": b"short"})):
        alpha.refused(path, sealed(beta.key, alpha.id, path, body)[0], 400, "malformed")
    # A message version this peer does not speak.
    r = alpha.refused(path, sealed(beta.key, alpha.id, path, codec.pack({"v": 7, "seq": 1, "rd": bytes(32)}))[0],
                      400, "version")
    assert "version 7" in r.message

    # An envelope version from the future, otherwise perfect.
    r = alpha.refused(path, forged(beta.key, heartbeat_body(), v=99, aud=alpha.id, p=path), 400, "version")
    assert "version 99" in r.message and f"speaks version {envelope.PROTOCOL_VERSION}" in r.message

    # No such endpoint, properly signed; and a GET of a POST-only route.
    r = alpha.refused("/v1/nope", sealed(beta.key, alpha.id, "/v1/nope", heartbeat_body())[0], 404, "not-found")
    assert "/v1/nope" in r.message
    alpha.refused(path, None, 404, "not-found", method="GET")
    alpha.refused("/", None, 404, "not-found", method="GET")

    alpha.ok(path, sealed(beta.key, alpha.id, path, heartbeat_body())[0])
    alpha.assert_serving()


# ---- 10: the happy path, checked as strictly as the refusals ------------------------------------


def test_member_heartbeat_is_answered_with_a_signed_reply_bound_to_the_request(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    data, nonce = sealed(beta.key, alpha.id, heartbeat.PATH, heartbeat_body())
    env = alpha.ok(heartbeat.PATH, data)  # envelope.check: signature, body hash, audience, path, reply_to, time
    assert env.header.issuer == alpha.id and env.header.audience == beta.peer_id
    assert env.header.reply_to == nonce and env.header.nonce != nonce
    assert verify(alpha.ident.key.public_key, env.header_bytes, env.signature)
    assert not verify(beta.key.public_key, env.header_bytes, env.signature)
    reply = heartbeat.Heartbeat.from_wire(env.body)
    # No revocations yet: the digest is that of the empty list.
    assert reply.revocations_digest == hashlib.sha256(b"peerbackup revocations\0").digest()
    # The same reply does not pass for the answer to any other request.
    other_nonce = secrets.token_bytes(envelope.NONCE_SIZE)
    with pytest.raises(ProtocolError):
        envelope.check(env, alpha.ident.key.public_key, beta.peer_id, envelope.RESPONSE, heartbeat.PATH,
                       time.time(), SKEW, reply_to=other_nonce)
    # beta is now heard, as a heartbeat should make it.
    assert alpha.peer.peers()["beta"]["last_heard_s"] is not None
    alpha.assert_serving()


# ---- 11: a forged join -----------------------------------------------------------------------


def test_forged_join_is_refused_and_the_invite_still_works(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    alpha = Target(a)
    token = office.invite(a)
    invite = join.InviteToken.decode(token)
    assert invite.office == alpha.ident.office.fingerprint
    tid = join.token_id(invite.secret)
    eve = stranger(4)

    def request(key: SigningKey, secret: bytes, proof_key: bytes | None = None, name: str = "eve",
                token_id: bytes = tid) -> bytes:
        proof = join.join_proof(secret, proof_key or key.public_key, name)
        body = join.JoinRequest(token_id, key.public_key, name, proof).to_wire()
        return sealed(key, alpha.id, join.PATH, body)[0]

    # A wrong secret.
    r = alpha.refused(join.PATH, request(eve, secrets.token_bytes(32)), 403, "forbidden")
    assert "proof" in r.message
    # The right secret, but the proof was made for another key (a key swapped in transit).
    r = alpha.refused(join.PATH, request(eve, invite.secret, proof_key=stranger(5).public_key), 403, "forbidden")
    assert "proof" in r.message
    # The right proof for eve, but signed by another key than the one asking for a certificate.
    proof = join.join_proof(invite.secret, eve.public_key, "eve")
    body = join.JoinRequest(tid, eve.public_key, "eve", proof).to_wire()
    alpha.refused(join.PATH, sealed(stranger(6), alpha.id, join.PATH, body)[0], 401, "bad-signature")
    # A token id nobody issued.
    r = alpha.refused(join.PATH, request(eve, invite.secret, token_id=bytes(16)), 403, "forbidden")
    assert "unknown" in r.message
    assert alpha.peer.log.read_text().count("join.refused") == 3

    # None of that used the invite up: the real holder joins with it.
    delta = office.join("delta", token)
    assert Home(delta.home).load().certificate.name == "delta"
    assert "delta" in alpha.peer.peers()
    assert "eve" not in alpha.peer.peers()
    # And once used, even the right proof from a new key is refused.
    r = alpha.refused(join.PATH, request(eve, invite.secret), 403, "forbidden")
    assert "used already" in r.message
    alpha.assert_serving()


# ---- bugs found: each test states the behaviour we want -------------------------------------------


def test_hello_with_newer_certificate_version_is_refused_not_a_crash(office: Office) -> None:
    alpha, _ = acme(office)
    eve = stranger(8)
    cert = codec.pack({"body": codec.pack({"v": 2, "office": alpha.ident.office.fingerprint}), "sig": bytes(64)})
    data = sealed(eve, alpha.id, hello.PATH, hello.Hello(cert, ()).to_wire())[0]
    status, env = alpha.send(hello.PATH, data)
    refusal = Refusal.from_wire(env.body)
    assert 400 <= status < 500 and refusal.code != "internal", f"{status} {refusal}"
    alpha.assert_serving()


def test_hello_with_newer_revocation_version_is_answered(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    rev = codec.pack({"body": codec.pack({"v": 2, "office": alpha.ident.office.fingerprint}), "sig": bytes(64)})
    body = hello.Hello(beta.certificate.raw, (), (rev,)).to_wire()
    env = alpha.ok(hello.PATH, sealed(beta.key, alpha.id, hello.PATH, body)[0])
    assert hello.Hello.from_wire(env.body).certificate == alpha.ident.certificate.raw
    alpha.assert_serving()


def test_request_body_arriving_in_two_segments_is_read_whole(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    data = sealed(beta.key, alpha.id, heartbeat.PATH, heartbeat_body())[0]
    host, port = alpha.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", heartbeat.PATH)
        conn.putheader("Content-Type", CONTENT_TYPE)
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        conn.send(data[:40])
        assert conn.sock is not None
        # A correct server waits for the rest of its Content-Length; a short read answers at once.
        answered_early = bool(select.select([conn.sock], [], [], 2.0)[0])
        if not answered_early:
            conn.send(data[40:])
        resp = conn.getresponse()
        status, raw = resp.status, resp.read()
    finally:
        conn.close()
    env = envelope.open_envelope(raw)
    assert (status, answered_early) == (200, False), Refusal.from_wire(env.body)
    alpha.assert_serving()
