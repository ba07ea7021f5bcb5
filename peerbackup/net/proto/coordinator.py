"""coordinator: the lease announcement of the coordinator, with its fencing token.

A token is (term, peer id), ordered lexicographically. A peer accepts an
announcement whose token is at least the highest it has seen and answers with
the highest it knows either way, so a stale coordinator learns it was replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.core.identity import is_peer_id
from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire

PATH = "/v1/coordinator"

Token = tuple[int, str]


def _token(obj: object, what: str) -> Token:
    if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and not isinstance(obj[0], bool)
            and 0 <= obj[0] < 2**62 and isinstance(obj[1], str) and (obj[1] == "" or is_peer_id(obj[1]))):
        raise Malformed(f"{what}: a fencing token is [term, peer id]")
    return (obj[0], obj[1])


@dataclass(frozen=True)
class Announce:
    token: Token
    lease_ms: int

    def to_wire(self) -> bytes:
        return _wire.encode({"token": list(self.token), "lease": self.lease_ms})

    @classmethod
    def from_wire(cls, data: bytes) -> Announce:
        what = "coordinator announcement"
        obj = _wire.decode(data, what)
        lease = _wire.get(obj, "lease", int, what)
        if not 0 < lease <= 3600_000:
            raise Malformed(f"{what}: bad lease")
        return cls(_token(obj.get("token"), what), lease)


@dataclass(frozen=True)
class AnnounceReply:
    accepted: bool
    highest: Token

    def to_wire(self) -> bytes:
        return _wire.encode({"ok": self.accepted, "highest": list(self.highest)})

    @classmethod
    def from_wire(cls, data: bytes) -> AnnounceReply:
        what = "coordinator reply"
        obj = _wire.decode(data, what)
        return cls(_wire.get(obj, "ok", bool, what), _token(obj.get("highest"), what))
