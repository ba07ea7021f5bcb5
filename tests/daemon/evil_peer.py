"""The evil peer of the log-security tests (test_log_*.py): a member's legitimate key in an attacker's
hands, serving crafted log heads and pulls over the real protocol (see tests/daemon/logsec.py); the
checks that every daemon accepts or refuses what it serves; and the office where frank forked his feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from peerbackup.core.events import CONTROL_LOG, GENESIS
from peerbackup.errors import NotFound, ProtocolError, UnknownPeer
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import heartbeat, hello, logsync
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Identity
from tests.daemon.harness import Office, post_raw, wait_for
from tests.daemon.logsec import (
    SKEW,
    WAIT,
    Acme,
    Node,
    assert_healthy_and_alerted,
    eid,
    genuine,
    holds,
    peek,
    start_office,
)


class EvilPeer:
    """A legitimate member's key in the hands of an attacker: a real peer server (own thread, own
    event loop) that serves crafted log heads and pulls, per requester."""

    def __init__(self, ident: Identity, nodes: list[Node]) -> None:
        self.ident = ident
        self.id = ident.peer_id
        self.keys = {n.id: n.ident.certificate.public_key for n in nodes}  # who may ask, and their keys
        self.certs: dict[str, bytes] = {self.id: ident.certificate.raw}  # sent with a feed's events
        self.address = ""
        self.requests: list[tuple[str, str]] = []  # (requester, path) of every verified request
        self.served: list[tuple[str, str, int, tuple[bytes, ...]]] = []  # (requester, feed, start, event ids)
        self._events: dict[str, list[bytes]] = {}  # requester peer id (or "*") -> the events it is shown
        self._forks: list[tuple[bytes, bytes]] = []
        self._greeted: set[str] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"evil-{ident.certificate.name}", daemon=True)

    # -- life cycle

    def __enter__(self) -> EvilPeer:
        self._thread.start()
        if not self._ready.wait(10) or self._failed is not None:
            self.__exit__()
            raise AssertionError(f"evil peer did not start: {self._failed!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        assert not self._thread.is_alive(), "evil peer thread did not stop"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by __enter__
            self._failed = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            if self._runner is not None:
                self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

    async def _start(self) -> None:
        app = web.Application(client_max_size=envelope.MAX_ENVELOPE + 1)
        app.router.add_get(hello.WHOAMI_PATH, self._whoami)
        app.router.add_post("/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"

    # -- what it serves (set from the test thread)

    def serve(self, events: dict[str, list[bytes]], forks: list[tuple[bytes, bytes]] | None = None) -> None:
        """events: requester peer id, or "*" for anyone else -> the events of any feed it is shown."""
        with self._lock:
            self._events = {k: list(v) for k, v in events.items()}
            self._forks = list(forks or [])

    def _shown(self, requester: str) -> list[bytes]:
        with self._lock:
            return self._events.get(requester, self._events.get("*", []))

    def heads_for(self, requester: str) -> logsync.Heads:
        best: dict[tuple[str, str], tuple[int, bytes]] = {}
        for raw in self._shown(requester):
            log, feed, seq, ident = peek(raw)  # not verified: forged and tampered events are shown too
            if best.get((log, feed), (0, b""))[0] < seq:
                best[(log, feed)] = (seq, ident)
        with self._lock:
            forks = tuple(self._forks)
        heads = tuple(logsync.Head(log, feed, seq, ident) for (log, feed), (seq, ident) in sorted(best.items()))
        return logsync.Heads(heads, forks)

    def pulls(self, requester: str, feed: str) -> list[tuple[int, tuple[bytes, ...]]]:
        with self._lock:
            return [(start, ids) for (who, f, start, ids) in self.served if who == requester and f == feed]

    def heads_requests(self, requester: str) -> int:
        with self._lock:
            return sum(1 for who, path in self.requests if who == requester and path == logsync.HEADS_PATH)

    # -- the protocol, server side

    async def _whoami(self, request: web.Request) -> web.Response:
        body = hello.WhoAmI(self.ident.certificate.raw, self.ident.office.to_wire()).to_wire()
        return web.Response(body=body, content_type=CONTENT_TYPE)

    async def _dispatch(self, request: web.Request) -> web.Response:
        try:
            env = envelope.open_envelope(await request.read())
        except ProtocolError:
            return web.Response(status=400)  # nobody to address a signed refusal to
        h = env.header
        try:
            key = self.keys.get(h.issuer)
            if key is None:
                raise UnknownPeer(h.issuer)
            envelope.check(env, key, self.id, request.method, request.path, time.time(), SKEW)
            with self._lock:
                self.requests.append((h.issuer, request.path))
            body = self._handle(h.issuer, request.path, env.body)
            status = 200
        except ProtocolError as exc:
            body, status = Refusal(exc.code, str(exc)).to_wire(), exc.status
        data, _ = envelope.seal(self.ident.key, h.issuer, envelope.RESPONSE, h.path, body, time.time(),
                                secrets.token_bytes, reply_to=h.nonce)
        return web.Response(status=status, body=data, content_type=CONTENT_TYPE)

    def _handle(self, issuer: str, path: str, body: bytes) -> bytes:
        if path == hello.PATH:
            hello.Hello.from_wire(body)
            return hello.Hello(self.ident.certificate.raw, (self.address,)).to_wire()
        if path == heartbeat.PATH:
            # Echo the caller's digests: it sees nothing to sync or re-greet until the test says so.
            beat = heartbeat.Heartbeat.from_wire(body)
            return heartbeat.Heartbeat(beat.seq, beat.revocations_digest, beat.logs_digest).to_wire()
        if path == logsync.HEADS_PATH:
            logsync.Heads.from_wire(body)
            return self.heads_for(issuer).to_wire()
        if path == logsync.PULL_PATH:
            req = logsync.Pull.from_wire(body)
            mine = [(seq, raw) for raw in self._shown(issuer) for log, feed, seq, _ in [peek(raw)]
                    if (log, feed) == (req.log, req.feed) and seq >= req.start]
            events = [raw for _, raw in sorted(mine)][:req.limit]
            with self._lock:
                self.served.append((issuer, req.feed, req.start, tuple(peek(e)[3] for e in events)))
            return logsync.PullReply(tuple(events), self.certs.get(req.feed, b"")).to_wire()
        raise NotFound(path)

    # -- the protocol, client side (from the test thread)

    def call(self, node: Node, path: str, body: bytes) -> tuple[int, bytes]:
        """A signed request to a daemon; (status, body) of its answer, which must verify when it is a 200."""
        data, nonce = envelope.seal(self.ident.key, node.id, "POST", path, body, time.time(), secrets.token_bytes)
        status, raw = post_raw(node.address, path, data)
        env = envelope.open_envelope(raw)
        if status == 200:
            envelope.check(env, node.ident.certificate.public_key, self.id, envelope.RESPONSE, path, time.time(),
                           SKEW, reply_to=nonce)
        return status, env.body

    def poke(self, node: Node) -> None:
        """Make a daemon sync from us: hello (so it knows where we are), then heads that differ from its own."""
        if node.id not in self._greeted:
            status, body = self.call(node, hello.PATH, hello.Hello(self.ident.certificate.raw, (self.address,))
                                     .to_wire())
            assert status == 200, Refusal.from_wire(body)
            self._greeted.add(node.id)
        status, body = self.call(node, logsync.HEADS_PATH, self.heads_for(node.id).to_wire())
        assert status == 200, Refusal.from_wire(body)

    def show_until_held(self, nodes: list[Node], raw: bytes, what: str) -> None:
        """Show every daemon `raw` (an event it must accept) until each holds it in its control log."""
        self.serve({"*": [raw]})
        for n in nodes:
            self.poke(n)
        for n in nodes:
            wait_for(partial(holds, n, raw), WAIT, f"{n.name} to accept {what}")

    def show_until_refused(self, nodes: list[Node], raw: bytes, reason: str, why: str) -> None:
        """Show every daemon `raw`, an event in our own feed, until each logs its refusal with `reason`."""
        self.serve({"*": [raw]})
        for n in nodes:
            self.poke(n)
        for n in nodes:
            n.wait_for_line("log.refused", self.id, reason, why)

    def settle(self, node: Node, timeout: float = WAIT, required: bool = True) -> bool:
        """Return once the daemon has finished a sync with us that started after this call: a sync
        with a peer starts only when none with it is running, so the second heads request the daemon
        sends us from now on proves the first sync (which saw what we serve now) is over. Each poke
        must show heads that differ from the daemon's, or it does not sync at all: then False, or a
        failure when `required`."""
        for round_ in range(2):
            before = self.heads_requests(node.id)

            def synced(before: int = before) -> bool:
                self.poke(node)
                time.sleep(0.1)
                return self.heads_requests(node.id) > before

            try:
                wait_for(synced, timeout, f"{node.name} to sync with {self.ident.certificate.name} (round {round_})")
            except AssertionError:
                if required:
                    raise
                return False
        return True


def accepted_everywhere(acme: Acme, member: Identity, raw: bytes, log: str = CONTROL_LOG) -> None:
    """`member` serves `raw` in its own feed of `log`: every daemon holds it in that log."""
    def held(n: Node) -> bool:
        return eid(raw).hex() in {e["id"] for e in n.peer.api("GET", f"/v1/log?log={log}")[1]}

    with EvilPeer(member, acme.nodes) as evil:
        evil.serve({"*": [raw]})
        for n in acme.nodes:
            evil.poke(n)
        for n in acme.nodes:
            wait_for(partial(held, n), WAIT, f"{n.name} to hold {member.certificate.name}'s event in {log}")


def refused_everywhere(acme: Acme, member: Identity, raw: bytes, reason: str) -> None:
    """`member` (modified software, its own key) serves `raw` in its own feed: every daemon refuses it with
    `reason`, alerts, stays healthy, and the logs do not move."""
    before = acme.converged()
    with EvilPeer(member, acme.nodes) as evil:
        evil.show_until_refused(acme.nodes, raw, reason, f"refuse {member.certificate.name}'s event")
    assert acme.converged() == before
    for n in acme.nodes:
        assert not holds(n, raw)
        assert_healthy_and_alerted(acme, n, [{"verdict": "refused", "feed": member.peer_id,
                                              "source": member.peer_id, "reason": reason}])


@dataclass
class Forked:
    acme: Acme
    evil: EvilPeer  # frank's
    first: bytes  # frank's seq 1, accepted everywhere
    ev_a: bytes  # frank's seq 2 as shown to alpha
    ev_b: bytes  # frank's seq 2 as shown to beta

    def wait_frozen(self) -> str:
        """Every daemon found the fork and froze frank's feed before seq 2; the agreed logs digest."""
        frank = self.acme.members["frank"]
        reason = f"fork: {frank.peer_id} signed two events at seq 2 of {CONTROL_LOG}; feed frozen at seq 1"
        for n in self.acme.nodes:
            n.wait_for_line("log.fork", frank.peer_id, reason, "detect frank's fork")
        return self.acme.converged()


@contextlib.contextmanager
def fork_office(office: Office) -> Iterator[Forked]:
    """An office of its own, where frank showed alpha and beta two different events at seq 2 (its own,
    so the fork's alerts stay apart from the first office's)."""
    acme = start_office(office, ("frank",))
    frank = acme.members["frank"]
    alpha, beta, _ = acme.nodes
    with EvilPeer(frank, acme.nodes) as evil:
        first = genuine(frank.key, 1, GENESIS, 3)
        evil.show_until_held(acme.nodes, first, "frank's seq 1")
        acme.converged()
        # Two different events at seq 2, both validly signed by frank: one shown to alpha, one to beta.
        # alpha and beta then differ; their heartbeats carry log digests, so they sync with each other
        # and gamma with them: every daemon must find the fork.
        ev_a = genuine(frank.key, 2, eid(first), 4)
        ev_b = genuine(frank.key, 2, eid(first), 5)
        evil.serve({alpha.id: [first, ev_a], beta.id: [first, ev_b], "*": [first]})
        evil.poke(alpha)
        evil.poke(beta)
        yield Forked(acme, evil, first, ev_a, ev_b)

