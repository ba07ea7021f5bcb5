"""The local admin API: loopback HTTP for the command line and the dashboard (daemon/dashboard.py).

Only the home's owner can drive the daemon: the token lives in a 0600 file in
the home and travels in the X-Peerbackup-Token header, never in a cookie, so
no web page can make a browser send it. The Host header must name the
loopback listener, which defeats DNS rebinding.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from peerbackup.core.certs import DEFAULT_RANK, DEFAULT_ROLES, ROLES
from peerbackup.core.identity import normalise_peer_id
from peerbackup.core.nodes import Dataset, Node
from peerbackup.core.schedule import Schedule
from peerbackup.core.settings import parse_duration
from peerbackup.daemon import metrics
from peerbackup.daemon.alerting import Alerting
from peerbackup.daemon.controls import Controls
from peerbackup.daemon.dashboard import Dashboard
from peerbackup.daemon.httpjson import json_body
from peerbackup.daemon.view import DaemonView
from peerbackup.errors import FormatError, PeerBackupError, UsageError
from peerbackup.office.membership.home import TOKEN_HEADER

MAX_INVITE_VALIDITY = 7 * 86400.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


class AdminApi:
    def __init__(self, token: str, view: DaemonView, controls: Controls) -> None:
        self.token = token
        self.view = view  # what it answers
        self.controls = controls  # what it acts through
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/v1/status", self.status)
        app.router.add_get("/v1/peers", self.peers)
        app.router.add_get("/v1/log", self.office_log)
        app.router.add_get("/v1/nodes", self.node_list)
        app.router.add_post("/v1/nodes", self.node_add)
        app.router.add_post("/v1/grants", self.grant)
        app.router.add_post("/v1/grants/revoke", self.revoke)
        app.router.add_post("/v1/invite", self.invite)
        app.router.add_post("/v1/remove-peer", self.remove_peer)
        app.router.add_post("/v1/nodes/remove", self.node_remove)
        app.router.add_post("/v1/nodes/restore-config", self.node_restore)
        app.router.add_post("/v1/nodes/purge", self.node_purge)
        app.router.add_post("/v1/datasets", self.dataset_add)
        app.router.add_post("/v1/datasets/remove", self.dataset_remove)
        app.router.add_post("/v1/schedules", self.schedule_add)
        app.router.add_post("/v1/schedules/{action:remove|pause|resume}", self.schedule_state)
        app.router.add_post("/v1/policy", self.policy)
        app.router.add_post("/v1/agent/run", self.agent_run)
        app.router.add_post("/v1/backup", self.backup_now)
        app.router.add_post("/v1/nodes/restored", self.restored)
        app.router.add_get("/v1/jobs", self.jobs)
        app.router.add_get("/v1/store/access", self.store_access)
        app.router.add_post("/v1/store/backup", self.store_backup)
        app.router.add_post("/v1/store/backup-end", self.store_backup_end)
        app.router.add_post("/v1/store/delete-grant", self.delete_grant)
        app.router.add_get("/v1/storage", self.storage)
        app.router.add_post("/v1/storage/repair", self.repair_now)
        app.router.add_post("/v1/storage/scrub", self.scrub_now)
        app.router.add_get("/v1/metrics", self.metrics)
        Dashboard(self.view, self.controls).register(app)
        Alerting(self.view, self.controls).register(app)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return _error(403, "bad-host", f"Host {request.host!r} refused: the admin API answers only on loopback")
        given = request.headers.get(TOKEN_HEADER, "")
        public = request.method == "GET" and (request.path == "/" or request.path.startswith("/ui/"))
        if not public and not hmac.compare_digest(given.encode(), self.token.encode()):
            return _error(401, "bad-token", f"missing or wrong {TOKEN_HEADER} header (the token is in the home)")
        try:
            return await handler(request)
        except UsageError as exc:
            return _error(400, "usage", str(exc))
        except PeerBackupError as exc:
            return _error(409, type(exc).__name__, str(exc))

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.view.status())

    async def peers(self, request: web.Request) -> web.Response:
        return web.json_response(await self.view.peers())

    async def office_log(self, request: web.Request) -> web.Response:
        log = request.query.get("log", "office")
        return web.json_response(self.view.logs.listing(log))

    async def node_list(self, request: web.Request) -> web.Response:
        nodes = self.view.nodes
        listed = nodes.removed() if request.query.get("removed") else nodes.nodes()
        return web.json_response([nodes.describe(n) for _, n in sorted(listed.items())])

    async def _node_name(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        obj = await json_body(request)
        name = obj.get("node")
        if not isinstance(name, str):
            raise UsageError("give the node name")
        return name, obj

    async def node_remove(self, request: web.Request) -> web.Response:
        name, _ = await self._node_name(request)
        return web.json_response(self.controls.nodes.describe(await self.controls.nodes.remove(name)))

    async def node_restore(self, request: web.Request) -> web.Response:
        name, _ = await self._node_name(request)
        return web.json_response(self.controls.nodes.describe(await self.controls.nodes.restore(name)))

    async def node_add(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        name, replicas = obj.get("node"), obj.get("replicas", 2)
        if not isinstance(name, str) or not isinstance(replicas, int) or isinstance(replicas, bool):
            raise UsageError("give the node name and an integer replicas")
        node = await self.controls.nodes.add(name, replicas)
        return web.json_response(self.controls.nodes.describe(node))

    async def _node_agents(self, request: web.Request) -> tuple[str, list[str]]:
        obj = await json_body(request)
        name, agents = obj.get("node"), obj.get("agents")
        if not isinstance(name, str) or not isinstance(agents, list) or not agents \
                or not all(isinstance(a, str) for a in agents):
            raise UsageError("give the node name and a list of agent peer ids")
        try:
            return name, [normalise_peer_id(a) for a in agents]
        except FormatError as exc:
            raise UsageError(str(exc)) from None

    async def grant(self, request: web.Request) -> web.Response:
        return await self._each_agent(request, self.controls.nodes.grant)

    async def revoke(self, request: web.Request) -> web.Response:
        return await self._each_agent(request, self.controls.nodes.revoke)

    async def _each_agent(self, request: web.Request, change: Callable[[str, str], Awaitable[Node]]) -> web.Response:
        name, agents = await self._node_agents(request)
        wait = (await json_body(request)).get("wait", 0)
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not 0 <= wait <= 300:
            raise UsageError("wait: seconds, 0 to 300")
        node: Node | None = None
        for agent in agents:
            node = await change(name, agent)
        assert node is not None  # _node_agents refuses an empty list
        out = self.controls.nodes.describe(node)
        if wait:  # until the change has reached every live member (NodeService.spread)
            out.update(await self.controls.nodes.spread(float(wait)))
        return web.json_response(out)

    async def invite(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        roles = obj.get("roles", list(DEFAULT_ROLES))
        rank = obj.get("rank", DEFAULT_RANK)
        expires = obj.get("expires", "1h")
        if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles) or not roles:
            raise UsageError(f"roles must be a non-empty list of {', '.join(ROLES)}")
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < 2**32:
            raise UsageError("rank must be an integer from 0 to 4294967295")
        if not isinstance(expires, str):
            raise UsageError("expires must be a duration such as 1h")
        valid_for = parse_duration(expires)
        if not 0 < valid_for <= MAX_INVITE_VALIDITY:
            raise UsageError("an invite lasts more than 0 s and at most 7 days")
        token = await self.controls.admissions.create_invite(tuple(roles), rank, valid_for)
        return web.json_response({"token": token.encode(), "office": token.office, "addresses": list(token.addresses),
                                  "expires": token.expires, "roles": roles, "rank": rank})

    async def remove_peer(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        peer = obj.get("peer")
        if not isinstance(peer, str):
            raise UsageError("give the peer id to remove")
        try:
            peer_id = normalise_peer_id(peer)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        await self.controls.admissions.remove_peer(peer_id, str(obj.get("reason", ""))[:200])
        return web.json_response({"removed": peer_id})


    async def dataset_add(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node, path, on, exclude = obj.get("node"), obj.get("path"), obj.get("on", []), obj.get("exclude", [])
        allow_missing = obj.get("allow_missing", False)
        if not isinstance(node, str) or not isinstance(path, str) or not isinstance(on, list) \
                or not isinstance(exclude, list) or not isinstance(allow_missing, bool):
            raise UsageError("give node, path, lists on and exclude, and allow_missing true or false")
        try:
            peers = tuple(normalise_peer_id(p) for p in on if isinstance(p, str))
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        dataset = Dataset(path, peers, tuple(str(x) for x in exclude))
        if not allow_missing:  # the agents are asked whether it is there (office/nodes/probe.py)
            await self.controls.probe.check(node, dataset)
        out = await self.controls.nodes.add_dataset(node, dataset)
        return web.json_response(self.controls.nodes.describe(out))

    async def node_purge(self, request: web.Request) -> web.Response:
        name, _ = await self._node_name(request)
        return web.json_response(await self.controls.access.purge_node(name))

    async def dataset_remove(self, request: web.Request) -> web.Response:
        name, obj = await self._node_name(request)
        path = obj.get("path")
        if not isinstance(path, str):
            raise UsageError("give the node and the data set's path")
        return web.json_response(self.controls.nodes.describe(await self.controls.nodes.remove_dataset(name, path)))

    async def schedule_state(self, request: web.Request) -> web.Response:
        name, obj = await self._node_name(request)
        schedule_id = obj.get("id")
        if not isinstance(schedule_id, str):
            raise UsageError("give the node and the schedule's id")
        node = await self.controls.nodes.schedule_state(name, schedule_id, request.match_info["action"])
        return web.json_response(self.controls.nodes.describe(node))

    async def schedule_add(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        try:
            sc = Schedule(id="", node=str(obj["node"]), cron=str(obj.get("cron", "")),
                          every=float(obj.get("every", 0)), tz=str(obj.get("tz", "UTC")),
                          window=float(obj.get("window", 4 * 3600)), catch_up=bool(obj.get("catch_up", True)),
                          retries=int(obj.get("retries", 3)), retry_delay=float(obj.get("retry_delay", 600)))
        except (KeyError, TypeError, ValueError):
            raise UsageError("give node and cron or every, with numbers in seconds") from None
        node, added = await self.controls.nodes.add_schedule(sc.node, sc)
        return web.json_response({"node": node.name, "schedule": dataclasses.asdict(added)})

    async def policy(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node, keep = obj.get("node"), obj.get("keep")
        if not isinstance(node, str) or not isinstance(keep, dict):
            raise UsageError("give node and keep")
        out = await self.controls.nodes.set_policy(node, keep)
        return web.json_response({"node": out.name, "policy": out.policy})

    async def agent_run(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node = obj.get("node")
        if not isinstance(node, str):
            raise UsageError("give the node name")
        job = f"here-{secrets.token_hex(6)}"
        token = await self.controls.jobs.actas.act_as(node, job) if self.controls.access.needs_act_as(node) else b""
        rec = await self.controls.agent.run(node, job, token)
        return web.json_response(dataclasses.asdict(rec))

    async def backup_now(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node = obj.get("node")
        if not isinstance(node, str):
            raise UsageError("give the node name")
        return web.json_response(await self.controls.jobs.request(node))

    async def restored(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node = obj.get("node")
        if not isinstance(node, str):
            raise UsageError("give the node name")
        fields = {k: obj[k] for k in ("snapshot", "target", "files", "bytes", "errors")
                  if isinstance(obj.get(k), (str, int)) and not isinstance(obj.get(k), bool)}
        await self.controls.jobs.log_restore(node, fields)
        return web.json_response({"logged": True})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=await metrics.render(self.view), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def jobs(self, request: web.Request) -> web.Response:
        # What this peer runs as an agent, and every running job as the coordinator hears its heartbeats.
        return web.json_response({"here": [dataclasses.asdict(r) for r in self.controls.agent.jobs.values()],
                                  "running": await self.view.jobs.running_anywhere()})

    async def store_access(self, request: web.Request) -> web.Response:
        # The node's keys go to the home's owner only (token), who can read identity.key anyway.
        return web.json_response(await self.controls.access.store_access(request.query.get("node", "")))

    async def store_backup(self, request: web.Request) -> web.Response:
        # `repo backup --repo office:NODE`: the access, and on an agent the act-as token of a job of the node.
        obj = await json_body(request)
        node, paths = obj.get("node"), obj.get("paths")
        if not isinstance(node, str) or not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise UsageError("give the node name and the paths backed up")
        return web.json_response(await self.controls.access.store_access(node, backup=paths))

    async def store_backup_end(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node, job = obj.get("node"), obj.get("job")
        if not isinstance(node, str) or not isinstance(job, str):
            raise UsageError("give the node name and the job")
        await self.controls.adhoc.end(node, job, obj)
        return web.json_response({"logged": True})

    async def delete_grant(self, request: web.Request) -> web.Response:
        obj = await json_body(request)
        node = obj.get("node")
        if not isinstance(node, str):
            raise UsageError("give the node name")
        return web.json_response({"grant": (await self.controls.access.delete_grant(node)).hex()})

    async def storage(self, request: web.Request) -> web.Response:
        return web.json_response(await self.view.storage_report())

    async def repair_now(self, request: web.Request) -> web.Response:
        return web.json_response(await self.controls.repair.run_once())

    async def scrub_now(self, request: web.Request) -> web.Response:
        return web.json_response(await self.controls.repair.scrub_once())


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)
