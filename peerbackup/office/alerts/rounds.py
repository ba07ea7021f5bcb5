"""The coordinator's alert rounds. The decisions are core/alerts.py's; the channels office/alerts/channels.py.

Every `alert_interval` the coordinator gathers what it knows (the node logs' jobs,
who is dead since when, what the last repair round left under-replicated), asks
core/alerts.py what to send, sends each alert on every configured channel at
once, and records each attempt as an `alert.sent` event in the control log with
each channel's result. That record is how the next round, or the next coordinator,
knows an incident was alerted already and which channel still needs a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from peerbackup.core.alertrules import Observed, evaluate
from peerbackup.core.alerts import (
    ALERT_RESOLVED,
    ALERT_SENT,
    OK,
    TEST,
    Alert,
    AlertConfig,
    Incident,
    history,
)
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.jobs import JobState
from peerbackup.core.nodelog import missed_slots, node_log
from peerbackup.errors import PeerBackupError
from peerbackup.logs import event
from peerbackup.office.alerts.channels import Channels, SendMail, smtp_send
from peerbackup.office.membership.liveness import DEAD
from peerbackup.office.replication.service import LogService


class AlertService:
    def __init__(self, logs: LogService, job_states: Callable[[str], dict[str, JobState]],
                 is_coordinator: Callable[[], bool], last_repair: Callable[[], dict[str, Any]],
                 session: Callable[[], aiohttp.ClientSession | None], clock: Callable[[], float],
                 log: logging.Logger, send_mail: SendMail = smtp_send) -> None:
        self.logs = logs
        self.peers = logs.peers
        self.job_states = job_states
        self.is_coordinator = is_coordinator
        self.last_repair = last_repair
        self.clock = clock
        self.log = log
        ident = self.peers.ident
        self.channels = Channels(ident.office.name, ident.certificate.name, session, send_mail)
        self.started = clock()
        self._round_at: float | None = None  # the repair round the counts below come from
        self._under: dict[str, tuple[int, float]] = {}

    @property
    def config(self) -> AlertConfig:
        return self.logs.state.config().alerts

    def incidents(self) -> dict[str, Incident]:
        return history(self.logs.state.ordered(CONTROL_LOG))

    # ---- what the coordinator knows ---------------------------------------------------

    def dead_since(self, now: float) -> dict[str, float]:
        """Members dead now, and since when: silent for `dead` after they were last heard, or, never heard
        in this run, since this service started (nothing earlier is known here)."""
        ps = self.peers
        out = {}
        for cert in ps.membership.members():
            if cert.peer_id == ps.me or ps.liveness.state(cert.peer_id, now) != DEAD:
                continue
            last = ps.liveness.last_heard.get(cert.peer_id)
            out[cert.peer_id] = self.started if last is None else last + ps.settings.dead
        return out

    def under_replicated(self) -> dict[str, tuple[int, float]] | None:
        """Per node, files short of copies after the latest repair round here and since when they have been;
        None before this peer's first round (a new coordinator knows nothing yet)."""
        rnd = self.last_repair()
        if not rnd:
            return None
        if rnd.get("at") != self._round_at:
            self._round_at = at = float(rnd["at"])
            counts = {n: int(r.get("under_replicated", 0)) for n, r in rnd.get("nodes", {}).items()}
            self._under = {n: (c, self._under.get(n, (0, at))[1]) for n, c in counts.items() if c > 0}
        return dict(self._under)

    # ---- the round ---------------------------------------------------------------------

    async def tick(self) -> None:
        if not self.is_coordinator():
            # A coordinator that comes back re-reads the log and its own next repair round, not its memory.
            self._round_at, self._under = None, {}
            return
        cfg = self.config
        if not cfg.channels:
            return
        now = self.clock()
        nodes = self.logs.state.config().nodes
        claims = self.logs.state.config().coordinator_terms
        seen = Observed(nodes=nodes, jobs={n: self.job_states(n) for n in nodes}, dead=self.dead_since(now),
                        names={c.peer_id: c.name for c in self.peers.membership.members()},
                        under=self.under_replicated(), open_grace=self.peers.settings.stall_after,
                        missed={n: missed_slots(self.logs.state.ordered(node_log(n)), claims) for n in nodes})
        plan = evaluate(now, cfg, seen, self.incidents(), self.peers.settings.alert_interval)
        for inc in plan.resolve:
            await self._record(ALERT_RESOLVED, {"incident": inc.incident, "subject": inc.subject})
            event(self.log, "alert.resolved", incident=inc.incident, kind=inc.kind)
        for alert in plan.send:
            results = await self.channels.deliver(cfg, alert, now)
            await self._record(ALERT_SENT, alert.record(results))
            failed = {c: r for c, r in results.items() if r != OK}
            event(self.log, "alert.sent", logging.WARNING if failed else logging.INFO, incident=alert.incident,
                  kind=alert.kind, attempt=alert.attempt, **results)

    async def _record(self, kind: str, fields: dict[str, Any]) -> None:
        try:
            await self.logs.append(kind, fields)
        except PeerBackupError as exc:
            # Not recorded: the next round sends it again (twice rather than never).
            event(self.log, "alert.log_failed", logging.ERROR, kind=kind, incident=fields.get("incident"),
                  reason=str(exc))

    async def test(self) -> dict[str, str]:
        """`peerbackup alerts test`: a test alert on every configured channel, recorded, each result returned."""
        cfg = self.config
        now = self.clock()
        me = self.peers.ident.certificate.name
        alert = Alert(f"test:{me}:{int(now * 1000)}", TEST, "test",
                      f"Test alert from {me}: if you read this, {' and '.join(cfg.channels)} alerts reach you.",
                      now, peer=self.peers.me, channels=cfg.channels)
        results = await self.channels.deliver(cfg, alert, now) if cfg.channels else {}
        if results:
            await self._record(ALERT_SENT, alert.record(results))
        return results
