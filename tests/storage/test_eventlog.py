"""The durable logs: an event dropped from the logs (a removal's cutoff, a fork) leaves the logs but never the
file (issue 14: an event that carries keys is never hard-deleted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.logstate import ACCEPTED, MEMBER_REVOKE
from peerbackup.storage.eventlog import EventStore
from tests.core._logstate import ADMIN, ALL_CERTS, DAVE, Feed, add, new_state, revoke_fields


def test_events_dropped_by_a_cutoff_stay_in_the_file(tmp_path: Path) -> None:
    async def run() -> None:
        store = await EventStore.open(tmp_path / "events.db")
        s = new_state(*ALL_CERTS)
        d, a = Feed(DAVE), Feed(ADMIN)
        dave = [d.next() for _ in range(3)]
        for ev in dave:
            out = add(s, ev)
            assert out.verdict == ACCEPTED
            await store.commit(out, s.hlc)
        out = add(s, a.next(MEMBER_REVOKE, revoke_fields(DAVE, {CONTROL_LOG: 1})))
        assert out.verdict == ACCEPTED and [e.seq for e in out.removed] == [2, 3]
        await store.commit(out, s.hlc)
        events, _, _, _ = await store.load()
        assert dave[0].raw in events and dave[1].raw not in events and dave[2].raw not in events
        assert await store.dropped() == [dave[1].raw, dave[2].raw]
        await store.close()

    asyncio.run(run())
