"""Peer HTTP server: every POST is a signed envelope, every answer is signed.

The checks run in a fixed order, cheapest first and state-changing last:
size -> parse -> route -> who is the issuer -> signature, body hash, audience,
method/path, timestamp -> nonce (spent only once everything else passed) ->
handler. Any refusal is a signed Refusal with an HTTP status and a log line;
nothing a peer sends can raise into the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from peerbackup.core.crypto import Random
from peerbackup.core.identity import SigningKey
from peerbackup.core.settings import Settings
from peerbackup.errors import ClockSkew, DiskFull, Malformed, NotFound, ProtocolError, Replay, TooLarge
from peerbackup.logs import event
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE, read_capped
from peerbackup.net.clockwatch import ClockWatch
from peerbackup.net.proto.hello import WHOAMI_PATH
from peerbackup.net.proto.refusal import Refusal

# (envelope) -> the public key the issuer must have signed with, or a ProtocolError
Authenticate = Callable[[envelope.Envelope], Awaitable[bytes]]
# A reply body, or (body, raw bytes) sent as a bulk frame (see envelope.frame).
Answer = bytes | tuple[bytes, bytes | memoryview]
# (issuer peer id, body) -> answer
Handle = Callable[[str, bytes], Awaitable[Answer]]
# (issuer peer id, body, the raw bytes still to read) -> answer; for bulk uploads
StreamHandle = Callable[[str, bytes, StreamReader | None], Awaitable[Answer]]
SpendNonce = Callable[[str, bytes, float], Awaitable[bool]]


@dataclass(frozen=True)
class Route:
    authenticate: Authenticate
    handle: StreamHandle
    max_body: int = envelope.MAX_BODY
    framed: bool = False  # the request is a bulk frame: envelope first, raw bytes read by the handler
    # Changes nothing a restart keeps, so served when its nonce cannot be recorded on disk (a full disk): a
    # replay of it is refused by the nonces kept in memory, and across a restart would only be answered again.
    reads: bool = False


class PeerServer:
    def __init__(self, key: SigningKey, settings: Settings, clock: Callable[[], float], rand: Random,
                 spend_nonce: SpendNonce, whoami: Callable[[], bytes], log: logging.Logger,
                 clocks: ClockWatch | None = None) -> None:
        self.key = key
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.spend_nonce = spend_nonce
        self.whoami = whoami
        self.log = log
        self.routes: dict[str, Route] = {}
        # The peers whose timestamps we refused (status shows them); the daemon shares the client's, so that
        # status shows both halves of what clock skew looks like.
        self.clocks = clocks if clocks is not None else ClockWatch()
        self._spent: dict[tuple[str, bytes], float] = {}  # nonces of reads served while the disk was full

    def route(self, path: str, authenticate: Authenticate, handle: Handle, max_body: int = envelope.MAX_BODY,
              reads: bool = False) -> None:
        async def unframed(issuer: str, body: bytes, _stream: StreamReader | None) -> Answer:
            return await handle(issuer, body)

        self.routes[path] = Route(authenticate, unframed, max_body, reads=reads)

    async def _spend(self, route: Route, issuer: str, nonce: bytes, expires: float, now: float) -> bool:
        """Spend a nonce: on disk before anything is answered; in memory only for a read when the disk is
        full (DiskFull refuses anything else). Memory is asked first, so a nonce spent there while the disk
        was full is still refused once the disk has room again."""
        if self._spent.get((issuer, nonce), 0.0) >= now:
            return False
        try:
            return await self.spend_nonce(issuer, nonce, expires)
        except DiskFull:
            if not route.reads:
                raise
        if len(self._spent) >= 4096:
            self._spent = {k: v for k, v in self._spent.items() if v >= now}
        self._spent[(issuer, nonce)] = expires
        return True

    def route_framed(self, path: str, authenticate: Authenticate, handle: StreamHandle) -> None:
        """A bulk upload route: the signature is checked before a byte of the payload is read."""
        self.routes[path] = Route(authenticate, handle, envelope.MAX_BODY, framed=True)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=envelope.BULK_BODY + 4096 + 1)
        app.router.add_get(WHOAMI_PATH, self._whoami)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.Response(body=self.whoami(), content_type=CONTENT_TYPE)

    def _reply(self, status: int, answer: Answer, env: envelope.Envelope | None) -> web.Response:
        audience = env.header.issuer if env is not None else self.key.peer_id
        body, raw = (answer, None) if isinstance(answer, bytes) else answer
        data, _ = envelope.seal(self.key, audience, envelope.RESPONSE, env.header.path if env else "", body,
                                self.clock(), self.rand, reply_to=env.header.nonce if env else b"")
        if raw is not None:
            data = b"".join((envelope.frame(data), raw))
        return web.Response(status=status, body=data, content_type=CONTENT_TYPE)

    async def _dispatch(self, request: web.Request) -> web.Response:
        env: envelope.Envelope | None = None
        try:
            if request.method != "POST":
                raise NotFound(f"{request.method} {request.path}")
            route = self.routes.get(request.path)
            stream: StreamReader | None = None
            if route is not None and route.framed:
                try:
                    n = envelope.frame_length(await request.content.readexactly(envelope.FRAME_PREFIX))
                    data = await request.content.readexactly(n)
                except asyncio.IncompleteReadError:
                    raise Malformed("truncated frame") from None
                stream = request.content
            else:
                limit = (route.max_body if route is not None else envelope.MAX_BODY) + 4096
                if request.content_length is not None and request.content_length > limit:
                    raise TooLarge(request.content_length, limit)
                data = await read_capped(request.content, limit, request.content_length)
            env = envelope.open_envelope(data, route.max_body if route is not None else envelope.MAX_BODY)
            if route is None:
                raise NotFound(request.path)
            public_key = await route.authenticate(env)
            now = self.clock()
            try:
                envelope.check(env, public_key, self.key.peer_id, request.method, request.path, now,
                               self.settings.clock_skew)
            except ClockSkew:
                self.clocks.saw(env.header.issuer, env.header.ts_ms / 1000 - now, now)  # the signature verified
                raise
            expires = max(now, env.header.ts_ms / 1000) + self.settings.nonce_keep
            if not await self._spend(route, env.header.issuer, env.header.nonce, expires, now):
                raise Replay()
            answer = await route.handle(env.header.issuer, env.body, stream)
            return self._reply(200, answer, env)
        except ProtocolError as exc:
            # A file asked of a holder that lacks it is routine (readers try holders in turn); a full disk
            # is said once by the daemon, not at each request it refuses.
            level = logging.DEBUG if exc.code in ("no-such-file", "disk-full") else logging.WARNING
            event(self.log, "peer.refused", level, code=exc.code, status=exc.status,
                  peer=env.header.issuer if env else "?", remote=request.remote or "?", path=request.path,
                  reason=str(exc))
            return self._reply(exc.status, Refusal(exc.code, str(exc), exc.evidence).to_wire(), env)
        except Exception as exc:  # a bug of ours: answer 500, log it, keep serving
            if isinstance(exc, ConnectionError | HttpProcessingError) and (
                    request.transport is None or request.transport.is_closing()):
                # Not a bug: the sender hung up mid-request (killed, cut off, gave up), answered to nobody.
                event(self.log, "peer.dropped", logging.WARNING, peer=env.header.issuer if env else "?",
                      remote=request.remote or "?", path=request.path, reason=str(exc) or type(exc).__name__)
                return web.Response(status=499)
            self.log.exception("peer.handler_failed", extra={"pb_fields": {"path": request.path}})
            return self._reply(500, Refusal("internal", f"internal error: {type(exc).__name__}").to_wire(), env)
