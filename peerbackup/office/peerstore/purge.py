"""`node purge`: a removed node's files deleted from every storage peer, after its grace, by an admin.

The control log says first that the node is purged (node.purge, accepted only from an admin and only
after the grace its node.remove named); each holder then lets an admin with a logged delete grant list
and delete that node's files, and no other removed node's (office/peerstore/holder.py). Deleted files go to the
holders' trash like every delete and are freed after `gc_grace`. A storage peer that is down keeps its
copies until the purge is asked again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from peerbackup.errors import PeerBackupError, PeerRefused
from peerbackup.logs import event
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.storage.store import FileType

PROPAGATION = 15.0  # how long a holder may take to receive the node.purge event before it lets us list


async def purge_files(store: StoreClient, peers: list[StoragePeer], grant: bytes, clock: Callable[[], float],
                      log: logging.Logger) -> dict[str, object]:
    """Delete every file of the node on every live storage peer; per peer, how many, or why not."""
    done: dict[str, object] = {}
    total = 0
    for peer in peers:
        if not peer.alive:
            done[peer.name] = "down: run the purge again when it is back"
            continue
        try:
            count = await _purge_one(store, peer, grant, clock)
        except PeerBackupError as exc:
            done[peer.name] = f"failed: {exc}"
            event(log, "node.purge_failed", logging.WARNING, node=store.node, peer=peer.name, reason=str(exc))
            continue
        done[peer.name] = count
        total += count
    event(log, "node.purge_done", node=store.node, deleted=total)
    return {"node": store.node, "deleted": total, "peers": done}


async def _purge_one(store: StoreClient, peer: StoragePeer, grant: bytes, clock: Callable[[], float]) -> int:
    deadline = clock() + PROPAGATION
    count = 0
    for ftype in FileType:
        while True:
            try:
                names = await store.listing(peer, ftype)
                break
            except PeerRefused as exc:
                # The holder may not have the node.purge event yet: it answers as for an unknown node.
                if exc.code != "forbidden" or clock() >= deadline:
                    raise
                await asyncio.sleep(0.3)
        for name, _size in names:
            await store.delete(peer, ftype, name, grant)
            count += 1
    return count
