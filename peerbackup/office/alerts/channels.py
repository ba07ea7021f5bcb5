"""The alert channels: the webhook and the e-mail, each one call that answers "ok" or what went wrong.

The webhook is one JSON POST (aiohttp, on the daemon's session). E-mail goes
through the standard library's smtplib in a worker thread (it blocks), plain
text, optionally upgraded with STARTTLS; no credentials (see AlertConfig).
The rounds that decide what to send are office/alerts/rounds.py's.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiohttp

from peerbackup.core.alerts import (
    EMAIL,
    OK,
    TEST,
    WEBHOOK,
    Alert,
    AlertConfig,
    iso,
)

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
