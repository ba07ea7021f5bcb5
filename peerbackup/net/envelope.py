"""The signed envelope every peer request and response travels in.

Sans-I/O: `seal` and `open_envelope`/`check` take bytes, `now` and randomness.
The header (issuer, audience, timestamp, nonce, method, path, body hash and,
for a response, the nonce of the request it answers) is signed by the issuer;
a response bound to its request's nonce cannot be replayed as the answer to
another request. Nonce bookkeeping is the caller's: it must be persisted, and
only a request whose signature verified may spend one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from peerbackup.core import codec
from peerbackup.core.crypto import Random
from peerbackup.core.identity import SIGNATURE_SIZE, SigningKey, is_peer_id, verify
from peerbackup.errors import (
    BadSignature,
    ClockSkew,
    FormatError,
    Malformed,
    TooLarge,
    UnsupportedProtocol,
    WrongAudience,
)

PROTOCOL_VERSION = 1
NONCE_SIZE = 16
MAX_BODY = 1024 * 1024  # control messages; a route may allow more (packs: BULK_BODY)
MAX_ENVELOPE = MAX_BODY + 4096
BULK_BODY = 40 * 1024 * 1024  # a pack (about 16 MiB, at most 32 MiB) with its message around it
RESPONSE = "RESPONSE"
_MAX_PATH = 256


FRAME_PREFIX = 4


def frame(envelope_bytes: bytes) -> bytes:
    """A bulk message: the envelope behind its 4-byte length, then raw bytes (a pack) that the
    signed body names by size and BLAKE3 hash, so they are hashed once and never copied into
    msgpack, and a receiver checks the signature before it reads them."""
    return len(envelope_bytes).to_bytes(FRAME_PREFIX, "big") + envelope_bytes


def frame_length(prefix: bytes, max_body: int = MAX_BODY) -> int:
    if len(prefix) != FRAME_PREFIX:
        raise Malformed("truncated frame")
    n = int.from_bytes(prefix, "big")
    if n > max_body + 4096:
        raise TooLarge(n, max_body + 4096)
    return n


def unframe(data: bytes, max_body: int = MAX_BODY) -> tuple[bytes, memoryview]:
    """(envelope bytes, the raw bytes after it) of a bulk message held whole."""
    n = frame_length(data[:FRAME_PREFIX], max_body)
    if len(data) < FRAME_PREFIX + n:
        raise Malformed("truncated frame")
    view = memoryview(data)
    return bytes(view[FRAME_PREFIX:FRAME_PREFIX + n]), view[FRAME_PREFIX + n:]


def body_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Header:
    version: int
    issuer: str
    audience: str
    ts_ms: int
    nonce: bytes
    method: str
    path: str
    body_hash: bytes
    reply_to: bytes  # empty in a request; the request's nonce in a response


@dataclass(frozen=True)
class Envelope:
    header: Header
    header_bytes: bytes
    signature: bytes
    body: bytes


def seal(key: SigningKey, audience: str, method: str, path: str, body: bytes, now: float, rand: Random,
         reply_to: bytes = b"") -> tuple[bytes, bytes]:
    """The wire bytes of a signed envelope and the nonce it carries."""
    nonce = rand(NONCE_SIZE)
    header = codec.pack({
        "v": PROTOCOL_VERSION, "iss": key.peer_id, "aud": audience, "ts": int(now * 1000), "n": nonce,
        "m": method, "p": path, "bh": body_hash(body), "re": reply_to,
    })
    return codec.pack({"h": header, "s": key.sign(header), "b": body}), nonce


def open_envelope(data: bytes, max_body: int = MAX_BODY) -> Envelope:
    """Parse without trusting: Malformed, TooLarge or UnsupportedProtocol on bad input."""
    if len(data) > max_body + 4096:
        raise TooLarge(len(data), max_body + 4096)
    what = "envelope"
    try:
        outer = codec.unpack_map(data, what)
        header_bytes = codec.field(outer, "h", bytes, what)
        signature = codec.field(outer, "s", bytes, what)
        body = codec.field(outer, "b", bytes, what)
        h = codec.unpack_map(header_bytes, "envelope header")
        version = codec.field(h, "v", int, what)
        if version != PROTOCOL_VERSION:
            raise UnsupportedProtocol(version, PROTOCOL_VERSION)
        header = Header(
            version=version, issuer=codec.field(h, "iss", str, what), audience=codec.field(h, "aud", str, what),
            ts_ms=codec.field(h, "ts", int, what), nonce=codec.field(h, "n", bytes, what),
            method=codec.field(h, "m", str, what), path=codec.field(h, "p", str, what),
            body_hash=codec.field(h, "bh", bytes, what), reply_to=codec.field(h, "re", bytes, what),
        )
    except FormatError as exc:
        raise Malformed(str(exc)) from None
    if not is_peer_id(header.issuer) or not is_peer_id(header.audience):
        raise Malformed("issuer and audience must be peer ids")
    if len(header.nonce) != NONCE_SIZE or len(header.reply_to) not in (0, NONCE_SIZE):
        raise Malformed("bad nonce length")
    if len(signature) != SIGNATURE_SIZE or len(header.path) > _MAX_PATH or len(header.method) > 16:
        raise Malformed("bad signature length, method or path")
    if len(body) > max_body:
        raise TooLarge(len(body), max_body)
    return Envelope(header=header, header_bytes=header_bytes, signature=signature, body=body)


def check(env: Envelope, public_key: bytes, me: str, method: str, path: str, now: float, skew: float,
          reply_to: bytes = b"") -> None:
    """Verify signature, body hash, audience, method/path binding and timestamp; raise the refusal."""
    h = env.header
    if not verify(public_key, env.header_bytes, env.signature):
        raise BadSignature(f"the signature of {h.issuer} does not verify")
    if body_hash(env.body) != h.body_hash:
        raise BadSignature("the body does not match the signed body hash")
    if h.audience != me:
        raise WrongAudience(h.audience, me)
    if h.method != method or h.path != path or h.reply_to != reply_to:
        raise BadSignature(f"signed for {h.method} {h.path}, received as {method} {path}")
    offset = h.ts_ms / 1000 - now
    if abs(offset) > skew:
        raise ClockSkew(offset, skew)
