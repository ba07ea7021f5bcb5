"""An SMTP receiver served by the office's own loop, and the alert settings the scenarios give the office.

tests/receivers.py's SmtpReceiver runs aiosmtpd in a thread of its own, which the virtual clock cannot
see; this one is aiosmtpd's protocol on a server of the loop, as `Webhook` is for the webhook. The
daemons send mail through smtplib in a worker thread, during which the clock flows at the real rate.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from peerbackup.core.alerts import OFFICE_ALERTS, AlertConfig
from tests.inproc.harness import InprocOffice, Member, Webhook

MAIL_TO = "it@acme.example"


class Mailbox:
    """Every message the office's mail relay accepted: (sender, recipients, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), msg))
        return "250 Message accepted"

    async def start(self) -> Mailbox:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: SMTP(self, hostname="relay.acme.example"), "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


async def alerts_to(o: InprocOffice, a: Member, hook: Webhook, mail: Mailbox | None = None,
                    **thresholds: float) -> None:
    """The office's alerts (an admin's `alerts set`) to `hook` and by e-mail through `mail`, on every member."""
    fields: dict[str, Any] = {"webhook": hook.url, **thresholds}
    if mail is not None:
        fields.update(smtp_host="127.0.0.1", smtp_port=mail.port, mail_from="backup@acme.example", mail_to=[MAIL_TO])
    await a.running.controls.logs.append(OFFICE_ALERTS, AlertConfig.from_fields(fields).to_fields())
    everyone = [m for m in o.members.values() if m.daemon is not None]
    await o.until(lambda: len({m.running.logs.state.config().digest() for m in everyone}) == 1,
                  3 * o.settings.heartbeat, "the alert configuration on every member")


def alert_records(m: Member, kind: str = "alert.sent") -> list[dict[str, Any]]:
    """The `alert.sent` (or `kind`) events of the control log as `m` has it."""
    return [e for e in m.running.logs.listing() if e["kind"] == kind]
