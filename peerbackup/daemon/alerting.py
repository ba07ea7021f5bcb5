"""The alerts' part of the admin API: show, set (admins) and test (admins) the office's alert channels.

`GET /v1/alerts` answers on any peer (the configuration and the incidents are in
the control log every peer holds); `POST /v1/alerts` writes an `office.alerts`
event, checked here and again by every peer's log; `POST /v1/alerts/test` sends
a test alert from this peer through every configured channel and answers each
channel's result.
"""

from __future__ import annotations

from aiohttp import web

from peerbackup.core.alerts import OFFICE_ALERTS, AlertConfig
from peerbackup.daemon.controls import Controls
from peerbackup.daemon.httpjson import json_body
from peerbackup.daemon.view import DaemonView
from peerbackup.errors import NotAdmin, UsageError
from peerbackup.logs import event

RECENT = 20  # incidents listed by `alerts show`


class Alerting:
    def __init__(self, view: DaemonView, controls: Controls) -> None:
        self.view = view
        self.controls = controls

    def register(self, app: web.Application) -> None:
        app.router.add_get("/v1/alerts", self.show)
        app.router.add_post("/v1/alerts", self.set)
        app.router.add_post("/v1/alerts/test", self.test)

    def _admin(self) -> None:
        if not self.view.ident.certificate.has_role("admin"):
            raise NotAdmin()

    async def show(self, request: web.Request) -> web.Response:
        service = self.controls.alerts
        incidents = sorted(service.incidents().values(), key=lambda i: i.first, reverse=True)[:RECENT]
        coordinator, _ = self.view.coordinator()
        return web.json_response({"config": service.config.describe(), "coordinator": coordinator,
                                  "open": sum(1 for i in incidents if not i.resolved),
                                  "incidents": [i.describe() for i in incidents]})

    async def set(self, request: web.Request) -> web.Response:
        self._admin()
        cfg = AlertConfig.from_fields(await json_body(request))  # a UsageError (400) that names the bad setting
        await self.controls.logs.append(OFFICE_ALERTS, cfg.to_fields())
        event(self.view.log, "alerts.configured", channels=",".join(cfg.channels) or "none")
        return web.json_response({"config": self.controls.alerts.config.describe()})

    async def test(self, request: web.Request) -> web.Response:
        self._admin()
        if not self.controls.alerts.config.channels:
            raise UsageError("no alert channel is configured: `peerbackup alerts set --webhook URL` or "
                             "`--smtp HOST:PORT --mail-from A --mail-to B` first")
        return web.json_response({"results": await self.controls.alerts.test()})
