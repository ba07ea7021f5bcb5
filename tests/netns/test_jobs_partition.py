"""Scheduled backups across a partition: each side's coordinator runs the slots on its side, at most one
extra snapshot per slot, and the node's logs merge on heal."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.harness import wait_for
from tests.daemon.test_peerstore import make_tree
from tests.netns.lan import LEASE, Lan, NetOffice, agreed

pytestmark = pytest.mark.timeout(240)
NODE = "accounts"


def node_log(office: NetOffice, n: Any) -> list[dict[str, Any]]:
    return list(office.cli(n.host, "log", NODE, "--home", str(n.home), "--json").json())


def test_partition_each_side_runs_its_slots_and_logs_merge(make_lan: Callable[[int], Lan], office: NetOffice,
                                                           tmp_path: Path) -> None:
    lan = make_lan(3)
    h1, h2, h3 = lan.hosts
    a = office.start(office.init("alpha", h1))
    b, c = office.join_all(a, ("beta", h2, ("--rank", "10")), ("gamma", h3, ("--rank", "20")))
    office.start_all(b, c)
    nodes = [a, b, c]
    wait_for(lambda: agreed(office, nodes, a), 25, "alpha coordinating everyone")
    src = tmp_path / "shared"
    make_tree(src, 2, 50_000)
    for args in (("node", "add", NODE), ("grant", NODE, "beta", "gamma"), ("dataset", "add", NODE, str(src)),
                 ("schedule", "add", NODE, "--every", "5s", "--window", "4s")):
        office.cli(h1, *args, "--home", str(a.home))
    wait_for(lambda: len({st["config_digest"] for st in office.statuses(nodes)}) == 1, 20, "configuration")
    wait_for(lambda: any(e["kind"] == "job.done" for e in node_log(office, c)), 30, "a first scheduled backup")

    # ---- partition gamma: it elects itself and runs the slots on its side ----
    lan.partition(h3)
    wait_for(lambda: agreed(office, [c], c), 5 * LEASE, "gamma, cut off, to coordinate itself")
    t_cut = time.time()

    def done_by(n: Any, writer: Any) -> int:
        return sum(1 for e in node_log(office, n) if e["kind"] == "job.done" and e["writer"] == writer.peer_id
                   and e["time"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_cut)))

    wait_for(lambda: done_by(c, c) >= 2 and done_by(a, b) >= 2, 60, "both sides backing up on their own")

    # ---- heal: the node logs merge, every peer ends with the same history ----
    lan.heal(h3)
    wait_for(lambda: agreed(office, nodes, a), 10 * LEASE, "alpha coordinating everyone again")

    def merged() -> list[dict[str, Any]] | None:
        logs = office.par(*(partial(node_log, office, n) for n in nodes))
        ids = [[e["id"] for e in log] for log in logs]
        return logs[0] if ids[0] == ids[1] == ids[2] else None

    log = wait_for(merged, 60, "the three copies of the node's log to hold the same events")
    writers = {e["writer"] for e in log if e["kind"] == "job.done"}
    assert {b.peer_id, c.peer_id} <= writers  # both sides' work is in the merged history
    # At most one extra snapshot per slot: a slot's job ran at most once on each side.
    per_job = Counter(e["job"] for e in log if e["kind"] == "job.done")
    assert per_job and max(per_job.values()) <= 2, [
        (e["time"], e["writer_name"], e["kind"], e.get("agent"), e.get("attempt"),
         e.get("replaces")) for e in log if e.get("job") in
        {j for j, n in per_job.items() if n > 2}]
    per_job_side = Counter((e["job"], e["writer"]) for e in log if e["kind"] == "job.done")
    assert max(per_job_side.values()) == 1, per_job_side
