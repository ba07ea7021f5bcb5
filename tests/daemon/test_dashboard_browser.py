"""The dashboard end to end in a real headless Chromium (Debian's, driven by Playwright): a 3-peer office.

Screenshots of every page go to .test-output/dashboard/ at the top of the checkout
(or $PEERBACKUP_TEST_OUTPUT/dashboard), kept after the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.daemon.harness import Office, wait_for
from tests.daemon.test_jobs import node_office
from tests.daemon.test_peerstore import NODE

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: apt-get install chromium (.ci/run does)"
    return found


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots() -> Path:
    out = Path(os.environ.get("PEERBACKUP_TEST_OUTPUT", ROOT / ".test-output")) / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    return out


LABELLED = "[...document.querySelectorAll('input, select')].every((e) => e.labels.length > 0)"


def test_dashboard_of_a_three_peer_office(office: Office, tmp_path: Path, browser: Browser, shots: Path) -> None:
    # ~108 MB for beta or gamma to back up, sent to 2 storage peers under a 40 MB/s upload limit: the job
    # lasts 5 s or more however fast the machine (CI once did it in 1.2 s, too fast for a heartbeat to
    # show). Heartbeats every 0.2 s; the dashboard's stream pushes running jobs every second.
    limit = ["--limit-upload", "40M"]
    (a, b, c), src, home = node_office(office, tmp_path, ["beta", "gamma"], 24, 4_000_000,
                                       timings={"progress_interval": "0.2"}, extra={"beta": limit, "gamma": limit})
    assert b.status()["limit_upload"] == 40 * 1024 * 1024
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1
             and a.status()["coordinator"] == a.peer_id, 20, "configuration, alpha coordinating")
    url = office.cli("ui", "--home", str(a.home)).out.strip()
    assert url.startswith("http://127.0.0.1:") and "#token=" in url
    page: Page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)

    office_page_keeps_the_token_and_shows_the_peers(page, shots)
    card, job = backup_from_the_page_followed_to_100(page, shots, src)
    snapshots_browsed(page, url, shots, src)
    restored_as_a_download_and_to_a_path(page, tmp_path, a.home, src)
    event_log_filtered(page, url, shots)
    schedule_and_grant_with_the_command_lines_checks(page, card, office, home)
    undo_asks_first(page, office, home, shots)
    assert not errors, errors
    assert job


def office_page_keeps_the_token_and_shows_the_peers(page: Page, shots: Path) -> None:
    """The token leaves the address bar at once and is kept in session storage, not in a cookie."""
    expect(page.locator("#peers tbody tr")).to_have_count(3)
    assert "token" not in page.url
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("sessionStorage.getItem('peerbackup-token')")
    expect(page.locator("#live")).to_have_text("live")
    for name in ("alpha", "beta", "gamma"):
        expect(page.locator(f"#peers tr[data-peer='{name}']")).to_contain_text("alive")
    expect(page.locator("#coordinator")).to_contain_text("alpha (term")
    expect(page.locator("main")).to_contain_text("No alert channel configured")
    page.screenshot(path=str(shots / "1-office.png"), full_page=True)


def backup_from_the_page_followed_to_100(page: Page, shots: Path, src: Path) -> tuple[Locator, str]:
    """Backup nodes: start a backup from the page and follow it to 100 %. The node's card and the job."""
    page.click("nav a[data-page='nodes']")
    card = page.locator(f"section[data-node='{NODE}']")
    expect(card).to_contain_text(str(src))
    page.screenshot(path=str(shots / "2-nodes.png"), full_page=True)
    card.locator("button[data-action='backup']").click()
    page.wait_for_url(re.compile(r".*#/job/.*"))
    job = page.url.split("#/job/")[1]
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = page.locator("#progress-text").text_content() or ""
        if not seen or seen[-1] != text:
            seen.append(text)
        if "done by" in text:
            break
        page.wait_for_timeout(50)
    assert "done by" in seen[-1] and seen[-1].startswith("100 %"), seen
    # The bar moved through the job's heartbeats before the end (files of the pre-counted whole).
    partial = [t for t in seen if re.match(r"\d+ % · \d+ of 24 files", t)]
    assert partial, seen
    assert not [t for t in seen if "undefined" in t or "-1" in t], seen
    assert "width: 100%" in (page.locator(".progress > div").get_attribute("style") or "")
    assert "width: 100%" in (page.locator(".progress > div").get_attribute("style") or "")
    expect(page.locator("tbody tr td:nth-child(3)", has_text="job.done")).to_have_count(1)
    page.screenshot(path=str(shots / "3-job.png"), full_page=True)
    return card, job


def snapshots_browsed(page: Page, url: str, shots: Path, src: Path) -> None:
    """Snapshots, and a folder of one, browsed."""
    page.goto(url.split("#")[0] + f"#/snapshots/{NODE}")
    rows = page.locator("#snapshots tbody tr")
    expect(rows).to_have_count(1)
    page.screenshot(path=str(shots / "4-snapshots.png"), full_page=True)
    rows.first.locator("a").click()
    for part in [p for p in str(src).split("/") if p]:
        page.locator(f"#tree tr[data-entry='{part}'] a").click()
    expect(page.locator("#tree tr[data-entry='dir0']")).to_have_count(1)
    page.screenshot(path=str(shots / "5-browse.png"), full_page=True)


