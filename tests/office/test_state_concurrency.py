"""Many tasks on one SQLite connection at once, as the daemon's handlers and loops do (a stress test:
CI once saw SQLITE_MISUSE in add_addresses under such interleaving; access is now serialized)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from peerbackup.office.membership.state import State

PEERS = [f"AAAA-BBBB-CCCC-{c}{c}{c}{c}" for c in "DEFGHIJK"]


def test_interleaved_reads_and_writes_never_misuse_the_connection(tmp_path: Path) -> None:
    rng = random.Random(3)

    async def scenario() -> None:
        state = await State.open(tmp_path / "state.db")
        try:
            async def writer(i: int) -> None:
                peer = PEERS[i % len(PEERS)]
                await state.add_addresses(peer, [f"10.0.0.{i % 50}:{7000 + i}"], "hello")
                await state.address_ok(peer, f"10.0.0.{i % 50}:{7000 + i}", float(i))
                assert await state.spend_nonce(peer, rng.randbytes(16), 1e12)

            async def reader() -> None:
                known = await state.addresses()
                assert all(isinstance(a, list) for a in known.values())

            tasks = [writer(i) if i % 3 else reader() for i in range(600)]
            await asyncio.gather(*tasks)
            known = await state.addresses()
            assert set(known) == set(PEERS)
        finally:
            await state.close()

    asyncio.run(scenario())
