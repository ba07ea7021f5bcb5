"""Three daemons in one event loop, for the storage-fault tests (test_storage_faults.py,
test_storage_full_disk.py, test_nodeviews.py): alpha the admin and coordinator, beta an agent of node
`accounts`, gamma a storage peer only (its home where the test asks), and every record they log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerbackup.core.actas import ActAs
from peerbackup.core.crypto import KdfParams, content_hash
from peerbackup.core.settings import Settings
from peerbackup.daemon.service import Daemon, DaemonOptions
from peerbackup.office.membership.enrol import init_office, join_office, seed_state
from peerbackup.office.membership.home import Home
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.storage.store import FileType
from tests.daemon.harness import await_for

FAST = Settings(heartbeat=0.2, suspect=1.0, dead=2.5, request_timeout=2.0, lease=3.0, renew=1.0)
NODE = "accounts"


class Records(logging.Handler):
    """Every record a daemon (or aiohttp) logs, kept for the test to read."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def kinds(self, kind: str, of: str = "") -> list[logging.LogRecord]:
        """The records of one kind, of every daemon or of the one named `of`."""
        return [r for r in self.records if r.getMessage() == kind and r.name.endswith(of)]

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return dict(getattr(record, "pb_fields", {}))

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info is not None]


@contextlib.contextmanager
def recording() -> Iterator[Records]:
    """A Records handler on the in-process daemons' loggers (and aiohttp's and asyncio's) while it lasts;
    the `records` fixture of tests/daemon/conftest.py."""
    handler = Records()
    loggers = [logging.getLogger(n) for n in ("peerbackup.test_faults", "aiohttp.server", "aiohttp.access",
                                              "asyncio")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def rand_bytes(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Trio:
    alpha: Daemon
    beta: Daemon
    gamma: Daemon
    restart: Callable[..., Awaitable[Daemon]]

    def term(self) -> int:
        return int(self.alpha.coordination.status()[1] or 0)

    async def peer(self, of: Daemon, who: Daemon) -> StoragePeer:
        """`who` as `of` sees it among the storage peers."""
        return next(p for p in await of.roster.storage_peers() if p.peer_id == who.ident.peer_id)

    def token(self, term: int, signer: Daemon | None = None, scope: str = "backup") -> bytes:
        key = (signer or self.alpha).ident.key
        return ActAs.issue(key, term, self.beta.ident.peer_id, NODE, "job-1", int(time.time()), 600, scope).raw


@contextlib.asynccontextmanager
async def trio(tmp_path: Path, log: logging.Logger, gamma_home: Path | None = None,
               gamma_quota: int | None = None, clocks: dict[str, Callable[[], float]] | None = None
               ) -> AsyncIterator[Trio]:
    """alpha, beta (agent of `accounts`) and gamma (storage only, its home where asked), in step."""
    a_home = Home(tmp_path / "alpha")
    a_ident = init_office(a_home, "Acme", "alpha", b"pw", str(tmp_path / "kit"), KdfParams.weak(), rand_bytes(1),
                          int(time.time()))
    started: list[Daemon] = []

    async def start(home: Home, ident: Any, quota: int | None = None) -> Daemon:
        # Each daemon logs under its own name: peerbackup.test_faults.gamma...
        name = ident.certificate.name
        d = Daemon(home, ident, DaemonOptions(listen="127.0.0.1:0", mdns=False, settings=FAST,
                                              storage_quota=quota), log.getChild(name),
                   (clocks or {}).get(name, time.time))
        started.append(d)
        await d.start()
        return d

    async def join(name: str, roles: tuple[str, ...], where: Path, seed: int, quota: int | None = None) -> Daemon:
        token = await a.admissions.create_invite(roles, 100, 60)
        home = Home(where)
        joined = await asyncio.to_thread(join_office, home, token.encode(), name, FAST, rand_bytes(seed))
        await seed_state(home, joined)
        return await start(home, joined.ident, quota)

    async def restart(d: Daemon, while_down: Callable[[], None] = lambda: None) -> Daemon:
        await d.stop()
        started.remove(d)
        await asyncio.to_thread(while_down)
        return await start(d.home, d.ident, d.options.storage_quota)

    try:
        a = await start(a_home, a_ident)
        b = await join("beta", ("agent", "storage"), tmp_path / "beta", 2)
        g = await join("gamma", ("storage",), gamma_home or tmp_path / "gamma", 3, gamma_quota)
        t = Trio(a, b, g, restart)
        await await_for(lambda: a.coordination.status()[0] == a.ident.peer_id, 20, "alpha coordinating")
        await a.nodes.add(NODE, replicas=2)
        await a.nodes.grant(NODE, b.ident.peer_id)

        def in_step() -> bool:
            digests = {d.logs.state.digest() for d in (a, b, g)}
            return len(digests) == 1 and NODE in g.nodes.nodes() and \
                b.ident.peer_id in g.nodes.nodes()[NODE].agents

        async def all_alive() -> bool:
            states = [p["state"] for d in (a, b, g) for p in await d.view.peers()]
            return all(s == "alive" for s in states)

        await await_for(in_step, 20, "the node and its grant on every peer")
        await await_for(all_alive, 20, "every peer alive for every other")
        yield t
    finally:
        for d in reversed(started):
            await d.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def new_logger(records: Records) -> logging.Logger:
    log = logging.getLogger("peerbackup.test_faults")
    assert records in log.handlers
    return log


async def put(t: Trio, target: Daemon, data: bytes, act_as: bytes) -> bool:
    """beta writes a pack into `accounts` on `target` with an act-as token."""
    sc = StoreClient(t.beta.peer_service.client, NODE)
    return await sc.put(await t.peer(t.beta, target), FileType.DATA, content_hash(data).hex(), data,
                        content_hash(data), act_as)

