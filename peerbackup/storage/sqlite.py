"""Opening the daemon's SQLite databases: WAL, synchronous=FULL, and a clear error when damaged."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import aiosqlite

from peerbackup.errors import DiskFull, HomeError, HomeFull, StoreFull

SIDECARS = ("-wal", "-shm", "-journal")
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_ROOM = 64 * 1024  # free bytes below which a failed open is blamed on the disk: a WAL index needs 32 KiB


def disk_full(exc: BaseException) -> bool:
    """Whether an error says the disk (or this user's disk quota) is full, as SQLite, the OS or the store says it."""
    if isinstance(exc, DiskFull | StoreFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def make_private(path: str | os.PathLike[str]) -> None:
    """The database file and the files SQLite keeps beside it, readable by this user only: they hold invite
    secrets, nonces and the backed-up files' names. SQLite gives a new -wal/-shm the database's mode, so the
    database is made 0600 first; sidecars an older version left 0644 are tightened too."""
    base = os.fspath(path)
    os.close(os.open(base, os.O_CREAT | os.O_WRONLY, 0o600))
    for name in (base, *(base + s for s in SIDECARS)):
        try:
            os.chmod(name, 0o600)  # exactly, whatever the umask
        except FileNotFoundError:
            continue


def _no_room(path: str | os.PathLike[str]) -> bool:
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NO_ROOM


async def open_db(path: str | os.PathLike[str], schema: str, what_to_do: str) -> aiosqlite.Connection:
    """A WAL, synchronous=FULL connection; a damaged file is a clear HomeError, never a hang."""
    await asyncio.to_thread(make_private, path)
    db = await aiosqlite.connect(os.fspath(path))
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.executescript(schema)
        await db.commit()
    except sqlite3.DatabaseError as exc:
        await db.close()  # its thread would keep the process alive
        # SQLite says "disk I/O error" when it cannot map a new -shm on a full disk: not a damaged file.
        if disk_full(exc) or await asyncio.to_thread(_no_room, path):
            raise HomeFull(os.fspath(path)) from None
        raise HomeError(f"{path} is damaged ({exc}). Stop the daemon, move the file aside and start again: "
                        f"{what_to_do}.") from None
    return db


class _Locked(Protocol):
    db_lock: asyncio.Lock


S = TypeVar("S", bound=_Locked)
P = ParamSpec("P")
R = TypeVar("R")


def serialized(fn: Callable[Concatenate[S, P], Awaitable[R]]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """One statement sequence at a time on a connection: sqlite3 refuses a statement run while the same
    cached statement is still open in another task's cursor ("bad parameter or other API misuse")."""

    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self.db_lock:
            return await fn(self, *args, **kwargs)

    functools.update_wrapper(wrapper, fn)
    return wrapper
