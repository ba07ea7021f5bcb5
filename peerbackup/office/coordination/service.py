"""The coordinator election as a service: ticks, announcements, fencing, persistence.

Election (office/coordination/election.py) decides; this service feeds it liveness, sends
its announcements to every live member, answers theirs, keeps the highest
token seen in State so a restart never reuses a term, and records each new
term in the control log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from peerbackup.core import codec
from peerbackup.core.authority import term_plausible
from peerbackup.core.events import CONTROL_LOG, Event
from peerbackup.core.logstate import COORDINATOR_CLAIM
from peerbackup.errors import Forbidden, FormatError, PeerBackupError, ProtocolError
from peerbackup.logs import event
from peerbackup.net.proto import coordinator as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.coordination.election import Claim, Election, SteppedDown, Token, Woke
from peerbackup.office.membership.liveness import ALIVE
from peerbackup.office.membership.service import PeerService
from peerbackup.office.replication.service import LogService

_KEY = "election.highest"


class CoordinatorService:
    def __init__(self, peers: PeerService, logs: LogService, clock: Callable[[], float], log: logging.Logger) -> None:
        self.peers = peers
        self.logs = logs
        self.clock = clock
        self.log = log
        cert = peers.ident.certificate
        self.election = Election(me=peers.me, rank=cert.rank, eligible=cert.has_role("coordinator"),
                                 settings=peers.settings, started=clock())
        logs.listeners.append(self._on_event)

    def _on_event(self, ev: Event) -> None:
        # A claim in the control log is a token seen: a peer back from a restart or a partition
        # learns the current term from the log even before an announcement reaches it.
        if ev.log == CONTROL_LOG and ev.kind == COORDINATOR_CLAIM and isinstance(ev.fields.get("term"), int):
            stepped = self.election.see((ev.fields["term"], ev.feed))
            if stepped is not None:
                event(self.log, "coordinator.stepped_down", logging.WARNING, term=stepped.token[0],
                      reason=stepped.reason)

    async def load(self) -> None:
        raw = await self.peers.state.get(_KEY)
        if raw is not None:
            try:
                obj = codec.unpack(raw, "election state")
                highest = (int(obj[0]), str(obj[1]))
                # A term persisted before terms were bounded (an attack's 2**64-1) is forgotten; the log's
                # claims below still count.
                if self._plausible(highest):
                    self.election.highest = highest
            except (FormatError, TypeError, ValueError, IndexError):
                pass
        # Terms recorded in the control log count as seen, too.
        for term, peer_id in self.logs.state.config().coordinator_terms:
            self.election.see((term, peer_id))

    def _plausible(self, token: Token) -> bool:
        """A token from another peer (an announcement, an answer) or from disk, against this peer's clock and
        the skew it tolerates: the control log's rule (core/authority.term_plausible) at the door."""
        return token[0] == 0 or term_plausible(token[0], self.clock() + self.peers.settings.clock_skew)

    async def _persist(self) -> None:
        await self.peers.state.put(_KEY, codec.pack(list(self.election.highest)))

    def register(self, server: PeerServer) -> None:
        server.route(proto.PATH, self.peers.auth_member, self._on_announce)

    async def _on_announce(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Announce.from_wire(body)
        # Only a coordinator-eligible member may be followed (its claims in the control log need the
        # role too): a storage-only machine must not be able to stop the schedule by announcing itself.
        if not self.peers.membership.member(issuer, self.clock()).has_role("coordinator"):
            event(self.log, "coordinator.refused", logging.WARNING, peer=issuer, term=msg.token[0],
                  reason="no coordinator role")
            raise Forbidden(f"{self.peers.membership.name(issuer)} has no coordinator role and cannot coordinate")
        if not self._plausible(msg.token):
            event(self.log, "coordinator.refused", logging.WARNING, peer=issuer, term=msg.token[0],
                  reason="term beyond what the time allows")
            raise Forbidden(f"term {msg.token[0]} cannot be genuine (terms never outrun one a second)")
        before = self.election.highest
        was = self.election.coordinator
        stepped = self.election.see(msg.token) if msg.token[1] == issuer else None
        accepted = self.election.on_announce(issuer, msg.token, self.clock())
        if stepped is not None:
            event(self.log, "coordinator.stepped_down", logging.WARNING, term=stepped.token[0], reason=stepped.reason)
        if not accepted:
            event(self.log, "coordinator.fenced", logging.WARNING, peer=issuer, term=msg.token[0],
                  highest_term=self.election.highest[0], highest_peer=self.election.highest[1])
        elif was != issuer:
            event(self.log, "coordinator.follows", peer=issuer, term=msg.token[0])
        if self.election.highest != before:
            await self._persist()
        return proto.AnnounceReply(accepted, self.election.highest).to_wire()

    def status(self) -> tuple[str | None, int | None]:
        now = self.clock()
        holder = self.election.current(now)
        if holder is None:
            return None, None
        return holder, self.election.token[0]

    async def tick(self) -> None:
        now = self.clock()
        ps = self.peers
        if ps.me in ps.membership.revocations:
            # Removed from the office: never coordinate (every member would refuse it anyway).
            if self.election.i_am:
                self.election.coordinator = None
                event(self.log, "coordinator.stepped_down", logging.WARNING, term=self.election.token[0],
                      reason="this peer has been removed from the office")
            return
        alive, rank_of = [], {}
        for cert in ps.membership.members():
            rank_of[cert.peer_id] = cert.rank
            if cert.peer_id != ps.me and cert.has_role("coordinator") and ps.liveness.state(cert.peer_id, now) == ALIVE:
                alive.append((cert.rank, cert.peer_id))
        for action in self.election.tick(now, alive, rank_of):
            if isinstance(action, Woke):
                event(self.log, "coordinator.woke", logging.WARNING, paused_s=round(action.gap, 1),
                      reason="this peer was paused: it listens one lease before it may claim")
            elif isinstance(action, SteppedDown):
                event(self.log, "coordinator.stepped_down", logging.WARNING, term=action.token[0], reason=action.reason)
            elif isinstance(action, Claim):
                if action.new_term:
                    event(self.log, "coordinator.elected", term=action.token[0], peer=ps.me)
                    await self._persist()
                if action.new_term or not self.claimed():
                    # Until its claim is in the control log, nobody counts this coordinator's dispatches
                    # or tokens (core/jobs.py, core/actas.py): a failed write is tried at each renewal.
                    try:
                        await self.logs.append(COORDINATOR_CLAIM, {"term": action.token[0]})
                    except PeerBackupError as exc:
                        event(self.log, "coordinator.log_failed", logging.WARNING, reason=str(exc))
                # Not awaited: a member that is off costs a request timeout, and the lease must not wait.
                ps.spawn(self._announce(action.token))

    def claimed(self) -> bool:
        """Whether this peer's current term is claimed in the control log, as every peer can check."""
        token = self.election.token
        return self.election.i_am and token in self.logs.state.config().coordinator_terms

    async def _announce(self, token: Token) -> None:
        ps = self.peers
        known = await ps.state.addresses()
        # Every member with an address, not only the live ones: one that just restarted must hear
        # the current term during its start-up wait.
        targets = [c for c in ps.membership.members() if c.peer_id != ps.me and c.peer_id in known]
        body = proto.Announce(token, int(ps.settings.lease * 1000)).to_wire()

        async def one(peer_id: str, key: bytes, address: str) -> None:
            try:
                raw = await ps.client.request(address, peer_id, proto.PATH, body, lambda _e: key)
                reply = proto.AnnounceReply.from_wire(raw)
            except (PeerBackupError, ProtocolError):
                return
            stepped = self.election.see(reply.highest) if self._plausible(reply.highest) else None
            if stepped is not None:
                event(self.log, "coordinator.stepped_down", logging.WARNING, term=stepped.token[0],
                      reason=f"{peer_id} knows a higher token {list(reply.highest)}")
                await self._persist()

        await asyncio.gather(*(one(c.peer_id, c.public_key, known[c.peer_id][0]) for c in targets))
