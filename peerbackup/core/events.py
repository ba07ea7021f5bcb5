"""Signed log events: the unit of every replicated log (office control log, node event logs).

Each writer appends to its own feed in a log; an event names the hash of the
writer's previous event in that log, so a feed is a hash chain, and is signed
by the writer. The signed body travels verbatim beside the signature and an
event's id is the SHA-256 of its wire bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from peerbackup.core import codec
from peerbackup.core.identity import SIGNATURE_SIZE, SigningKey, is_peer_id, verify
from peerbackup.errors import FormatError, UnsupportedVersion

EVENT_VERSION = 1
GENESIS = bytes(32)
MAX_EVENT = 64 * 1024
MAX_KIND = 64
MAX_LOG_NAME = 80
CONTROL_LOG = "office"


@dataclass(frozen=True)
class Event:
    log: str
    feed: str  # the writer's peer id
    seq: int  # 1, 2, 3, ... within (log, feed)
    prev: bytes  # id of the writer's previous event in this log, GENESIS for seq 1
    hlc: int
    kind: str
    fields: dict[str, Any]
    body: bytes  # the signed bytes
    sig: bytes
    raw: bytes  # wire bytes
    id: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.log, self.feed, self.seq)

    def order(self) -> tuple[int, str, int]:
        """Display order: (HLC, feed, seq) is the same on every peer."""
        return (self.hlc, self.feed, self.seq)


def event_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def make_event(key: SigningKey, log: str, seq: int, prev: bytes, hlc: int, kind: str,
               fields: dict[str, Any]) -> Event:
    body = codec.pack({"v": EVENT_VERSION, "log": log, "feed": key.peer_id, "seq": seq, "prev": prev,
                       "hlc": hlc, "kind": kind, "f": fields})
    raw = codec.pack({"e": body, "s": key.sign(body)})
    return decode_event(raw)


def decode_event(raw: bytes) -> Event:
    """Parse an event without trusting it (FormatError / UnsupportedVersion); the signature is
    checked separately against the writer's key, which the caller must look up."""
    what = "event"
    if len(raw) > MAX_EVENT:
        raise FormatError(what, f"{len(raw)} bytes is over the limit of {MAX_EVENT}")
    outer = codec.unpack_map(raw, what)
    body = codec.field(outer, "e", bytes, what)
    sig = codec.field(outer, "s", bytes, what)
    # The id hashes the wire bytes: another encoding of the same signed event would get another
    # id and pass for a fork, letting any relay freeze any writer's feed.
    if codec.pack({"e": body, "s": sig}) != bytes(raw):
        raise FormatError(what, "not in its canonical encoding")
    obj = codec.unpack_map(body, what)
    version = codec.field(obj, "v", int, what)
    if version > EVENT_VERSION:
        raise UnsupportedVersion(what, version, EVENT_VERSION)
    if version < 1:
        raise FormatError(what, f"bad version {version}")
    log = codec.field(obj, "log", str, what)
    feed = codec.field(obj, "feed", str, what)
    seq = codec.field(obj, "seq", int, what)
    prev = codec.field(obj, "prev", bytes, what)
    hlc = codec.field(obj, "hlc", int, what)
    kind = codec.field(obj, "kind", str, what)
    fields = codec.field(obj, "f", dict, what)
    if not 0 < len(log) <= MAX_LOG_NAME or not log.isprintable():
        raise FormatError(what, "bad log name")
    if not is_peer_id(feed):
        raise FormatError(what, "bad feed (writer peer id)")
    if not 0 < seq < 2**63 or not 0 <= hlc < 2**63 or len(prev) != 32 or len(sig) != SIGNATURE_SIZE:
        raise FormatError(what, "bad seq, HLC time, prev or signature")
    if (seq == 1) != (prev == GENESIS):
        raise FormatError(what, "only the first event of a feed follows the genesis hash")
    if not 0 < len(kind) <= MAX_KIND or not kind.isprintable():
        raise FormatError(what, "bad kind")
    if not all(isinstance(k, str) for k in fields):
        raise FormatError(what, "field names must be strings")
    return Event(log=log, feed=feed, seq=seq, prev=prev, hlc=hlc, kind=kind, fields=fields, body=body, sig=sig,
                 raw=bytes(raw), id=event_id(raw))


def signed_by(event: Event, public_key: bytes) -> bool:
    return verify(public_key, event.body, event.sig)
