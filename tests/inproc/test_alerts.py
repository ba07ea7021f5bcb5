"""Alerts from daemons in one loop on a virtual clock to a webhook and a mail relay served by the same
loop, DEFAULT timings (alert rounds every 30 s).

Mirror tests/daemon/test_alerts.py's scenarios (real processes, FAST timings, thresholds of 2 s, fixed
sleeps): here thresholds are minutes of virtual time, and "not before" and "never again" are checked
after clock steps. The command line's part (`alerts set/show/test`) stays in tests/daemon/test_alerts.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from peerbackup.core.schedule import Schedule
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.mail import MAIL_TO, Mailbox, alert_records, alerts_to
from tests.inproc.scenarios import NODE, SETTINGS, first_slot, node_events, node_office, three
from tests.inproc.store import backup, held

AFTER = 120.0  # peer_dead_after, under_replicated_after: a member dead, files short this long are alerted


@pytest.mark.timeout(120)
def test_a_dead_peer_is_alerted_once_after_peer_dead_after_even_across_a_coordinator_change(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_alerts.py::test_a_dead_peer_is_alerted_once_even_across_a_coordinator_change."""

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await three(o)
        hook, mail = await o.webhook(), await Mailbox().start()
        await o.until(lambda: a.running.coordination.status()[0] == a.peer_id, 3 * SETTINGS.lease, "alpha leads")
        await alerts_to(o, a, hook, mail, peer_dead_after=AFTER)

        await o.stop(c)
        # Last heard at most a heartbeat before it stopped: dead `dead` after that, alerted `AFTER` later.
        await o.advance(SETTINGS.dead + AFTER - SETTINGS.heartbeat - 1)
        assert hook.posts == [], "alerted before gamma was dead for peer_dead_after"
        [post] = await o.until(lambda: hook.of_kind("peer_dead"), SETTINGS.heartbeat + SETTINGS.alert_interval + 2,
                               "the alert for gamma, at the next alert round")
        assert post["peer"] == c.peer_id and "Peer gamma" in post["message"] and post["office"] == "Acme"
        [(_, rcpt, msg)] = await o.until(lambda: mail.messages, SETTINGS.request_timeout, "its e-mail")
        assert rcpt == [MAIL_TO] and msg["X-Peerbackup-Incident"] == post["incident"]
        await o.until(lambda: alert_records(b), 3 * SETTINGS.heartbeat, "the alert.sent event on beta")

        await o.stop(a)
        t1 = o.now()
        await o.until(lambda: b.running.coordination.status()[0] == b.peer_id, SETTINGS.lease + SETTINGS.dead,
                      "beta coordinator")
        # Beta alerts alpha's death (a new incident), never gamma's again.
        due = t1 + SETTINGS.dead + AFTER + SETTINGS.alert_interval + 2
        [post_a] = await o.until(lambda: [p for p in hook.of_kind("peer_dead") if p["peer"] == a.peer_id],
                                 due - o.now(), "the alert for alpha, from beta")
        await o.advance(3 * SETTINGS.alert_interval)
        assert sorted(p["peer"] for p in hook.posts) == sorted([c.peer_id, a.peer_id]), "an incident alerted twice"
        assert [m["X-Peerbackup-Incident"] for _, _, m in mail.messages] == [post["incident"], post_a["incident"]]
        assert [(r["writer"], r["fields"]["peer"]) for r in alert_records(b)] == [
            (a.peer_id, c.peer_id), (b.peer_id, a.peer_id)]
        assert post_a["incident"] != post["incident"]
        await mail.stop()

    print(f"alerts: {run_office(tmp_path, scenario, SETTINGS).summary()}")


EVERY = 60.0  # the product's shortest schedule interval (min_schedule_interval)


def failed_slots(a: Member) -> set[object]:
    return {e["job"] for e in node_events(a, "job.failed")}


