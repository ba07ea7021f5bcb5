"""heartbeat: a signed "I am alive" every few seconds to every member.

Both sides name a digest of the revocations they know; when the digests differ
the sender follows up with a hello, which carries the revocations themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire

PATH = "/v1/heartbeat"


@dataclass(frozen=True)
class Heartbeat:
    seq: int
    revocations_digest: bytes

    def to_wire(self) -> bytes:
        return _wire.encode({"seq": self.seq, "rd": self.revocations_digest})

    @classmethod
    def from_wire(cls, data: bytes) -> Heartbeat:
        what = "heartbeat"
        obj = _wire.decode(data, what)
        seq = _wire.get(obj, "seq", int, what)
        digest = _wire.get(obj, "rd", bytes, what)
        if not 0 <= seq < 2**63 or len(digest) != 32:
            raise Malformed(f"{what}: bad sequence number or digest")
        return cls(seq=seq, revocations_digest=digest)


HeartbeatReply = Heartbeat
