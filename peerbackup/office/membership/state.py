"""The daemon's persistent state in SQLite (WAL, synchronous=FULL).

Everything a peer acknowledges lives here before the acknowledgement leaves:
a spent nonce is committed before the request it came with is answered, so a
restart never reopens a replay; an invite is marked used in the same UPDATE
that checks it is unused and unexpired.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import sqlite3
from dataclasses import dataclass

import aiosqlite

from peerbackup.core.certs import Certificate, Office, Revocation
from peerbackup.errors import DiskFull, FormatError, InviteError
from peerbackup.net.proto.join import join_proof, token_id
from peerbackup.office.membership.members import Membership
from peerbackup.storage.sqlite import disk_full, open_db, serialized

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certs (peer_id TEXT PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (peer_id TEXT PRIMARY KEY, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS addresses (
    peer_id TEXT NOT NULL, address TEXT NOT NULL, source TEXT NOT NULL, last_ok REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (peer_id, address));
CREATE TABLE IF NOT EXISTS nonces (issuer TEXT NOT NULL, nonce BLOB NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (issuer, nonce)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS invites (
    token_id BLOB PRIMARY KEY, secret BLOB NOT NULL, roles TEXT NOT NULL, rank INTEGER NOT NULL, created REAL NOT NULL,
    expires REAL NOT NULL, used_by TEXT, used_at REAL);
"""

MAX_ADDRESSES_PER_PEER = 16
# How stale the recorded time of the address that keeps answering may get (only the order is read).
ADDRESS_REFRESH = 60.0




@dataclass(frozen=True)
class Invite:
    roles: tuple[str, ...]
    rank: int


