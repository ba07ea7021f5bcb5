"""The order a peer's addresses are tried in (State.address_ok): the one that answered last goes first,
while a heartbeat to the address already first writes nothing until ADDRESS_REFRESH has passed."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.office.membership.state import ADDRESS_REFRESH, State

PEERS = ("AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH")
ADDRESSES = ("10.0.0.1:7000", "10.0.0.2:7000", "[fe80::1]:7000")

# One step: (peer, the address that answered, seconds since the step before (negative: the clock stepped
# back), the others announced as hints first)
steps = st.lists(st.tuples(st.sampled_from(PEERS), st.sampled_from(ADDRESSES),
                           st.sampled_from([0.0, 0.5, 2.0, -5.0, ADDRESS_REFRESH / 2, ADDRESS_REFRESH,
                                            3 * ADDRESS_REFRESH]),
                           st.booleans()), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(steps=steps)
def test_the_address_that_answered_last_is_tried_first(steps: list[tuple[str, str, float, bool]]) -> None:
    async def run(db: Path) -> None:
        state = await State.open(db)
        try:
            now, last = 1_000.0, dict[str, str]()
            for peer, address, dt, hint in steps:
                now += dt
                if hint:
                    await state.add_addresses(peer, [a for a in ADDRESSES if a != address], "mdns")
                await state.address_ok(peer, address, now)
                last[peer] = address
                known = await state.addresses()
                for p, a in last.items():
                    assert known[p][0] == a, (p, known[p], a)
        finally:
            await state.close()

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(run(Path(d) / "state.db"))


def test_a_heartbeat_to_the_address_already_first_writes_nothing_until_the_refresh(tmp_path: Path) -> None:
    async def run() -> None:
        state = await State.open(tmp_path / "state.db")
        try:
            peer, (a, b) = PEERS[0], ADDRESSES[:2]
            await state.address_ok(peer, a, 0.0)
            writes = state.db.total_changes
            for i in range(1, 30):  # a heartbeat every 2 s for a minute
                await state.address_ok(peer, a, 2.0 * i)
            assert state.db.total_changes == writes
            await state.address_ok(peer, a, ADDRESS_REFRESH)
            assert state.db.total_changes == writes + 1
            await state.address_ok(peer, b, ADDRESS_REFRESH + 1)  # another address answers: at once
            assert state.db.total_changes == writes + 2 and (await state.addresses())[peer][0] == b
        finally:
            await state.close()

    asyncio.run(run())
