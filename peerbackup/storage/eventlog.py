"""Durable storage of the replicated logs in SQLite (WAL, synchronous=FULL).

Only the bytes are stored (each event's wire form, each fork proof) plus the
columns needed to answer a pull; the merge rules live in core/logstate.py and
the daemon replays the stored events through them at start. Each outcome is
committed in one transaction before any peer is told about it.
"""

from __future__ import annotations

import asyncio
import os

import aiosqlite

from peerbackup.core.logstate import Outcome
from peerbackup.errors import DiskFull
from peerbackup.storage.sqlite import disk_full, open_db, serialized

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    log TEXT NOT NULL, feed TEXT NOT NULL, seq INTEGER NOT NULL, id BLOB NOT NULL, hlc INTEGER NOT NULL,
    raw BLOB NOT NULL, PRIMARY KEY (log, feed, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forks (
    log TEXT NOT NULL, feed TEXT NOT NULL, seq INTEGER NOT NULL, a BLOB NOT NULL, b BLOB NOT NULL,
    PRIMARY KEY (log, feed));
CREATE TABLE IF NOT EXISTS evidence (id BLOB PRIMARY KEY, raw BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clock (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dropped (
    id BLOB PRIMARY KEY, log TEXT NOT NULL, feed TEXT NOT NULL, seq INTEGER NOT NULL, raw BLOB NOT NULL)
    WITHOUT ROWID;
"""


class EventStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.db_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> EventStore:
        db = await open_db(path, _SCHEMA, "the logs are fetched again from the other peers (on an admin, "
                                          "let it sync before changing the office)")
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    @serialized
    async def load(self) -> tuple[list[bytes], list[tuple[bytes, bytes]], list[bytes], int]:
        """(events in feed order, fork proofs, revocation evidence, persisted HLC) to replay at start."""
        async with self.db.execute("SELECT raw FROM events ORDER BY log, feed, seq") as cur:
            events = [r[0] for r in await cur.fetchall()]
        async with self.db.execute("SELECT a, b FROM forks ORDER BY log, feed") as cur:
            forks = [(r[0], r[1]) for r in await cur.fetchall()]
        async with self.db.execute("SELECT raw FROM evidence ORDER BY id") as cur:
            evidence = [r[0] for r in await cur.fetchall()]
        async with self.db.execute("SELECT v FROM clock WHERE k = 'hlc'") as cur:
            row = await cur.fetchone()
        return events, forks, evidence, int(row[0]) if row else 0

    @serialized
    async def commit(self, outcome: Outcome, hlc: int) -> None:
        """Persist what an accepted event or a fork changed, atomically."""
        rows = []
        if outcome.verdict == "accepted" and outcome.event is not None:
            rows.append(outcome.event)
        await self.db.execute("BEGIN")
        try:
            for ev in rows:
                await self.db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                                      (ev.log, ev.feed, ev.seq, ev.id, ev.hlc, ev.raw))
            for ev in outcome.removed:
                # Out of the logs, never out of the file: an event dropped by a removal's cutoff or a fork
                # (a node.add with its sealed keys, say) stays in `dropped`, where an admin can still find it.
                await self.db.execute("INSERT OR IGNORE INTO dropped VALUES (?, ?, ?, ?, ?)",
                                      (ev.id, ev.log, ev.feed, ev.seq, ev.raw))
                await self.db.execute("DELETE FROM events WHERE log = ? AND feed = ? AND seq = ?",
                                      (ev.log, ev.feed, ev.seq))
            if outcome.proof is not None and outcome.event is not None:
                ev = outcome.event
                await self.db.execute("INSERT OR REPLACE INTO forks VALUES (?, ?, ?, ?, ?)",
                                      (ev.log, ev.feed, ev.seq, outcome.proof[0], outcome.proof[1]))
            if outcome.evidence is not None and outcome.event is not None:
                await self.db.execute("INSERT OR IGNORE INTO evidence VALUES (?, ?)",
                                      (outcome.event.id, outcome.evidence))
            await self.db.execute("INSERT OR REPLACE INTO clock VALUES ('hlc', ?)", (hlc,))
            await self.db.commit()
        except BaseException as exc:
            await self.db.rollback()
            if disk_full(exc):
                # Typed, so a pull that cannot keep what it fetched is a failed pull, not a task's traceback.
                raise DiskFull(f"events.db cannot grow: {exc}") from None
            raise

    @serialized
    async def dropped(self) -> list[bytes]:
        """Every event ever dropped from the logs (by a cutoff or a fork), in (log, feed, seq) order."""
        async with self.db.execute("SELECT raw FROM dropped ORDER BY log, feed, seq") as cur:
            return [r[0] for r in await cur.fetchall()]

    @serialized
    async def pull(self, log: str, feed: str, start: int, limit: int) -> list[bytes]:
        async with self.db.execute(
                "SELECT raw FROM events WHERE log = ? AND feed = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (log, feed, start, limit)) as cur:
            return [r[0] for r in await cur.fetchall()]

