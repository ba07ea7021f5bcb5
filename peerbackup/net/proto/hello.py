"""hello: two members introduce themselves.

Each side sends its certificate (so a peer that never heard of a newcomer can
still check it against the office key), the addresses it listens on, every
revocation it knows (so removals spread), and hints of other members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peerbackup.net.proto import _wire

PATH = "/v1/hello"
WHOAMI_PATH = "/v1/whoami"


@dataclass(frozen=True)
class PeerHint:
    peer_id: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Hello:
    certificate: bytes
    addresses: tuple[str, ...]
    revocations: tuple[bytes, ...] = ()
    peers: tuple[PeerHint, ...] = ()

    def to_wire(self) -> bytes:
        return _wire.encode({
            "cert": self.certificate, "addrs": list(self.addresses), "revoked": list(self.revocations),
            "peers": [{"id": p.peer_id, "addrs": list(p.addresses)} for p in self.peers],
        })

    @classmethod
    def from_wire(cls, data: bytes) -> Hello:
        what = "hello"
        obj = _wire.decode(data, what)
        hints = [PeerHint(p, a) for p, a in _wire.hints(obj, "peers", what)]
        return cls(
            certificate=_wire.get(obj, "cert", bytes, what),
            addresses=_wire.addresses(obj, "addrs", what),
            revocations=tuple(_wire.items(obj, "revoked", bytes, what)),
            peers=tuple(hints),
        )


@dataclass(frozen=True)
class WhoAmI:
    """The unauthenticated answer to GET /v1/whoami: a certificate is public, and
    a client still checks it against the office key before believing a word."""

    certificate: bytes
    office: dict[Any, Any]  # Office.to_wire(): a joiner checks its key against the invite's fingerprint

    def to_wire(self) -> bytes:
        return _wire.encode({"cert": self.certificate, "office": self.office})

    @classmethod
    def from_wire(cls, data: bytes) -> WhoAmI:
        obj: dict[Any, Any] = _wire.decode(data, "whoami")
        return cls(certificate=_wire.get(obj, "cert", bytes, "whoami"), office=_wire.get(obj, "office", dict, "whoami"))
