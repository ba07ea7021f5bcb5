"""heartbeat: a signed "I am alive" every few seconds to every member.

Both sides name a digest of the revocations they know (when they differ the
sender follows up with a hello, which carries the revocations themselves) and a
digest of their log heads (when they differ, the logs are synchronised).
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
    logs_digest: bytes = bytes(32)

    def to_wire(self) -> bytes:
        return _wire.encode({"seq": self.seq, "rd": self.revocations_digest, "ld": self.logs_digest})

    @classmethod
    def from_wire(cls, data: bytes) -> Heartbeat:
        what = "heartbeat"
        obj = _wire.decode(data, what)
        seq = _wire.get(obj, "seq", int, what)
        digest = _wire.get(obj, "rd", bytes, what)
        logs = _wire.get(obj, "ld", bytes, what)
        if not 0 <= seq < 2**63 or len(digest) != 32 or len(logs) != 32:
            raise Malformed(f"{what}: bad sequence number or digest")
        return cls(seq=seq, revocations_digest=digest, logs_digest=logs)

