"""Alerts from real daemons to a real HTTP receiver and a real SMTP server (aiosmtpd), both on loopback.

Each incident reaches each channel once, whatever the rounds, retries and coordinator changes;
every attempt is an `alert.sent` event in the office control log.

What stays here is the command line's part (`alerts set/show/test`: refusals, exit codes, output) with a
real delivery by both channels. The incidents themselves (a failed or missed slot, a webhook down then
back, a dead peer across a coordinator change, files left under-replicated) run in-process, with a
webhook and a mail relay served by the loop: tests/inproc/test_alerts.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.daemon.harness import Office, Peer, wait_for
from tests.receivers import SmtpReceiver, WebhookReceiver, smtp, webhook

__all__ = ["smtp", "webhook"]  # the fixtures, used by name below

FAST_ALERTS = {"alert_interval": "0.5"}


def set_alerts(office: Office, peer: Peer, hook: WebhookReceiver, mail: SmtpReceiver, *extra: str) -> None:
    office.cli("alerts", "set", "--webhook", hook.url, "--smtp", f"127.0.0.1:{mail.port}",
               "--mail-from", "backup@acme.example", "--mail-to", "it@acme.example", *extra,
               "--home", str(peer.home))


def alert_events(office: Office, peer: Peer, kind: str = "alert.sent") -> list[dict[str, Any]]:
    return [e for e in json.loads(office.cli("office", "log", "--json", "--home", str(peer.home)).out)
            if e["kind"] == kind]


def of_kind(hook: WebhookReceiver, kind: str) -> list[dict[str, Any]]:
    return [p for p in hook.received() if p["kind"] == kind]


@pytest.mark.timeout(120)
def test_alert_settings_are_checked_shown_and_tested(office: Office, webhook: WebhookReceiver,
                                                     smtp: SmtpReceiver) -> None:
    a = office.start(office.init("alpha"), mdns=False, timings=FAST_ALERTS)
    b = office.start(office.join("beta", office.invite(a)), "--peer", a.address, mdns=False, timings=FAST_ALERTS)
    home = ["--home", str(a.home)]
    refused = {
        ("--webhook", "ftp://example.org/x"): "the URL must start with http:// or https://",
        ("--smtp", "mail.example.org:99999"): "the port must be a number from 1 to 65535",
        ("--smtp", "127.0.0.1", "--mail-from", "b@acme.example"): "at least one recipient (--mail-to)",
        ("--smtp", "127.0.0.1", "--mail-from", "b@acme.example", "--mail-to", "it at acme"):
            "'it at acme' is not an e-mail address",
        ("--mail-to", "it@acme.example"): "need an SMTP server (--smtp HOST:PORT)",
        ("--webhook", "http://h/", "--peer-dead-after", "0s"): "peer-dead-after must be from 1 s to 30 days",
    }
    for args, message in refused.items():
        res = office.cli("alerts", "set", *args, *home, check=False)
        assert res.rc == 2 and message in res.err, (args, res.err)
    res = office.cli("alerts", "test", *home, check=False)
    assert res.rc == 2 and "no alert channel is configured" in res.err
    assert "off" in office.cli("alerts", "show", *home).out

    set_alerts(office, a, webhook, smtp, "--peer-dead-after", "30m")
    res = office.cli("alerts", "set", "--webhook", "http://h/", "--home", str(b.home), check=False)
    assert res.rc == 1 and "does not hold the office key" in res.err  # beta is not an admin
    wait_for(lambda: json.loads(office.cli("alerts", "show", "--json", "--home", str(b.home)).out)["config"]
             ["channels"] == ["webhook", "email"], 20, "the configuration on beta")
    cfg = json.loads(office.cli("alerts", "show", "--json", "--home", str(b.home)).out)["config"]
    assert (cfg["webhook"], cfg["smtp_port"], cfg["mail_to"], cfg["peer_dead_after"]) == (
        webhook.url, smtp.port, ["it@acme.example"], 1800)
    shown = office.cli("alerts", "show", *home).out
    assert f"via 127.0.0.1:{smtp.port}, from backup@acme.example to it@acme.example" in shown
    assert "alert after 30 min" in shown

    out = office.cli("alerts", "test", *home).out
    assert "email    ok" in out and "webhook  ok" in out
    [post] = webhook.received()
    assert post["kind"] == "test" and "Test alert from alpha" in post["message"]
    [(_, _, msg)] = smtp.received()
    assert msg["Subject"] == f"[peerbackup Acme] test alert: {a.peer_id}"
    [rec] = alert_events(office, a)
    assert rec["fields"]["kind"] == "test" and rec["fields"]["results"] == {"webhook": "ok", "email": "ok"}
    # A test through a webhook that is down says so, and fails the command.
    webhook.stop()
    res = office.cli("alerts", "test", "--json", *home, check=False)
    assert res.rc == 1
    results = json.loads(res.out)["results"]
    assert results["email"] == "ok" and results["webhook"].startswith("error: ClientConnectorError")
