"""Alerts from daemons in one loop on a virtual clock to a webhook served by the same loop, DEFAULT
timings (alert rounds every 30 s).

Mirrors tests/daemon/test_alerts.py::test_a_dead_peer_is_alerted_once_even_across_a_coordinator_change
(real processes, FAST timings, peer_dead_after 2 s, fixed sleeps): here peer_dead_after is 120 virtual
seconds, and "not before" and "never again" are checked after clock steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peerbackup.core.alerts import OFFICE_ALERTS, AlertConfig
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import SETTINGS, three

AFTER = 120.0  # the alert's peer_dead_after: a member dead this long is alerted


def alert_records(m: Member) -> list[dict[str, Any]]:
    """The `alert.sent` events of the control log as `m` has it."""
    return [e for e in m.running.logs.listing() if e["kind"] == "alert.sent"]


@pytest.mark.timeout(120)
def test_a_dead_peer_is_alerted_once_after_peer_dead_after_even_across_a_coordinator_change(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await three(o)
        hook = await o.webhook()
        await o.until(lambda: a.running.coordination.status()[0] == a.peer_id, 3 * SETTINGS.lease, "alpha leads")
        cfg = AlertConfig.from_fields({"webhook": hook.url, "peer_dead_after": AFTER})
        await a.running.controls.logs.append(OFFICE_ALERTS, cfg.to_fields())
        await o.until(lambda: len({m.running.logs.state.config().digest() for m in everyone}) == 1,
                      3 * SETTINGS.heartbeat, "the alert configuration on every member")

        await o.stop(c)
        # Last heard at most a heartbeat before it stopped: dead `dead` after that, alerted `AFTER` later.
        await o.advance(SETTINGS.dead + AFTER - SETTINGS.heartbeat - 1)
        assert hook.posts == [], "alerted before gamma was dead for peer_dead_after"
        [post] = await o.until(lambda: hook.of_kind("peer_dead"), SETTINGS.heartbeat + SETTINGS.alert_interval + 2,
                               "the alert for gamma, at the next alert round")
        assert post["peer"] == c.peer_id and "Peer gamma" in post["message"] and post["office"] == "Acme"
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
        assert [(r["writer"], r["fields"]["peer"]) for r in alert_records(b)] == [
            (a.peer_id, c.peer_id), (b.peer_id, a.peer_id)]
        assert post_a["incident"] != post["incident"]

    print(f"alerts: {run_office(tmp_path, scenario, SETTINGS).summary()}")
