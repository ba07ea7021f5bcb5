"""What the dispatch, failover and retention scenarios do by hand to an office in one loop: a signed request
from one member to another, a backup run on an agent as `POST /v1/agent/run` does, and a node's repository
read (snapshots, restore, check) as the dashboard reads it."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from peerbackup.core.retention import Policy
from peerbackup.engine.check import check
from peerbackup.errors import PeerRefused
from peerbackup.office.jobs.agent import JobRecord
from peerbackup.office.peerstore.reader import NodeReader
from tests.inproc.harness import InprocOffice, Member
from tests.inproc.scenarios import NODE, SETTINGS


async def same_config(o: InprocOffice, members: list[Member], what: str) -> None:
    """Until every one of `members` has the same configuration and follows the first as its coordinator."""
    await o.until(lambda: len({m.running.logs.state.config().digest() for m in members}) == 1
                  and all(m.running.coordination.status()[0] == members[0].peer_id for m in members),
                  3 * SETTINGS.heartbeat + 3 * SETTINGS.lease, what)


async def send(frm: Member, to: Member, path: str, body: bytes) -> bytes | tuple[str, str]:
    """One signed request from `frm` to `to` (as their daemons send them): the reply's bytes, or
    (code, message) if `to` refused it."""
    try:
        return await frm.running.controls.jobs.send(to.peer_id, path, body)
    except PeerRefused as exc:
        return exc.code, str(exc)


async def refused(frm: Member, to: Member, path: str, body: bytes) -> tuple[str, str]:
    """(code, message) of `to`'s refusal of a signed request from `frm`; fails if `to` took it."""
    got = await send(frm, to, path, body)
    assert isinstance(got, tuple), f"{to.name} took {path} from {frm.name}: {got!r}"
    return got


async def run_here(m: Member, node: str = NODE) -> JobRecord:
    """A backup of `node` run on `m` as the admin API's `POST /v1/agent/run` runs it (an agent logs on first)."""
    controls = m.running.controls
    job = f"here-{secrets.token_hex(6)}"
    token = await controls.jobs.actas.act_as(node, job) if controls.access.needs_act_as(node) else b""
    return await controls.agent.run(node, job, token)


async def snapshots(m: Member, with_policy: bool = False) -> list[dict[str, Any]]:
    """The node's snapshots as `m` reads them (the dashboard's listing: id, paths, agent, job, parent...),
    oldest first; `with_policy`: with what the next retention job does with each."""
    reader = NodeReader(await m.running.controls.access.open_node_repo(NODE))
    node = m.running.nodes.nodes()[NODE]
    policy = Policy.of_node(node.policy) if with_policy else None
    try:
        return await asyncio.to_thread(reader.snapshots, policy, list(node.datasets))
    finally:
        reader.close()


async def restore(m: Member, target: Path, snapshot: str = "latest", path: str = "/") -> None:
    """`path` of a snapshot of the node restored by `m` into `target` (files land under target + their path)."""
    reader = NodeReader(await m.running.controls.access.open_node_repo(NODE))
    try:
        await asyncio.to_thread(reader.restore, snapshot, path, target)
    finally:
        reader.close()


async def check_all(m: Member) -> list[str]:
    """The errors a full check of the node's repository finds (every pack read), as `m` reads it."""
    repo = await m.running.controls.access.open_node_repo(NODE)
    try:
        return (await asyncio.to_thread(lambda: check(repo, read_data=True))).errors
    finally:
        repo.close()

