"""The membership service: hello and heartbeat, served and sent (joins: office/membership/admission.py).

It keeps the Membership (who is certified, who is revoked), the Liveness
table and the address hints, persisting what it learns in State. Address
hints come from mDNS, static peers, hellos and invites; none is trusted: a
peer counts as heard only when its signature verifies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from peerbackup.core.certs import Certificate, Office
from peerbackup.core.crypto import Random
from peerbackup.core.identity import is_peer_id
from peerbackup.core.settings import Settings
from peerbackup.errors import (
    BadSignature,
    DiskFull,
    FormatError,
    PeerBackupError,
    PeerRefused,
    PeerUnreachable,
    ProtocolError,
)
from peerbackup.logs import event
from peerbackup.net import envelope
from peerbackup.net.client import PeerClient
from peerbackup.net.proto import heartbeat, hello
from peerbackup.net.server import PeerServer
from peerbackup.office.membership.home import Identity
from peerbackup.office.membership.liveness import Liveness
from peerbackup.office.membership.members import Membership
from peerbackup.office.membership.state import State

MAX_HINTS = 64


class LogsLink(Protocol):
    """What membership asks of the replicated logs (office/replication LogService, which satisfies it). Each
    service needs the other: the daemon builds this one first and links the logs once they exist."""

    def learned(self, cert: Certificate) -> None:
        """A member's certificate, newly admitted: the logs check its events with it."""

    def digest(self) -> bytes:
        """The digest of every log's heads, which heartbeats carry."""

    def heard_digest(self, peer_id: str, digest: bytes) -> None:
        """A peer's heads digest, from its heartbeat: sync with it when it differs."""

    def heads_of(self, writer: str) -> dict[str, int]:
        """log -> the last seq of `writer`'s feed there, in every log this peer holds."""

    async def append(self, kind: str, fields: dict[str, Any]) -> Any:
        """Write an event of this peer's to the control log."""


