"""A tiny synchronous peer client for the attacks on the peer protocol (tests/daemon/test_security*.py):
requests sealed as a real peer seals them, or with a header the test forges, POSTed as raw bytes; and a
running daemon seen from the wire (Target), whose every answer is checked the way a careful peer would.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from typing import Any

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey, verify
from peerbackup.errors import ProtocolError
from peerbackup.net import envelope
from peerbackup.net.proto import heartbeat
from peerbackup.net.proto.hello import WHOAMI_PATH, WhoAmI
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home, Identity
from tests.daemon.harness import Office, Peer, post_raw

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
