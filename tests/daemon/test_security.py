"""The peer protocol's defences, attacked over the wire against real daemons.

Every request here is built by hand (peerbackup.net.envelope.seal, or a header
packed and signed by the test when the point is to forge one) and POSTed as raw
bytes with urllib, so nothing in the daemon's own client can paper over a hole.
Every answer is checked the way a careful peer would: it must be an envelope
signed by the daemon, bound to the request's nonce when the request could be
parsed, and a refusal must carry the right HTTP status and code, leave a
`peer.refused` line in the daemon's log, and leave the daemon serving.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import random
import re
import secrets
import select
import signal
import time
from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey, verify
from peerbackup.errors import ProtocolError
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import heartbeat, hello, join
from peerbackup.net.proto.hello import WHOAMI_PATH, WhoAmI
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home, Identity
from tests.daemon.harness import Office, Peer, post_raw, wait_for

SKEW = 120.0  # the default clock_skew: the harness does not override it


def _all_protocol_errors() -> dict[str, int]:
    out: dict[str, int] = {}
    todo: list[type[ProtocolError]] = [ProtocolError]
    while todo:
        cls = todo.pop()
        out[cls.code] = cls.status
        todo.extend(cls.__subclasses__())
    return out


STATUS_OF_CODE = _all_protocol_errors()  # code -> the HTTP status the server must send with it


# ---- a tiny synchronous peer client ------------------------------------------------------


def sealed(key: SigningKey, audience: str, path: str, body: bytes, now: float | None = None,
           nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """A request as a real peer seals it: (wire bytes, nonce)."""
    rand = (lambda n: nonce) if nonce is not None else secrets.token_bytes
    return envelope.seal(key, audience, "POST", path, body, time.time() if now is None else now, rand)


def forged(signer: SigningKey, body: bytes, **header: Any) -> bytes:
    """An envelope whose header the test writes itself, signed (properly) by signer."""
    fields: dict[str, Any] = {
        "v": envelope.PROTOCOL_VERSION, "iss": signer.peer_id, "aud": "", "ts": int(time.time() * 1000),
        "n": secrets.token_bytes(envelope.NONCE_SIZE), "m": "POST", "p": "", "bh": envelope.body_hash(body),
        "re": b"",
    }
    fields.update(header)
    raw = codec.pack(fields)
    return codec.pack({"h": raw, "s": signer.sign(raw), "b": body})


def repack(data: bytes, **outer: bytes) -> bytes:
    """The same envelope with some of its outer fields (h, s, b) replaced."""
    obj = codec.unpack_map(data, "test envelope")
    obj.update(outer)
    return codec.pack(obj)


def refused_count(peer: Peer, code: str, status: int) -> int:
    text = peer.log.read_text() if peer.log.exists() else ""
    return len(re.findall(rf"peer\.refused code={re.escape(code)} status={status} ", text))


def heartbeat_body(seq: int = 1) -> bytes:
    return heartbeat.Heartbeat(seq, bytes(32)).to_wire()


class Target:
    """One running daemon seen from the wire: where it listens and the key its answers must verify with."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.ident: Identity = Home(peer.home).load()
        self.id = self.ident.peer_id
        self.address = peer.address

    def send(self, path: str, data: bytes | None, method: str = "POST") -> tuple[int, envelope.Envelope]:
        """POST (or GET) raw bytes; the answer, checked to be signed by this daemon and bound to the request."""
        status, raw = post_raw(self.address, path, data, method)
        env = envelope.open_envelope(raw)
        h = env.header
        assert h.issuer == self.id, f"answer issued by {h.issuer}, not {self.id}"
        assert verify(self.ident.key.public_key, env.header_bytes, env.signature), "answer signature"
        assert envelope.body_hash(env.body) == h.body_hash, "answer body hash"
        assert h.method == envelope.RESPONSE
        assert abs(h.ts_ms / 1000 - time.time()) < 30
        try:
            req: envelope.Envelope | None = envelope.open_envelope(data or b"")
        except ProtocolError:
            req = None
        if req is not None:
            assert (h.reply_to, h.audience, h.path) == (req.header.nonce, req.header.issuer, req.header.path)
        else:
            assert (h.reply_to, h.audience, h.path) == (b"", self.id, "")
        return status, env

    def refused(self, path: str, data: bytes | None, status: int, code: str, method: str = "POST") -> Refusal:
        """Send a request that must be refused with (status, code), logged as such."""
        before = refused_count(self.peer, code, status)
        got, env = self.send(path, data, method)
        refusal = Refusal.from_wire(env.body)
        assert (got, refusal.code) == (status, code), f"{got} {refusal}"
        assert STATUS_OF_CODE[refusal.code] == status
        assert refusal.message
        assert refused_count(self.peer, code, status) > before, f"no peer.refused code={code} line in {self.peer.log}"
        return refusal

    def ok(self, path: str, data: bytes) -> envelope.Envelope:
        """Send a request that must be answered 200; the answer must verify as a peer's client checks it."""
        status, env = self.send(path, data)
        assert status == 200, Refusal.from_wire(env.body)
        req = envelope.open_envelope(data)
        envelope.check(env, self.ident.key.public_key, req.header.issuer, envelope.RESPONSE, path, time.time(),
                       SKEW, reply_to=req.header.nonce)
        return env

    def assert_serving(self) -> None:
        """Still running, still answering its admin API and the peer port."""
        assert self.peer.proc is not None and self.peer.proc.poll() is None, "the daemon died"
        assert self.peer.status()["peer_id"] == self.id
        status, raw = post_raw(self.address, WHOAMI_PATH, None, "GET")
        assert status == 200
        assert WhoAmI.from_wire(raw).certificate == self.ident.certificate.raw
        assert "peer.handler_failed" not in self.peer.log.read_text()


