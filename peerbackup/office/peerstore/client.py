"""Talking to one storage peer about one backup node's files, over the signed peer protocol.

StoragePeer is who a storage peer is and where it listens; StoreClient sends it one request (put,
get, list, delete, challenge, usage) and checks the signed answer; UploadLimit shares this machine's
upload rate between every transfer of its jobs. The peer store over all of them is office/peerstore/store.py;
repair and purge use the client directly. LoopThread runs these transfers for synchronous code (the engine
in a command-line process).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from peerbackup.core.certs import DEFAULT_RANK
from peerbackup.core.crypto import content_hash
from peerbackup.core.ratelimit import TokenBucket
from peerbackup.errors import PeerBackupError, PeerRefused, PeerUnreachable
from peerbackup.net import envelope
from peerbackup.net.client import PeerClient
from peerbackup.net.proto import store as proto
from peerbackup.storage.holder import CONTENT_NAMED
from peerbackup.storage.store import FileType

T = TypeVar("T")
LIST_REPLY = 64 * 1024 * 1024  # a listing of a very large node: ~75 bytes a file


@dataclass(frozen=True)
class StoragePeer:
    peer_id: str
    name: str
    addresses: tuple[str, ...]
    public_key: bytes
    alive: bool = True
    rank: int = DEFAULT_RANK

    @property
    def weight(self) -> float:
        # Machines given a low rank (the first admin's desktop) are the ones left on at night.
        return 2.0 if self.rank < DEFAULT_RANK else 1.0

    def to_json(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "name": self.name, "addresses": list(self.addresses),
                "public_key": self.public_key.hex(), "alive": self.alive, "rank": self.rank}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StoragePeer:
        return cls(str(obj["peer_id"]), str(obj["name"]), tuple(obj["addresses"]), bytes.fromhex(obj["public_key"]),
                   bool(obj["alive"]), int(obj["rank"]))


class UploadLimit:
    """This machine's upload limit (`limit_upload`), shared by every transfer of its jobs."""

    def __init__(self, rate: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.bucket = TokenBucket(rate, clock())

    async def take(self, n: int) -> None:
        delay = self.bucket.reserve(n, self.clock())
        if delay > 0:
            await asyncio.sleep(delay)


class StoreClient:
    """One node's files on one peer, over the signed protocol (async)."""

    def __init__(self, client: PeerClient, node: str, limit: UploadLimit | None = None) -> None:
        self.client = client
        self.node = node
        self.limit = limit

    async def _call(self, peer: StoragePeer, path: str, body: bytes, max_reply: int = envelope.MAX_BODY,
                    upload: Sequence[bytes | bytearray] | None = None,
                    framed: bool = False) -> tuple[bytes, memoryview]:
        last: PeerBackupError = PeerUnreachable(peer.name, "no known address")
        for address in peer.addresses:
            try:
                return await self.client.exchange(address, peer.peer_id, path, body, lambda _e: peer.public_key,
                                                  max_reply, upload, framed)
            except PeerUnreachable as exc:
                last = exc
        raise last

    def _ref(self, ftype: FileType, name: str) -> proto.FileRef:
        return proto.FileRef(self.node, ftype, name)

    async def put(self, peer: StoragePeer, ftype: FileType, name: str, data: bytes | Sequence[bytes | bytearray],
                  digest: bytes, act_as: bytes = b"") -> bool:
        pieces = [data] if isinstance(data, bytes) else list(data)
        size = sum(len(p) for p in pieces)
        if self.limit is not None:
            await self.limit.take(size)
        body = proto.Put(self._ref(ftype, name), size, digest, act_as).to_wire()
        raw, _ = await self._call(peer, proto.PUT_PATH, body, upload=pieces)
        return proto.Reply.from_wire(raw).stored

    async def get(self, peer: StoragePeer, ftype: FileType, name: str, offset: int = 0,
                  length: int | None = None) -> bytes:
        body = proto.Get(self._ref(ftype, name), offset, -1 if length is None else length).to_wire()
        raw, rest = await self._call(peer, proto.GET_PATH, body, proto.MAX_FILE + envelope.MAX_BODY, framed=True)
        reply = proto.Reply.from_wire(raw)
        if len(rest) != reply.size:
            raise PeerRefused(peer.name, "the bytes sent are not the signed size", "bad-reply")
        data = bytes(rest)
        # A whole content-named file is checked against its name by the caller: that proves the bytes
        # whoever sent them, so the signed hash need not be computed a second time.
        whole = offset == 0 and length is None and ftype in CONTENT_NAMED
        if not whole and content_hash(data) != reply.hash:
            raise PeerRefused(peer.name, "the bytes sent do not match the signed hash", "bad-reply")
        return data

    async def listing(self, peer: StoragePeer, ftype: FileType) -> list[tuple[str, int]]:
        raw, _ = await self._call(peer, proto.LIST_PATH, proto.Listing(self.node, ftype).to_wire(), LIST_REPLY)
        return list(proto.Reply.from_wire(raw).items)

    async def delete(self, peer: StoragePeer, ftype: FileType, name: str, grant: bytes, act_as: bytes = b"") -> None:
        await self._call(peer, proto.DELETE_PATH, proto.Delete(self._ref(ftype, name), grant, act_as).to_wire())

    async def challenge(self, peer: StoragePeer, ftype: FileType, name: str, nonce: bytes, offset: int,
                        length: int) -> bytes:
        body = proto.Challenge(self._ref(ftype, name), nonce, offset, length).to_wire()
        raw, _ = await self._call(peer, proto.CHALLENGE_PATH, body)
        return proto.Reply.from_wire(raw).data

    async def usage(self, peer: StoragePeer) -> proto.Usage:
        raw, _ = await self._call(peer, proto.USAGE_PATH, b"")
        return proto.Usage.from_wire(raw)


def is_missing(exc: PeerBackupError) -> bool:
    return isinstance(exc, PeerRefused) and exc.code == "no-such-file"


def is_unreachable(exc: BaseException) -> bool:
    """Cannot be talked to now: down, or its clock so far off that it refuses every message (its copies
    are dealt with when it is back, as for a peer that is off)."""
    return isinstance(exc, PeerUnreachable) or (isinstance(exc, PeerRefused) and exc.code == "clock-skew")


def cannot_answer(exc: BaseException) -> bool:
    """Reachable but unable to do anything now: its disk is full, or it failed inside (500). Not a refusal
    of what was asked: as for a peer that is off, the request is for the others to carry."""
    return is_unreachable(exc) or (isinstance(exc, PeerRefused) and exc.code in ("disk-full", "internal"))


class LoopThread:
    """An event loop in a thread of its own, for synchronous code (the engine in a command-line
    process) that calls async transfers: run(coro) waits for the result in the calling thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="peer-io")
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result()

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def wrapper() -> T:
            return await fn()
        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
