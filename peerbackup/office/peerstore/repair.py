"""Keeping every file of every backup node on R live peers: repair, challenges, scrub.

Repair (run by the coordinator, one round every repair_interval) lists each node's
files on every live storage peer and counts the copies. A peer silent for less
than repair_grace is assumed to still hold what it held (a laptop asleep for
the night must not trigger a copy of everything); a peer silent for longer, or
removed from the office, counts for nothing. A file with fewer than R copies is
read from a holder, checked against its name, and written to the next peers in
its rendezvous ranking until it has R again.

Listings are claims, so a sample of them is checked each round by a challenge:
the holder returns BLAKE3(nonce + a byte range we chose) and we compare it with
the same range of a copy we hold or fetched and verified, so a holder cannot
answer without the bytes. A failed challenge removes the claim from the count
(and the repair writes a copy elsewhere).

Scrub (every storage peer, every scrub_interval) re-hashes every content-named
file it holds; a damaged copy goes to the trash and a good one is fetched from
another peer. The same loop frees trash older than gc_grace.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from peerbackup.core.crypto import content_hash
from peerbackup.core.forgotten import is_forgotten
from peerbackup.core.nodes import Node
from peerbackup.core.placement import Candidate, place
from peerbackup.core.settings import Settings
from peerbackup.errors import PeerBackupError, PeerUnreachable
from peerbackup.logs import event
from peerbackup.net.client import PeerClient
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.office.peerstore.store import place_key
from peerbackup.storage.holder import CONTENT_NAMED, MAX_CHALLENGE, Holder
from peerbackup.storage.store import MUTABLE, FileType

KINDS = [t for t in FileType if t not in MUTABLE]
CHALLENGES_PER_PEER = 4  # claims checked per peer and node each round


@dataclass
class Copies:
    ftype: FileType
    name: str
    size: int
    holders: set[str] = field(default_factory=set)


@dataclass
class NodeScan:
    node: str
    replicas: int
    files: dict[tuple[FileType, str], Copies]
    live: list[StoragePeer]
    assumed: int  # peers down for less than the grace time: assumed to keep their copies
    want: int

    def under(self) -> list[Copies]:
        return [c for c in self.files.values() if len(c.holders) + self.assumed < self.want]


class RepairService:
    def __init__(self, nodes: Callable[[], dict[str, Node]], peers: Callable[[], Awaitable[list[StoragePeer]]],
                 client: PeerClient, holder: Holder, me: str, settings: Settings, clock: Callable[[], float],
                 last_heard: Callable[[str], float | None], log: logging.Logger,
                 forgotten: Callable[[str], set[str]] = lambda _node: set()) -> None:
        self.nodes = nodes
        self.peers = peers
        self.client = client
        self.holder = holder
        self.me = me
        self.settings = settings
        self.clock = clock
        self.last_heard = last_heard
        self.log = log
        self.forgotten = forgotten  # id prefixes of a node's snapshots that retention jobs forgot
        self.started = clock()
        self.last_round: dict[str, Any] = {}

    def _still_counts(self, peer: StoragePeer, now: float) -> bool:
        if peer.alive:
            return True
        heard = self.last_heard(peer.peer_id)
        since = heard if heard is not None else self.started
        return now - since < self.settings.repair_grace

    async def scan(self, node: Node) -> NodeScan:
        peers = await self.peers()
        now = self.clock()
        live = [p for p in peers if p.alive]
        assumed = sum(1 for p in peers if not p.alive and self._still_counts(p, now))
        sc = StoreClient(self.client, node.name)
        files: dict[tuple[FileType, str], Copies] = {}
        for ftype in KINDS:
            results = await asyncio.gather(*(sc.listing(p, ftype) for p in live), return_exceptions=True)
            for peer, res in zip(live, results, strict=True):
                if isinstance(res, BaseException):
                    if not isinstance(res, PeerBackupError):
                        raise res
                    event(self.log, "repair.list_failed", logging.DEBUG, node=node.name, peer=peer.peer_id,
                          reason=str(res))
                    continue
                for name, size in res:
                    files.setdefault((ftype, name), Copies(ftype, name, size)).holders.add(peer.peer_id)
        # A copy kept by a holder that was away when a retention job forgot the snapshot is not short of
        # copies: it is on its way to that holder's trash (office/peerstore/holder.py), never copied back.
        gone = self.forgotten(node.name)
        for key in [k for k in files if k[0] == FileType.SNAPSHOT and is_forgotten(k[1], gone)]:
            del files[key]
        want = min(node.replicas, len(live) + assumed)
        return NodeScan(node.name, node.replicas, files, live, assumed, want)

    async def _reference(self, sc: StoreClient, scan: NodeScan, c: Copies, avoid: str) -> bytes | None:
        """A copy whose bytes match the file's name: ours, or fetched from another claimant."""
        if self.holder.has(scan.node, c.ftype, c.name):
            data = await asyncio.to_thread(self.holder.get, scan.node, c.ftype, c.name)
            if content_hash(data).hex() == c.name:
                return data
        by_id = {p.peer_id: p for p in scan.live}
        for pid in sorted(c.holders, key=lambda p: p == avoid):
            try:
                data = await sc.get(by_id[pid], c.ftype, c.name)
            except PeerBackupError:
                continue
            if content_hash(data).hex() == c.name:
                return data
        return None

    async def challenge_claims(self, scan: NodeScan, rng: secrets.SystemRandom | None = None) -> int:
        """Challenge a sample of each live peer's claims; drop the false ones. Returns how many failed."""
        rng = rng or secrets.SystemRandom()
        sc = StoreClient(self.client, scan.node)
        failed = 0
        for peer in scan.live:
            claims = [c for c in scan.files.values() if peer.peer_id in c.holders and c.ftype in CONTENT_NAMED
                      and c.size > 0]
            for c in rng.sample(claims, min(CHALLENGES_PER_PEER, len(claims))):
                ref = await self._reference(sc, scan, c, peer.peer_id)
                if ref is None:
                    continue  # nobody has a good copy: the repair cannot help either; scrub reports it
                length = min(len(ref), MAX_CHALLENGE, 64 * 1024)
                offset = rng.randrange(0, len(ref) - length + 1)
                nonce = secrets.token_bytes(32)
                expected = bytes(blake3.blake3(nonce + ref[offset:offset + length]).digest())
                try:
                    proof = await sc.challenge(peer, c.ftype, c.name, nonce, offset, length)
                except PeerUnreachable:
                    c.holders.discard(peer.peer_id)  # gone since the listing: no claim to judge
                    continue
                except PeerBackupError as exc:
                    proof, reason = b"", str(exc)
                else:
                    reason = "wrong proof"
                if proof != expected:
                    failed += 1
                    c.holders.discard(peer.peer_id)
                    event(self.log, "store.challenge_failed", logging.WARNING, node=scan.node, peer=peer.peer_id,
                          name=peer.name, file=f"{c.ftype.value}/{c.name[:16]}", reason=reason)
        return failed

    async def repair(self, scan: NodeScan) -> tuple[int, int]:
        """Bring every under-replicated file of a scanned node back to R copies: (repaired, failed)."""
        sc = StoreClient(self.client, scan.node)
        by_id = {p.peer_id: p for p in scan.live}
        repaired = failed = 0
        for c in scan.under():
            data = await self._reference(sc, scan, c, "")
            if data is None and c.ftype not in CONTENT_NAMED:
                data = await self._any_copy(sc, scan, c)
            if data is None:
                failed += 1
                event(self.log, "repair.no_good_copy", logging.ERROR, node=scan.node,
                      file=f"{c.ftype.value}/{c.name[:16]}", holders=len(c.holders))
                continue
            cands = [Candidate(p.peer_id, p.weight) for p in scan.live if p.peer_id not in c.holders]
            for pid in place(place_key(c.ftype, c.name), cands, len(cands)):
                if len(c.holders) + scan.assumed >= scan.want:
                    break
                try:
                    await sc.put(by_id[pid], c.ftype, c.name, data, content_hash(data))
                except PeerBackupError as exc:
                    event(self.log, "repair.put_failed", logging.DEBUG, node=scan.node, peer=pid, reason=str(exc))
                    continue
                c.holders.add(pid)
            if len(c.holders) + scan.assumed >= scan.want:
                repaired += 1
                event(self.log, "repair.copied", logging.INFO, node=scan.node, file=f"{c.ftype.value}/{c.name[:16]}",
                      copies=len(c.holders))
            else:
                failed += 1
        return repaired, failed

    async def _any_copy(self, sc: StoreClient, scan: NodeScan, c: Copies) -> bytes | None:
        by_id = {p.peer_id: p for p in scan.live}
        for pid in c.holders:
            try:
                return await sc.get(by_id[pid], c.ftype, c.name)
            except PeerBackupError:
                continue
        return None

    async def run_once(self) -> dict[str, Any]:
        """One repair round over every node; the summary is kept for `peerbackup storage`."""
        out: dict[str, Any] = {}
        for name, node in sorted(self.nodes().items()):
            scan = await self.scan(node)
            challenged = await self.challenge_claims(scan)
            before = len(scan.under())
            repaired, failed = await self.repair(scan) if before else (0, 0)
            out[name] = {"files": len(scan.files), "under_replicated": len(scan.under()), "repaired": repaired,
                         "failed": failed, "failed_challenges": challenged}
        self.last_round = {"at": self.clock(), "nodes": out}
        return out

    async def under_replicated(self) -> int:
        total = 0
        for node in self.nodes().values():
            total += len((await self.scan(node)).under())
        return total

    async def scrub_once(self) -> dict[str, int]:
        """Re-verify what this peer holds; replace damaged copies from other peers; purge old trash."""
        damaged = replaced = 0
        for name in sorted(self.nodes()):
            for ftype in sorted(CONTENT_NAMED):
                bad = await asyncio.to_thread(self.holder.scrub, name, ftype)
                for file in bad:
                    damaged += 1
                    await asyncio.to_thread(self.holder.trash, name, ftype, file)
                    ok = await self._refetch(name, ftype, file)
                    replaced += ok
                    event(self.log, "scrub.damaged", logging.WARNING, node=name, file=f"{ftype.value}/{file[:16]}",
                          replaced=ok)
        freed = await asyncio.to_thread(self.holder.purge, self.settings.gc_grace)
        return {"damaged": damaged, "replaced": replaced, "trash_freed": freed}

    async def _refetch(self, node: str, ftype: FileType, name: str) -> bool:
        sc = StoreClient(self.client, node)
        for peer in await self.peers():
            if peer.peer_id == self.me or not peer.alive:
                continue
            try:
                data = await sc.get(peer, ftype, name)
            except PeerBackupError:
                continue
            if content_hash(data).hex() == name:
                await asyncio.to_thread(self.holder.put, node, ftype, name, data)
                return True
        return False
