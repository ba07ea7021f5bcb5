"""logs: anti-entropy for the replicated logs.

A peer sends its heads (log, feed, seq, event id) and fork proofs; the other
answers with its own. Each side then pulls, feed by feed, the events it lacks
(or the one event whose id differs from its own at the same seq, which is how
a fork is found) and checks every one before committing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.core.events import MAX_LOG_NAME
from peerbackup.core.identity import is_peer_id
from peerbackup.errors import Malformed
from peerbackup.net.proto import _wire

HEADS_PATH = "/v1/logs/heads"
PULL_PATH = "/v1/logs/pull"
MAX_PULL = 256
MAX_HEADS = 4096


@dataclass(frozen=True)
class Head:
    log: str
    feed: str
    seq: int
    id: bytes


@dataclass(frozen=True)
class Heads:
    heads: tuple[Head, ...]
    forks: tuple[tuple[bytes, bytes], ...]
    revocations: tuple[bytes, ...] = ()  # revocation events kept as evidence

    def to_wire(self) -> bytes:
        return _wire.encode({"heads": [[h.log, h.feed, h.seq, h.id] for h in self.heads],
                             "forks": [[a, b] for a, b in self.forks], "revs": list(self.revocations)})

    @classmethod
    def from_wire(cls, data: bytes) -> Heads:
        what = "log heads"
        obj = _wire.decode(data, what)
        raw_heads = _wire.get(obj, "heads", list, what)
        raw_forks = _wire.get(obj, "forks", list, what)
        if len(raw_heads) > MAX_HEADS or len(raw_forks) > _wire.MAX_ITEMS:
            raise Malformed(f"{what}: too many heads or forks")
        heads = []
        for item in raw_heads:
            if not (isinstance(item, list) and len(item) == 4):
                raise Malformed(f"{what}: a head is [log, feed, seq, id]")
            log, feed, seq, eid = item
            if not (isinstance(log, str) and 0 < len(log) <= MAX_LOG_NAME and is_peer_id(feed)
                    and isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq < 2**63
                    and isinstance(eid, bytes) and len(eid) == 32):
                raise Malformed(f"{what}: bad head")
            heads.append(Head(log, feed, seq, eid))
        forks = []
        for item in raw_forks:
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
                raise Malformed(f"{what}: a fork proof is [event, event]")
            forks.append((item[0], item[1]))
        revs = _wire.items(obj, "revs", bytes, what)
        return cls(tuple(heads), tuple(forks), tuple(revs))


@dataclass(frozen=True)
class Pull:
    log: str
    feed: str
    start: int
    limit: int

    def to_wire(self) -> bytes:
        return _wire.encode({"log": self.log, "feed": self.feed, "from": self.start, "limit": self.limit})

    @classmethod
    def from_wire(cls, data: bytes) -> Pull:
        what = "log pull"
        obj = _wire.decode(data, what)
        p = cls(_wire.get(obj, "log", str, what), _wire.get(obj, "feed", str, what),
                _wire.get(obj, "from", int, what), _wire.get(obj, "limit", int, what))
        if not is_peer_id(p.feed) or not 0 < len(p.log) <= MAX_LOG_NAME or not 0 < p.start < 2**63 \
                or not 0 < p.limit <= MAX_PULL:
            raise Malformed(f"{what}: bad log, feed, start or limit")
        return p


@dataclass(frozen=True)
class PullReply:
    events: tuple[bytes, ...]
    certificate: bytes  # the feed writer's certificate, so the puller can check a stranger's events

    def to_wire(self) -> bytes:
        return _wire.encode({"events": list(self.events), "cert": self.certificate})

    @classmethod
    def from_wire(cls, data: bytes) -> PullReply:
        what = "log pull reply"
        obj = _wire.decode(data, what)
        events = _wire.get(obj, "events", list, what)
        if len(events) > MAX_PULL or not all(isinstance(e, bytes) for e in events):
            raise Malformed(f"{what}: events must be at most {MAX_PULL} byte strings")
        return cls(tuple(events), _wire.get(obj, "cert", bytes, what))
