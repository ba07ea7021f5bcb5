"""The dashboard's part of the admin API: its page, what its pages show, and one live stream.

The page and its two assets (peerbackup/web/static) are served without the token:
they hold no data and no secret, and a browser cannot send a header when it opens
an address. Everything else needs the X-Peerbackup-Token header like any admin
request. Live data goes out as server-sent events on one response per page
(`/v1/stream`): `event` for each event accepted into a log, `jobs` for the running
jobs every second (asked of the coordinator when this peer is not it), `peers`
when a peer's state changes. Snapshot reads and restores use office/peerstore/reader.py in
a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any

from aiohttp import web

from peerbackup.core.events import Event
from peerbackup.core.jobs import BACKUP, DONE, FAILED, PARTIAL
from peerbackup.core.retention import Policy
from peerbackup.core.schedule import next_slot
from peerbackup.daemon.controls import Controls
from peerbackup.daemon.httpjson import json_body
from peerbackup.daemon.view import DaemonView
from peerbackup.errors import PeerBackupError, UsageError
from peerbackup.logs import event
from peerbackup.office.peerstore.reader import NodeReader, clean_path, inside

STATIC_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
HEARTBEAT = 15.0  # an SSE comment this often keeps proxies and the browser from closing a quiet stream
STREAM_JOBS_AGE = 0.9  # every open page's stream pushes running jobs each second: one question for them all


def static_file(name: str) -> bytes:
    return resources.files("peerbackup.web").joinpath("static", name).read_bytes()


class Dashboard:
    def __init__(self, view: DaemonView, controls: Controls) -> None:
        self.view = view
        self.controls = controls
        self.log: logging.Logger = view.log

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get("/ui/", self.page)
        app.router.add_get("/ui/{name}", self.asset)
        app.router.add_get("/v1/ui/nodes", self.nodes)
        app.router.add_get("/v1/ui/job", self.job)
        app.router.add_get("/v1/ui/snapshots", self.snapshots)
        app.router.add_get("/v1/ui/tree", self.tree)
        app.router.add_get("/v1/ui/download", self.download)
        app.router.add_post("/v1/ui/restore", self.restore)
        app.router.add_get("/v1/stream", self.stream)

    # ---- the page ---------------------------------------------------------------------------

    async def root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def page(self, request: web.Request) -> web.Response:
        return await self._static("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_TYPES:
            raise web.HTTPNotFound()
        return await self._static(name)

    async def _static(self, name: str) -> web.Response:
        body = await asyncio.to_thread(static_file, name)
        # No framing by other sites, nothing loaded from elsewhere, no referrer carrying the address.
        return web.Response(body=body, content_type=STATIC_TYPES[name], charset="utf-8", headers={
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})

    # ---- what the pages show ----------------------------------------------------------------

    async def nodes(self, request: web.Request) -> web.Response:
        d = self.view
        now = d.clock()
        out = []
        for name, node in sorted(d.nodes.nodes().items()):
            jobs = d.jobs.job_states(name)
            backups = [st for st in jobs.values() if st.kind == BACKUP and st.state in (DONE, FAILED)]
            last = max(backups, key=lambda st: st.ended_ms, default=None)
            schedules = []
            for sc in sorted((*node.schedules.values(), *node.paused.values()), key=lambda s: s.id):
                mine = [st for st in backups if st.fields.get("schedule") == sc.id]
                sc_last = max(mine, key=lambda st: st.ended_ms, default=None)
                schedules.append({"id": sc.id, "cron": sc.cron, "every": sc.every, "tz": sc.tz, "window": sc.window,
                                  "paused": sc.paused or None, "next_run": None if sc.paused else next_slot(sc, now),
                                  "last_run": sc_last.ended_ms / 1000 if sc_last else None,
                                  "last_result": sc_last.outcome if sc_last else None})
            try:
                scan: dict[str, Any] = await d.node_scan(name)
            except PeerBackupError as exc:
                scan = {"snapshots": None, "under_replicated": None, "scan_error": str(exc)}
            # What the last backup lacks, when it was partial (its job page lists them too).
            partial = last.result if last is not None and last.outcome == PARTIAL else {}
            out.append({**d.nodes.describe(node), "schedules": schedules, **scan,
                        "last_run": last.ended_ms / 1000 if last else None,
                        "last_result": last.outcome if last else None, "last_job": last.job if last else None,
                        "last_failures": partial.get("failures", 0), "last_failed": partial.get("failed", [])})
        return web.json_response(out)

    async def job(self, request: web.Request) -> web.Response:
        job = request.query.get("job", "")
        for name in sorted(self.view.nodes.nodes()):
            if job in self.view.jobs.job_states(name):
                return web.json_response({"job": job, "node": name})
        running = (await self.view.jobs.running_anywhere()).get(job)
        if running:
            return web.json_response({"job": job, "node": running["node"]})
        raise UsageError(f"no job {job!r} in any backup node's log")

    # ---- snapshots ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reader(self, node: str) -> AsyncIterator[NodeReader]:
        repo = await self.controls.access.open_node_repo(node)
        reader = NodeReader(repo)
        try:
            yield reader
        finally:
            await asyncio.to_thread(reader.close)

    def _node_arg(self, request: web.Request) -> str:
        node = request.query.get("node", "")
        if node not in self.view.nodes.nodes():
            raise UsageError(f"no backup node named {node!r}")
        return node

    async def snapshots(self, request: web.Request) -> web.Response:
        name = self._node_arg(request)
        node = self.view.nodes.nodes()[name]
        policy = Policy.of_node(node.policy)
        async with self._reader(name) as r:
            return web.json_response(await asyncio.to_thread(r.snapshots, policy, set(node.datasets)))

    async def tree(self, request: web.Request) -> web.Response:
        node, snap, path = self._node_arg(request), request.query.get("snapshot", ""), request.query.get("path", "/")
        async with self._reader(node) as r:
            entries = await asyncio.to_thread(r.listing, snap, path)
        return web.json_response({"path": clean_path(path), "entries": [e.to_json() for e in entries],
                                  "restore_root": str(self.view.restore_root())})

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A file as it is, a folder as a .tar: to the browser, never written anywhere else."""
        node, snap, path = self._node_arg(request), request.query.get("snapshot", ""), request.query.get("path", "/")
        name = os.path.basename(clean_path(path)) or "snapshot"
        async with self._reader(node) as r:
            if await asyncio.to_thread(r.is_dir, snap, path):
                scratch = self.view.home.file("cache") / "ui-downloads"
                scratch.mkdir(parents=True, exist_ok=True)
                tar = await asyncio.to_thread(r.tar, snap, path, scratch)
                try:
                    disposition = f'attachment; filename="{_safe(name)}.tar"'
                    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar",
                                                       "Content-Disposition": disposition})
                    resp.content_length = tar.stat().st_size
                    await resp.prepare(request)
                    f = await asyncio.to_thread(open, tar, "rb")
                    try:
                        while chunk := await asyncio.to_thread(f.read, 1024 * 1024):
                            await resp.write(chunk)
                    finally:
                        f.close()
                finally:
                    await asyncio.to_thread(shutil.rmtree, tar.parent, True)
            else:
                size, chunks = await asyncio.to_thread(r.file_chunks, snap, path)
                resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                                   "Content-Disposition": f'attachment; filename="{_safe(name)}"'})
                resp.content_length = size
                await resp.prepare(request)
                while True:
                    piece: bytes | None = await asyncio.to_thread(_next, chunks)
                    if piece is None:
                        break
                    await resp.write(piece)
        await resp.write_eof()
        await self.controls.jobs.log_restore(node, {"snapshot": snap, "target": f"download:{clean_path(path)}"})
        return resp

    async def restore(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node, snap, path, target = (obj.get(k) for k in ("node", "snapshot", "path", "target"))
        if not all(isinstance(v, str) for v in (node, snap, path, target)):
            raise UsageError("give node, snapshot, path and target")
        assert isinstance(node, str) and isinstance(snap, str) and isinstance(path, str) and isinstance(target, str)
        no_sparse = obj.get("no_sparse", False)  # write the zeros of holes (a file system without holes)
        if not isinstance(no_sparse, bool):
            raise UsageError("no_sparse is true or false")
        if node not in self.view.nodes.nodes():
            raise UsageError(f"no backup node named {node!r}")
        root = self.view.restore_root()
        dest = inside(root, target if os.path.isabs(target) else str(root / target))
        async with self._reader(node) as r:
            snap_id, stats = await asyncio.to_thread(r.restore, snap, path, dest, not no_sparse)
        fields = {"snapshot": snap_id, "target": str(dest), "files": stats.files, "bytes": stats.bytes,
                  "errors": len(stats.errors)}
        await self.controls.jobs.log_restore(node, fields)
        return web.json_response({**fields, "path": clean_path(path), "messages": stats.errors[:20]})

    # ---- the live stream ------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await resp.prepare(request)
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        names = self._names

        def on_event(ev: Event) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled browser loses events, never the daemon
                queue.put_nowait(ev)

        self.view.logs.listeners.append(on_event)
        last_peers: Any = None
        last_beat = time.monotonic()
        try:
            while True:
                try:
                    jobs = await self.view.jobs.running_anywhere(max_age=STREAM_JOBS_AGE)
                except PeerBackupError as exc:
                    jobs = {}
                    event(self.log, "ui.jobs_unavailable", logging.DEBUG, reason=str(exc))
                await _send(resp, "jobs", jobs)
                peers = [(p["peer_id"], p["state"], p["coordinator"]) for p in await self.view.peers()]
                if peers != last_peers:
                    last_peers = peers
                    await _send(resp, "peers", {"peers": peers})
                deadline = time.monotonic() + 1.0
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        ev = await asyncio.wait_for(queue.get(), timeout=left)
                    except TimeoutError:
                        break
                    await _send(resp, "event", {**self.view.logs.describe(ev, names()), "log": ev.log})
                if time.monotonic() - last_beat > HEARTBEAT:
                    await resp.write(b": still here\n\n")
                    last_beat = time.monotonic()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.view.logs.listeners.remove(on_event)
        return resp

    def _names(self) -> dict[str, str]:
        return {p: c.name for p, c in self.view.logs.state.certs.items()}


async def _send(resp: web.StreamResponse, kind: str, obj: Any) -> None:
    await resp.write(f"event: {kind}\ndata: {json.dumps(obj, separators=(',', ':'))}\n\n".encode())


def _next(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._- " else "_" for c in name)[:100] or "download"