def acme(office: Office, *members: str) -> tuple[Target, dict[str, Identity]]:
    """alpha running (no mDNS), and members joined but NOT running, so the test alone speaks for them."""
    alpha = office.start(office.init("alpha"), mdns=False)
    idents = {name: Home(office.join(name, office.invite(alpha)).home).load() for name in members}
    return Target(alpha), idents


def stranger(seed: int) -> SigningKey:
    return SigningKey(random.Random(seed).randbytes(32))


# ---- 1-4: signature, body hash, audience, method/path binding, clock ---------------------


def test_forged_signatures_tampering_wrong_audience_and_skew_are_refused(office: Office) -> None:
    alpha, m = acme(office, "beta", "gamma")
    beta, gamma = m["beta"], m["gamma"]
    path = heartbeat.PATH
    good, _ = sealed(beta.key, alpha.id, path, heartbeat_body())
    outer = codec.unpack_map(good, "test")

    # 1. A flipped bit in the signature, an all-zero signature, a signature by another key.
    sig = bytearray(outer["s"])
    sig[17] ^= 0x01
    r = alpha.refused(path, repack(good, s=bytes(sig)), 401, "bad-signature")
    assert beta.peer_id in r.message
    alpha.refused(path, repack(good, s=bytes(64)), 401, "bad-signature")
    mallet = stranger(1)
    alpha.refused(path, repack(good, s=mallet.sign(outer["h"])), 401, "bad-signature")
    # A whole header forged in beta's name and signed by someone else.
    alpha.refused(path, forged(mallet, heartbeat_body(), iss=beta.peer_id, aud=alpha.id, p=path), 401,
                  "bad-signature")
    # beta's own key signing alpha's identity (impersonating the daemon to itself).
    alpha.refused(path, forged(beta.key, heartbeat_body(), iss=alpha.id, aud=alpha.id, p=path), 401,
                  "bad-signature")
    # A signature that is not 64 bytes is refused before any crypto, as malformed.
    alpha.refused(path, repack(good, s=b""), 400, "malformed")

    # 2. The body changed after signing: the signed hash no longer matches.
    r = alpha.refused(path, repack(good, b=heartbeat_body(seq=2)), 401, "bad-signature")
    assert "body" in r.message
    alpha.refused(path, repack(good, b=b""), 401, "bad-signature")

    # The signed path is part of the signature: a hello signed for /v1/hello does not pass as a heartbeat.
    hello_body = hello.Hello(beta.certificate.raw, ()).to_wire()
    as_hello, _ = sealed(beta.key, alpha.id, hello.PATH, hello_body)
    r = alpha.refused(heartbeat.PATH, as_hello, 401, "bad-signature")
    assert hello.PATH in r.message

    # 3. A valid request addressed to another member.
    to_gamma, _ = sealed(beta.key, gamma.peer_id, path, heartbeat_body())
    r = alpha.refused(path, to_gamma, 403, "wrong-audience")
    assert gamma.peer_id in r.message and alpha.id in r.message
    # alpha's own signed answer to beta, reflected back at alpha, is addressed to beta.
    status, reply = post_raw(alpha.address, path, sealed(beta.key, alpha.id, path, heartbeat_body())[0])
    assert status == 200
    alpha.refused(path, reply, 403, "wrong-audience")

    # 4. Timestamps ten minutes away, either way; one minute away is within the window.
    for offset in (-600.0, 600.0):
        data, _ = sealed(beta.key, alpha.id, path, heartbeat_body(), now=time.time() + offset)
        r = alpha.refused(path, data, 401, "clock-skew")
        assert f"{abs(offset):.0f} s" in r.message and f"{SKEW:.0f} s" in r.message
    for offset in (-60.0, 60.0):
        alpha.ok(path, sealed(beta.key, alpha.id, path, heartbeat_body(), now=time.time() + offset)[0])

    # After all that, the real thing still works.
    alpha.ok(path, good)
    alpha.assert_serving()


