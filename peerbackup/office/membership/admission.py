"""Admitting and removing members (admins only): invites, the join they are redeemed with, removals.

An admin's daemon creates an invite (a secret kept in State, its token given to the new member by
hand), answers the join request that proves the secret (a certificate signed by the office key, the
member's hints and, for an admin, the office key sealed to it) and logs `member.add`; removing a member
signs a revocation with the office key (with the removed writer's last accepted seq in every log, so
that none of its later events count), logs `member.revoke` and tells every member, the removed one too.
The membership service (office/membership/service.py) keeps who is in; this only changes it.
"""

from __future__ import annotations

import logging

from peerbackup.core.certs import Certificate, Revocation, check_name, check_roles
from peerbackup.core.identity import peer_id_of, seal_to
from peerbackup.errors import (
    BadSignature,
    Forbidden,
    FormatError,
    InviteError,
    Malformed,
    NotAdmin,
    PeerBackupError,
    UsageError,
)
from peerbackup.logs import event
from peerbackup.net import envelope
from peerbackup.net.proto import hello, join
from peerbackup.net.server import PeerServer
from peerbackup.office.membership.service import MAX_HINTS, PeerService


class Admissions:
    """Invites, joins and removals, on top of this peer's membership service."""

    def __init__(self, peers: PeerService) -> None:
        self.peers = peers
        self.ident = peers.ident
        self.me = peers.me
        self.state = peers.state
        self.clock = peers.clock
        self.rand = peers.rand
        self.log = peers.log
        self.my_addresses = peers.my_addresses

    def register(self, server: PeerServer) -> None:
        server.route(join.PATH, self._auth_join, self._on_join)

    async def _auth_join(self, env: envelope.Envelope) -> bytes:
        req = join.JoinRequest.from_wire(env.body)
        if peer_id_of(req.public_key) != env.header.issuer:
            raise BadSignature("the join request is not signed by the key it asks a certificate for")
        return req.public_key

    async def _on_join(self, issuer: str, body: bytes) -> bytes:
        req = join.JoinRequest.from_wire(body)
        office_key = self.ident.office_key
        if office_key is None:
            raise Forbidden("this peer is not an admin and cannot admit members")
        try:
            name = check_name(req.name)
        except FormatError as exc:
            raise Malformed(str(exc)) from None
        self.peers.membership.refuse_revoked(issuer)
        now = self.clock()
        # The token id alone names the invite; the proof shows the joiner holds the secret behind it.
        try:
            invite = await self.state.check_invite_proof(req.token_id, req.public_key, name, req.proof, issuer, now)
        except InviteError as exc:
            event(self.log, "join.refused", logging.WARNING, peer=issuer, name=name, reason=str(exc))
            raise Forbidden(exc.args[0]) from None
        cert = Certificate.issue(office_key, req.public_key, name, invite.roles, invite.rank, int(now))
        await self.peers.admit(cert.raw)
        if self.peers.logs is not None:
            # Not awaited: the certificate is the membership; the event follows once the log is ready.
            self.peers.spawn(self._log_member(cert))
        event(self.log, "join.admitted", peer=issuer, name=name, roles=",".join(invite.roles), rank=invite.rank)
        known = await self.state.addresses()
        hints = [hello.PeerHint(self.me, tuple(self.my_addresses()))]
        hints += [hello.PeerHint(c.peer_id, tuple(known[c.peer_id][:4]))
                  for c in self.peers.membership.members() if c.peer_id not in (self.me, issuer) and c.peer_id in known]
        box = seal_to(req.public_key, office_key.seed) if "admin" in invite.roles else b""
        return join.JoinReply(office=self.ident.office.to_wire(), certificate=cert.raw,
                              inviter_certificate=self.ident.certificate.raw,
                              revocations=self.peers.membership.revocation_list(), peers=tuple(hints[:MAX_HINTS]),
                              office_key_box=box).to_wire()

    async def _log_member(self, cert: Certificate) -> None:
        if self.peers.logs is None:
            return
        try:
            await self.peers.logs.append("member.add", {"cert": cert.raw})
        except PeerBackupError as exc:
            event(self.log, "member.log_failed", logging.ERROR, peer=cert.peer_id, reason=str(exc))

    async def create_invite(self, roles: tuple[str, ...], rank: int, valid_for: float) -> join.InviteToken:
        if self.ident.office_key is None:
            raise NotAdmin()
        now = self.clock()
        secret = self.rand(join.SECRET_SIZE)
        await self.state.add_invite(secret, check_roles(roles), rank, now, now + valid_for)
        token = join.InviteToken(office=self.ident.office.fingerprint, addresses=tuple(self.my_addresses()),
                                 secret=secret, expires=int(now + valid_for))
        event(self.log, "invite.created", roles=",".join(roles), rank=rank, expires=token.expires)
        return token

    async def remove_peer(self, peer_id: str, reason: str = "") -> None:
        if self.ident.office_key is None:
            raise NotAdmin()
        if peer_id == self.me:
            raise UsageError("an admin cannot remove itself: remove it from another admin")
        if peer_id in self.peers.membership.revocations:
            raise UsageError(f"{self.peers.membership.name(peer_id)} has been removed already")
        if peer_id not in self.peers.membership.certs:
            raise UsageError(f"{peer_id} is not a member this peer knows")
        # The removed writer's last accepted seq in every log we hold: later events are refused. Signed into
        # the revocation, so that whoever relays it cannot lower it.
        cutoff = {} if self.peers.logs is None else self.peers.logs.heads_of(peer_id)
        rev = Revocation.issue(self.ident.office_key, peer_id, int(self.clock()), reason, cutoff)
        known = await self.state.addresses()  # before the revocation drops the removed peer's addresses
        if self.peers.logs is not None:
            await self.peers.logs.append("member.revoke", {"revocation": rev.raw, "cutoff": cutoff})
        await self.peers.add_revocation(rev.raw)
        # Tell every live member now rather than at the next heartbeat's digest mismatch.
        for cert in self.peers.membership.members():
            if cert.peer_id != self.me and cert.peer_id in known:
                self.peers.spawn(self.peers.try_hello(cert.peer_id, known[cert.peer_id][0]))
        for address in known.get(peer_id, [])[:1]:
            # The removed peer learns it too, from the hello's revocations; its reply is refused.
            self.peers.spawn(self._notify_removed(peer_id, address))

    async def _notify_removed(self, peer_id: str, address: str) -> None:
        try:
            await self.peers.say_hello(peer_id, address)
        except PeerBackupError as exc:
            event(self.log, "member.removed_notified", logging.DEBUG, peer=peer_id, answer=str(exc))
