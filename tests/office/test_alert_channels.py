"""The alert channels (office/alerts/channels.py) against a real HTTP receiver and a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from peerbackup.core.alerts import EMAIL, PEER_DEAD, WEBHOOK, Alert, AlertConfig
from peerbackup.office.alerts.channels import Channels
from tests.receivers import SmtpReceiver, WebhookReceiver, free_port, smtp, webhook

__all__ = ["smtp", "webhook"]  # the fixtures, used by name below

T = TypeVar("T")
NOW = 1_800_000_000.0
ALERT = Alert("peer_dead:PJUY-EF2C-WDPU-3NY4:1799996400", PEER_DEAD, "peer_dead:PJUY-EF2C-WDPU-3NY4",
              "Peer gamma has not been heard since ...", NOW - 3600, peer="PJUY-EF2C-WDPU-3NY4",
              channels=(WEBHOOK, EMAIL))


def run(fn: Callable[[Channels], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await fn(Channels("Acme", "alpha", lambda: session))

    return asyncio.run(main())


def config(hook: str, smtp_port: int, tls: bool = False) -> AlertConfig:
    return AlertConfig(webhook=hook, smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_starttls=tls,
                       mail_from="backup@acme.example", mail_to=("it@acme.example", "boss@acme.example"))


def test_one_json_post_and_one_plain_text_mail(webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    results = run(lambda ch: ch.deliver(config(webhook.url, smtp.port), ALERT, NOW))
    assert results == {WEBHOOK: "ok", EMAIL: "ok"}
    [post] = webhook.received()
    assert post == {"kind": "peer_dead", "incident": ALERT.incident, "office": "Acme", "node": None,
                    "peer": "PJUY-EF2C-WDPU-3NY4", "message": ALERT.message, "since": "2027-01-15T07:00:00Z",
                    "time": "2027-01-15T08:00:00Z", "attempt": 1}
    assert webhook.headers[0]["Content-Type"] == "application/json"
    [(sender, rcpt, msg)] = smtp.received()
    assert sender == "backup@acme.example" and rcpt == ["it@acme.example", "boss@acme.example"]
    assert msg["Subject"] == "[peerbackup Acme] peer dead: PJUY-EF2C-WDPU-3NY4"
    assert msg["X-Peerbackup-Incident"] == ALERT.incident
    body = msg.get_content()
    assert msg.get_content_type() == "text/plain" and ALERT.message in body and "by alpha, attempt 1" in body


def test_only_the_channels_asked_for(webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    retry = Alert(ALERT.incident, ALERT.kind, ALERT.subject, ALERT.message, ALERT.since, peer=ALERT.peer,
                  channels=(WEBHOOK,), attempt=2)
    assert run(lambda ch: ch.deliver(config(webhook.url, smtp.port), retry, NOW)) == {WEBHOOK: "ok"}
    assert len(webhook.received()) == 1 and smtp.received() == []


def test_a_receiver_that_is_down_is_an_error_result_not_an_exception(webhook: WebhookReceiver) -> None:
    closed = free_port()
    webhook.stop()
    results = run(lambda ch: ch.deliver(config(webhook.url, closed), ALERT, NOW))
    assert results[WEBHOOK].startswith("error: ClientConnectorError: Cannot connect to host 127.0.0.1")
    assert results[EMAIL].startswith("error: ConnectionRefusedError")
    webhook.start()  # back on the same port
    assert run(lambda ch: ch.deliver(config(webhook.url, closed), ALERT, NOW))[WEBHOOK] == "ok"


def test_starttls_against_a_server_without_it_fails_clearly(webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    results = run(lambda ch: ch.deliver(config(webhook.url, smtp.port, tls=True), ALERT, NOW))
    assert results[EMAIL].startswith("error: SMTPNotSupportedError") and "STARTTLS" in results[EMAIL]
    assert smtp.received() == []
