"""kill -9 a backup at many points: the repository stays consistent and the next backup resumes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.conftest import CLI
from tests.helpers import snapshot_of, text

KILLS = 6


def _dataset(root: Path) -> None:
    rng = random.Random(7)
    root.mkdir()
    for i in range(24):
        n = rng.randint(500_000, 4_000_000)
        data = rng.randbytes(n) if i % 2 else text(rng, n)
        (root / f"f{i:02d}.bin").write_bytes(data)
        os.utime(root / f"f{i:02d}.bin", (1_600_000_000, 1_600_000_000))


def _pack_names(repo: Path) -> set[str]:
    return {p.name for p in (repo / "data").rglob("*") if p.is_file() and not p.name.startswith(".")}


def _start_backup(cli: CLI, src: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "peerbackup", "repo", "backup", "-q", "--repo", str(cli.repo), str(src)],
        env=cli.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_kill_9_at_random_points(cli: CLI, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _dataset(src)
    # How long an uninterrupted backup takes here, to spread the kills over it.
    probe = CLI(tmp_path / "probe")
    probe("repo", "init")
    t = time.monotonic()
    probe("repo", "backup", "-q", str(src))
    duration = time.monotonic() - t

    cli("repo", "init")
    rng = random.Random(42)
    interrupted = 0
    for i in range(KILLS):
        proc = _start_backup(cli, src)
        try:
            time.sleep(duration * (i + rng.random()) / KILLS)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                interrupted += 1
        finally:
            proc.wait(timeout=60)
        # After every crash the repository is consistent: check (which loads every
        # snapshot's trees and finds every chunk they name) reports no error.
        res = cli("repo", "check", "--json", check=False)
        assert res.rc == 0 and res.json()["ok"], res.out
    assert interrupted >= KILLS // 2, "most kills should land mid-backup"
    # One more kill, right after a new pack lands: the case of a long first backup
    # cut short, whose stored packs no index names yet.
    known = _pack_names(cli.repo)
    proc = _start_backup(cli, src)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not (_pack_names(cli.repo) - known) and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert cli("repo", "check", "--json", check=False).json()["ok"]
    packs_before = len(_pack_names(cli.repo))
    final = cli("repo", "backup", "--json", str(src)).json()["snapshot"]["summary"]
    total = sum(p.stat().st_size for p in src.iterdir())
    assert packs_before > 0, "the killed runs should have stored some packs"
    # The data stored by the killed runs is reused, not stored again.
    assert final["bytes_added"] < total
    assert cli("repo", "check", "--read-data").rc == 0
    out = tmp_path / "out"
    cli("repo", "restore", "latest", "--target", str(out))
    assert snapshot_of(out / str(src).lstrip("/")) == snapshot_of(src)