class State:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.db_lock = asyncio.Lock()
        # peer -> (the address last recorded as answering, when): a heartbeat that answers at the address
        # already first in the order changes nothing until ADDRESS_REFRESH has passed.
        self._first_ok: dict[str, tuple[str, float]] = {}

    async def _write(self, sql: str, args: tuple[object, ...], *more: tuple[str, tuple[object, ...]]
                     ) -> aiosqlite.Cursor:
        """One statement (and `more`, in the same transaction), committed; DiskFull (rolled back) when the
        disk has no room for it. The cursor is the first statement's."""
        try:
            cur = await self.db.execute(sql, args)
            for other in more:
                await self.db.execute(*other)
            await self.db.commit()
        except sqlite3.Error as exc:
            if not disk_full(exc):
                raise
            with contextlib.suppress(sqlite3.Error):
                await self.db.rollback()
            raise DiskFull(f"state.db cannot grow: {exc}") from None
        return cur

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> State:
        db = await open_db(path, _SCHEMA, "it holds caches (members, addresses, nonces, invites) that are "
                                            "rebuilt from events.db and the peers")
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    # ---- members ---------------------------------------------------------------

    @serialized
    async def load_membership(self, office: Office) -> Membership:
        m = Membership(office)
        async with self.db.execute("SELECT raw FROM revocations") as cur:
            for (raw,) in await cur.fetchall():
                try:
                    m.add_revocation(raw)
                except FormatError:
                    continue  # a damaged row is only a cache of what peers will tell us again
        async with self.db.execute("SELECT raw FROM certs") as cur:
            for (raw,) in await cur.fetchall():
                try:
                    cert = Certificate.from_bytes(raw, office.public_key)
                except FormatError:
                    continue
                m.certs[cert.peer_id] = cert
        return m

    @serialized
    async def save_cert(self, cert: Certificate) -> None:
        """DiskFull when there is no room: the row is only a cache of the control log, replayed at every start."""
        await self._write("INSERT OR REPLACE INTO certs VALUES (?, ?)", (cert.peer_id, cert.raw))

    @serialized
    async def save_revocation(self, rev: Revocation) -> None:
        """DiskFull when there is no room: the revocation holds in memory, and the log (or the peer that told us)
        brings it again at the next start."""
        await self._write("INSERT OR IGNORE INTO revocations VALUES (?, ?)", (rev.peer_id, rev.raw),
                          ("DELETE FROM addresses WHERE peer_id = ?", (rev.peer_id,)))
        self._first_ok.pop(rev.peer_id, None)

    # ---- addresses (hints: mDNS, static, hello, join) ---------------------------------

    @serialized
    async def add_addresses(self, peer_id: str, addresses: tuple[str, ...] | list[str], source: str) -> None:
        if not addresses:
            return
        await self.db.executemany(
            "INSERT OR IGNORE INTO addresses (peer_id, address, source) VALUES (?, ?, ?)",
            [(peer_id, a, source) for a in addresses[:MAX_ADDRESSES_PER_PEER]])
        # A peer that announces many addresses over time must not grow the table without bound.
        await self.db.execute(
            "DELETE FROM addresses WHERE peer_id = ? AND address NOT IN (SELECT address FROM addresses "
            "WHERE peer_id = ? ORDER BY last_ok DESC, rowid DESC LIMIT ?)", (peer_id, peer_id, MAX_ADDRESSES_PER_PEER))
        await self.db.commit()

    @serialized
    async def address_ok(self, peer_id: str, address: str, now: float) -> None:
        """`address` answered for `peer_id`: it goes first in the order addresses are tried in. Every heartbeat
        reports it; a write (and an fsync) each time changed nothing but a timestamp while the same address
        kept answering, so that one is written again only after ADDRESS_REFRESH."""
        last = self._first_ok.get(peer_id)
        if last is not None and last[0] == address and 0 <= now - last[1] < ADDRESS_REFRESH:
            return
        # Only the order addresses are tried in: a full disk must not stop the heartbeat that reported it.
        with contextlib.suppress(DiskFull):
            # Later than any other address of the peer even when two answer within one clock reading or the
            # clock stepped back: the one that answered last is first.
            await self._write(
                "INSERT INTO addresses (peer_id, address, source, last_ok) VALUES (?, ?, 'contact', "
                "MAX(?, (SELECT COALESCE(MAX(last_ok), 0) + 0.001 FROM addresses WHERE peer_id = ? AND address != ?))) "
                "ON CONFLICT (peer_id, address) DO UPDATE SET last_ok = excluded.last_ok",
                (peer_id, address, now, peer_id, address))
            self._first_ok[peer_id] = (address, now)

    @serialized
    async def addresses(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        async with self.db.execute(
                "SELECT peer_id, address FROM addresses ORDER BY last_ok DESC, rowid DESC") as cur:
            for peer_id, address in await cur.fetchall():
                out.setdefault(peer_id, []).append(address)
        return out

    # ---- nonces -----------------------------------------------------------------

    @serialized
    async def spend_nonce(self, issuer: str, nonce: bytes, expires: float) -> bool:
        """True when the nonce is fresh (and is now spent), False when it was seen before; DiskFull when it
        cannot be recorded for want of room (the server then refuses anything but a read)."""
        cur = await self._write("INSERT OR IGNORE INTO nonces VALUES (?, ?, ?)", (issuer, nonce, expires))
        return cur.rowcount == 1

    @serialized
    async def prune_nonces(self, now: float) -> int:
        cur = await self.db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
        await self.db.commit()
        return cur.rowcount

    # ---- small values (the election's highest token) ------------------------------------

    @serialized
    async def get(self, key: str) -> bytes | None:
        async with self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

    @serialized
    async def put(self, key: str, value: bytes) -> None:
        await self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
        await self.db.commit()

    # ---- invites ------------------------------------------------------------------

    @serialized
    async def add_invite(self, secret: bytes, roles: tuple[str, ...], rank: int, now: float, expires: float) -> None:
        await self.db.execute(
            "INSERT INTO invites (token_id, secret, roles, rank, created, expires) VALUES (?, ?, ?, ?, ?, ?)",
            (token_id(secret), secret, ",".join(roles), rank, now, expires))
        await self.db.commit()

    @serialized
    async def check_invite_proof(self, tid: bytes, public_key: bytes, name: str, proof: bytes, peer_id: str,
                                 now: float) -> Invite:
        """Check the joiner's proof of the secret, then mark the invite used by peer_id in one
        conditional UPDATE; InviteError when unknown, wrong, used or expired."""
        async with self.db.execute("SELECT secret FROM invites WHERE token_id = ?", (tid,)) as c:
            row = await c.fetchone()
        if row is None:
            raise InviteError("this invite is unknown to the inviter")
        if not hmac.compare_digest(join_proof(row[0], public_key, name), proof):
            raise InviteError("the proof of the invite secret is wrong")
        cur = await self.db.execute(
            "UPDATE invites SET used_by = ?, used_at = ? WHERE token_id = ? AND used_by IS NULL AND expires > ?",
            (peer_id, now, tid, now))
        await self.db.commit()
        async with self.db.execute("SELECT roles, rank, used_by FROM invites WHERE token_id = ?", (tid,)) as c:
            row = await c.fetchone()
        assert row is not None
        roles, rank, used_by = row
        if cur.rowcount != 1:
            if used_by is not None:
                raise InviteError("this invite has been used already: ask an admin for a new one")
            raise InviteError("this invite has expired: ask an admin for a new one")
        return Invite(roles=tuple(r for r in roles.split(",") if r), rank=rank)