@pytest.mark.timeout(120)
def test_a_scheduled_backup_that_fails_is_alerted_once_after_its_last_retry(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_alerts.py::test_a_scheduled_backup_that_fails_is_alerted_once."""

    async def scenario(o: InprocOffice) -> None:
        # Storage peers with almost no room: every backup fails to store its pack, a real failure.
        a, _b = await node_office(o, ["beta"], replicas=1, storage_quota=2048)
        hook, mail = await o.webhook(), await Mailbox().start()
        await alerts_to(o, a, hook, mail)
        # Slots 5 minutes apart, each retried once 2 alert rounds after it failed.
        every, delay = 5 * EVERY, 2 * SETTINGS.alert_interval
        await a.running.controls.nodes.add_schedule(NODE, Schedule(
            id="", node=NODE, every=every, window=2 * 3600, retries=1, retry_delay=delay))
        slot = first_slot(o, every)
        await o.until(lambda: failed_slots(a), slot - o.now() + SETTINGS.request_timeout, "the slot's first failure")
        await o.advance(delay - SETTINGS.heartbeat)
        assert hook.posts == [], "alerted before the slot's retry"
        # The first slot fails, is retried once, fails again: then, and only then, the alert.
        due = slot + delay + 2 * SETTINGS.request_timeout + SETTINGS.alert_interval
        [post] = await o.until(lambda: hook.posts, due - o.now(), "the webhook POST")
        assert post["kind"] == "backup_failed" and post["node"] == NODE and post["office"] == "Acme"
        assert "failed after 2 attempts" in post["message"] and post["incident"].startswith(f"backup:{NODE}/")
        [(_, rcpt, msg)] = await o.until(lambda: mail.messages, SETTINGS.request_timeout, "the e-mail")
        assert rcpt == [MAIL_TO] and msg["X-Peerbackup-Incident"] == post["incident"]
        assert post["message"] in msg.get_content() and "backup failed" in msg["Subject"]
        # The next slot fails the same way: still the same incident, nothing more is sent.
        await o.until(lambda: len(failed_slots(a)) >= 2, every + delay + 2 * SETTINGS.request_timeout,
                      "a second slot failed")
        await o.advance(3 * SETTINGS.alert_interval)
        assert len(hook.posts) == 1 and len(mail.messages) == 1, "the same incident alerted again"
        [rec] = alert_records(a)
        assert rec["writer"] == a.peer_id  # the coordinator
        assert rec["fields"]["incident"] == post["incident"]
        assert rec["fields"]["results"] == {"webhook": "ok", "email": "ok"}
        shown = [i.describe() for i in a.running.controls.alerts.incidents().values()]
        assert [(i["incident"], i["delivered"], i["resolved"]) for i in shown] == [
            (post["incident"], ["email", "webhook"], None)]
        await mail.stop()

    print(f"failed: {run_office(tmp_path, scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_a_missed_slot_is_mailed_and_a_webhook_that_was_down_gets_it_on_a_retry(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_alerts.py::test_a_missed_slot_is_alerted_and_a_webhook_that_was_down_gets_it_later."""

    async def scenario(o: InprocOffice) -> None:
        a, b = await node_office(o, ["beta"], replicas=1)
        hook, mail = await o.webhook(), await Mailbox().start()
        await hook.stop()  # the office's chat is down for now
        await alerts_to(o, a, hook, mail)
        await o.stop(b)  # the only agent: no slot can run

        async def beta_dead() -> bool:
            return any(p["name"] == "beta" and p["state"] == "dead" for p in await a.running.view.peers())

        await o.until(beta_dead, SETTINGS.dead + 2 * SETTINGS.heartbeat, "beta dead")
        window = EVERY / 2
        await a.running.controls.nodes.add_schedule(NODE, Schedule(id="", node=NODE, every=EVERY, window=window))
        due = first_slot(o, EVERY) + window + SETTINGS.alert_interval + SETTINGS.request_timeout
        [(_, _, msg)] = await o.until(lambda: mail.messages, due - o.now(), "the e-mail")
        assert "backup missed" in msg["Subject"] and "no backup started within its 30 s window" in msg.get_content()
        # The webhook's failure is logged, and retried (a round later) while it is down.
        await o.until(lambda: len(alert_records(a)) >= 2, 2 * SETTINGS.alert_interval, "a retry of the webhook")
        first, retry = alert_records(a)[:2]
        assert first["fields"]["results"]["email"] == "ok"
        assert first["fields"]["results"]["webhook"].startswith("error: ClientConnectorError")
        assert list(retry["fields"]["results"]) == ["webhook"] and retry["fields"]["attempt"] == 2
        await hook.start()  # back, on the same address
        [post] = await o.until(lambda: hook.posts, 8 * SETTINGS.alert_interval, "the webhook POST once it is back")
        assert post["kind"] == "backup_missed" and post["incident"] == first["fields"]["incident"]
        assert post["attempt"] >= 2
        await o.advance(3 * EVERY)  # later slots are missed too: the same incident, nothing more to anyone
        assert len(hook.posts) == 1 and len(mail.messages) == 1, "the same incident alerted again"
        records = alert_records(a)
        assert records[-1]["fields"]["results"] == {"webhook": "ok"}
        assert {r["fields"]["incident"] for r in records} == {post["incident"]}
        await mail.stop()

    print(f"missed: {run_office(tmp_path, scenario, SETTINGS).summary()}")


REPAIR = dataclasses.replace(SETTINGS, repair_interval=60.0, repair_grace=120.0)  # rounds of minutes, not hours


@pytest.mark.timeout(120)
def test_files_that_stay_under_replicated_are_alerted_once(tmp_path: Path) -> None:
    """Mirrors tests/daemon/test_alerts.py::test_files_that_stay_under_replicated_are_alerted_once."""

    async def scenario(o: InprocOffice) -> None:
        a, *_ = everyone = await node_office(o, ["beta", "gamma"], replicas=2, files=2, size=20_000)
        hook, mail = await o.webhook(), await Mailbox().start()
        await alerts_to(o, a, hook, mail, under_replicated_after=AFTER)
        done = await backup(o, a)  # packs on alpha and the other agent: the writer keeps none
        w = next(m for m in everyone if m.peer_id == done["writer"])
        holder = next(m for m in everyone[1:] if m is not w)
        assert held(holder) and held(a) and not held(w)
        # The holder dies; the repair would copy its packs to the writer, which has no room for one now.
        await o.stop(w)
        w.storage_quota = 2048
        await o.start(w)
        await o.stop(holder)
        t0 = o.now()
        await o.advance(REPAIR.repair_grace + AFTER - SETTINGS.heartbeat - 1)
        assert hook.posts == [], "alerted before the files were short for under_replicated_after"
        due = t0 + REPAIR.repair_grace + REPAIR.repair_interval + AFTER + REPAIR.alert_interval + 2
        [post] = await o.until(lambda: hook.of_kind("under_replicated"), due - o.now(), "the under-replication alert")
        assert post["node"] == NODE and f"of backup node {NODE} have had fewer than 2 live copies" in post["message"]
        [(_, _, msg)] = await o.until(lambda: mail.messages, SETTINGS.request_timeout, "the e-mail")
        assert msg["X-Peerbackup-Incident"] == post["incident"]
        await o.advance(3 * REPAIR.repair_interval)  # more repair rounds, the same files still short
        assert len(hook.posts) == 1 and len(mail.messages) == 1, "the same incident alerted again"
        assert a.running.controls.repair.last_round["nodes"][NODE]["under_replicated"] > 0
        await mail.stop()

    print(f"under-replicated: {run_office(tmp_path, scenario, REPAIR).summary()}")
