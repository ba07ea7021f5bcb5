"""Alerts from real daemons to a real HTTP receiver and a real SMTP server (aiosmtpd), both on loopback.

Each incident reaches each channel once, whatever the rounds, retries and coordinator changes;
every attempt is an `alert.sent` event in the office control log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import Office, Peer, node_log, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE, make_tree, repo, start_office
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


@pytest.mark.timeout(180)
def test_a_scheduled_backup_that_fails_is_alerted_once(office: Office, tmp_path: Path, webhook: WebhookReceiver,
                                                       smtp: SmtpReceiver) -> None:
    # Storage peers with almost no room: every backup fails to store its pack, a real failure.
    tiny = ["--storage-quota", "2K"]
    (a, _b), _src, home = node_office(office, tmp_path, ["beta"], 1, 100_000, replicas=1,
                                      extra={"alpha": tiny, "beta": tiny}, timings=FAST_ALERTS)
    set_alerts(office, a, webhook, smtp)
    office.cli("schedule", "add", NODE, "--every", "10s", "--window", "2h", "--retries", "1", "--retry-delay", "1s",
               *home)
    # The first slot fails, is retried once, fails again: then, and only then, the alert.
    [post] = wait_for(lambda: webhook.received(), 60, "the webhook POST")
    assert post["kind"] == "backup_failed" and post["node"] == NODE and post["office"] == "Acme"
    assert "failed after 2 attempts" in post["message"] and post["incident"].startswith(f"backup:{NODE}/")
    [(_, rcpt, msg)] = wait_for(lambda: smtp.received(), 20, "the e-mail")
    assert rcpt == ["it@acme.example"] and msg["X-Peerbackup-Incident"] == post["incident"]
    assert post["message"] in msg.get_content()

    def failed_slots() -> set[object]:
        evs = node_log(home, NODE)
        return {e["job"] for e in evs if e["kind"] == "job.failed"}

    # The next slot fails the same way: still the same incident, nothing more is sent.
    wait_for(lambda: len(failed_slots()) >= 2, 40, "a second slot failed")
    time.sleep(3)
    assert len(webhook.received()) == 1 and len(smtp.received()) == 1
    [rec] = alert_events(office, a)
    assert rec["writer"] == a.peer_id  # the coordinator
    assert rec["fields"]["incident"] == post["incident"] and rec["fields"]["results"] == {"webhook": "ok",
                                                                                          "email": "ok"}
    shown = json.loads(office.cli("alerts", "show", "--json", *home).out)
    assert [(i["incident"], i["delivered"], i["resolved"]) for i in shown["incidents"]] == [
        (post["incident"], ["email", "webhook"], None)]


@pytest.mark.timeout(180)
def test_a_missed_slot_is_alerted_and_a_webhook_that_was_down_gets_it_later(
        office: Office, tmp_path: Path, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    (a, b), _src, home = node_office(office, tmp_path, ["beta"], 1, 10_000, replicas=1, timings=FAST_ALERTS)
    webhook.stop()  # the office's chat is down for now
    set_alerts(office, a, webhook, smtp)
    office.kill(b)  # the only agent: no slot can run
    wait_for(lambda: a.peers()["beta"]["state"] == "dead", 20, "beta dead")
    office.cli("schedule", "add", NODE, "--every", "4s", "--window", "2s", *home)
    [(_, _, msg)] = wait_for(lambda: smtp.received(), 40, "the e-mail")
    assert "backup missed" in msg["Subject"] and "no backup started within its 2 s window" in msg.get_content()
    # The webhook's failure is logged, and retried (with back-off) while it is down.
    wait_for(lambda: len(alert_events(office, a)) >= 2, 20, "a retry of the webhook")
    first, retry = alert_events(office, a)[:2]
    assert first["fields"]["results"]["email"] == "ok"
    assert first["fields"]["results"]["webhook"].startswith("error: ClientConnectorError")
    assert list(retry["fields"]["results"]) == ["webhook"] and retry["fields"]["attempt"] == 2
    webhook.start()  # back, on the same address
    [post] = wait_for(lambda: webhook.received(), 30, "the webhook POST once it is back")
    assert post["kind"] == "backup_missed" and post["incident"] == first["fields"]["incident"]
    assert post["attempt"] >= 2
    time.sleep(3)  # later slots are missed too: the same incident, nothing more to anyone
    assert len(webhook.received()) == 1 and len(smtp.received()) == 1
    records = alert_events(office, a)
    assert records[-1]["fields"]["results"] == {"webhook": "ok"}
    assert {r["fields"]["incident"] for r in records} == {post["incident"]}


@pytest.mark.timeout(180)
def test_a_dead_peer_is_alerted_once_even_across_a_coordinator_change(
        office: Office, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    a, b, c = start_office(office, ["beta", "gamma"], timings=FAST_ALERTS)
    set_alerts(office, a, webhook, smtp, "--peer-dead-after", "2s")
    wait_for(lambda: b.status()["config_digest"] == a.status()["config_digest"], 20, "the configuration on beta")
    gamma = c.peer_id
    office.kill(c)
    [post] = wait_for(lambda: of_kind(webhook, "peer_dead"), 30, "the alert for gamma")
    assert post["peer"] == gamma and "Peer gamma" in post["message"]
    wait_for(lambda: len(smtp.received()) == 1, 20, "its e-mail")
    # Recorded in the control log, which beta holds too; then the coordinator (alpha) dies.
    wait_for(lambda: alert_events(office, b), 20, "the alert.sent event on beta")
    alpha = a.peer_id
    office.kill(a)
    wait_for(lambda: b.status()["coordinator"] == b.peer_id, 30, "beta coordinator")
    # Beta alerts alpha's death (a new incident), never gamma's again.
    [post_a] = wait_for(lambda: [p for p in of_kind(webhook, "peer_dead") if p["peer"] == alpha], 30,
                        "the alert for alpha, from beta")
    time.sleep(3)
    assert sorted(p["peer"] for p in of_kind(webhook, "peer_dead")) == sorted([gamma, alpha])
    assert len(smtp.received()) == 2
    records = alert_events(office, b)
    assert [(r["writer"], r["fields"]["peer"]) for r in records] == [(alpha, gamma), (b.peer_id, alpha)]
    assert post_a["incident"] != post["incident"]


@pytest.mark.timeout(180)
def test_files_that_stay_under_replicated_are_alerted_once(office: Office, tmp_path: Path,
                                                           webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    # gamma holds half the copies and dies; the repair would copy them to alpha, which has no room for a pack.
    timings = {**FAST_ALERTS, "repair_interval": "1", "repair_grace": "1"}
    a, _b, c = start_office(office, ["beta", "gamma"], timings=timings, extra={"alpha": ["--storage-quota", "2K"]})
    set_alerts(office, a, webhook, smtp, "--under-replicated-after", "2s")
    make_tree(tmp_path / "src", 2, 20_000)
    repo(office, a, "backup", str(tmp_path / "src"))  # packs on beta and gamma: the writer keeps none
    office.kill(c)
    [post] = wait_for(lambda: of_kind(webhook, "under_replicated"), 40, "the under-replication alert")
    assert post["node"] == NODE and f"of backup node {NODE} have had fewer than 2 live copies" in post["message"]
    time.sleep(4)  # more repair rounds, the same files still short
    assert len(webhook.received()) == 1 and len(wait_for(lambda: smtp.received(), 10, "the e-mail")) == 1


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
