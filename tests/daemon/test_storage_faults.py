"""A storage peer under the faults of issue 16: a control log that lags, dropped uploads, and snapshots
forgotten while it was down (the full disk: test_storage_full_disk.py); and an agent whose log's time ran
ahead of its clock.

Three daemons in one event loop (alpha: the admin and coordinator; beta: an agent of node `accounts`;
gamma: a storage peer only: tests/daemon/trio.py), so a test can hold one daemon's anti-entropy back and
watch exactly what it logs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.crypto import content_hash
from peerbackup.core.jobs import DONE
from peerbackup.core.logstate import COORDINATOR_CLAIM
from peerbackup.core.nodelog import JOB_DISPATCHED, JOB_DONE, JOB_STARTED, node_log
from peerbackup.daemon.service import Daemon
from peerbackup.errors import PeerRefused
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import store as proto
from peerbackup.office.peerstore.client import StoreClient
from peerbackup.storage.store import FileType
from tests.daemon.harness import await_for
from tests.daemon.trio import FAST, NODE, Records, Trio, new_logger, put, rand_bytes, run, trio

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
                           rand_bytes(10))
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
