"""Prometheus metrics of a running office, scraped as Prometheus would and parsed by its client library."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.harness import Office, wait_for
from tests.daemon.test_peerstore import NODE, make_tree, start_office


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_of_an_office(office: Office, tmp_path: Path) -> None:
    port = free_port()
    a, b, c = start_office(office, ["beta", "gamma"], extra={"alpha": ["--metrics-listen", f"127.0.0.1:{port}"]})
    home = ["--home", str(a.home)]
    src = tmp_path / "shared"
    make_tree(src, 3, 300_000)
    office.cli("grant", NODE, "beta", *home)
    office.cli("dataset", "add", NODE, str(src), *home)
    wait_for(lambda: len({p.status()["config_digest"] for p in (a, b, c)}) == 1
             and a.status()["coordinator"] == a.peer_id, 20, "configuration, alpha coordinating")
    out = json.loads(office.cli("backup", NODE, "--wait", "--json", *home, timeout=120).out)
    assert out["state"] == "done"
    # The tables for people fit 80 columns.
    office.cli("schedule", "add", NODE, "--cron", "0 2 * * *", "--tz", "Europe/Paris", *home)
    for cmd in (["peers"], ["storage"], ["node", "list"], ["grants"], ["schedule", "list"], ["snapshots", NODE]):
        out = office.cli(*cmd, *home).out
        assert out.strip() and max(len(line) for line in out.splitlines()) <= 80, (cmd, out)
    url = f"http://127.0.0.1:{port}/metrics"
    m = scrape(url)
    names = {p.name: p.peer_id for p in (a, b, c)}
    for name, pid in names.items():
        assert m[("peerbackup_peer_up", (("name", name), ("peer", pid)))] == 1.0
        assert ("peerbackup_peer_storage_used_bytes", (("name", name), ("peer", pid))) in m
    node = (("node", NODE),)
    assert m[("peerbackup_node_snapshots", node)] == 1.0
    assert m[("peerbackup_node_under_replicated_files", node)] == 0.0
    assert m[("peerbackup_node_last_success_timestamp_seconds", node)] > 1.7e9
    assert m[("peerbackup_node_last_duration_seconds", node)] >= 0.0
    assert m[("peerbackup_node_last_bytes_added", node)] > 900_000
    assert m[("peerbackup_node_backup_failures_total", node)] == 0.0
    assert m[("peerbackup_coordinator_term", ())] >= 1.0 and m[("peerbackup_is_coordinator", ())] == 1.0
    # A backup that fails (its data set gone from the agent) is counted; a dead peer shows down.
    src.rename(tmp_path / "away")
    try:
        res = office.cli("backup", NODE, "--wait", "--json", *home, check=False, timeout=120)
    finally:
        (tmp_path / "away").rename(src)
    assert res.rc != 0 and f"{src}: missing on this machine" in res.err  # missing, not "not readable"
    office.kill(c)
    wait_for(lambda: scrape(url)[("peerbackup_peer_up", (("name", "gamma"), ("peer", names["gamma"])))] == 0.0,
             30, "gamma down in the metrics")
    assert scrape(url)[("peerbackup_node_backup_failures_total", node)] >= 1.0
    # The admin API's copy needs the token; the metrics listener serves nothing else.
    base = json.loads((a.home / "admin.json").read_text())["url"]
    try:
        urllib.request.urlopen(base + "/v1/metrics", timeout=10)
        raise AssertionError("metrics on the admin API without the token")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=10)
        raise AssertionError("the metrics listener answered another path")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
