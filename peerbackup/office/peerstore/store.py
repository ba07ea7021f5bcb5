"""The peer store: the engine's Store protocol over the office's storage peers.

A backup node's repository lives on the other machines. Each file goes to R
distinct storage peers chosen by weighted rendezvous hashing (core/placement),
not counting this machine while others can take it, so any key holder finds a
file without asking everyone; a holder that is unreachable, full or over its
quota is passed over for the next one in the ranking, and the write succeeds
once R holders (or every reachable one, at least one) have it. Reads try the
holders that listed the file, then the ranking, and a copy whose bytes do not
match its name (or that the engine finds damaged: `damaged()`) is passed over
for the next. Deleting anything but a lock takes the office's DeleteGrant.

The engine is synchronous and runs in threads; the transfers are asyncio (one
peer at a time: office/peerstore/client.py). A `Runner` carries each call to the
event loop (the daemon's, or a LoopThread's in a command-line process) and waits for it.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import blake3

from peerbackup.core.chunker import ChunkerParams
from peerbackup.core.crypto import content_hash, content_hash_of
from peerbackup.core.placement import Candidate, place
from peerbackup.engine.config import RepoConfig
from peerbackup.engine.keyfiles import read_config
from peerbackup.errors import (
    NoSuchObject,
    NotARepository,
    ObjectExists,
    PeerBackupError,
    PeerRefused,
    StoreError,
    Superseded,
)
from peerbackup.net.proto import store as proto
from peerbackup.office.peerstore.client import StoragePeer, StoreClient, cannot_answer, is_missing, is_unreachable
from peerbackup.storage.holder import CONTENT_NAMED
from peerbackup.storage.store import MUTABLE, FileType, Payload

T = TypeVar("T")
_HEX64 = re.compile(r"[0-9a-f]{64}")
Runner = Callable[[Coroutine[Any, Any, T]], T]
# Ranged reads of packs are served from whole packs fetched once and kept (restore reads a pack's
# blobs one by one: a signed request per ~1 MiB chunk cost 3x the time of fetching the pack).
PACK_CACHE = 4


class PeerStore:
    """Store over the office's storage peers for one backup node (sync; see the module doc)."""

    def __init__(self, node: str, replicas: int, peers: list[StoragePeer], client: StoreClient, run: Runner[Any],
                 me: str, grant: bytes = b"", warn: Callable[[str], None] | None = None,
                 act_as: bytes = b"") -> None:
        self.node = node
        self.act_as = act_as  # an agent's token from the coordinator: storage peers require it of agents
        self.replicas = replicas
        self.peers = {p.peer_id: p for p in peers}
        self.client = client
        self.run = run
        self.me = me
        self.grant = grant
        self.warn = warn or (lambda _m: None)
        self.location = f"office:{node}"
        self._lock = threading.Lock()
        self._down: set[str] = {p.peer_id for p in peers if not p.alive}
        self._no_room: set[str] = set()  # holders whose disk is full: passed over by the writes that follow
        self._where: dict[tuple[FileType, str], set[str]] = {}  # who listed or took a file
        self._sizes: dict[tuple[FileType, str], int] = {}
        self._bad: dict[tuple[FileType, str], set[str]] = {}  # copies found damaged in this session
        self._last_read: dict[tuple[FileType, str], str] = {}
        self._packs: OrderedDict[str, bytes] = OrderedDict()  # whole packs, verified, most recent last
        self._fetching: dict[str, threading.Event] = {}
        self.under_replicated = 0  # files written to fewer than R holders in this session

    # ---- whom to ask -----------------------------------------------------------------

    def _candidates(self) -> list[Candidate]:
        with self._lock:
            return [Candidate(p.peer_id, p.weight) for p in self.peers.values()
                    if p.peer_id not in self._down and p.peer_id not in self._no_room]

    def ranking(self, ftype: FileType, name: str) -> list[str]:
        """Every storage peer, best holder first (the first R are where the file belongs)."""
        cands = [Candidate(p.peer_id, p.weight) for p in self.peers.values()]
        return place(place_key(ftype, name), cands, len(cands), self.me)

    def _read_order(self, ftype: FileType, name: str) -> list[str]:
        key = (ftype, name)
        with self._lock:
            listed = self._where.get(key, set())
            bad = self._bad.get(key, set())
            down = set(self._down)
        ranked = self.ranking(ftype, name)
        order = [p for p in ranked if p in listed] + [p for p in ranked if p not in listed]
        # Live holders first, then those believed down (they may be back), damaged copies never.
        return [p for p in order if p not in bad and p not in down] + [p for p in order if p not in bad and p in down]

    def _mark_down(self, peer_id: str) -> None:
        with self._lock:
            self._down.add(peer_id)

    def _noted(self, ftype: FileType, name: str, peer_id: str, size: int | None) -> None:
        with self._lock:
            self._where.setdefault((ftype, name), set()).add(peer_id)
            if size is not None:
                self._sizes[(ftype, name)] = size

    # ---- Store ---------------------------------------------------------------------------

    def put(self, ftype: FileType, name: str, data: Payload) -> None:
        # A pack arrives as its pieces: they are sent one after the other, never joined.
        pieces = [data] if isinstance(data, bytes | bytearray) else list(data)
        size = sum(len(p) for p in pieces)
        if size > proto.MAX_FILE:
            raise StoreError(f"{ftype.value}/{name[:12]}: larger than a stored file may be ({proto.MAX_FILE} bytes)")
        if ftype in CONTENT_NAMED and _HEX64.fullmatch(name):
            # The writer named the file by its BLAKE3 hash; each holder checks the bytes against it.
            digest = bytes.fromhex(name)
        else:
            digest = content_hash_of(pieces)
            if ftype in CONTENT_NAMED:
                raise StoreError(f"{ftype.value}/{name[:12]}: the name is not the hash of the bytes")
        self.run(self._put(ftype, name, pieces, size, digest))

    async def _put(self, ftype: FileType, name: str, data: list[bytes | bytearray], size: int,
                   digest: bytes) -> None:
        ranked = place(place_key(ftype, name), self._candidates(), len(self.peers), self.me)
        # The config is tiny and read first by everyone: every storage peer keeps one.
        want = len(ranked) if ftype == FileType.CONFIG else min(self.replicas, len(ranked))
        if want == 0:
            raise StoreError(f"no storage peer is reachable for backup node {self.node} "
                             "(see `peerbackup peers`)")
        queue = list(ranked)
        stored: list[str] = []
        existed: list[str] = []
        errors: list[str] = []
        running: dict[asyncio.Task[bool], str] = {}

        def start() -> None:
            while len(running) + len(stored) + len(existed) < want and queue:
                pid = queue.pop(0)
                running[asyncio.ensure_future(
                    self.client.put(self.peers[pid], ftype, name, data, digest, self.act_as))] = pid

        start()
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pid = running.pop(task)
                try:
                    self._put_answer(task, pid, ftype, name, size, stored, existed, errors)
                except BaseException:
                    for t in running:
                        t.cancel()
                    raise
            start()
        if existed and not stored and ftype not in MUTABLE:
            raise ObjectExists(ftype.value, name)
        copies = len(stored) + len(existed)
        if copies == 0:
            raise StoreError(f"{ftype.value}/{name[:12]} could not be stored on any peer: " + "; ".join(errors))
        if copies < self.replicas and ftype != FileType.CONFIG:
            self.under_replicated += 1
            self.warn(f"{ftype.value}/{name[:12]} is on {copies} of {self.replicas} peers for now "
                      "(the repair task adds copies when peers are back)")

    def _put_answer(self, task: asyncio.Task[bool], pid: str, ftype: FileType, name: str, size: int,
                    stored: list[str], existed: list[str], errors: list[str]) -> None:
        """One holder's answer to a put: a copy (new or already there), a holder passed over (down, full,
        refusing), or the end of the whole write (raised: the caller cancels the other holders' puts)."""
        exc = task.exception()
        if exc is None:
            (stored if task.result() else existed).append(pid)
            self._noted(ftype, name, pid, size)
        elif isinstance(exc, PeerRefused) and exc.code == Superseded.code:
            # The job's attempt was replaced: the write must fail, not go to a holder that lags.
            raise exc
        elif isinstance(exc, PeerRefused) and exc.code == "exists":
            if ftype not in MUTABLE:
                raise ObjectExists(ftype.value, name)
        elif is_unreachable(exc):
            self._mark_down(pid)
            errors.append(str(exc))
        elif isinstance(exc, PeerRefused) and exc.code == "disk-full":
            with self._lock:
                self._no_room.add(pid)
            errors.append(f"{self.peers[pid].name}: {exc}")
        elif isinstance(exc, PeerBackupError):
            errors.append(f"{self.peers[pid].name}: {exc}")
        else:
            raise exc

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        if ftype == FileType.DATA and (offset, length) != (0, None):
            pack = self._pack(name)
            return pack[offset:None if length is None else offset + length]
        data: bytes = self.run(self._get(ftype, name, offset, length))
        return data

    def _pack(self, name: str) -> bytes:
        """A whole pack, checked against its name, fetched once however many threads ask."""
        while True:
            with self._lock:
                cached = self._packs.get(name)
                if cached is not None:
                    self._packs.move_to_end(name)
                    return cached
                waiting = self._fetching.get(name)
                if waiting is None:
                    done = self._fetching[name] = threading.Event()
                    break
            waiting.wait()
        try:
            data: bytes = self.run(self._get(FileType.DATA, name, 0, None))
            with self._lock:
                self._packs[name] = data
                while len(self._packs) > PACK_CACHE:
                    self._packs.popitem(last=False)
            return data
        finally:
            with self._lock:
                del self._fetching[name]
            done.set()

    async def _get(self, ftype: FileType, name: str, offset: int, length: int | None) -> bytes:
        whole = offset == 0 and length is None
        for pid in self._read_order(ftype, name):
            peer = self.peers[pid]
            try:
                data = await self.client.get(peer, ftype, name, offset, length)
            except PeerBackupError as exc:
                if is_unreachable(exc):
                    self._mark_down(pid)
                    continue
                if not is_missing(exc):
                    self.warn(f"{peer.name}: {exc}")
                continue
            if whole and ftype in CONTENT_NAMED and content_hash(data).hex() != name:
                self.warn(f"{peer.name} holds a damaged copy of {ftype.value}/{name[:12]}: reading another")
                with self._lock:
                    self._bad.setdefault((ftype, name), set()).add(pid)
                continue
            with self._lock:
                self._last_read[(ftype, name)] = pid
            if whole:
                self._noted(ftype, name, pid, len(data))
            return data
        raise NoSuchObject(ftype.value, name)

    def damaged(self, ftype: FileType, name: str) -> bool:
        """The last copy read of a file failed the engine's checks: read others from now on.
        True when another copy may be tried."""
        key = (ftype, name)
        with self._lock:
            pid = self._last_read.pop(key, None)
            if pid is None and not self._bad.get(key):
                return False  # another thread already moved on from a copy nobody flagged
            if pid is not None:
                self._bad.setdefault(key, set()).add(pid)
            self._packs.pop(name, None)
        if pid is not None:
            self.warn(f"{self.peers[pid].name} holds a damaged copy of {ftype.value}/{name[:12]}: reading another")
        return bool(self._read_order(ftype, name))

    def size(self, ftype: FileType, name: str) -> int:
        with self._lock:
            known = self._sizes.get((ftype, name))
        if known is None:
            for listed, size in self.list(ftype):
                if listed == name:
                    known = size
        if known is None:
            raise NoSuchObject(ftype.value, name)
        return known

    def list(self, ftype: FileType) -> Iterator[tuple[str, int]]:
        return iter(self.run(self._list(ftype)))

    async def _list(self, ftype: FileType) -> builtins.list[tuple[str, int]]:
        peers = list(self.peers.values())
        results = await asyncio.gather(*(self.client.listing(p, ftype) for p in peers), return_exceptions=True)
        merged: dict[str, int] = {}
        answered = 0
        where: dict[str, set[str]] = {}
        for peer, res in zip(peers, results, strict=True):
            if isinstance(res, BaseException) and is_unreachable(res):
                self._mark_down(peer.peer_id)
                continue
            if isinstance(res, BaseException):
                if not isinstance(res, PeerBackupError):
                    raise res
                self.warn(f"{peer.name}: {res}")
                continue
            answered += 1
            with self._lock:
                self._down.discard(peer.peer_id)
            for name, size in res:
                merged.setdefault(name, size)
                where.setdefault(name, set()).add(peer.peer_id)
        if answered == 0 and peers:
            raise StoreError(f"no storage peer answered for backup node {self.node} (see `peerbackup peers`)")
        with self._lock:
            for key in [k for k in self._where if k[0] == ftype]:
                del self._where[key]
            for name, holders in where.items():
                self._where[(ftype, name)] = holders
                self._sizes[(ftype, name)] = merged[name]
        return sorted(merged.items())

    def exists(self, ftype: FileType, name: str) -> bool:
        return any(n == name for n, _ in self.list(ftype))

    def delete(self, ftype: FileType, name: str) -> None:
        self.run(self._delete(ftype, name))

    async def _delete(self, ftype: FileType, name: str) -> None:
        peers = list(self.peers.values())
        results = await asyncio.gather(*(self.client.delete(p, ftype, name, self.grant, self.act_as) for p in peers),
                                       return_exceptions=True)
        refused = []
        for peer, res in zip(peers, results, strict=True):
            if isinstance(res, BaseException) and not isinstance(res, PeerBackupError):
                raise res
            if isinstance(res, PeerRefused) and not is_missing(res) and not cannot_answer(res):
                refused.append(f"{peer.name}: {res}")
            elif res is not None and cannot_answer(res) and ftype not in MUTABLE:
                self.warn(f"{peer.name} cannot answer ({res}): it keeps {ftype.value}/{name[:12]} until the next "
                          "prune")
        with self._lock:
            self._where.pop((ftype, name), None)
            self._sizes.pop((ftype, name), None)
        if refused:
            raise StoreError(f"deleting {ftype.value}/{name[:12]} was refused: " + "; ".join(refused))


