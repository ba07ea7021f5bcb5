"""The offices the scenarios start from, and what they read of a node's log. DEFAULT timings throughout."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

from peerbackup.core.nodelog import node_log
from peerbackup.core.nodes import Dataset
from peerbackup.core.settings import Settings
from tests.inproc.harness import InprocOffice, Member

SETTINGS = Settings()  # the product's defaults: heartbeat 2 s, dead 15 s, lease 15 s, renew 5 s
NODE = "accounts"


async def three(o: InprocOffice) -> list[Member]:
    """alpha (admin, best rank), beta (10) and gamma (20), all three may coordinate."""
    a = await o.init("alpha")
    return [a, await o.join("beta", a, rank=10), await o.join("gamma", a, rank=20)]


def make_tree(root: Path, files: int = 4, size: int = 50_000) -> None:
    """Incompressible files, the same in every run."""
    rng = random.Random(7)
    for i in range(files):
        p = root / f"dir{i % 2}" / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))


async def node_office(o: InprocOffice, agents: list[str], replicas: int = 2, storage_quota: int | None = None,
                      files: int = 4, size: int = 50_000) -> list[Member]:
    """alpha (admin, the coordinator) and `agents` (ranks 10, 20...), all alive; node `accounts` backing up
    a tree of `files` of `size` bytes (make_tree), granted to the agents and known to every member.
    `storage_quota` for every member."""
    src = o.root / "shared"
    await asyncio.to_thread(make_tree, src, files, size)
    a = await o.init("alpha", storage_quota=storage_quota)
    members = [a]
    for i, name in enumerate(agents):
        members.append(await o.join(name, a, rank=10 * (i + 1), storage_quota=storage_quota))

    async def all_alive() -> bool:
        return all(p["state"] == "alive" for p in await a.running.view.peers())

    await o.until(all_alive, 3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "every peer alive")
    await o.until(lambda: a.running.coordination.status()[0] == a.peer_id, 3 * SETTINGS.lease, "alpha leads")
    nodes = a.running.controls.nodes
    await nodes.add(NODE, replicas)
    for agent in members[1:]:
        await nodes.grant(NODE, agent.peer_id)
    await nodes.add_dataset(NODE, Dataset(str(src), (), ()))
    await o.until(lambda: len({m.running.logs.state.config().digest() for m in members}) == 1,
                  3 * SETTINGS.heartbeat, "the node known to every member")
    return members


def node_events(m: Member, kind: str | None = None) -> list[dict[str, Any]]:
    """The node's log as `m` has it (or its `kind` events): each one's fields, kind and writer."""
    return [{**e["fields"], "kind": e["kind"], "writer": e["writer"]} for e in m.running.logs.listing(node_log(NODE))
            if kind is None or e["kind"] == kind]


def first_slot(o: InprocOffice, every: float) -> float:
    """The virtual time of the first slot after now of a schedule `every` seconds (slots count from the
    Unix epoch; the office's epoch is a whole minute, so for 60 s this is a whole virtual minute)."""
    return math.ceil((o.epoch + o.now()) / every) * every - o.epoch
