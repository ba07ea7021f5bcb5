"""Running one command and measuring it: wall time, CPU (user + sys) and peak memory, the latter summed over
the command's process tree while it runs (wait4 alone sees only the largest process)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import KiB


@dataclass
class StepResult:
    seconds: float
    cpu_seconds: float
    maxrss_bytes: int  # wait4 ru_maxrss: largest single process of the tree
    tree_pss_bytes: int  # sampled peak of the summed PSS over the tree, 0 if one process
    returncode: int

    @property
    def peak_bytes(self) -> int:
        return max(self.maxrss_bytes, self.tree_pss_bytes)


def _process_tree(root: int) -> list[int]:
    """Pids of `root` and all its descendants (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path("/proc", entry.name, "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: ppid is the 2nd field after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree = [root]
    for pid in tree:  # grows while iterating: breadth-first walk
        tree.extend(children.get(pid, []))
    return tree


def _pss_bytes(pid: int) -> int:
    # PSS splits shared (forked copy-on-write) pages between processes, so the
    # sum over a tree is not inflated the way an RSS sum would be.
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * KiB
    except OSError:
        pass
    return 0


class TreeMemorySampler(threading.Thread):
    """Samples the summed PSS of a child and its descendants.

    wait4's ru_maxrss only reports the largest single process, which would
    under-report a tool that fans out to worker processes.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            pids = _process_tree(self.pid)
            if len(pids) > 1:  # a single process is measured exactly by wait4
                self.peak = max(self.peak, sum(_pss_bytes(p) for p in pids))

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_measured(argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> StepResult:
    """Run argv with stdout/stderr to log files; wall time, CPU and peak memory."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        sampler = TreeMemorySampler(proc.pid)
        sampler.start()
        # os.wait4 instead of proc.wait(): it returns this child's own rusage,
        # whereas RUSAGE_CHILDREN accumulates over every child we ever reaped.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return StepResult(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        maxrss_bytes=usage.ru_maxrss * KiB,  # Linux reports KiB
        tree_pss_bytes=sampler.peak,
        returncode=proc.returncode,
    )


def run_quiet(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)


def tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

