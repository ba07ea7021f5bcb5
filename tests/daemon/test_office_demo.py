"""`peerbackup demo` (make run): three daemons, a node backed up by its agents, Ctrl-C leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.daemon.harness import daemon_env, stop_group, wait_for


def _running(base: Path) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(base) in cmd and " up " in cmd:
                out.append(cmd)
    return out


def _log(base: Path) -> list[dict[str, object]]:
    proc = subprocess.run([sys.executable, "-m", "peerbackup", "log", "demo", "--json", "--home",
                           str(base / "alpha")], capture_output=True, text=True, env=daemon_env(), timeout=30)
    return list(json.loads(proc.stdout)) if proc.returncode == 0 else []


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _demo_once(base: Path, backups_before: int) -> str:
    """Start the demo, see it say it runs and an agent finish a backup, Ctrl-C it; its output. The second
    run starts as a non-interactive shell starts a job in the background (`make run &`): SIGINT ignored,
    which Python keeps unless told otherwise (the demo once went on running through the Ctrl-C)."""
    demo = subprocess.Popen([sys.executable, "-m", "peerbackup", "demo", "--dir", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=daemon_env(),
                            start_new_session=True, preexec_fn=_ignore_sigint if backups_before else None)
    assert demo.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(demo.stdout.readline, b"")),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(b"Demo office running" in line for line in lines), 120, "the demo to say it runs",
                 interval=0.5)
        wait_for(lambda: sum(1 for e in _log(base) if e["kind"] == "job.done") > backups_before, 120,
                 "a backup done by an agent", interval=0.5)
        done = [e for e in _log(base) if e["kind"] == "job.done"]
        assert {e["writer_name"] for e in done} <= {"beta", "gamma"}
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        stop_group(demo)
    assert demo.returncode == 0, lines
    return b"".join(lines).decode()


@pytest.mark.slow
def test_the_demo_office_backs_up_and_stops_cleanly(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    for attempt in range(2):  # the second run reuses the homes made by the first
        out = _demo_once(base, attempt)
        assert "Demo office running" in out and "stopping the demo office" in out
        assert "/ui/#token=" in out  # the dashboard's address
        assert _running(base) == []  # nothing left running
