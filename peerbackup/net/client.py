"""Peer client: sends signed requests and checks signed answers.

A reply is believed only when it is signed by the peer the request was
addressed to and names the request's nonce, so neither a third party nor a
recording of an earlier answer can stand in for it.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from peerbackup.core.crypto import Random
from peerbackup.core.identity import SigningKey
from peerbackup.core.settings import Settings
from peerbackup.errors import FormatError, PeerRefused, PeerUnreachable, ProtocolError
from peerbackup.net import envelope
from peerbackup.net.proto.hello import WHOAMI_PATH, WhoAmI
from peerbackup.net.proto.refusal import Refusal

CONTENT_TYPE = "application/x-msgpack"

KeyFor = Callable[[envelope.Envelope], bytes]


async def read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body up to limit + 1 bytes: one read() returns only what is buffered so far."""
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
                 session: aiohttp.ClientSession) -> None:
        self.key = key
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.session = session

    async def _post(self, address: str, path: str, data: bytes,
                    max_reply: int = envelope.MAX_BODY) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with self.session.post(url(address, path), data=data, timeout=timeout,
                                         headers={"Content-Type": CONTENT_TYPE}) as resp:
                return resp.status, await read_capped(resp.content, max_reply + 4096)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            raise PeerUnreachable(address, str(exc) or type(exc).__name__) from None

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
        data, nonce = envelope.seal(self.key, audience, "POST", path, body, self.clock(), self.rand)
        status, raw = await self._post(address, path, data, max_reply)
        try:
            env = envelope.open_envelope(raw, max_reply)
        except ProtocolError as exc:
            raise PeerUnreachable(address, f"unreadable answer with HTTP status {status} ({exc})") from None
        if status != 200:
            try:
                refusal = Refusal.from_wire(env.body)
            except ProtocolError:
                refusal = Refusal("error", f"HTTP status {status}")
            # A refusal is reported but never trusted to change state: it need not verify.
            raise PeerRefused(address, refusal.message, refusal.code)
        if env.header.issuer != audience:
            raise PeerRefused(address, f"answered as {env.header.issuer}, expected {audience}", "wrong-peer")
        try:
            public_key = key_for(env)
            envelope.check(env, public_key, self.key.peer_id, envelope.RESPONSE, path, self.clock(),
                           self.settings.clock_skew, reply_to=nonce)
        except (ProtocolError, FormatError) as exc:
            raise PeerRefused(address, f"its answer was refused: {exc}", "bad-reply") from None
        return env.body