# ---- 5: replays, including across a restart -----------------------------------------------


def test_replay_is_refused_and_nonces_survive_a_restart(office: Office) -> None:
    alpha, m = acme(office, "beta", "gamma")
    beta, gamma = m["beta"], m["gamma"]
    path = heartbeat.PATH

    # Only a request whose signature verified spends its nonce: a forgery cannot burn a real one.
    nonce = secrets.token_bytes(envelope.NONCE_SIZE)
    data, _ = sealed(beta.key, alpha.id, path, heartbeat_body(), nonce=nonce)
    alpha.refused(path, repack(data, b=heartbeat_body(seq=9)), 401, "bad-signature")
    alpha.refused(path, sealed(beta.key, alpha.id, path, heartbeat_body(), now=time.time() - 600,
                               nonce=nonce)[0], 401, "clock-skew")

    alpha.ok(path, data)
    r = alpha.refused(path, data, 409, "replay")
    assert "replay" in r.message
    # The nonce, not the bytes, is what is remembered: re-sealed with a fresh timestamp and body, still a replay.
    again, _ = sealed(beta.key, alpha.id, path, heartbeat_body(seq=2), nonce=nonce)
    assert again != data
    alpha.refused(path, again, 409, "replay")
    # Nonces are per issuer: beta's spent nonce does not let anyone refuse another member's request.
    alpha.ok(path, sealed(gamma.key, alpha.id, path, heartbeat_body(), nonce=nonce)[0])

    # A clean restart: new process, new port, same state.db.
    assert office.kill(alpha.peer, signal.SIGTERM) == 0
    office.start(alpha.peer, mdns=False)
    restarted = Target(alpha.peer)  # re-reads the address: the new process listens on a new port
    restarted.refused(path, data, 409, "replay")
    restarted.refused(path, again, 409, "replay")
    # A fresh request from beta is accepted: the refusals were about the nonce, nothing else.
    restarted.ok(path, sealed(beta.key, restarted.id, path, heartbeat_body(seq=3))[0])
    restarted.assert_serving()