def place_key(ftype: FileType, name: str) -> bytes:
    return f"{ftype.value}/{name}".encode()


def node_config(office: str, node: str, created: int) -> RepoConfig:
    """A node's repository config is the same whoever writes it first: agents racing to
    create it write identical bytes, and a config that differs is not ours."""
    repo_id = blake3.blake3(f"peerbackup node {office}/{node}".encode()).hexdigest()[:32]
    return RepoConfig(id=repo_id, chunker=ChunkerParams(), created=created)


def open_config(store: PeerStore, office: str, node: str, created: int) -> RepoConfig:
    """The node's repository config, created by the first key holder that uses the node."""
    expected = node_config(office, node, created)
    try:
        config = read_config(store)
    except NotARepository:
        try:
            store.put(FileType.CONFIG, "config", expected.to_bytes())
        except ObjectExists:
            pass  # another agent wrote the same bytes first
        config = read_config(store)
    # Compared in full, not by id alone: the config is not encrypted, and a storage member answering first
    # with the right id and 64-byte chunks would have every backup of the node cut into millions of blobs.
    if config != expected:
        raise StoreError(f"the repository config held for backup node {node} is not this node's "
                         f"(id {config.id[:12]}, chunks {config.chunker.min_size}/{config.chunker.avg_size}/"
                         f"{config.chunker.max_size}, created {config.created}; expected id {expected.id[:12]}, "
                         f"chunks {expected.chunker.min_size}/{expected.chunker.avg_size}/"
                         f"{expected.chunker.max_size}, created {expected.created})")
    return expected
