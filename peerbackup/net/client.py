"""Peer client: sends signed requests and checks signed answers.

A reply is believed only when it is signed by the peer the request was
addressed to and names the request's nonce, so neither a third party nor a
recording of an earlier answer can stand in for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

import aiohttp

from peerbackup.core.crypto import Random
from peerbackup.core.identity import SigningKey, verify
from peerbackup.core.settings import Settings
from peerbackup.errors import FormatError, PeerRefused, PeerUnreachable, ProtocolError
from peerbackup.net import envelope
from peerbackup.net.clockwatch import ClockWatch
from peerbackup.net.proto.hello import WHOAMI_PATH, WhoAmI
from peerbackup.net.proto.refusal import Refusal

CONTENT_TYPE = "application/x-msgpack"

KeyFor = Callable[[envelope.Envelope], bytes]


async def read_capped(stream: aiohttp.StreamReader, limit: int, length: int | None = None) -> bytes:
    """The whole body up to limit + 1 bytes: one read() returns only what is buffered so far.
    With a declared length within the limit the body is read into one buffer (a 16 MiB pack
    is not copied chunk by chunk twice)."""
    if length is not None and length <= limit:
        try:
            return await stream.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            return bytes(exc.partial)
    buf = bytearray()
    while len(buf) <= limit:
        chunk = await stream.read(limit + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def url(address: str, path: str) -> str:
    return f"http://{address}{path}"


class PeerClient:
    def __init__(self, key: SigningKey, settings: Settings, clock: Callable[[], float], rand: Random,
                 session: aiohttp.ClientSession, names: Callable[[str], str] | None = None) -> None:
        self.key = key
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.session = session
        self.clocks = ClockWatch()  # the peers that refused our timestamps (status shows them)
        self.names = names  # peer id -> name, for errors

    def _where(self, address: str, audience: str) -> str:
        """A peer as errors name it: its address, and its name when known."""
        name = self.names(audience) if self.names is not None else audience
        return address if name == audience else f"{address} ({name})"

    def _signed_reply(self, env: envelope.Envelope, audience: str, key_for: KeyFor, nonce: bytes) -> bool:
        """Signed by the peer we asked, to us, in answer to this request (timestamp aside)."""
        h = env.header
        try:
            key = key_for(env)
        except (ProtocolError, FormatError):
            return False
        return (h.issuer == audience and h.audience == self.key.peer_id and h.reply_to == nonce
                and envelope.body_hash(env.body) == h.body_hash and verify(key, env.header_bytes, env.signature))

    def _timeout(self, nbytes: int) -> aiohttp.ClientTimeout:
        # Bulk transfers get the control timeout plus time at a floor of 1 MiB/s (slow Wi-Fi):
        # a peer that stops reading mid-upload still ends in PeerUnreachable, not a hang.
        return aiohttp.ClientTimeout(total=self.settings.request_timeout + nbytes / (1024 * 1024))

    async def _post(self, address: str, path: str, data: bytes | AsyncIterable[bytes | memoryview],
                    max_reply: int = envelope.MAX_BODY, nbytes: int = 0, where: str = "") -> tuple[int, bytes]:
        timeout = self._timeout(nbytes)
        try:
            async with self.session.post(url(address, path), data=data, timeout=timeout,
                                         headers={"Content-Type": CONTENT_TYPE}) as resp:
                return resp.status, await read_capped(resp.content, max_reply + 4096, resp.content_length)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise PeerUnreachable(where or address, str(exc) or type(exc).__name__) from None

    async def whoami(self, address: str) -> WhoAmI:
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with self.session.get(url(address, WHOAMI_PATH), timeout=timeout) as resp:
                data = await read_capped(resp.content, 64 * 1024)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise PeerUnreachable(address, str(exc) or type(exc).__name__) from None
        try:
            return WhoAmI.from_wire(data)
        except ProtocolError as exc:
            raise PeerUnreachable(address, f"not a peerbackup peer ({exc})") from None

    async def request(self, address: str, audience: str, path: str, body: bytes, key_for: KeyFor,
                      max_reply: int = envelope.MAX_BODY) -> bytes:
        """POST a signed request; the verified reply body, or PeerRefused / PeerUnreachable.

        key_for(reply) gives the public key the reply must be signed with; it may
        look inside the reply (a hello reply carries the certificate naming the key)
        and raise ProtocolError when it does not like what it sees.
        """
        reply, _ = await self.exchange(address, audience, path, body, key_for, max_reply)
        return reply

    async def exchange(self, address: str, audience: str, path: str, body: bytes, key_for: KeyFor,
                       max_reply: int = envelope.MAX_BODY, upload: Sequence[bytes | bytearray] | None = None,
                       framed_reply: bool = False) -> tuple[bytes, memoryview]:
        """request() for bulk data: `upload` goes after the envelope as a frame (envelope.frame),
        and with framed_reply the raw bytes after the reply's envelope come back too. Whoever
        reads them checks them against the size and hash that the signed body names."""
        where = self._where(address, audience)
        data, nonce = envelope.seal(self.key, audience, "POST", path, body, self.clock(), self.rand)
        if upload is None:
            status, raw = await self._post(address, path, data, max_reply, max_reply if framed_reply else 0, where)
        else:
            nbytes = sum(len(p) for p in upload)
            status, raw = await self._post(address, path, _chunks(envelope.frame(data), upload), max_reply,
                                           nbytes + (max_reply if framed_reply else 0), where)
        rest = memoryview(b"")
        try:
            if framed_reply and status == 200:
                raw, rest = envelope.unframe(raw, envelope.MAX_BODY)
            env = envelope.open_envelope(raw, max_reply)
        except ProtocolError as exc:
            raise PeerUnreachable(where, f"unreadable answer with HTTP status {status} ({exc})") from None
        if status != 200:
            try:
                refusal = Refusal.from_wire(env.body)
            except ProtocolError:
                refusal = Refusal("error", f"HTTP status {status}")
            # A refusal is reported but never trusted to change state, except a clock refusal, which
            # `status` and job starts heed: that one must be signed by the peer we asked, for our request.
            # (Its timestamp is the refuser's clock, which by then disagrees with ours: not checked.)
            if refusal.code == "clock-skew" and self._signed_reply(env, audience, key_for, nonce):
                self.clocks.refused(audience, refusal.message, self.clock())
            refused = PeerRefused(where, refusal.message, refusal.code)
            refused.evidence = refusal.evidence
            raise refused
        if env.header.issuer != audience:
            raise PeerRefused(where, f"answered as {env.header.issuer}, expected {audience}", "wrong-peer")
        try:
            public_key = key_for(env)
            envelope.check(env, public_key, self.key.peer_id, envelope.RESPONSE, path, self.clock(),
                           self.settings.clock_skew, reply_to=nonce)
        except (ProtocolError, FormatError) as exc:
            raise PeerRefused(where, f"its answer was refused: {exc}", "bad-reply") from None
        return env.body, rest


async def _chunks(head: bytes, pieces: Sequence[bytes | bytearray],
                  size: int = 1024 * 1024) -> AsyncIterator[bytes | memoryview]:
    yield head
    for piece in pieces:
        view = memoryview(piece)
        for i in range(0, len(view), size):
            yield view[i:i + size]
