"""Opening the daemon's SQLite databases: WAL, synchronous=FULL, and a clear error when damaged."""

from __future__ import annotations

import os
import sqlite3

import aiosqlite

from peerbackup.errors import HomeError


async def open_db(path: str | os.PathLike[str], schema: str, what_to_do: str) -> aiosqlite.Connection:
    """A WAL, synchronous=FULL connection; a damaged file is a clear HomeError, never a hang."""
    db = await aiosqlite.connect(os.fspath(path))
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(schema)
        await db.commit()
    except sqlite3.DatabaseError as exc:
        await db.close()  # its thread would keep the process alive
        raise HomeError(f"{path} is damaged ({exc}). Stop the daemon, move the file aside and start again: "
                        f"{what_to_do}.") from None
    return db
