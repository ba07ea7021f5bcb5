"""What the peer-store scenarios read and do: the copies on the members' disks, a backup asked of the
office, a restore read through a member's own view of the node's repository."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp

from peerbackup.engine.check import CheckResult, check
from peerbackup.errors import PeerRefused
from peerbackup.office.membership.home import TOKEN_HEADER
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.office.peerstore.reader import NodeReader
from peerbackup.storage.store import FileType
from tests.inproc.harness import InprocOffice, Member
from tests.inproc.scenarios import NODE, SETTINGS, node_events

BACKUP_WITHIN = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # dispatched, run and logged done


def files(m: Member, ftype: FileType = FileType.DATA) -> dict[str, Path]:
    """The node's files of a kind that `m` keeps, read from its disk, by name."""
    base = m.home.path / "held" / "nodes" / NODE / ftype.value
    if not base.exists():
        return {}
    return {p.name: p for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")}


def held(m: Member, ftype: FileType = FileType.DATA) -> set[str]:
    return set(files(m, ftype))


def copies(members: list[Member], ftype: FileType = FileType.DATA) -> Counter[str]:
    return Counter(name for m in members for name in held(m, ftype))


async def backup(o: InprocOffice, a: Member, within: float = BACKUP_WITHIN) -> dict[str, Any]:
    """A backup of the node asked of the office on `a`, waited for: its `job.done` event."""
    out = await a.running.controls.jobs.request(NODE)
    ends: list[dict[str, Any]] = await o.until(
        lambda: [e for e in node_events(a, "job.done") if e["job"] == out["job"]], within, "the backup done")
    return ends[0]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


async def restore(m: Member, target: Path, snapshot: str = "latest") -> None:
    """The node's snapshot restored into `target` through `m`'s daemon, as the dashboard does."""
    reader = NodeReader(await m.running.controls.access.open_node_repo(NODE))
    try:
        await asyncio.to_thread(reader.restore, snapshot, "/", target)
    finally:
        await asyncio.to_thread(reader.close)


async def check_data(m: Member) -> CheckResult:
    """`repo check --read-data` of the node, through `m`'s daemon."""
    repo = await m.running.controls.access.open_node_repo(NODE)
    try:
        return await asyncio.to_thread(check, repo, read_data=True)
    finally:
        await asyncio.to_thread(repo.close)


def shared(o: InprocOffice) -> Path:
    """The tree node_office backs up."""
    return o.root / "shared"


async def restored_as_backed_up(o: InprocOffice, m: Member, name: str = "out") -> None:
    """The latest snapshot, restored through `m`, is the tree node_office backed up, byte for byte."""
    target = o.root / name
    await restore(m, target)
    src = shared(o)
    got, want = await asyncio.to_thread(lambda: (tree_hashes(target / src.relative_to("/")), tree_hashes(src)))
    assert got == want and want, "the restored tree differs from the one backed up"


async def admin_api(m: Member, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One call to `m`'s admin API, as the command line makes it (the home's token): (status, answer),
    the answer JSON or, for text, the text."""
    base, token = m.home.admin_endpoint()
    async with aiohttp.ClientSession() as session, session.request(
            method, base + path, json=body, headers={TOKEN_HEADER: token}) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


async def storage_only(o: InprocOffice, everyone: list[Member], m: Member) -> None:
    """`m` no agent of the node any more (node_office granted it): it only holds copies, without the keys."""
    await everyone[0].running.controls.nodes.revoke(NODE, m.peer_id)
    await o.until(lambda: len({x.running.logs.state.config().digest() for x in everyone if x.daemon}) == 1,
                  3 * SETTINGS.heartbeat, f"{m.name} no agent on every member")


async def store_client(m: Member, to: Member) -> tuple[StoreClient, StoragePeer]:
    """`m`'s own signed store requests of the node, and `to` as a storage peer: to ask a holder directly."""
    peer = next(p for p in await m.running.view.roster.storage_peers() if p.peer_id == to.peer_id)
    return StoreClient(m.running.view.roster.peer_service.client, NODE), peer


async def refusal(call: Awaitable[object]) -> PeerRefused:
    """The refusal a store request met (an AssertionError if it was granted)."""
    try:
        got = await call
    except PeerRefused as exc:
        return exc
    raise AssertionError(f"not refused: {got!r:.200}")


async def snapshots(m: Member) -> list[dict[str, Any]]:
    """The node's snapshots as `m` reads them (the dashboard's listing, `repo snapshots`)."""
    reader = NodeReader(await m.running.controls.access.open_node_repo(NODE))
    try:
        return await asyncio.to_thread(reader.snapshots)
    finally:
        await asyncio.to_thread(reader.close)
