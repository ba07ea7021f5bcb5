"""A storage peer under the faults of issue 16: a control log that lags, a full disk, dropped uploads, and
snapshots forgotten while it was down.

Three daemons in one event loop (alpha: the admin and coordinator; beta: an agent of node `accounts`;
gamma: a storage peer only), so a test can hold one daemon's anti-entropy back, or put its home on a
small tmpfs and fill it, and watch exactly what it logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peerbackup.core.actas import ActAs
from peerbackup.core.crypto import KdfParams, content_hash
from peerbackup.core.jobs import DONE
from peerbackup.core.logstate import COORDINATOR_CLAIM
from peerbackup.core.nodelog import JOB_DISPATCHED, JOB_DONE, JOB_STARTED, node_log
from peerbackup.core.settings import Settings
from peerbackup.daemon.service import Daemon, DaemonOptions
from peerbackup.engine.backup import Archiver
from peerbackup.errors import HomeFull, PeerRefused
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import store as proto
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


@pytest.fixture
def records() -> Iterator[Records]:
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


def _rand(seed: int) -> Callable[[int], bytes]:
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
    a_ident = init_office(a_home, "Acme", "alpha", b"pw", str(tmp_path / "kit"), KdfParams.weak(), _rand(1),
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
        joined = await asyncio.to_thread(join_office, home, token.encode(), name, FAST, _rand(seed))
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


# ---- cause 7: a holder whose control log lags pulls the claim on demand -------------------------------------


def test_a_lagging_holder_pulls_the_claim_and_a_forged_term_is_still_refused(
        tmp_path: Path, records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records)) as t:
            g = t.gamma
            # gamma's anti-entropy is held back: it learns of alpha's next claim only if it asks for it.
            monkeypatch.setattr(g.logs, "sync_soon", lambda _peer: None)
            pulls: list[str] = []
            real_sync = g.logs.sync_with

            async def counted(peer_id: str) -> None:
                pulls.append(peer_id)
                await real_sync(peer_id)

            monkeypatch.setattr(g.logs, "sync_with", counted)
            term = t.term() + 1
            await t.alpha.logs.append(COORDINATOR_CLAIM, {"term": term})
            assert (term, t.alpha.ident.peer_id) not in g.logs.state.config().coordinator_terms
            data = random.Random(7).randbytes(50_000)
            assert await put(t, g, data, t.token(term))  # a valid token: gamma pulled the claim, then stored
            assert (term, t.alpha.ident.peer_id) in g.logs.state.config().coordinator_terms
            assert g.storage.holder.has(NODE, FileType.DATA, content_hash(data).hex())
            assert pulls, "the claim came from an on-demand pull"

            # A token signed by a member for a term nobody claimed: pulled for once, then refused as before...
            forged = t.token(term + 40)
            other = random.Random(8).randbytes(1000)
            pulls.clear()
            begun = time.monotonic()
            with pytest.raises(PeerRefused) as refused:
                await put(t, g, other, forged)
            assert refused.value.code == "forbidden" and "was not the coordinator of term" in str(refused.value)
            assert time.monotonic() - begun < FAST.request_timeout  # the pull is bounded
            first = len(pulls)
            # ...and asking again and again does not make gamma pull again and again.
            for i in range(5):
                with pytest.raises(PeerRefused):
                    await put(t, g, other, t.token(term + 41 + i))
            assert len(pulls) == first, pulls
            assert not g.storage.holder.has(NODE, FileType.DATA, content_hash(other).hex())
            # A token signed by a peer that never claimed that term, for a term that was claimed, is refused too.
            with pytest.raises(PeerRefused) as refused:
                await put(t, g, other, t.token(term, signer=t.beta))
            assert "was not the coordinator of term" in str(refused.value)

    run(scenario)


# ---- cause 9: a dropped upload is the sender's doing, not a bug of the holder --------------------------------


async def dropped_upload(t: Trio, target: Daemon, size: int, sent: int) -> None:
    """beta starts a put of `size` bytes on `target`, sends `sent` of them and hangs up."""
    data = random.Random(9).randbytes(size)
    body = proto.Put(proto.FileRef(NODE, FileType.DATA, content_hash(data).hex()), size, content_hash(data),
                     t.token(t.term())).to_wire()
    raw, _ = envelope.seal(t.beta.ident.key, target.ident.peer_id, "POST", proto.PUT_PATH, body, time.time(),
                           _rand(10))
    head = envelope.frame(raw)
    host, port = (await t.peer(t.beta, target)).addresses[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {proto.PUT_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                 f"Content-Length: {len(head) + size}\r\n\r\n".encode() + head + data[:sent])
    await writer.drain()
    await asyncio.sleep(0.3)  # the holder has checked the envelope and is reading the bytes
    writer.transport.abort()  # a reset, as a killed process or a pulled cable leaves it
    del reader


def test_a_dropped_upload_is_a_warning_naming_the_peer(tmp_path: Path, records: Records) -> None:
    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records)) as t:
            records.records.clear()
            await dropped_upload(t, t.gamma, 3_000_000, 200_000)
            await await_for(lambda: bool(records.kinds("peer.dropped")), 10, "the dropped upload logged")
            await asyncio.sleep(0.5)
            (dropped,) = records.kinds("peer.dropped")
            assert dropped.levelno == logging.WARNING
            assert records.fields(dropped)["peer"] == t.beta.ident.peer_id
            assert not records.tracebacks(), [r.getMessage() for r in records.tracebacks()]
            assert not records.kinds("peer.handler_failed")
            # The holder goes on serving: the whole upload, sent again, is stored.
            data = random.Random(9).randbytes(3_000_000)
            assert await put(t, t.gamma, data, t.token(t.term()))

    run(scenario)


async def log_job(by: Daemon, kind: str, **fields: Any) -> None:
    await by.logs.append(kind, {"node": NODE, "deadline": int(time.time()) + 600, **fields}, log=node_log(NODE))


def test_a_snapshot_forgotten_while_a_holder_was_down_stays_forgotten(tmp_path: Path, records: Records) -> None:
    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records)) as t:
            a, b = t.alpha, t.beta
            rng = random.Random(16)
            snaps = [rng.randbytes(3000) for _ in range(3)]
            forgot, kept, unproven = (content_hash(s).hex() for s in snaps)
            sa = StoreClient(a.peer_service.client, NODE)
            for data in snaps:  # as a backup by alpha leaves them: on the two other storage peers
                for holder in (b, t.gamma):
                    await sa.put(await t.peer(a, holder), FileType.SNAPSHOT, content_hash(data).hex(), data,
                                 content_hash(data))
            await t.gamma.stop()

            # A retention job the coordinator dispatched to beta forgets `forgot` while gamma is down...
            term = t.term()
            where = {"agent": b.ident.peer_id, "term": term, "coordinator": a.ident.peer_id,
                     "job_kind": "retention"}
            await log_job(a, JOB_DISPATCHED, job="ret-1", **where)
            prune = t.token(term, scope="prune")
            await StoreClient(b.peer_service.client, NODE).delete(await t.peer(b, b), FileType.SNAPSHOT, forgot,
                                                                  b"", prune)
            await log_job(b, JOB_DONE, job="ret-1", **where, snapshots=[], kept=2,
                          forgotten=[forgot[:16], "0", unproven[:3]])
            # ...and beta claims, in a job nobody dispatched, and in a backup job, to have forgotten another.
            await log_job(b, JOB_DONE, job="ret-2", **where, snapshots=[], forgotten=[unproven[:16]])
            await log_job(a, JOB_DISPATCHED, job="bk-1", **{**where, "job_kind": "backup"})
            await log_job(b, JOB_DONE, job="bk-1", **{**where, "job_kind": "backup"}, snapshots=[],
                          forgotten=[unproven[:16]])

            # gamma comes back: its copy of `forgot` goes to its trash, the others stay.
            g = await t.restart(t.gamma)

            def held(d: Daemon) -> set[str]:
                return {n for n, _ in d.storage.holder.listing(NODE, FileType.SNAPSHOT)}

            # The drop's record, not the listing: the copy leaves the listing in a worker thread, a moment
            # before the loop logs it (xdist on a loaded machine saw the listing change first).
            await await_for(lambda: records.kinds("store.forgotten_dropped", "gamma"), 20,
                       "gamma dropping the forgotten snapshot")
            assert held(g) == {kept, unproven} and held(b) == {kept, unproven}
            assert any(p.name.startswith(forgot) for p in (g.home.path / "held" / "trash" / NODE /
                                                            "snapshots").iterdir())
            (dropped,) = records.kinds("store.forgotten_dropped", "gamma")
            assert records.fields(dropped)["name"] == forgot[:16]
            # The repair copies nothing back, and no holder takes the forgotten snapshot again.
            summary = await a.repair.run_once()
            assert summary[NODE]["under_replicated"] == 0 and summary[NODE]["repaired"] == 0, summary
            assert forgot not in held(a) | held(b) | held(g)
            with pytest.raises(PeerRefused) as refused:
                await sa.put(await t.peer(a, g), FileType.SNAPSHOT, forgot, snaps[0], content_hash(snaps[0]))
            assert refused.value.code == "store-refused" and "forgotten" in str(refused.value)

    run(scenario)


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
                                       proto.Listing(NODE, FileType.DATA).to_wire(), time.time(), _rand(14))
            assert await post(gamma, proto.LIST_PATH, listing) == 200
            assert await post(gamma, proto.LIST_PATH, listing) == 409
            deleting, _ = envelope.seal(t.beta.ident.key, g.ident.peer_id, "POST", proto.DELETE_PATH,
                                        proto.Delete(proto.FileRef(NODE, FileType.LOCK, "ab" * 32)).to_wire(),
                                        time.time(), _rand(15))
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


# ---- an agent whose log's time ran ahead of its clock writes its job's end later ---------------------------


def test_an_agent_that_cannot_write_its_jobs_end_writes_it_later(tmp_path: Path, records: Records) -> None:
    """The soak: an agent's clock stepped forward, it wrote to the node's log, and its clock came back: its
    own feed's time is then ahead of its clock by more than clock_skew, and it cannot append (the job's end
    among others) until its clock catches up. The coordinator hears the report, but the job stayed open in
    every log until its deadline. The end is now tried again every progress_interval until the deadline."""
    offset = [0.0]

    def beta_clock() -> float:
        return time.time() + offset[0]

    async def scenario() -> None:
        async with trio(tmp_path, new_logger(records), clocks={"beta": beta_clock}) as t:
            a, b = t.alpha, t.beta
            where = {"agent": b.ident.peer_id, "term": t.term(), "coordinator": a.ident.peer_id,
                     "job_kind": "backup", "attempt": 1}
            await log_job(a, JOB_DISPATCHED, job="late-1", **where)
            await await_for(lambda: "late-1" in b.jobs.job_states(NODE), 20, "beta seeing the dispatch")
            offset[0] = 3 * FAST.clock_skew  # beta's clock runs ahead, and it logs its start then
            await log_job(b, JOB_STARTED, job="late-1", **where)
            offset[0] = 0.0  # and it comes back: its feed's time is now far ahead of its clock
            done = {"node": NODE, "deadline": int(time.time()) + 600, "job": "late-1", **where, "snapshots": [],
                    "errors": 0}
            await b.jobs.runner._record(JOB_DONE, done, NODE)
            assert records.kinds("job.log_failed", "beta"), [r.getMessage() for r in records.records]
            assert b.jobs.job_states(NODE)["late-1"].state != DONE
            offset[0] = 2 * FAST.clock_skew  # the clock catches up (here: jumps, so the test does not wait)
            await await_for(lambda: bool(records.kinds("job.logged_late", "beta")), 3 * FAST.progress_interval,
                       "beta writing the job's end later")
            assert b.jobs.job_states(NODE)["late-1"].state == DONE

    run(scenario)
