"""Two daemons built in one event loop, with blockbuster failing any blocking call in the loop."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from peerbackup import logs
from peerbackup.core.crypto import KdfParams
from peerbackup.core.settings import Settings
from peerbackup.daemon.service import Daemon, DaemonOptions
from peerbackup.office.membership.enrol import init_office, join_office, seed_state
from peerbackup.office.membership.home import Home
from tests.daemon.harness import await_for

FAST = Settings(heartbeat=0.1, suspect=0.5, dead=1.0, request_timeout=1.0)


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx("peerbackup") as bb:
        yield bb


def _rand(seed: int):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    return rng.randbytes


def test_two_daemons_in_one_loop_never_block(tmp_path: Path) -> None:
    log = logs.setup(as_json=False, level=logging.DEBUG)
    a_home = Home(tmp_path / "a")
    a_ident = init_office(a_home, "Acme", "alpha", b"pw", str(tmp_path / "kit"), KdfParams.weak(), _rand(1),
                          int(time.time()))

    async def scenario() -> None:
        a = Daemon(a_home, a_ident, DaemonOptions(listen="127.0.0.1:0", mdns=False, settings=FAST), log)
        await a.start()
        b: Daemon | None = None
        try:
            token = await a.admissions.create_invite(("agent", "storage"), 100, 60)
            b_home = Home(tmp_path / "b")
            # join_office runs its own event loop: it is the command line's, not the daemon's.
            joined = await asyncio.to_thread(join_office, b_home, token.encode(), "beta", FAST, _rand(2))
            await seed_state(b_home, joined)
            with blockbuster_ctx("peerbackup"):
                b = Daemon(b_home, joined.ident, DaemonOptions(listen="127.0.0.1:0", mdns=False, settings=FAST), log)
                await b.start()

                async def both_alive() -> bool:
                    assert b is not None
                    pa = {p["name"]: p["state"] for p in await a.view.peers()}
                    pb = {p["name"]: p["state"] for p in await b.view.peers()}
                    return pa.get("beta") == "alive" and pb.get("alpha") == "alive"

                await await_for(both_alive, 10, "alpha and beta alive in each other's table")
                await a.admissions.remove_peer(joined.ident.peer_id)

                async def dropped() -> bool:
                    assert b is not None
                    return "beta" not in {p["name"] for p in await a.view.peers()} and \
                        joined.ident.peer_id in b.peer_service.membership.revocations

                await await_for(dropped, 10, "beta removed on both sides")
                await b.stop()
                b = None
        finally:
            if b is not None:
                await b.stop()
            await a.stop()

    asyncio.run(scenario())
