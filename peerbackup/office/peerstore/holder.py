"""The holder, served over the signed peer protocol, with who-may-do-what from the control log.

Who writes into a node's namespace, bound to the request's signer: an admin
holding the node's keys (its grant), a granted agent with the coordinator's
act-as token naming it (core/actas.py), and the coordinator copying
content-named files to repair. Holders of the keys and storage peers read. The ordinary
capability is append-only: nothing is overwritten (but a lock), and deleting
takes either a DeleteGrant signed by the office key for the signer, which an
admin issues (and logs) for a prune by hand, or an agent's act-as token of
"prune" scope, which the coordinator issues only for a retention job it
dispatched to that agent. Deleted files go to the holder's trash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import StreamReader

from peerbackup.core.actas import ActAs, coordinator_of, job_of
from peerbackup.core.certs import DeleteGrant
from peerbackup.core.crypto import content_hash
from peerbackup.core.events import Event
from peerbackup.core.forgotten import is_forgotten
from peerbackup.core.jobs import DONE
from peerbackup.core.logstate import COORDINATOR_CLAIM
from peerbackup.core.nodelog import JOB_DISPATCHED, JOB_DONE, NODE_LOG_PREFIX
from peerbackup.core.nodes import Node
from peerbackup.errors import (
    DiskFull,
    FileExists,
    Forbidden,
    FormatError,
    Malformed,
    NoSuchFile,
    NoSuchObject,
    ObjectExists,
    PeerBackupError,
    StoreError,
    StoreFull,
    StoreRefused,
    Superseded,
)
from peerbackup.logs import event
from peerbackup.net.proto import store as proto
from peerbackup.net.server import PeerServer
from peerbackup.office.replication.nodeviews import NodeViews
from peerbackup.office.replication.service import LogService
from peerbackup.storage.holder import CONTENT_NAMED, Holder
from peerbackup.storage.sqlite import disk_full
from peerbackup.storage.store import MUTABLE, FileType

# A holder whose control log lacks a token's claim pulls it from the token's coordinator and sender, waiting
# at most this share of a request's timeout (the sender's own request must not time out meanwhile)...
CLAIM_WAIT = 0.5
# ...and pulls for the tokens of one signer at most once in this many heartbeats, whatever it is sent: a
# member that signs tokens for terms it never claimed gets them refused, never a holder pulling for ever.
CLAIM_PULL_EVERY = 10


class StorageService:
    def __init__(self, logs: LogService, views: NodeViews, holder: Holder, log: logging.Logger,
                 coordinator: Callable[[], str | None] = lambda: None,
                 disk_full: Callable[[BaseException, str], object] = lambda _exc, _during: None) -> None:
        self.coordinator = coordinator  # the peer this one follows as coordinator, if any
        self.disk_full = disk_full  # told when the holder's disk is full (the daemon's DiskWatch.failed)
        self.logs = logs
        self.views = views
        self.peers = logs.peers
        self.holder = holder
        self.log = log
        self._claim_pulls: dict[str, asyncio.Event] = {}  # signer of a token -> its claim's pull under way
        self._claim_missing: dict[str, float] = {}  # signer -> when a pull last did not find its claim
        self._dropping: set[str] = set()  # nodes whose forgotten snapshots are about to be looked for
        # One look at a time: a look at one node and one at every node (after a coordinator's claim) both
        # listed a copy before either moved it, and the drop was done, and logged, twice.
        self._drop_lock = asyncio.Lock()

    def register(self, server: PeerServer) -> None:
        self.logs.listeners.append(self._on_event)
        self.peers.spawn(self._drop_forgotten())  # records that came while this daemon was not running
        auth = self.peers.auth_member
        server.route_framed(proto.PUT_PATH, auth, self._on_put)
        server.route(proto.GET_PATH, auth, self._on_get, reads=True)
        server.route(proto.LIST_PATH, auth, self._on_list, reads=True)
        server.route(proto.CHALLENGE_PATH, auth, self._on_challenge, reads=True)
        server.route(proto.DELETE_PATH, auth, self._on_delete)
        server.route(proto.USAGE_PATH, auth, self._on_usage, reads=True)

    def _storage_role(self) -> None:
        if not self.peers.ident.certificate.has_role("storage"):
            raise Forbidden("this peer does not have the storage role")

    def _node(self, node: str, purged: bool = False) -> Node:
        """The node in force; with `purged`, a node the log says an admin purged too (to list and delete
        its files). A removed node inside its grace is neither: its files are read, written and deleted by
        nobody until it is restored or purged."""
        self._storage_role()
        config = self.logs.state.config()
        info = config.nodes.get(node)
        gone = config.removed_nodes.get(node)
        if info is None and purged and gone is not None and gone.purged:
            info = gone
        if info is None:
            raise Forbidden(f"no backup node {node!r} in the office configuration"
                            + (" (removed: its files stay until an admin purges it after its grace)"
                               if gone is not None and not gone.purged else ""))
        return info

    def _name(self, peer_id: str) -> str:
        return self.peers.membership.name(peer_id)

    def _is_storage_peer(self, issuer: str) -> bool:
        cert = self.peers.membership.certs.get(issuer)
        return cert is not None and cert.has_role("storage")

    def _check(self, issuer: str, ref: proto.FileRef, write: bool, act_as: bytes = b"") -> None:
        info = self._node(ref.node)
        if self._holds(issuer, info):
            if write and issuer in info.agents and not self._is_admin(issuer):
                self._check_act_as(issuer, ref.node, act_as)
                if ref.ftype == FileType.SNAPSHOT:
                    self._check_attempt(issuer, ref.node, act_as)
            return
        if self._is_storage_peer(issuer) and not write:
            return  # storage peers read, to repair and to scrub
        if write and ref.ftype in CONTENT_NAMED and issuer == self.coordinator():
            # The coordinator repairs: it copies files checked against their names, which adds
            # copies of what exists and never changes or removes anything.
            return
        raise Forbidden(f"{self._name(issuer)} may not {'write into' if write else 'read'} backup node {ref.node}: "
                        "only its "
                        "admins and granted agents may")

    def _holds(self, issuer: str, info: Node) -> bool:
        """A holder of the node's keys: its own box, or an admin, whose office key opens the office's box."""
        return issuer in info.holders or (bool(info.office_box) and self._is_admin(issuer))

    def _is_admin(self, issuer: str) -> bool:
        cert = self.peers.membership.certs.get(issuer)
        return cert is not None and cert.has_role("admin")

    def _check_act_as(self, issuer: str, node: str, raw: bytes, delete: bool = False) -> None:
        """An agent writes as the node only with the coordinator's act-as token naming it, this node,
        a job, and a term that coordinator claimed in the log (admins write with their grant)."""
        if not raw:
            raise Forbidden(f"{self._name(issuer)} is an agent of {node}: writing as the node takes the "
                            "coordinator's act-as "
                            "token (peerbackup backup NODE, or repo commands through the daemon)")
        try:
            cert = self.peers.membership.certs.get(coordinator_of(raw))
            if cert is None:
                raise FormatError("act-as token", "signed by an unknown peer")
            token = ActAs.from_bytes(raw, cert.public_key)
        except FormatError as exc:
            raise Forbidden(f"act-as token refused: {exc}") from None
        why = token.refusal(node, issuer, self.peers.clock(), self.logs.state.config().coordinator_terms,
                            self.peers.settings.clock_skew, delete=delete, names=self._name)
        if why:
            raise Forbidden(f"act-as token refused: {why}")

    def _check_attempt(self, issuer: str, node: str, raw: bytes) -> None:
        """The fence of a job's attempts: a snapshot (or a retention job's delete) is taken only from the agent
        of the job's current attempt, as this holder's copy of the node's log shows it, and never once the job
        is done. A stalled agent replaced by another, that wakes up and finishes, would otherwise commit a
        second snapshot of its slot. A job this holder's log does not show yet (its dispatch on its way, a
        backup by hand) is not fenced: the guarantee is as strong as the log's spread (docs/nodes.md)."""
        job = job_of(raw)
        st = self.views.job_states(node).get(job)
        if st is None:
            return
        if st.state == DONE:
            raise Superseded(f"job {job} of backup node {node} is done; {self._name(issuer)} may not add to it")
        if st.agent != issuer:
            raise Superseded(f"job {job} of backup node {node} is attempt {st.attempt} of "
                             f"{self._name(st.agent)} now, not {self._name(issuer)}'s")

    # ---- snapshots a retention job forgot (core/forgotten.py) ----------------------------------

    def forgotten(self, node: str) -> set[str]:
        """Id prefixes of the node's snapshots that dispatched retention jobs forgot."""
        return self.views.forgotten(node)

    def _on_event(self, ev: Event) -> None:
        # What a record needs may come in any order (a pull brings the agent's feed before the coordinator's):
        # the job.done, its job.dispatched, the claim of the dispatch's term. Each makes us look again.
        if ev.kind in (JOB_DONE, JOB_DISPATCHED) and ev.log.startswith(NODE_LOG_PREFIX):
            node: str | None = ev.log[len(NODE_LOG_PREFIX):]
        elif ev.kind == COORDINATOR_CLAIM:
            node = None  # every node
        else:
            return
        if (node or "") not in self._dropping:  # a log pulled in bulk brings many: one look at the end does
            self._dropping.add(node or "")
            self.peers.spawn(self._drop_forgotten(node))

    async def _drop_forgotten(self, only: str | None = None) -> None:
        """Move to the trash the copies this holder kept of snapshots forgotten while it was away."""
        await asyncio.sleep(0)
        self._dropping.discard(only or "")
        if not self.peers.ident.certificate.has_role("storage"):
            return
        nodes = [only] if only is not None else sorted(self.logs.state.config().nodes)
        async with self._drop_lock:
            for node in nodes:
                prefixes = self.forgotten(node)
                if not prefixes:
                    continue
                try:
                    held = await asyncio.to_thread(self.holder.listing, node, FileType.SNAPSHOT)
                    for name, _ in held:
                        if is_forgotten(name, prefixes):
                            await asyncio.to_thread(self.holder.trash, node, FileType.SNAPSHOT, name)
                            event(self.log, "store.forgotten_dropped", node=node, name=name[:16],
                                  reason="forgotten by a retention job while this holder was away")
                except (PeerBackupError, OSError) as exc:
                    event(self.log, "store.forgotten_failed", logging.WARNING, node=node, reason=str(exc))

    def _claimed(self, token: ActAs) -> bool:
        return (token.term, token.coordinator) in self.logs.state.config().coordinator_terms

    async def _pull_claim(self, issuer: str, node: str, raw: bytes, delete: bool = False) -> None:
        """Before an agent's act-as token is checked: when it would be refused only because this holder's
        control log lacks the (term, coordinator) claim it names, pull the control log from the token's
        coordinator and from the agent (who had the token from it), waiting at most a share of a request's
        timeout. One pull per signer at a time (the puts of one backup wait for the same one), and none for
        CLAIM_PULL_EVERY heartbeats after one that did not find the claim. The check that follows decides
        as before: a term its signer never claimed is refused however often it is sent."""
        if not raw:
            return
        try:
            cert = self.peers.membership.certs.get(coordinator_of(raw))
            if cert is None:
                return
            token = ActAs.from_bytes(raw, cert.public_key)
        except FormatError:
            return
        if self._claimed(token):
            return
        now = self.peers.clock()
        if token.refusal(node, issuer, now, [(token.term, token.coordinator)], self.peers.settings.clock_skew,
                         delete=delete):
            return  # refused for another reason: no claim would change that
        loop = asyncio.get_running_loop()
        coordinator = token.coordinator
        done = self._claim_pulls.get(coordinator)
        if done is None:  # no pull for this signer under way: start one, unless the last one found nothing
            last = self._claim_missing.get(coordinator)
            if last is not None and loop.time() - last < CLAIM_PULL_EVERY * self.peers.settings.heartbeat:
                return
            done = self._claim_pulls[coordinator] = asyncio.Event()
            event(self.log, "store.claim_pull", logging.DEBUG, term=token.term, coordinator=coordinator,
                  peer=issuer)

            async def pull(done: asyncio.Event) -> None:
                try:
                    await asyncio.gather(*(self.logs.sync_with(p) for p in dict.fromkeys((coordinator, issuer))
                                           if p != self.peers.me))
                finally:
                    del self._claim_pulls[coordinator]
                    done.set()

            # Spawned, not awaited: a pull cut off at our deadline would leave a log write half done.
            self.peers.spawn(pull(done))
        # Until the deadline, not until our pull ends: a sync with that peer already under way (a heartbeat's)
        # makes ours return at once, and it may be the one that brings the claim.
        until = loop.time() + CLAIM_WAIT * self.peers.settings.request_timeout
        while not self._claimed(token) and loop.time() < until:
            await asyncio.sleep(0.02)
        if not self._claimed(token):
            self._claim_missing[coordinator] = loop.time()

    async def _run(self, fn: object, *args: object) -> object:
        try:
            return await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]
        except NoSuchObject as exc:
            raise NoSuchFile(str(exc)) from None
        except ObjectExists as exc:
            raise FileExists(str(exc)) from None
        except (StoreFull, OSError) as exc:
            if not disk_full(exc):
                raise StoreRefused(f"storage error: {getattr(exc, 'strerror', None) or exc}") from None
            self.disk_full(exc, "a store write")
            raise DiskFull(str(exc)) from None  # the writer takes another holder
        except PeerBackupError as exc:
            # A full disk, a quota, bytes that do not match their name, a name that escapes: refused, logged.
            raise StoreRefused(str(exc)) from None

    async def _on_put(self, issuer: str, body: bytes, stream: StreamReader | None) -> bytes:
        msg = proto.Put.from_wire(body)
        await self._pull_claim(issuer, msg.ref.node, msg.act_as)
        self._check(issuer, msg.ref, write=True, act_as=msg.act_as)
        if msg.ref.ftype == FileType.SNAPSHOT and is_forgotten(msg.ref.name, self.forgotten(msg.ref.node)):
            raise StoreRefused(f"snapshot {msg.ref.name[:16]} was forgotten by a retention job: not kept again")
        assert stream is not None
        data = bytearray(msg.size)
        view = memoryview(data)
        got = 0
        while got < msg.size:
            chunk = await stream.read(min(msg.size - got, 1024 * 1024))
            if not chunk:
                raise Malformed(f"store put: {got} of {msg.size} bytes arrived")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        stored = await self._run(self.holder.put, msg.ref.node, msg.ref.ftype, msg.ref.name, data, msg.hash)
        if stored:
            event(self.log, "store.put", logging.DEBUG, node=msg.ref.node, kind=msg.ref.ftype.value,
                  name=msg.ref.name[:16], size=msg.size, peer=issuer)
        return proto.Reply(stored=bool(stored)).to_wire()

    async def _on_get(self, issuer: str, body: bytes) -> tuple[bytes, bytes]:
        msg = proto.Get.from_wire(body)
        self._check(issuer, msg.ref, write=False)
        data = await self._run(self.holder.get, msg.ref.node, msg.ref.ftype, msg.ref.name, msg.offset,
                               None if msg.length < 0 else msg.length)
        assert isinstance(data, bytes)
        if len(data) > proto.MAX_FILE:
            raise StoreRefused(f"{msg.ref.name[:12]} is larger than a stored file may be")
        return proto.Reply(size=len(data), hash=content_hash(data)).to_wire(), data

    async def _on_list(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Listing.from_wire(body)
        self._node(msg.node, purged=True)  # names and sizes of ciphertext: any member may see them (storage reports)
        items = await self._run(self.holder.listing, msg.node, msg.ftype)
        assert isinstance(items, list)
        return proto.Reply(items=tuple(items)).to_wire()

    async def _on_usage(self, issuer: str, body: bytes) -> bytes:
        self._storage_role()
        usage = await self._run(self.holder.usage)
        assert isinstance(usage, dict)
        quota = usage["quota"]
        return proto.Usage(int(usage["used"]), -1 if quota is None else int(quota),
                           tuple(sorted(usage["packs"].items()))).to_wire()

    async def _on_challenge(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Challenge.from_wire(body)
        self._check(issuer, msg.ref, write=False)
        try:
            proof = await self._run(self.holder.challenge, msg.ref.node, msg.ref.ftype, msg.ref.name, msg.nonce,
                                    msg.offset, msg.length)
        except StoreError as exc:
            raise Malformed(str(exc)) from None
        assert isinstance(proof, bytes)
        return proto.Reply(data=proof).to_wire()

    async def _on_delete(self, issuer: str, body: bytes) -> bytes:
        msg = proto.Delete.from_wire(body)
        info = self._node(msg.ref.node, purged=True)
        if not self._holds(issuer, info):
            raise Forbidden(f"{self._name(issuer)} holds no keys of backup node {msg.ref.node} and may not "
                            "delete from it")
        if info.removed and not msg.grant:
            raise Forbidden(f"backup node {msg.ref.node} was purged: its files go only with an admin's delete grant")
        if msg.ref.ftype not in MUTABLE and msg.act_as and not msg.grant:
            await self._pull_claim(issuer, msg.ref.node, msg.act_as, delete=True)
            self._check_act_as(issuer, msg.ref.node, msg.act_as, delete=True)  # a retention job's agent
            self._check_attempt(issuer, msg.ref.node, msg.act_as)
        elif msg.ref.ftype not in MUTABLE:
            # Append-only: the ordinary capability adds; deleting takes the office's delete grant.
            try:
                grant = DeleteGrant.from_bytes(msg.grant, self.peers.ident.office.public_key)
            except FormatError as exc:
                raise Forbidden(f"deleting from backup node {msg.ref.node} needs a delete grant "
                                f"(an admin's prune): {exc}") from None
            if not grant.allows(msg.ref.node, issuer, self.peers.clock()):
                raise Forbidden(f"the delete grant does not cover {self._name(issuer)} on backup node "
                                f"{msg.ref.node} now")
        await self._run(self.holder.delete, msg.ref.node, msg.ref.ftype, msg.ref.name)
        event(self.log, "store.delete", logging.INFO if msg.ref.ftype not in MUTABLE else logging.DEBUG,
              node=msg.ref.node, kind=msg.ref.ftype.value, name=msg.ref.name[:16], peer=issuer)
        return proto.Reply(stored=True).to_wire()
