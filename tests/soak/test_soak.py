"""The short run of the chaos soak in `make test`: three minutes, seed 1, fast timings (docs/reliability.md).

The soak runs as its own process (as `make soak` runs it): it undoes its faults, rules and mount on SIGTERM,
which this test sends if it outlives its time; its homes and daemon logs stay under pytest's tmp_path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.soak.report import broken

SEED, SECONDS = 1, 180
# Setup (~1 min on a loaded machine), the run, the settle (at most 150 s), the checks and restores.
RUN_LIMIT = 780
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_LIMIT + 120)]


@pytest.fixture
def soak_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    out = tmp_path / "soak.json"
    work = tmp_path / "soak"
    with open(tmp_path / "soak.out", "wb") as console:
        proc = subprocess.Popen([sys.executable, "-m", "tests.soak.soak", "--seed", str(SEED), "--seconds",
                                 str(SECONDS), "--timings", "fast", "--json", str(out), "--dir", str(work)],
                                stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "PEERBACKUP_HOME"})
    try:
        yield proc, out, tmp_path / "soak.out"
    finally:
        if proc.poll() is None:
            # Its own cleanup first (faults undone, nft table and mount removed); then no mercy.
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_a_short_seeded_soak_keeps_every_invariant(soak_process: tuple[subprocess.Popen[bytes], Path, Path]) -> None:
    proc, out, console = soak_process
    try:
        rc = proc.wait(timeout=RUN_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the soak ran over {RUN_LIMIT} s; its output:\n{console.read_text()[-4000:]}")
    assert out.exists(), f"the soak wrote no report (exit {rc}):\n{console.read_text()[-4000:]}"
    report = json.loads(out.read_text())
    assert not report.get("error"), f"the soak could not run: {report['error']}\n{console.read_text()[-4000:]}"
    assert not report["cleanup_problems"], report["cleanup_problems"]
    assert sum(report["fault_counts"].values()) > 0 and report["user_changes"] > 0  # it did shake the office
    bad = broken(report)
    assert not bad and rc == 0, ("broken invariants (seed 1, fast timings, 3 min):\n  " + "\n  ".join(bad)
                                 + f"\nfaults: {report['summary']['faults']}\nwork dir: {report['work_dir']}")
