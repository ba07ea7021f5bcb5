"""Honest results, with real daemons: what the command line and the dashboard show of a backup that could
not take every file, and `storage` before a repair round.

The scenarios themselves (partial on every peer, in the metrics and the dashboard's API, alerted once per
streak of scheduled slots; `dataset add` asking the agents; `storage` not checked yet) run in-process:
tests/inproc/test_results.py. What stays here is the command line's own output (exit 3, its listing of
what was left out, `log`, `snapshots`, `storage` in text) and the dashboard in a browser.
"""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.daemon.harness import Office, wait_for
from tests.daemon.test_dashboard_browser import browser
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE
from tests.helpers import unopenable

__all__ = ["browser"]  # the fixture, used by name below

AMBER = "rgb(181, 71, 8)"  # --warn in app.css


def cli_shows_a_partial_backup(office: Office, home: list[str], locked: Path) -> None:
    """`backup --wait` in text, `log` and `snapshots` of a node whose backup could not read `locked`."""
    res = office.cli("backup", NODE, "--wait", *home, check=False, timeout=120)
    assert res.rc == 3 and "\npartial: snapshot " in res.out, (res.out, res.err)
    assert "partial: 1 file(s) or data set(s) could not be backed up: 1 permission denied" in res.err
    assert f"    permission denied: {locked}" in res.err
    text = office.cli("log", NODE, *home).out
    assert "result=partial" in text and f"    permission denied: {locked}" in text
    assert "partial (1)" in office.cli("snapshots", NODE, *home).out
    office.cli("storage", "--repair-now", *home)
    assert "under-replicated files: 0" in office.cli("storage", *home).out


def test_the_dashboard_shows_a_partial_backup_in_amber_with_its_paths(office: Office, tmp_path: Path,
                                                                       browser: Browser) -> None:
    (a, _b), src, home = node_office(office, tmp_path, ["beta"], 2, 10_000, replicas=1)
    # Before a repair round (default interval: none for 10 min), `storage` says so rather than a reassuring 0.
    assert "under-replicated files: not checked yet" in office.cli("storage", *home).out
    locked = src / "locked.db"
    with unopenable(locked):
        wait_for(lambda: a.status()["coordinator"], 20, "a coordinator")
        res = office.cli("backup", NODE, "--wait", "--json", *home, check=False, timeout=120)
        assert res.rc == 3, res.err  # exit 3: the snapshot saved, and what it lacks with why
        out = json.loads(res.out)
        assert out["state"] == "partial" and len(out["snapshots"]) == 1 and out["failures"] == 1
        assert [(f["path"], f["reason"]) for f in out["failed"]] == [(str(locked), "permission denied")]
        cli_shows_a_partial_backup(office, home, locked)
    job = out["job"]
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
