"""The holder, served over the signed peer protocol, with who-may-do-what from the control log.

For now (issue 5) the write capability is derived from the grant in the control
log and bound to the signer: only a peer holding the node's keys (its admins
and granted agents) may write into its namespace or read it back; a storage
peer may also read, to repair copies. Nobody may delete or overwrite through
this service: the ordinary capability is append-only.
"""

from __future__ import annotations

import asyncio
import logging

from peerbackup.daemon.logs import event
from peerbackup.errors import (
    Forbidden,
    Malformed,
    NoSuchFile,
    NoSuchObject,
    PeerBackupError,
    StoreError,
    StoreRefused,
)
from peerbackup.net import envelope
from peerbackup.net.proto import store as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.replication import LogService
from peerbackup.storage.holder import Holder


class StorageService:
    def __init__(self, logs: LogService, holder: Holder, log: logging.Logger) -> None:
        self.logs = logs
        self.peers = logs.peers
        self.holder = holder
        self.log = log

    def register(self, server: PeerServer) -> None:
        auth = self.peers.auth_member
        server.route(proto.PUT_PATH, auth, self._on_put, max_body=envelope.BULK_BODY)
        server.route(proto.GET_PATH, auth, self._on_get)
        server.route(proto.LIST_PATH, auth, self._on_list)
        server.route(proto.CHALLENGE_PATH, auth, self._on_challenge)

    def _check(self, issuer: str, node: str, write: bool) -> None:
        if not self.peers.ident.certificate.has_role("storage"):
            raise Forbidden("this peer does not have the storage role")
        info = self.logs.state.config().nodes.get(node)
        if info is None:
            raise Forbidden(f"no backup node {node!r} in the office configuration")
        if issuer in info.holders:
            return
        if not write:
            cert = self.peers.membership.certs.get(issuer)
            if cert is not None and cert.has_role("storage"):
                return  # storage peers read to repair copies
        raise Forbidden(f"{issuer} may not {'write into' if write else 'read'} backup node {node}: only its "
                        "admins and granted agents may")

    async def _run(self, fn: object, *args: object) -> object:
        try:
            return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]
        except NoSuchObject as exc:
            raise NoSuchFile(str(exc)) from None
        except PeerBackupError as exc:
            # A full disk, a quota, bytes that do not match their name, a name that escapes: refused, logged.
            raise StoreRefused(str(exc)) from None
        except OSError as exc:
            raise StoreRefused(f"storage error: {exc.strerror or exc}") from None

    async def _on_put(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Put.from_wire(body)
        self._check(issuer, msg.ref.node, write=True)
        stored = await self._run(self.holder.put, msg.ref.node, msg.ref.ftype, msg.ref.name, msg.data)
        if stored:
            event(self.log, "store.put", logging.DEBUG, node=msg.ref.node, kind=msg.ref.ftype.value,
                  name=msg.ref.name[:16], size=len(msg.data), peer=issuer)
        return proto.Reply(stored=bool(stored)).to_wire()

    async def _on_get(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Get.from_wire(body)
        self._check(issuer, msg.ref.node, write=False)
        data = await self._run(self.holder.get, msg.ref.node, msg.ref.ftype, msg.ref.name, msg.offset,
                               None if msg.length < 0 else msg.length)
        assert isinstance(data, bytes)
        return proto.Reply(data=data).to_wire()

    async def _on_list(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Listing.from_wire(body)
        self._check(issuer, msg.node, write=False)
        items = await self._run(self.holder.listing, msg.node, msg.ftype)
        assert isinstance(items, list)
        return proto.Reply(items=tuple(items)).to_wire()

    async def _on_challenge(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Challenge.from_wire(body)
        self._check(issuer, msg.ref.node, write=False)
        try:
            proof = await self._run(self.holder.challenge, msg.ref.node, msg.ref.ftype, msg.ref.name, msg.nonce,
                                    msg.offset, msg.length)
        except StoreError as exc:
            raise Malformed(str(exc)) from None
        assert isinstance(proof, bytes)
        return proto.Reply(data=proof).to_wire()
