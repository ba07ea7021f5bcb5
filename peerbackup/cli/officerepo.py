"""`peerbackup repo ... --repo office:NODE`: a backup node's repository in the peer store.

The running daemon of this home says who the storage peers are and hands over
this peer's copy of the node's keys (only to the home's owner: the admin token);
the transfers then go straight from this process to the storage peers, signed
with the home's identity key. No passphrase: holding the keys is the right to
read. A machine that does not hold them is refused with the names of those who do.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from peerbackup.cli.common import OFFICE_PREFIX as PREFIX
from peerbackup.cli.common import api
from peerbackup.core import codec
from peerbackup.core.keys import KeySet
from peerbackup.core.settings import Settings
from peerbackup.engine.config import RepoConfig
from peerbackup.errors import UsageError
from peerbackup.net.client import PeerClient
from peerbackup.office.membership.home import Home
from peerbackup.office.peerstore.client import LoopThread, StoragePeer, StoreClient
from peerbackup.office.peerstore.store import PeerStore, open_config

ADHOC_TIMEOUT = 120.0  # the daemon waits up to 2 leases (at most daemon/controls.py ADHOC_WAIT) for a coordinator


@dataclass
class OfficeRepo:
    store: PeerStore
    keys: KeySet
    config: RepoConfig
    close: Callable[[], None]
    ended: Callable[[dict[str, Any]], None]


@dataclass
class Connection:
    store: PeerStore
    keys: KeySet
    access: dict[str, Any]
    close: Callable[[], None]


def connect(home: Home, node: str, delete: bool = False, warn: Callable[[str], None] | None = None,
            backup: list[str] | None = None) -> Connection:
    """A PeerStore for a node, from what this home's daemon knows (keys, storage peers). For a `backup`
    of those paths on an agent, the daemon logs on and opens a job of the node (office/adhoc.py)."""
    if backup is None:
        access: dict[str, Any] = api(home, "GET", f"/v1/store/access?node={node}")
    else:
        status = api(home, "GET", "/v1/status")
        if status.get("coordinator") is None and not status.get("admin"):  # an admin writes with its grant
            print("peerbackup: waiting for the office's coordinator (elected within a lease of the daemons' start) "
                  f"to let this peer act as {node}", file=sys.stderr, flush=True)
        access = api(home, "POST", "/v1/store/backup", {"node": node, "paths": backup}, timeout=ADHOC_TIMEOUT)
    grant = b""
    if delete:
        grant = bytes.fromhex(api(home, "POST", "/v1/store/delete-grant", {"node": node})["grant"])
    keys = KeySet.from_wire(codec.unpack(bytes.fromhex(access["keys"]), "node keys"))
    ident = home.load()
    peers = [StoragePeer.from_json(p) for p in access["peers"]]
    loop = LoopThread()

    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = loop.call(make_session)
    names = {p.peer_id: p.name for p in peers}
    client = PeerClient(ident.key, Settings(), time.time, os.urandom, session,
                        lambda peer_id: names.get(peer_id, peer_id))
    store = PeerStore(node, int(access["replicas"]), peers, StoreClient(client, node), loop.run, ident.peer_id,
                      grant, warn or _warn, bytes.fromhex(access.get("act_as", "")))

    def close() -> None:
        loop.call(session.close)
        loop.close()

    return Connection(store, keys, access, close)


def open_office(home: Home, repo: str, delete: bool = False, warn: Callable[[str], None] | None = None,
                backup: list[str] | None = None) -> OfficeRepo:
    """The node's repository; for a `backup` of those paths, `ended` says how it ended, into the node's
    log when the daemon opened a job for it (on an agent), else nowhere."""
    node = repo[len(PREFIX):]
    if not node:
        raise UsageError("give the backup node: --repo office:NODE")
    conn = connect(home, node, delete, warn, backup)
    store = conn.store
    job = str(conn.access.get("job") or "")

    def ended(result: dict[str, Any]) -> None:
        if job:
            api(home, "POST", "/v1/store/backup-end", {**result, "node": node, "job": job})

    try:
        config = open_config(store, conn.access["office"], node, int(conn.access["created"]))
    except BaseException as exc:
        try:
            ended({"state": "failed", "reason": str(exc)})
        finally:
            conn.close()
        raise
    return OfficeRepo(store, conn.keys, config, conn.close, ended)


def _warn(message: str) -> None:
    print(f"peerbackup: warning: {message}", file=sys.stderr)
