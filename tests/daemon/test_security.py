"""The peer protocol's defences, attacked over the wire against real daemons: who signed a request, for
whom, when, and whether it is still a member (sections 1-8; the requests' shapes: test_security_requests.py;
fuzzing: test_security_fuzz.py).

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
import secrets
import signal
import time

from peerbackup.core import codec
from peerbackup.net import envelope
from peerbackup.net.proto import heartbeat, hello
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home
from tests.daemon.harness import Office, post_raw, wait_for
from tests.daemon.wire import SKEW, Target, acme, forged, heartbeat_body, repack, sealed, stranger

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
