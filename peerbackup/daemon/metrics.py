"""Prometheus metrics: what the office looks like from this peer, gathered at scrape time.

Exposition is prometheus-client's (text format, escaping, types), not ours. Served
on the admin API (`GET /v1/metrics`, with the token) and, when `metrics_listen` is
set (`up --metrics-listen`, or config.toml), on a listener of its own that serves
only `/metrics` and needs no token, so a Prometheus server can scrape it: the
figures name nodes and peers and count bytes, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from peerbackup.core.jobs import BACKUP, DONE, FAILED, PARTIAL
from peerbackup.core.nodelog import JOB_FAILED, JOB_UNSENT, node_log
from peerbackup.daemon.view import DaemonView
from peerbackup.errors import PeerBackupError

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Frozen(Collector):
    """Families computed before the scrape (the daemon's data is async; collect() is not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


async def render(view: DaemonView) -> bytes:
    """The exposition text of this peer's view of the office."""
    coordinator, term = view.coordinator()
    fams = await _peer_families(view)
    fams.append(GaugeMetricFamily("peerbackup_coordinator_term", "the coordinator's term as this peer knows it",
                                  value=float(term or 0)))
    fams.append(GaugeMetricFamily("peerbackup_is_coordinator", "1 on the coordinator",
                                  value=1.0 if coordinator == view.ident.peer_id else 0.0))
    fams += await _node_families(view)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Frozen(fams))
    return generate_latest(registry)


async def _peer_families(view: DaemonView) -> list[Metric]:
    up = _gauge("peerbackup_peer_up", "1 if the peer is alive as seen from here", ["peer", "name"])
    used = _gauge("peerbackup_peer_storage_used_bytes", "bytes a storage peer holds for the office", ["peer", "name"])
    quota = _gauge("peerbackup_peer_storage_quota_bytes", "a storage peer's quota (absent: none)", ["peer", "name"])
    for p in await view.peers():
        up.add_metric([p["peer_id"], p["name"]], 1.0 if p["state"] == "alive" else 0.0)
    try:
        report = await view.storage_report()
    except PeerBackupError:
        report = {"peers": []}
    for row in report["peers"]:
        if row.get("used") is not None:
            used.add_metric([row["peer_id"], row["name"]], float(row["used"]))
        if row.get("quota") is not None:
            quota.add_metric([row["peer_id"], row["name"]], float(row["quota"]))
    return [up, used, quota]


async def _node_families(view: DaemonView) -> list[Metric]:
    last_ok = _gauge("peerbackup_node_last_success_timestamp_seconds", "end of the node's last successful backup",
                     ["node"])
    duration = _gauge("peerbackup_node_last_duration_seconds", "how long the node's last successful backup took",
                      ["node"])
    added = _gauge("peerbackup_node_last_bytes_added", "new bytes the node's last successful backup stored", ["node"])
    result = _gauge("peerbackup_node_last_result",
                    "1 for how the node's last finished backup ended (done, partial or failed), 0 for the others",
                    ["node", "result"])
    failures = CounterMetricFamily("peerbackup_node_backup_failures",
                                   "backup attempts of the node that failed or that no agent could take",
                                   labels=["node"])
    snapshots = _gauge("peerbackup_node_snapshots", "snapshots of the node in the peer store", ["node"])
    short = _gauge("peerbackup_node_under_replicated_files", "files of the node with fewer copies than wanted",
                   ["node"])
    for name in sorted(view.nodes.nodes()):
        events = view.logs.state.ordered(node_log(name))
        jobs = view.jobs.job_states(name)
        ended = [st for st in jobs.values() if st.kind == BACKUP and st.state in (DONE, FAILED)]
        if ended:
            last_end = max(ended, key=lambda st: st.ended_ms).outcome
            for outcome in (DONE, PARTIAL, FAILED):
                result.add_metric([name, outcome], 1.0 if outcome == last_end else 0.0)
        # A success is a backup that took every file: a partial one saved its snapshots without some.
        done = [st for st in ended if st.outcome == DONE]
        if done:
            last = max(done, key=lambda st: st.ended_ms)
            last_ok.add_metric([name], last.ended_ms / 1000)
            if last.started_ms:
                duration.add_metric([name], max(last.ended_ms - last.started_ms, 0) / 1000)
            added.add_metric([name], float(last.result.get("added", 0) or 0))
        backup_jobs = {j for j, st in jobs.items() if st.kind == BACKUP}
        failures.add_metric([name], float(sum(1 for ev in events if ev.kind in (JOB_FAILED, JOB_UNSENT)
                                              and ev.fields.get("job") in backup_jobs)))
        try:
            scan = await view.node_scan(name)
        except PeerBackupError:
            continue
        snapshots.add_metric([name], float(scan["snapshots"]))
        short.add_metric([name], float(scan["under_replicated"]))
    return [last_ok, duration, added, result, failures, snapshots, short]
