"""The replicated logs as a service: persistence, anti-entropy, and what events mean for membership.

LogState (core/logstate.py) decides; this service commits each outcome to the
EventStore before anyone hears of it, serves heads and pulls, pulls from
peers whose log digest differs from ours (the digest rides on heartbeats),
and turns accepted control events into membership changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from peerbackup.core import hlc as hlcmod
from peerbackup.core.certs import Certificate
from peerbackup.core.events import CONTROL_LOG, Event, decode_event, event_id
from peerbackup.core.logstate import (
    ACCEPTED,
    FORK,
    MEMBER_ADD,
    MEMBER_REVOKE,
    PENDING,
    REFUSED,
    LogState,
    Outcome,
    valid_log_name,
)
from peerbackup.errors import (
    FormatError,
    LogError,
    PeerBackupError,
    PeerUnreachable,
    ProtocolError,
    UnsupportedVersion,
)
from peerbackup.logs import event
from peerbackup.net.proto import logsync
from peerbackup.net.server import PeerServer
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.replication.describe import describe
from peerbackup.storage.eventlog import EventStore

MAX_ALERTS = 50


class LogService:
    def __init__(self, peers: PeerService, store: EventStore, clock: Callable[[], float], log: logging.Logger) -> None:
        self.peers = peers
        self.store = store
        self.clock = clock
        self.log = log
        office = peers.ident.office
        self.state = LogState(office_key=office.public_key, max_ahead_ms=int(peers.settings.clock_skew * 1000),
                              known_logs=valid_log_name)
        self.alerts: list[dict[str, Any]] = []
        self._syncing: dict[str, asyncio.Future[bool]] = {}  # peer -> the sync with it under way
        self._lock = asyncio.Lock()  # one writer of LogState and the store at a time
        self.listeners: list[Callable[[Event], None]] = []  # told of every accepted event
        # Nothing is appended before we are in step with some peer (or none answers within a lease):
        # a peer whose events.db was lost must learn its own feed's head before writing seq 1 again.
        self._ready = asyncio.Event()

    # ---- what membership asks of the logs (office/membership/service.py LogsLink) ----

    def learned(self, cert: Certificate) -> None:
        self.state.add_cert(cert)

    def digest(self) -> bytes:
        return self.state.digest()

    def heads_of(self, writer: str) -> dict[str, int]:
        return {log: seq for (log, feed), seq in self.state.heads.items() if feed == writer}

    def heard_digest(self, peer_id: str, digest: bytes) -> None:
        if digest != self.state.digest():
            self.sync_soon(peer_id)
        else:
            self.mark_ready(f"in step with {peer_id}")

    def mark_ready(self, why: str) -> None:
        if not self._ready.is_set():
            self._ready.set()
            event(self.log, "log.ready", reason=why)

    async def wait_ready(self) -> None:
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), timeout=self.peers.settings.lease)
        except TimeoutError:
            self.mark_ready("no peer answered within one lease")

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def load(self) -> None:
        for cert in self.peers.membership.certs.values():
            self.state.add_cert(cert)
        events, forks, evidence, hlc = await self.store.load()
        self.state.hlc = hlc
        # Replay what we accepted before; our clock may have gone back since, so no HLC limit here.
        saved, self.state.max_ahead_ms = self.state.max_ahead_ms, 2**62
        try:
            todo = events
            while todo:
                pending = []
                for raw in todo:
                    out = self.state.add(raw, self.now_ms())
                    if out.verdict == PENDING:
                        pending.append(raw)
                    elif out.verdict == ACCEPTED and out.event is not None:
                        await self._effects(out.event)
                if len(pending) == len(todo):
                    break
                todo = pending
            for a, b in forks:
                self.state.add_fork_proof(a, b)
            for raw in evidence:
                self.state.add_evidence(raw)
        finally:
            self.state.max_ahead_ms = saved
        if all(c.peer_id == self.peers.me for c in self.peers.membership.members()):
            self.mark_ready("no other member known")

    # ---- applying --------------------------------------------------------------------

    async def apply(self, raw: bytes, source: str) -> Outcome:
        async with self._lock:
            out = self.state.add(raw, self.now_ms())
            if out.verdict in (ACCEPTED, FORK) or out.removed or out.evidence:
                await self.store.commit(out, self.state.hlc)
        await self._report(out, source)
        if out.verdict == ACCEPTED and out.event is not None:
            await self._effects(out.event)
        return out

    async def apply_proof(self, a: bytes, b: bytes, source: str) -> Outcome:
        async with self._lock:
            out = self.state.add_fork_proof(a, b)
            if out.verdict == FORK and out.proof is not None:
                await self.store.commit(out, self.state.hlc)
        await self._report(out, source)
        return out

    async def apply_evidence(self, raw: bytes, source: str) -> Outcome:
        async with self._lock:
            out = self.state.add_evidence(raw)
            if out.evidence is not None:
                await self.store.commit(out, self.state.hlc)
        if out.verdict == REFUSED:
            await self._report(out, source)
        for removed in out.removed:
            event(self.log, "log.dropped", logging.WARNING, log=removed.log, feed=removed.feed, seq=removed.seq,
                  kind=removed.kind)
        return out

    def observe(self, remote_hlc: int, peer_id: str) -> None:
        """A peer's logical time, heard outside an event (the act-as reply): what this peer writes next is
        later. Ignored, and said, when it is further ahead than `clock_skew` (as an event that far ahead is)."""
        try:
            self.state.hlc = hlcmod.receive(self.state.hlc, remote_hlc, self.now_ms(), self.state.max_ahead_ms)
        except FormatError as exc:
            event(self.log, "log.clock_ignored", logging.WARNING, peer=peer_id, reason=str(exc))

    async def append(self, kind: str, fields: dict[str, Any], log: str = CONTROL_LOG) -> Event:
        await self.wait_ready()
        async with self._lock:
            out = self.state.append(self.peers.ident.key, log, kind, fields, self.now_ms())
            if out.verdict != ACCEPTED or out.event is None:
                raise LogError(kind, log, out.reason)
            await self.store.commit(out, self.state.hlc)
        event(self.log, "log.appended", log=log, kind=kind, seq=out.event.seq)
        await self._effects(out.event)
        return out.event

    async def _report(self, out: Outcome, source: str) -> None:
        ev = out.event
        where = {"log": ev.log, "feed": ev.feed, "seq": ev.seq, "kind": ev.kind} if ev else {}
        if out.verdict == REFUSED or out.verdict == FORK:
            level = logging.ERROR if out.verdict == FORK else logging.WARNING
            event(self.log, f"log.{out.verdict}", level, source=source, reason=out.reason, **where)
            self.alerts.append({"at": self.clock(), "verdict": out.verdict, "reason": out.reason, "source": source,
                                **where})
            del self.alerts[:-MAX_ALERTS]
        for removed in out.removed:
            event(self.log, "log.dropped", logging.WARNING, log=removed.log, feed=removed.feed, seq=removed.seq,
                  kind=removed.kind)

    async def _effects(self, ev: Event) -> None:
        """What an accepted control event changes in membership (certificates, revocations)."""
        for listener in self.listeners:
            listener(ev)
        if ev.log != CONTROL_LOG:
            return
        ps = self.peers
        if ev.kind == MEMBER_ADD:
            try:
                cert, new = ps.membership.admit(ev.fields["cert"], self.clock())
            except ProtocolError:
                return  # revoked or expired: the log keeps it, membership does not
            if new:
                await ps.cache_cert(cert)
        elif ev.kind == MEMBER_REVOKE:
            await ps.add_revocation(ev.fields["revocation"])

    # ---- serving ---------------------------------------------------------------------

    def register(self, server: PeerServer) -> None:
        server.route(logsync.HEADS_PATH, self.peers.auth_member, self._on_heads, reads=True)
        server.route(logsync.PULL_PATH, self.peers.auth_member, self._on_pull, reads=True)

    def heads(self) -> logsync.Heads:
        return logsync.Heads(tuple(logsync.Head(*h) for h in self.state.head_list()), tuple(self.state.proofs()),
                             tuple(self.state.revocation_evidence[k] for k in sorted(self.state.revocation_evidence)))

    async def _on_heads(self, issuer: str, body: bytes) -> bytes:
        theirs = logsync.Heads.from_wire(body)
        if self._behind(theirs):
            self.sync_soon(issuer)
        return self.heads().to_wire()

    async def _on_pull(self, issuer: str, body: bytes) -> bytes:
        req = logsync.Pull.from_wire(body)
        events = await self.store.pull(req.log, req.feed, req.start, req.limit)
        cert = self.state.certs.get(req.feed)
        return logsync.PullReply(tuple(events), cert.raw if cert else b"").to_wire()

    # ---- anti-entropy ----------------------------------------------------------------

    def _new_proof(self, raw: bytes) -> bool:
        """Whether a fork proof names a position before any freeze we already hold (pairs are
        stored in either order by different peers, so compare positions, not bytes)."""
        try:
            ev = decode_event(raw)
        except (FormatError, UnsupportedVersion):
            return False
        frozen = self.state.frozen.get((ev.log, ev.feed))
        return frozen is None or ev.seq < frozen[0]

    def _behind(self, theirs: logsync.Heads) -> bool:
        mine = {(h[0], h[1]): (h[2], h[3]) for h in self.state.head_list()}
        return any(mine.get((h.log, h.feed)) != (h.seq, h.id) for h in theirs.heads) or \
            any(self._new_proof(a) for a, _ in theirs.forks) or \
            any(event_id(raw) not in self.state.revocation_evidence for raw in theirs.revocations)

    def sync_soon(self, peer_id: str) -> None:
        if peer_id not in self._syncing:
            self.peers.spawn(self.sync_with(peer_id))

    async def sync_with(self, peer_id: str) -> bool:
        """Whether this peer's logs now hold every event `peer_id` held when the sync began. A caller that comes
        while a sync with that peer is under way waits for it instead of starting another."""
        running = self._syncing.get(peer_id)
        if running is not None:
            return await asyncio.shield(running)
        done = self._syncing[peer_id] = asyncio.get_running_loop().create_future()
        ok = False
        try:
            addresses = (await self.peers.state.addresses()).get(peer_id, [])
            for address in addresses[:2]:
                try:
                    await self._sync(peer_id, address)
                    self.mark_ready(f"synchronised with {peer_id}")
                    ok = True
                    break
                except PeerBackupError as exc:
                    event(self.log, "log.sync_failed", logging.DEBUG, peer=peer_id, address=address, reason=str(exc))
        finally:
            del self._syncing[peer_id]
            done.set_result(ok)
        return ok

    async def _sync(self, peer_id: str, address: str) -> None:
        key = self.peers.membership.member(peer_id, self.clock()).public_key
        raw = await self.peers.client.request(address, peer_id, logsync.HEADS_PATH, self.heads().to_wire(),
                                              lambda _e: key)
        theirs = logsync.Heads.from_wire(raw)
        source = f"{peer_id}@{address}"
        for raw_rev in theirs.revocations:
            if event_id(raw_rev) not in self.state.revocation_evidence:
                await self.apply_evidence(raw_rev, source)
        for a, b in theirs.forks:
            if self._new_proof(a):
                await self.apply_proof(a, b, source)
        for head in theirs.heads:
            if not self.state.known_logs(head.log):
                continue
            frozen = self.state.frozen.get((head.log, head.feed))
            mine = self.state.heads.get((head.log, head.feed), 0)
            if head.seq > mine:
                await self._pull(peer_id, address, key, head, mine + 1, source, frozen[0] if frozen else None)
            else:
                held = self.state.events.get((head.log, head.feed, head.seq))
                if held is not None and held.id != head.id:
                    # Same position, another event: fetch it, and the fork shows.
                    await self._pull(peer_id, address, key, head, head.seq, source, None, limit=1)

    async def _pull(self, peer_id: str, address: str, key: bytes, head: logsync.Head, start: int, source: str,
                    frozen_at: int | None, limit: int = logsync.MAX_PULL) -> None:
        while start <= head.seq and (frozen_at is None or start < frozen_at):
            req = logsync.Pull(head.log, head.feed, start, min(limit, logsync.MAX_PULL))
            raw = await self.peers.client.request(address, peer_id, logsync.PULL_PATH, req.to_wire(), lambda _e: key)
            reply = logsync.PullReply.from_wire(raw)
            if reply.certificate and head.feed not in self.state.certs:
                try:
                    cert, _ = self.peers.membership.admit(reply.certificate, self.clock())
                    self.state.add_cert(cert)
                except ProtocolError:
                    pass  # then its events stay pending, and that is reported
            if not reply.events:
                return
            for raw_ev in reply.events:
                out = await self.apply(raw_ev, source)
                if out.verdict in (REFUSED, PENDING, FORK):
                    if out.verdict == PENDING:
                        event(self.log, "log.pending", logging.DEBUG, source=source, reason=out.reason)
                    return
            if limit == 1:
                return
            start += len(reply.events)

    # ---- waiting for an event to spread ------------------------------------------------

    async def spread(self, log: str, feed: str, seq: int, timeout: float,
                     among: list[str] | None = None) -> tuple[list[str], list[str]]:
        """Wait until the members (or those of `among`) hold `feed`'s `log` up to `seq`: (those that still
        do not after `timeout` seconds, those not waited for as down). Asking a member for its heads sends
        it ours, so one that lacks the event pulls it at once instead of at the next heartbeat: a
        grant (office/nodes/service.py) is usable on the agent, the coordinator and the storage peers as soon
        as this returns ([], []). A member that is not alive and does not answer is given up on after
        `suspect` seconds (a daemon just started has not said hello yet; one that is off catches up
        when back)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        grace = loop.time() + min(self.peers.settings.suspect, timeout)
        ids = [c.peer_id for c in self.peers.membership.members()] if among is None else among
        pending = {p for p in ids if p != self.peers.me and p not in self.peers.membership.revocations}
        down: set[str] = set()
        while pending:
            asked = sorted(pending)
            answers = await asyncio.gather(*(self._head_of(p, log, feed) for p in asked), return_exceptions=True)
            now, late = self.clock(), loop.time() >= grace
            down |= {p for p, a in zip(asked, answers, strict=True)
                     if late and isinstance(a, BaseException) and self.peers.liveness.state(p, now) != ALIVE}
            pending = {p for p, a in zip(asked, answers, strict=True) if not (isinstance(a, int) and a >= seq)} - down
            if not pending or loop.time() >= until:
                break
            await asyncio.sleep(min(0.2, self.peers.settings.heartbeat))
        return sorted(pending), sorted(down)

    async def _head_of(self, peer_id: str, log: str, feed: str) -> int:
        """How far `peer_id` holds `feed`'s `log`, as its heads say (0: nothing)."""
        key = self.peers.membership.member(peer_id, self.clock()).public_key
        last: PeerBackupError = PeerUnreachable(peer_id, "no address known")
        for address in (await self.peers.state.addresses()).get(peer_id, [])[:2]:
            try:
                raw = await self.peers.client.request(address, peer_id, logsync.HEADS_PATH, self.heads().to_wire(),
                                                      lambda _e: key)
            except PeerBackupError as exc:
                last = exc
                continue
            return max((h.seq for h in logsync.Heads.from_wire(raw).heads if h.log == log and h.feed == feed),
                       default=0)
        raise last

    # ---- reading for operators ---------------------------------------------------------

    def describe(self, ev: Event, names: dict[str, str]) -> dict[str, Any]:
        """One event for operators (office/replication/describe.py); names maps peer ids to names."""
        return describe(ev, names, self.state.office_key)

    def listing(self, log: str = CONTROL_LOG) -> list[dict[str, Any]]:
        names = {p: c.name for p, c in self.state.certs.items()}
        return [self.describe(ev, names) for ev in self.state.ordered(log)]