# ---- 6-7: strangers and other offices -------------------------------------------------------


def test_unknown_peers_foreign_offices_and_stolen_certificates_are_refused(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    mallory = Home(office.init("mallory", office="Evil").home).load()
    assert mallory.office.fingerprint != alpha.ident.office.fingerprint
    eve = stranger(3)

    # 6. A key no office ever certified.
    r = alpha.refused(heartbeat.PATH, sealed(eve, alpha.id, heartbeat.PATH, heartbeat_body())[0], 401,
                      "unknown-peer")
    assert eve.peer_id in r.message
    # ...also when it says hello with no certificate, or with garbage where the certificate goes.
    alpha.refused(hello.PATH, sealed(eve, alpha.id, hello.PATH, hello.Hello(b"", ()).to_wire())[0], 403, "forbidden")
    alpha.refused(hello.PATH, sealed(eve, alpha.id, hello.PATH, hello.Hello(b"\xc1junk", ()).to_wire())[0], 403,
                  "forbidden")

    # 7. A properly certified member of another office says hello.
    body = hello.Hello(mallory.certificate.raw, ("127.0.0.1:9",)).to_wire()
    r = alpha.refused(hello.PATH, sealed(mallory.key, alpha.id, hello.PATH, body)[0], 403, "foreign-office")
    assert mallory.office.fingerprint in r.message
    # ...and its heartbeats are from nobody alpha knows.
    alpha.refused(heartbeat.PATH, sealed(mallory.key, alpha.id, heartbeat.PATH, heartbeat_body())[0], 401,
                  "unknown-peer")

    # A real member's certificate is public: presenting it with another key proves nothing.
    stolen = hello.Hello(beta.certificate.raw, ()).to_wire()
    r = alpha.refused(hello.PATH, sealed(eve, alpha.id, hello.PATH, stolen)[0], 401, "bad-signature")
    assert "another peer's certificate" in r.message
    alpha.refused(hello.PATH, forged(eve, stolen, iss=beta.peer_id, aud=alpha.id, p=hello.PATH), 401,
                  "bad-signature")

    # None of it made anyone a member; beta's own hello is still welcome.
    assert set(alpha.peer.peers()) == {"alpha", "beta"}
    env = alpha.ok(hello.PATH, sealed(beta.key, alpha.id, hello.PATH, stolen)[0])
    assert hello.Hello.from_wire(env.body).certificate == alpha.ident.certificate.raw
    alpha.assert_serving()


# ---- 8: a removed member is refused by every running peer -------------------------------------


def test_removed_peer_is_refused_by_every_running_peer(office: Office) -> None:
    a = office.start(office.init("alpha"), mdns=False)
    b = office.start(office.join("beta", office.invite(a)), mdns=False)
    c = office.start(office.join("gamma", office.invite(a)), mdns=False)
    delta = Home(office.join("delta", office.invite(a)).home).load()  # never runs: the test speaks for it
    targets = [Target(p) for p in (a, b, c)]

    def sees_all(t: Target) -> bool:
        return {"alpha", "beta", "gamma"} <= {n for n, p in t.peer.peers().items() if p["state"] == "alive"}

    for t in targets:
        wait_for(functools.partial(sees_all, t), 20, f"{t.peer.name} to see the three alive")

    def beat(t: Target) -> bytes:
        return sealed(delta.key, t.id, heartbeat.PATH, heartbeat_body())[0]

    delta_hello = hello.Hello(delta.certificate.raw, ()).to_wire()
    # Before the removal delta is a member everywhere: it introduces itself, then its heartbeats pass.
    for t in targets:
        t.ok(hello.PATH, sealed(delta.key, t.id, hello.PATH, delta_hello)[0])
        t.ok(heartbeat.PATH, beat(t))

    office.cli("remove-peer", "--home", str(a.home), "delta")

    def refuses(t: Target) -> bool:
        status, env = t.send(heartbeat.PATH, beat(t))
        return status == 403 and Refusal.from_wire(env.body).code == "revoked"

    for t in targets:
        wait_for(functools.partial(refuses, t), 10, f"{t.peer.name} to refuse delta as revoked")
    for t in targets:
        r = t.refused(heartbeat.PATH, beat(t), 403, "revoked")
        assert delta.peer_id in r.message
        # Its certificate is still signed and unexpired; the revocation wins over it.
        t.refused(hello.PATH, sealed(delta.key, t.id, hello.PATH, delta_hello)[0], 403, "revoked")
        assert "delta" not in t.peer.peers()
        t.assert_serving()


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


# ---- 12: fuzzing the live daemon ----------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 99, 2**31, 2**63 - 1, -(2**63), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(0, 40)))
    if kind in (5, 6):
        return rng.randbytes(rng.choice([0, 1, 16, 31, 32, 33, 64, rng.randrange(0, 300)]))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {rng.choice(["v", "h", "s", "b", "cert", "addrs", "peers", "revoked", "seq", "rd", "tid", "key",
                        "name", "proof", "id", str(rng.randrange(100))]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 6))}


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Half the time one in-place byte change (the framing survives), else one to three edits of any
    kind: flips, substitutions, insertions, deletions, truncation, garbage appended. Never the input."""
    out = bytearray(data)
    edits = 1 if rng.random() < 0.5 else rng.randrange(1, 4)
    for _ in range(edits):
        op = rng.randrange(2) if edits == 1 else rng.randrange(6)
        i = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[i % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[i % len(out)] = rng.randrange(256)
        elif op == 2:
            out[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3:
            del out[i:i + rng.randrange(1, 17)]
        elif op == 4:
            del out[i:]
        else:
            out += rng.randbytes(rng.randrange(1, 9))
    if bytes(out) == data:
        out += b"\x00"
    return bytes(out)


def mutate_header(rng: random.Random, header: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """The header with one field deleted or set to a value that must not pass (never a fresh 16-byte
    nonce or an in-window timestamp, which would make a valid request)."""
    h = dict(header)
    key = rng.choice(sorted(h))
    if rng.random() < 0.15:
        del h[key]
        return h
    now_ms = int(time.time() * 1000)
    wrong: dict[str, list[Any]] = {
        "v": [0, 2, 99, -1, "1", None, 1.5],
        "iss": [*others, "", "AAAA-AAAA-AAAA-AAAA", h["iss"].lower(), 7],
        "aud": [*others, "", "AAAA-AAAA-AAAA-AAAA", b"aud"],
        "ts": [now_ms - 3_600_000, now_ms + 3_600_000, 0, -1, 2**63 - 1, -(2**63), "now", 1.5e12],
        "n": [b"", bytes(15), bytes(17), rng.randbytes(64), "nonce", 16],
        "m": ["GET", "PUT", "post", envelope.RESPONSE, "", "P" * 17, 1],
        "p": [heartbeat.PATH, hello.PATH, join.PATH, "/v1/nope", "", "/" + "x" * 300, None],
        "bh": [rng.randbytes(32), b"", bytes(32), "hash"],
        "re": [rng.randbytes(16), b"x", bytes(32), None],
    }
    choices = [v for v in wrong[key] if v != h[key]]
    h[key] = rng.choice(choices) if choices else random_value(rng)
    return h


def mutate_message(rng: random.Random, body: bytes) -> bytes:
    """A message with one field deleted, retyped or set to a random value (or its version changed)."""
    obj = codec.unpack_map(body, "template")
    key = rng.choice([*obj, "extra"])
    op = rng.randrange(4)
    if op == 0:
        obj.pop(key, None)
    elif op == 1:
        obj["v"] = rng.choice([0, 2, 99, -1, "1", None, 1.0])
    elif op == 2 and key in obj and isinstance(obj[key], bytes) and obj[key]:
        obj[key] = mutate_bytes(rng, obj[key])
    else:
        obj[key] = random_value(rng)
    return codec.pack(obj)


def test_fuzzed_requests_are_refused_and_never_crash_the_daemon(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    rng = random.Random(7)
    eve = SigningKey(rng.randbytes(32))
    hint = hello.PeerHint(eve.peer_id, ("10.0.0.9:7420",))
    templates = {
        hello.PATH: hello.Hello(beta.certificate.raw, ("127.0.0.1:1",), (), (hint,)).to_wire(),
        heartbeat.PATH: heartbeat_body(),
        join.PATH: join.JoinRequest(rng.randbytes(16), eve.public_key, "eve", rng.randbytes(32)).to_wire(),
    }

    def seal(key: SigningKey, path: str, body: bytes) -> bytes:
        return envelope.seal(key, alpha.id, "POST", path, body, time.time(), rng.randbytes)[0]

    def locally_valid_heartbeat(body: bytes) -> bool:
        try:
            heartbeat.Heartbeat.from_wire(body)
        except ProtocolError:
            return False
        return True

    payloads: list[tuple[str, bytes]] = []
    for _ in range(200):
        path = rng.choice(list(templates))
        kind = rng.choices(range(6), weights=[1, 1, 3, 3, 3, 1])[0]
        if kind == 0:  # random bytes
            data = rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:  # random msgpack, as the envelope itself
            data = codec.pack(random_value(rng))
        elif kind == 2:  # a valid request (from beta, a member), damaged in transit
            data = mutate_bytes(rng, seal(beta.key, path, templates[path]))
        elif kind == 3:  # a properly signed envelope around a damaged message
            body = mutate_message(rng, templates[path]) if rng.random() < 0.6 else mutate_bytes(rng, templates[path])
            # beta signs a damaged heartbeat only when it really is damaged (else it would be a valid beat).
            signer = beta.key if path == heartbeat.PATH and not locally_valid_heartbeat(body) else eve
            data = seal(signer, path, body)
        elif kind == 4:  # a header with one wrong field, properly signed by beta or by eve
            signer = rng.choice([beta.key, eve])
            good = codec.unpack_map(seal(signer, path, templates[path]), "test envelope")
            header = mutate_header(rng, codec.unpack_map(good["h"], "test header"),
                                   [beta.peer_id, eve.peer_id, alpha.id])
            raw = codec.pack(header)
            data = codec.pack({"h": raw, "s": signer.sign(raw), "b": good["b"]})
        else:  # a properly signed envelope around random msgpack, maybe sent to another route
            data = seal(rng.choice([beta.key, eve]), path, codec.pack(random_value(rng)))
            path = rng.choice([path, *templates])
        payloads.append((path, data))

    before = alpha.peer.log.read_text().count("peer.refused")
    seen: dict[str, int] = {}
    for path, data in payloads:
        status, env = alpha.send(path, data)  # signed by alpha and bound to the request, or it fails here
        refusal = Refusal.from_wire(env.body)
        assert 400 <= status < 500, f"{status} {refusal} for {path} {data[:80]!r}"
        assert STATUS_OF_CODE.get(refusal.code) == status, refusal
        seen[refusal.code] = seen.get(refusal.code, 0) + 1
    print(f"fuzz: {len(payloads)} requests, refusals by code: {dict(sorted(seen.items()))}")
    # The fuzz reached past the parser: into authentication, signature checks and the handlers.
    assert {"malformed", "version", "bad-signature", "unknown-peer", "wrong-audience", "clock-skew",
            "forbidden"} <= set(seen)
    assert alpha.peer.log.read_text().count("peer.refused") == before + len(payloads)
    alpha.assert_serving()
    alpha.ok(heartbeat.PATH, sealed(beta.key, alpha.id, heartbeat.PATH, heartbeat_body())[0])


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
