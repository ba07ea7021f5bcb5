"""Peer HTTP server: every POST is a signed envelope, every answer is signed.

The checks run in a fixed order, cheapest first and state-changing last:
size -> parse -> route -> who is the issuer -> signature, body hash, audience,
method/path, timestamp -> nonce (spent only once everything else passed) ->
handler. Any refusal is a signed Refusal with an HTTP status and a log line;
nothing a peer sends can raise into the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from peerbackup.core.crypto import Random
from peerbackup.core.identity import SigningKey
from peerbackup.core.settings import Settings
from peerbackup.daemon.logs import event
from peerbackup.errors import NotFound, ProtocolError, Replay, TooLarge
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE, read_capped
from peerbackup.net.proto.hello import WHOAMI_PATH
from peerbackup.net.proto.refusal import Refusal

# (envelope) -> the public key the issuer must have signed with, or a ProtocolError
Authenticate = Callable[[envelope.Envelope], Awaitable[bytes]]
# (issuer peer id, body) -> reply body
Handle = Callable[[str, bytes], Awaitable[bytes]]
SpendNonce = Callable[[str, bytes, float], Awaitable[bool]]


@dataclass(frozen=True)
class Route:
    authenticate: Authenticate
    handle: Handle
    max_body: int = envelope.MAX_BODY


class PeerServer:
    def __init__(self, key: SigningKey, settings: Settings, clock: Callable[[], float], rand: Random,
                 spend_nonce: SpendNonce, whoami: Callable[[], bytes], log: logging.Logger) -> None:
        self.key = key
        self.settings = settings
        self.clock = clock
        self.rand = rand
        self.spend_nonce = spend_nonce
        self.whoami = whoami
        self.log = log
        self.routes: dict[str, Route] = {}

    def route(self, path: str, authenticate: Authenticate, handle: Handle, max_body: int = envelope.MAX_BODY) -> None:
        self.routes[path] = Route(authenticate, handle, max_body)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=envelope.BULK_BODY + 4096 + 1)
        app.router.add_get(WHOAMI_PATH, self._whoami)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.Response(body=self.whoami(), content_type=CONTENT_TYPE)

    def _reply(self, status: int, body: bytes, env: envelope.Envelope | None) -> web.Response:
        audience = env.header.issuer if env is not None else self.key.peer_id
        data, _ = envelope.seal(self.key, audience, envelope.RESPONSE, env.header.path if env else "", body,
                                self.clock(), self.rand, reply_to=env.header.nonce if env else b"")
        return web.Response(status=status, body=data, content_type=CONTENT_TYPE)

    async def _dispatch(self, request: web.Request) -> web.Response:
        env: envelope.Envelope | None = None
        try:
            if request.method != "POST":
                raise NotFound(f"{request.method} {request.path}")
            route = self.routes.get(request.path)
            limit = (route.max_body if route is not None else envelope.MAX_BODY) + 4096
            if request.content_length is not None and request.content_length > limit:
                raise TooLarge(request.content_length, limit)
            data = await read_capped(request.content, limit)
            env = envelope.open_envelope(data, route.max_body if route is not None else envelope.MAX_BODY)
            if route is None:
                raise NotFound(request.path)
            public_key = await route.authenticate(env)
            now = self.clock()
            envelope.check(env, public_key, self.key.peer_id, request.method, request.path, now,
                           self.settings.clock_skew)
            expires = max(now, env.header.ts_ms / 1000) + self.settings.nonce_keep
            if not await self.spend_nonce(env.header.issuer, env.header.nonce, expires):
                raise Replay()
            body = await route.handle(env.header.issuer, env.body)
            return self._reply(200, body, env)
        except ProtocolError as exc:
            event(self.log, "peer.refused", logging.WARNING, code=exc.code, status=exc.status,
                  peer=env.header.issuer if env else "?", remote=request.remote or "?", path=request.path,
                  reason=str(exc))
            return self._reply(exc.status, Refusal(exc.code, str(exc)).to_wire(), env)
        except Exception as exc:  # a bug of ours: answer 500, log it, keep serving
            self.log.exception("peer.handler_failed", extra={"pb_fields": {"path": request.path}})
            return self._reply(500, Refusal("internal", f"internal error: {type(exc).__name__}").to_wire(), env)
