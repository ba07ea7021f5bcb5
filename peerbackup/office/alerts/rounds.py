"""Sending alerts: the coordinator's round, the webhook and the e-mail. The decisions are core/alerts.py's.

Every `alert_interval` the coordinator gathers what it knows (the node logs' jobs,
who is dead since when, what the last repair round left under-replicated), asks
core/alerts.py what to send, sends each alert on every configured channel at
once, and records each attempt as an `alert.sent` event in the control log with
each channel's result. That record is how the next round, or the next coordinator,
knows an incident was alerted already and which channel still needs a retry.

The webhook is one JSON POST (aiohttp, on the daemon's session). E-mail goes
through the standard library's smtplib in a worker thread (it blocks), plain
text, optionally upgraded with STARTTLS; no credentials (see AlertConfig).
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiohttp

from peerbackup.core.alerts import (
    ALERT_RESOLVED,
    ALERT_SENT,
    EMAIL,
    OK,
    TEST,
    WEBHOOK,
    Alert,
    AlertConfig,
    Incident,
    Observed,
    evaluate,
    history,
    iso,
)
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.jobs import JobState
from peerbackup.core.nodelog import missed_slots, node_log
from peerbackup.errors import PeerBackupError
from peerbackup.logs import event
from peerbackup.office.membership.liveness import DEAD
from peerbackup.office.replication.service import LogService

SEND_TIMEOUT = 10.0  # one webhook POST or one SMTP conversation

SendMail = Callable[[AlertConfig, EmailMessage, float], None]


def smtp_send(cfg: AlertConfig, message: EmailMessage, timeout: float) -> None:
    """Blocking: run it in a worker thread. Raises OSError or smtplib.SMTPException."""
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        smtp.send_message(message)


TITLES = {"backup_failed": "backup failed", "backup_missed": "backup missed",
          "backup_partial": "backup left files out", "peer_dead": "peer dead",
          "under_replicated": "files under-replicated", TEST: "test alert"}


def mail(cfg: AlertConfig, alert: Alert, office: str, sender_name: str, now: float) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = cfg.mail_from
    msg["To"] = ", ".join(cfg.mail_to)
    about = alert.node or alert.peer
    msg["Subject"] = f"[peerbackup {office}] {TITLES.get(alert.kind, alert.kind)}" + (f": {about}" if about else "")
    msg["Date"] = formatdate(now, localtime=False, usegmt=True)
    # The domain is given: make_msgid would otherwise ask DNS for this machine's name.
    msg["Message-ID"] = make_msgid("peerbackup", domain=cfg.mail_from.rpartition("@")[2])
    msg["X-Peerbackup-Incident"] = alert.incident
    lines = [alert.message, "", f"office:   {office}", f"kind:     {alert.kind}", f"incident: {alert.incident}"]
    lines += [f"node:     {alert.node}"] if alert.node else []
    lines += [f"peer:     {alert.peer}"] if alert.peer else []
    lines += [f"since:    {iso(alert.since)}", f"sent:     {iso(now)} by {sender_name}, attempt {alert.attempt}", "",
              "peerbackup sends one alert per incident; `peerbackup alerts show` lists the open ones."]
    msg.set_content("\n".join(lines) + "\n")
    return msg


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


class Channels:
    """The webhook and the e-mail, each as one call that answers "ok" or what went wrong (never raises)."""

    def __init__(self, office: str, sender: str, session: Callable[[], aiohttp.ClientSession | None],
                 send_mail: SendMail = smtp_send) -> None:
        self.office = office
        self.sender = sender  # this peer's name, said in the e-mail
        self.session = session
        self.send_mail = send_mail

    async def deliver(self, cfg: AlertConfig, alert: Alert, now: float) -> dict[str, str]:
        """Each of the alert's channels at once."""
        sends: dict[str, Awaitable[str]] = {}
        if WEBHOOK in alert.channels and cfg.webhook:
            sends[WEBHOOK] = self._post(cfg.webhook, alert.payload(self.office, now))
        if EMAIL in alert.channels and cfg.smtp_host:
            sends[EMAIL] = self._mail(cfg, alert, now)
        results = await asyncio.gather(*sends.values())
        return dict(zip(sends, results, strict=True))

    async def _post(self, url: str, payload: dict[str, Any]) -> str:
        session = self.session()
        if session is None:
            return "error: the daemon is stopping"
        try:
            async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT),
                                    headers={"User-Agent": "peerbackup-alerts"}) as resp:
                if 200 <= resp.status < 300:
                    return OK
                return f"error: HTTP {resp.status} {resp.reason or ''}".rstrip()
        except TimeoutError:
            return f"error: no answer within {SEND_TIMEOUT:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return f"error: {type(exc).__name__}: {exc}"

    async def _mail(self, cfg: AlertConfig, alert: Alert, now: float) -> str:
        msg = mail(cfg, alert, self.office, self.sender, now)
        try:
            await asyncio.to_thread(self.send_mail, cfg, msg, SEND_TIMEOUT)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            return f"error: {type(exc).__name__}: {exc}"
        return OK