def restored_as_a_download_and_to_a_path(page: Page, tmp_path: Path, admin_home: Path, src: Path) -> None:
    """Restore a file as a download, and a folder to a path under the restore root."""
    page.locator("#tree tr[data-entry='dir1'] a").click()
    first = sorted((src / "dir1").iterdir())[0]
    with page.expect_download() as dl:
        page.locator(f"#tree tr[data-entry='{first.name}'] button[data-action='download']").click()
    saved = tmp_path / "downloaded.bin"
    dl.value.save_as(saved)
    assert saved.read_bytes() == first.read_bytes()
    assert page.evaluate(LABELLED)  # every form field has a label
    page.fill("input[name='target']", "from-the-browser")
    page.click("text=Restore here")
    expect(page.locator("#toast")).to_contain_text("Restored")
    restored = admin_home / "restores" / "from-the-browser" / str(src / "dir1").lstrip("/")
    assert sorted(p.name for p in restored.iterdir()) == sorted(p.name for p in (src / "dir1").iterdir())
    assert all((restored / p.name).read_bytes() == p.read_bytes() for p in (src / "dir1").iterdir())
    page.fill("input[name='target']", "/etc")  # outside the root: refused, with the reason
    page.click("text=Restore here")
    expect(page.locator("#toast")).to_contain_text("restores go only below")


def event_log_filtered(page: Page, url: str, shots: Path) -> None:
    """The event log, filtered, updated live."""
    page.goto(url.split("#")[0] + f"#/log?node={NODE}&kind=job")
    log_rows = page.locator("#log tbody tr")
    expect(log_rows.first).to_be_visible()
    kinds = set(log_rows.locator("td:nth-child(3)").all_text_contents())
    assert kinds <= {"job.dispatched", "job.started", "job.done", "job.progress"} and "job.done" in kinds
    page.screenshot(path=str(shots / "6-log.png"), full_page=True)
    assert page.evaluate(LABELLED)


def schedule_and_grant_with_the_command_lines_checks(page: Page, card: Locator, office: Office,
                                                     home: list[str]) -> None:
    """Actions with the command line's checks: a schedule (a bad one refused with its reason), a grant."""
    page.click("nav a[data-page='nodes']")
    form = card.locator("form").nth(1)
    form.locator("input[name='spec']").fill("99 * * * *")
    form.locator("button").click()
    expect(page.locator("#toast")).to_contain_text("invalid cron expression")
    form.locator("input[name='spec']").fill("0 2 * * *")
    form.locator("input[name='tz']").fill("Europe/Paris")
    form.locator("button").click()
    expect(page.locator("#toast")).to_contain_text("Schedule added")
    listed = json.loads(office.cli("schedule", "list", "--json", *home).out)
    assert any(s.get("cron") == "0 2 * * *" and s.get("tz") == "Europe/Paris" for s in listed), listed
    # Revoke an agent and grant it again, by name, from the page.
    grant = card.locator("form").nth(0)
    grant.locator("input[name='agent']").fill("gamma")
    grant.locator("button[value='revoke']").click()
    expect(page.locator("#toast")).to_contain_text("Revoked gamma")
    expect(page.locator(f"section[data-node='{NODE}'] .agents")).to_have_text("beta")
    grant = page.locator(f"section[data-node='{NODE}'] form").nth(0)
    grant.locator("input[name='agent']").fill("gamma")
    grant.locator("button[value='grant']").click()
    expect(page.locator("#toast")).to_contain_text("Granted gamma")
    expect(page.locator(f"section[data-node='{NODE}'] .agents")).to_have_text("beta, gamma")
    assert page.evaluate(LABELLED)


def undo_asks_first(page: Page, office: Office, home: list[str], shots: Path) -> None:
    """Undo buttons ask first: dismissed, nothing happens; accepted, the schedule is paused."""
    row = page.locator(f"section[data-node='{NODE}'] tr[data-schedule]").first
    page.once("dialog", lambda d: d.dismiss())
    row.locator("button[data-action='pause']").click()
    page.wait_for_timeout(300)
    assert {s["state"] for s in json.loads(office.cli("schedule", "list", "--json", *home).out)} == {"active"}
    page.once("dialog", lambda d: d.accept())
    row.locator("button[data-action='pause']").click()
    expect(page.locator("#toast")).to_contain_text("paused")
    expect(page.locator(f"section[data-node='{NODE}'] tr[data-schedule] .state-paused")).to_have_count(1)
    expect(page.locator(f"section[data-node='{NODE}'] tr[data-schedule] button[data-action='resume']")).to_have_count(1)
    assert {s["state"] for s in json.loads(office.cli("schedule", "list", "--json", *home).out)} == {"paused"}
    page.screenshot(path=str(shots / "7-paused.png"), full_page=True)
