"""Honest results, with real daemons: a backup that could not take every file is partial everywhere it
is shown; `dataset add` asks the agents whether the folder is there; `storage` says when it has not
checked yet."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from peerbackup.net.proto import probe
from tests.daemon.harness import Office, node_log, wait_for
from tests.daemon.test_alerts import FAST_ALERTS, alert_events, of_kind, set_alerts
from tests.daemon.test_dashboard_browser import browser
from tests.daemon.test_jobs import node_office
from tests.daemon.test_metrics import free_port, scrape
from tests.daemon.test_peerstore import NODE, start_office
from tests.daemon.test_storage import call
from tests.helpers import unopenable
from tests.receivers import SmtpReceiver, WebhookReceiver, smtp, webhook

__all__ = ["browser", "smtp", "webhook"]  # the fixtures, used by name below

AMBER = "rgb(181, 71, 8)"  # --warn in app.css


@pytest.mark.timeout(240)
def test_a_backup_that_cannot_take_every_file_is_partial_everywhere(
        office: Office, tmp_path: Path, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    port = free_port()
    (a, _b), src, home = node_office(office, tmp_path, ["beta"], 3, 100_000, replicas=1, timings=FAST_ALERTS,
                                     extra={"alpha": ["--metrics-listen", f"127.0.0.1:{port}"]})
    later = tmp_path / "scans"  # a second data set, to appear later on the agent
    office.cli("dataset", "add", NODE, str(later), "--allow-missing", *home)
    locked = src / "locked.db"
    with contextlib.ExitStack() as fixed:
        fixed.enter_context(unopenable(locked))  # open() refuses it, as root too
        wait_for(lambda: a.status()["coordinator"], 20, "a coordinator")

        # backup --wait: exit 3, the snapshot saved, and what it lacks with why.
        res = office.cli("backup", NODE, "--wait", "--json", *home, check=False, timeout=120)
        assert res.rc == 3, (res.out, res.err)
        out = json.loads(res.out)
        assert out["state"] == "partial" and len(out["snapshots"]) == 1 and out["failures"] == 2
        assert sorted((f["path"], f["reason"]) for f in out["failed"]) == sorted([
            (str(locked), "permission denied"), (str(later), "missing")])
        res = office.cli("backup", NODE, "--wait", *home, check=False, timeout=120)
        assert res.rc == 3 and "\npartial: snapshot " in res.out
        assert "partial: 2 file(s) or data set(s) could not be backed up: 1 missing, 1 permission denied" in res.err
        assert f"    permission denied: {locked}" in res.err and f"    missing: {later}" in res.err

        # The node's log has it in the job.done (on every peer: it is replicated), with the paths.
        ends = [e for e in node_log(home, NODE) if e["kind"] == "job.done"]
        assert [(e["result"], e["failures"]) for e in ends] == [("partial", 2), ("partial", 2)]
        text = office.cli("log", NODE, *home).out
        assert "result=partial" in text and f"    permission denied: {locked}" in text
        # Snapshots: the one with a file it could not read says so.
        snaps = json.loads(office.cli("snapshots", NODE, "--json", *home).out)
        assert [s["result"] for s in snaps] == ["partial", "partial"]
        assert "partial (1)" in office.cli("snapshots", NODE, *home).out
        # Metrics and the dashboard.
        m = scrape(f"http://127.0.0.1:{port}/metrics")
        assert {r: m[("peerbackup_node_last_result", (("node", NODE), ("result", r)))]
                for r in ("done", "partial", "failed")} == {"done": 0.0, "partial": 1.0, "failed": 0.0}
        assert ("peerbackup_node_last_success_timestamp_seconds", (("node", NODE),)) not in m  # none took all
        code, nodes = a.api("GET", "/v1/ui/nodes")
        assert code == 200 and nodes[0]["last_result"] == "partial" and nodes[0]["last_failures"] == 2
        assert {f["path"] for f in nodes[0]["last_failed"]} == {str(locked), str(later)}

        # Scheduled: one alert for the streak of partial slots, however many there are.
        set_alerts(office, a, webhook, smtp)
        office.cli("schedule", "add", NODE, "--every", "10s", "--window", "2h", *home)
        [post] = wait_for(lambda: of_kind(webhook, "backup_partial"), 60, "the partial-backup alert")
        assert post["node"] == NODE and post["incident"].startswith(f"backup_partial:{NODE}:")
        assert "1 missing, 1 permission denied" in post["message"] and str(locked) in post["message"]
        [(_, _, mail)] = wait_for(lambda: smtp.received(), 20, "the e-mail")
        assert mail["Subject"] == f"[peerbackup Acme] backup left files out: {NODE}"

        def scheduled_ends() -> list[dict[str, Any]]:
            events = node_log(home, NODE)
            slots = {e["job"] for e in events if e["kind"] == "job.dispatched" and "schedule" in e}
            return [e for e in events if e["kind"] == "job.done" and e["job"] in slots]

        wait_for(lambda: len(scheduled_ends()) >= 2, 40, "a second partial slot")
        time.sleep(2)
        assert len(of_kind(webhook, "backup_partial")) == 1 and len(smtp.received()) == 1
    # The file readable again and the folder there: the next slot takes everything and ends the incident.
    later.mkdir()
    (later / "scan1.pdf").write_bytes(b"%PDF")
    wait_for(lambda: [e for e in scheduled_ends() if e.get("result") == "done"], 40, "a full scheduled backup")
    wait_for(lambda: alert_events(office, a, "alert.resolved"), 20, "the incident resolved")
    assert [e["fields"]["incident"] for e in alert_events(office, a, "alert.resolved")] == [post["incident"]]
    m = scrape(f"http://127.0.0.1:{port}/metrics")
    assert m[("peerbackup_node_last_result", (("node", NODE), ("result", "done")))] == 1.0
    assert len(of_kind(webhook, "backup_partial")) == 1


def test_dataset_add_asks_the_granted_agents_whether_the_folder_is_there(office: Office, tmp_path: Path) -> None:
    a, b, c = start_office(office, ["beta", "gamma"], replicas=1)
    home = ["--home", str(a.home)]
    here = tmp_path / "shared"
    here.mkdir()

    def refused(path: Path, *extra: str) -> str:
        res = office.cli("dataset", "add", NODE, str(path), *extra, *home, check=False)
        assert res.rc == 2, (res.out, res.err)
        return res.err

    # No agent: nobody can say; the way out is named.
    err = refused(here)
    assert "no agent of backup node accounts is granted" in err and "--allow-missing" in err
    office.cli("grant", NODE, "beta", "gamma", *home)
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1, 20, "the grants everywhere")
    # Each agent is asked and named, with what it found.
    err = refused(tmp_path / "not-yet")
    assert "Asked: beta: missing (no such folder here); gamma: missing (no such folder here)" in err
    (tmp_path / "notes.txt").write_text("a file")
    assert "beta: not a directory" in refused(tmp_path / "notes.txt", "--on", "beta")
    office.kill(c)
    wait_for(lambda: a.peers()["gamma"]["state"] == "dead", 30, "gamma dead")
    assert "gamma: not asked, it is not alive" in refused(here, "--on", "gamma")
    # A folder an agent has is added; one that will appear later, with --allow-missing.
    office.cli("dataset", "add", NODE, str(here), *home)
    office.cli("dataset", "add", NODE, str(tmp_path / "not-yet"), "--allow-missing", *home)
    shown = json.loads(office.cli("node", "show", NODE, "--json", *home).out)
    assert [d["path"] for d in shown["datasets"]] == sorted([str(here), str(tmp_path / "not-yet")])
    # An agent answers only an admin, and only for a node it is granted.
    body = probe.PathCheck(NODE, str(here)).to_wire()
    assert call(b, b, probe.PATH, body, raw=True)[0] == "forbidden"  # beta is no admin
    assert probe.PathState.from_wire(call(a, b, probe.PATH, body, raw=True)) == probe.PathState("ok")
    code, msg = call(a, b, probe.PATH, probe.PathCheck("other", "/").to_wire(), raw=True)
    assert code == "forbidden" and "not a granted agent" in msg


def test_storage_says_not_checked_until_a_repair_round_has_run(office: Office, tmp_path: Path) -> None:
    a, _b, _c = start_office(office, ["beta", "gamma"])  # default repair_interval: no round for 10 min
    home = ["--home", str(a.home)]
    report = json.loads(office.cli("storage", "--json", *home).out)
    assert report["under_replicated"] is None and report["last_repair"] is None
    assert "under-replicated files: not checked yet" in office.cli("storage", *home).out
    report = json.loads(office.cli("storage", "--json", "--repair-now", *home).out)
    assert report["under_replicated"] == 0 and report["last_repair"]["nodes"][NODE]["files"] == 0
    assert "under-replicated files: 0" in office.cli("storage", *home).out


def test_the_dashboard_shows_a_partial_backup_in_amber_with_its_paths(office: Office, tmp_path: Path,
                                                                       browser: Browser) -> None:
    (a, _b), src, home = node_office(office, tmp_path, ["beta"], 2, 10_000, replicas=1)
    locked = src / "locked.db"
    with unopenable(locked):
        wait_for(lambda: a.status()["coordinator"], 20, "a coordinator")
        res = office.cli("backup", NODE, "--wait", "--json", *home, check=False, timeout=120)
    assert res.rc == 3, res.err
    job = json.loads(res.out)["job"]
    url = office.cli("ui", *home).out.strip()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.goto(url.split("#")[0] + f"#/job/{job}")
    text = page.locator("#progress-text")
    expect(text).to_contain_text("partial · done by beta")
    expect(text).to_contain_text("but 1 file(s) or data set(s) could not be backed up")
    assert text.evaluate("e => getComputedStyle(e).color") == AMBER
    expect(page.locator("#failed li")).to_have_text([f"permission denied {locked}"])
    page.goto(url.split("#")[0] + "#/nodes")
    card = page.locator(f"section[data-node='{NODE}']")
    badge = card.locator(".kv .badge.state-partial").first
    expect(badge).to_have_text("partial")
    assert badge.evaluate("e => getComputedStyle(e).color") == AMBER
    expect(card.locator("ul.last-failed li")).to_have_text([f"permission denied {locked}"])
    assert errors == []