class PeerService:
    def __init__(self, ident: Identity, settings: Settings, state: State, client: PeerClient,
                 clock: Callable[[], float], rand: Random, log: logging.Logger,
                 addresses: Callable[[], list[str]],
                 disk_full: Callable[[BaseException, str], bool] = lambda exc, during: False) -> None:
        self.ident = ident
        self.me = ident.peer_id
        self.settings = settings
        self.state = state
        self.client = client
        self.clock = clock
        self.rand = rand
        self.log = log
        self.my_addresses = addresses
        self.membership = Membership(ident.office)  # filled from State by load()
        self.liveness = Liveness(settings)
        self.names: dict[str, str] = {}
        self._seq = 0
        self._contacting: set[str] = set()
        self._greeted: set[str] = set()
        self.logs: LogsLink | None = None  # linked by the daemon once the logs exist
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beating: dict[str, asyncio.Task[Any]] = {}  # peer id -> its heartbeat on its way
        self.disk_full = disk_full  # told of a write that failed for want of room (the daemon's DiskWatch.failed)

    async def load(self) -> None:
        self.membership = await self.state.load_membership(self.ident.office)
        self.membership.certs[self.me] = self.ident.certificate

    # ---- serving ----------------------------------------------------------------

    def register(self, server: PeerServer) -> None:
        server.route(hello.PATH, self._auth_hello, self._on_hello)
        server.route(heartbeat.PATH, self.auth_member, self._on_heartbeat, reads=True)

    def whoami(self) -> bytes:
        return hello.WhoAmI(self.ident.certificate.raw, self.ident.office.to_wire()).to_wire()

    async def auth_member(self, env: envelope.Envelope) -> bytes:
        return self.membership.member(env.header.issuer, self.clock()).public_key

    async def _auth_hello(self, env: envelope.Envelope) -> bytes:
        msg = hello.Hello.from_wire(env.body)
        # Only checked here; it is stored by _on_hello, once the envelope's signature verified.
        cert, _ = self.membership.admit(msg.certificate, self.clock(), remember=False)
        if cert.peer_id != env.header.issuer:
            raise BadSignature("the hello carries another peer's certificate")
        return cert.public_key

    async def admit(self, raw: bytes) -> Certificate:
        cert, new = self.membership.admit(raw, self.clock())
        if new:
            await self.cache_cert(cert)
            if self.logs is not None:
                self.logs.learned(cert)
            event(self.log, "member.learned", peer=cert.peer_id, name=cert.name, roles=",".join(cert.roles))
        return cert

    async def cache_cert(self, cert: Certificate) -> None:
        """Keep a member's certificate in state.db; on a full disk it holds in memory only (the control log
        and the member's hello bring it again), so a start or a hello never fails for want of room."""
        try:
            await self.state.save_cert(cert)
        except DiskFull as exc:
            self.disk_full(exc, "caching a member's certificate")

    async def _learn(self, sender: str, msg: hello.Hello) -> None:
        """What a verified hello (or hello reply) teaches: revocations, addresses, other members."""
        for raw in msg.revocations[:MAX_HINTS]:
            await self.add_revocation(raw)
        await self.state.add_addresses(sender, list(msg.addresses), "hello")
        for hint in msg.peers[:MAX_HINTS]:
            if hint.peer_id == self.me or hint.peer_id in self.membership.revocations:
                continue
            await self.state.add_addresses(hint.peer_id, list(hint.addresses), f"via:{sender}")
            if hint.peer_id not in self.membership.certs:
                for address in hint.addresses[:4]:
                    self.spawn(self.contact(address))

    async def add_revocation(self, raw: bytes) -> None:
        try:
            rev = self.membership.add_revocation(raw)
        except FormatError as exc:
            event(self.log, "member.revocation_refused", logging.WARNING, reason=str(exc))
            return
        if rev is None:
            return
        # Said and acted on as soon as it holds in memory (status shows it from now on), then cached.
        self.liveness.forget(rev.peer_id)
        level = logging.ERROR if rev.peer_id == self.me else logging.WARNING
        event(self.log, "member.revoked", level, peer=rev.peer_id, me=rev.peer_id == self.me)
        try:
            await self.state.save_revocation(rev)
        except DiskFull as exc:
            self.disk_full(exc, "caching a revocation")  # it holds in memory; peers and the log say it again

    def _hello(self) -> hello.Hello:
        return hello.Hello(certificate=self.ident.certificate.raw, addresses=tuple(self.my_addresses()),
                           revocations=self.membership.revocation_list(), peers=())

    async def _hello_with_hints(self) -> hello.Hello:
        known = await self.state.addresses()
        hints = tuple(hello.PeerHint(c.peer_id, tuple(known[c.peer_id][:4]))
                      for c in self.membership.members() if c.peer_id != self.me and c.peer_id in known)
        h = self._hello()
        return hello.Hello(h.certificate, h.addresses, h.revocations, hints[:MAX_HINTS])

    async def _on_hello(self, issuer: str, body: bytes) -> bytes:
        msg = hello.Hello.from_wire(body)
        await self.admit(msg.certificate)
        self.liveness.heard(issuer, self.clock())
        await self._learn(issuer, msg)
        return (await self._hello_with_hints()).to_wire()

    def _heartbeat(self) -> heartbeat.Heartbeat:
        self._seq += 1
        logs = self.logs.digest() if self.logs is not None else bytes(32)
        return heartbeat.Heartbeat(self._seq, self.membership.revocations_digest(), logs)

    async def _on_heartbeat(self, issuer: str, body: bytes) -> bytes:
        msg = heartbeat.Heartbeat.from_wire(body)
        self.liveness.heard(issuer, self.clock())
        if self.logs is not None:
            self.logs.heard_digest(issuer, msg.logs_digest)
        return self._heartbeat().to_wire()

    # ---- sending ----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug of ours, not a peer's fault: say so instead of losing it in a finished task.
            exc = task.exception()
            self.log.error("daemon.task_failed", exc_info=exc, extra={"pb_fields": {"task": repr(task.get_coro())}})

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def say_hello(self, peer_id: str, address: str) -> None:
        """Send a hello to a known peer id at address; learn from the verified reply."""
        box: dict[str, hello.Hello] = {}

        def key_for(env: envelope.Envelope) -> bytes:
            reply = hello.Hello.from_wire(env.body)
            cert, _ = self.membership.admit(reply.certificate, self.clock())
            if cert.peer_id != peer_id:
                raise BadSignature("the hello reply carries another peer's certificate")
            box["reply"] = reply
            return cert.public_key

        body = (await self._hello_with_hints()).to_wire()
        try:
            await self.client.request(address, peer_id, hello.PATH, body, key_for)
        except PeerRefused as exc:
            await self._removed(exc)
            raise
        reply = box["reply"]
        await self.admit(reply.certificate)
        now = self.clock()
        self.liveness.heard(peer_id, now)
        self._greeted.add(peer_id)
        await self.state.address_ok(peer_id, address, now)
        await self._learn(peer_id, reply)

    async def contact(self, address: str, expected: str | None = None) -> str | None:
        """Introduce ourselves to whoever listens at address (a static peer, an mDNS hint)."""
        if address in self._contacting:
            return None
        self._contacting.add(address)
        try:
            who = await self.client.whoami(address)
            office = Office.from_wire(who.office)
            if office.fingerprint != self.ident.office.fingerprint:
                event(self.log, "peer.foreign_office", logging.DEBUG, address=address, office=office.fingerprint)
                return None
            cert, _ = self.membership.admit(who.certificate, self.clock())
            if cert.peer_id == self.me or (expected is not None and cert.peer_id != expected):
                return None
            await self.say_hello(cert.peer_id, address)
            return cert.peer_id
        except (PeerBackupError, FormatError) as exc:
            event(self.log, "peer.contact_failed", logging.DEBUG, address=address, reason=str(exc))
            return None
        finally:
            self._contacting.discard(address)

    async def hint(self, peer_id: str, addresses: tuple[str, ...], source: str) -> None:
        """An unauthenticated address hint (mDNS): remember it, and greet a stranger right away
        rather than at the next heartbeat."""
        if peer_id == self.me or peer_id in self.membership.revocations:
            return
        await self.state.add_addresses(peer_id, list(addresses), source)
        if peer_id not in self._greeted:
            for address in addresses[:2]:
                if await self.contact(address, expected=peer_id):
                    return

    async def _beat(self, peer_id: str, addresses: list[str]) -> None:
        if peer_id not in self._greeted:
            # The first contact of a run is a hello, so the other side learns our current addresses.
            for address in addresses:
                try:
                    await self.say_hello(peer_id, address)
                except PeerUnreachable:
                    continue
                except PeerBackupError as exc:
                    event(self.log, "peer.hello_failed", logging.WARNING, peer=peer_id, address=address,
                          reason=str(exc))
                    return
                self._greeted.add(peer_id)
                return
            return
        cert = self.membership.certs[peer_id]
        body = self._heartbeat().to_wire()
        for address in addresses:
            try:
                raw = await self.client.request(address, peer_id, heartbeat.PATH, body, lambda _e: cert.public_key)
            except PeerUnreachable:
                continue
            except PeerRefused as exc:
                if await self._removed(exc):
                    return
                if exc.code in ("unknown-peer", "revoked"):
                    await self.try_hello(peer_id, address)
                else:
                    event(self.log, "peer.heartbeat_refused", logging.WARNING, peer=peer_id, address=address,
                          reason=str(exc))
                return
            now = self.clock()
            self.liveness.heard(peer_id, now)
            await self.state.address_ok(peer_id, address, now)
            try:
                reply = heartbeat.Heartbeat.from_wire(raw)
            except ProtocolError:
                return
            if reply.revocations_digest != self.membership.revocations_digest():
                await self.try_hello(peer_id, address)
            if self.logs is not None:
                self.logs.heard_digest(peer_id, reply.logs_digest)
            return

    async def try_hello(self, peer_id: str, address: str) -> None:
        try:
            await self.say_hello(peer_id, address)
        except PeerBackupError as exc:
            event(self.log, "peer.hello_failed", logging.WARNING, peer=peer_id, address=address, reason=str(exc))

    async def _removed(self, exc: PeerRefused) -> bool:
        """Whether a refusal proves this peer was removed: members refuse a removed peer with the
        office-signed revocation, checked here like any other (a member cannot make one up). Without
        it a peer removed while it was off would go on knocking, never knowing why."""
        if exc.code != "revoked" or not exc.evidence:
            return False
        await self.add_revocation(exc.evidence)
        return self.me in self.membership.revocations

    async def heartbeat_round(self) -> None:
        """A heartbeat to every member with an address, each in a task of its own, not awaited: a peer that
        does not answer (paused, cut off, asleep) holds its own beat for the request timeout (at each of its
        addresses), never the others'. Waiting for all of them together let one silent peer space every
        other peer's beats by more than `suspect`, and every peer suspected every other. A peer whose beat
        is still out gets no second one: at most one at a time each."""
        if self.me in self.membership.revocations:
            return  # removed from the office: every member refuses us, so stop knocking
        known = await self.state.addresses()
        for c in self.membership.members():
            beat = self._beating.get(c.peer_id)
            if c.peer_id != self.me and c.peer_id in known and (beat is None or beat.done()):
                self._beating[c.peer_id] = self.spawn(self._beat(c.peer_id, known[c.peer_id][:4]))
        # Hints for peer ids we hold no certificate for yet (mDNS, hello hints): introduce ourselves.
        for peer_id, addrs in known.items():
            if is_peer_id(peer_id) and peer_id not in self.membership.certs \
                    and peer_id not in self.membership.revocations:
                for address in addrs[:2]:
                    self.spawn(self.contact(address, expected=peer_id))

    def check_liveness(self) -> None:
        now = self.clock()
        ids = [c.peer_id for c in self.membership.members() if c.peer_id != self.me]
        for ch in self.liveness.changes(ids, now):
            if ch.new == "dead":
                self._greeted.discard(ch.peer_id)  # it may come back on another address: greet it again
            cert = self.membership.certs.get(ch.peer_id)
            level = logging.WARNING if ch.new == "dead" else logging.INFO
            event(self.log, f"peer.{ch.new}", level, peer=ch.peer_id, name=cert.name if cert else "?",
                  was=ch.old, silent_s=None if ch.silent_for is None else round(ch.silent_for, 1))
