"""A storage peer under the faults of issue 16 (cause 8): a full disk. gamma's home on a small tmpfs, filled:
writes refused cleanly, reads go on, backups pass it by, and a restart on the full disk starts and serves.
The three in-process daemons are tests/daemon/trio.py's.
"""

from __future__ import annotations

import asyncio
import errno
import random
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from peerbackup.core.crypto import content_hash
from peerbackup.engine.backup import Archiver
from peerbackup.errors import HomeFull, PeerRefused
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import store as proto
from peerbackup.office.peerstore.client import StoragePeer, StoreClient
from peerbackup.storage.store import FileType
from tests.daemon.harness import await_for
from tests.daemon.trio import FAST, NODE, Records, new_logger, put, rand_bytes, run, trio

# ---- cause 8: a full disk on one storage peer -----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of its own, 48 MiB, to fill: a tmpfs (the tests run as root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(disk: Path) -> Path:
    """Take every free byte of the file system: a file grown until ENOSPC."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\xff" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


async def post(peer: StoragePeer, path: str, data: bytes) -> int:
    """Raw bytes to a peer, as anyone on the network could send them again: the HTTP status."""
    async with aiohttp.ClientSession() as session, session.post(
            f"http://{peer.addresses[0]}{path}", data=data, headers={"Content-Type": CONTENT_TYPE}) as resp:
        await resp.read()
        return resp.status


def make_tree(root: Path, files: int, size: int) -> None:
    rng = random.Random(5)
    for i in range(files):
        p = root / f"file{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))


def test_a_full_disk_refuses_writes_cleanly_reads_go_on_and_backups_pass_it_by(
        tmp_path: Path, records: Records, small_disk: Path) -> None:
    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records), gamma_home=small_disk / "gamma") as t:
            g = t.gamma
            held = random.Random(12).randbytes(200_000)
            assert await put(t, g, held, t.token(t.term()))
            ref = proto.FileRef(NODE, FileType.DATA, content_hash(held).hex())
            sc = StoreClient(t.beta.peer_service.client, NODE)
            gamma = await t.peer(t.beta, g)
            filler = await asyncio.to_thread(fill, small_disk)
            records.records.clear()

            # Reads go on: what gamma holds is read and listed.
            assert await sc.get(gamma, FileType.DATA, ref.name) == held
            assert (ref.name, len(held)) in await sc.listing(gamma, FileType.DATA)
            # A write is a clean refusal saying why, not "500 internal".
            more = random.Random(13).randbytes(100_000)
            with pytest.raises(PeerRefused) as refused:
                await put(t, g, more, t.token(t.term()))
            assert refused.value.code == "disk-full" and "disk is full" in str(refused.value), refused.value
            # A read served while its nonce could not be recorded on disk is still refused when replayed, now
            # and after the disk has room again; a write is not even served once.
            listing, _ = envelope.seal(t.beta.ident.key, g.ident.peer_id, "POST", proto.LIST_PATH,
                                       proto.Listing(NODE, FileType.DATA).to_wire(), time.time(), rand_bytes(14))
            assert await post(gamma, proto.LIST_PATH, listing) == 200
            assert await post(gamma, proto.LIST_PATH, listing) == 409
            deleting, _ = envelope.seal(t.beta.ident.key, g.ident.peer_id, "POST", proto.DELETE_PATH,
                                        proto.Delete(proto.FileRef(NODE, FileType.LOCK, "ab" * 32)).to_wire(),
                                        time.time(), rand_bytes(15))
            assert await post(gamma, proto.DELETE_PATH, deleting) == 507

            # alpha's backup (R = 2 of alpha, beta, gamma) passes gamma by, its lock removal included.
            src = tmp_path / "src"
            make_tree(src, 6, 300_000)
            repo = await t.alpha.controls.access.open_node_repo(NODE)
            try:
                await asyncio.to_thread(lambda: Archiver(repo, use_file_cache=False).backup([str(src)]))
            finally:
                await asyncio.to_thread(repo.close)
            assert not g.storage.holder.listing(NODE, FileType.SNAPSHOT)
            for d in (t.alpha, t.beta):
                assert d.storage.holder.listing(NODE, FileType.SNAPSHOT)

            # The daemon says so once, not every second, and once more when it clears.
            await asyncio.sleep(3 * FAST.heartbeat * 5)
            assert len(records.kinds("disk.full", "gamma")) == 1, [r.getMessage() for r in records.records]
            assert not records.kinds("daemon.loop_failed"), records.kinds("daemon.loop_failed")
            assert not records.tracebacks(), [(r.name, r.getMessage()) for r in records.tracebacks()]
            # Its heartbeats go on both ways: the others still see it alive, and it sees them.
            for d in (t.alpha, g):
                assert all(p["state"] == "alive" for p in await d.view.peers()), await d.view.peers()
            await asyncio.to_thread(filler.unlink)
            await await_for(lambda: bool(records.kinds("disk.ok", "gamma")), 20, "gamma saying its disk has room again")
            assert await put(t, g, more, t.token(t.term()))
            assert await post(gamma, proto.LIST_PATH, listing) == 409
            await asyncio.sleep(1)
            assert len(records.kinds("disk.full", "gamma")) == 1 and len(records.kinds("disk.ok", "gamma")) == 1

    run(scenario)


def test_a_peer_restarted_on_a_full_disk_starts_and_serves(
        tmp_path: Path, records: Records, small_disk: Path) -> None:
    """The soak's epsilon: killed while its disk was full, it could not start again (its cache of members lacked a
    certificate the log holds, and writing it raised out of the start). state.db is a cache rebuilt from events.db:
    a start must not depend on room to write it. A start that cannot even open its database says the disk is
    full, not that the file is damaged."""
    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records), gamma_home=small_disk / "gamma") as t:
            g = t.gamma
            held = random.Random(16).randbytes(50_000)
            assert await put(t, g, held, t.token(t.term()))
            filler = small_disk / "filler"
            # Held open across the restart, as a process killed with -9 leaves them: the WAL and its index.
            sidecars = [sqlite3.connect(g.home.path / name, check_same_thread=False)
                        for name in ("state.db", "events.db")]
            for db in sidecars:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the file is opened on first use

            def lose_cert_and_fill() -> None:
                # Its cache lacks beta's certificate (never written: the disk was full when beta joined).
                with sidecars[0]:
                    sidecars[0].execute("DELETE FROM certs WHERE peer_id = ?", (t.beta.ident.peer_id,))
                fill(small_disk)

            try:
                records.records.clear()
                g = await t.restart(g, lose_cert_and_fill)
                ref = proto.FileRef(NODE, FileType.DATA, content_hash(held).hex())
                sc = StoreClient(t.beta.peer_service.client, NODE)
                async def beta_knows_where() -> bool:
                    return (await t.peer(t.beta, g)).addresses[0] == g.advertised[0]

                await await_for(beta_knows_where, 20, "beta trying gamma's new address first")
                assert await sc.get(await t.peer(t.beta, g), FileType.DATA, ref.name) == held
                assert t.beta.ident.peer_id in g.peer_service.membership.certs
                assert records.kinds("disk.full", "gamma"), [r.getMessage() for r in records.records]
                assert not records.tracebacks(), [(r.name, r.getMessage()) for r in records.tracebacks()]
                await g.stop()
            finally:
                for db in sidecars:
                    db.close()
            # Now without the sidecars (a clean stop removes them, freeing their room, which the filler takes).
            await asyncio.to_thread(fill, small_disk)
            with pytest.raises(HomeFull, match="is full"):
                await g.start()
            await g.stop()

            # Once there is room, the next start writes the certificate it lacked.
            await asyncio.to_thread(filler.unlink)
            g = await t.restart(g)
            db = sqlite3.connect(g.home.path / "state.db")
            try:
                assert db.execute("SELECT 1 FROM certs WHERE peer_id = ?", (t.beta.ident.peer_id,)).fetchone()
            finally:
                db.close()

    run(scenario)
