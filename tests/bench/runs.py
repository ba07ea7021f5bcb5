"""One tool's run on one data set (init, first backup, no-change backup, [mutate, backup], restore, check),
and the runs of all tools on a data set, interleaved."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.common import MiB, StepFailed
from tests.bench.datasets import DatasetInfo, fresh_copy, mutate, repo_size, warm
from tests.bench.disk import Trash, settle_io
from tests.bench.measure import StepResult, run_measured, tail
from tests.bench.tools import Layout, Tool
from tests.bench.verify import verify

TIMED_STEPS = ("first", "nochange", "changed", "restore")


@dataclass
class RunResult:
    tool: str
    run: int
    steps: dict[str, StepResult] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    verify_error: str | None = None
    error: str | None = None


def step(res: RunResult, tool: Tool, lay: Layout, name: str, argv: list[str], cwd: Path,
         logdir: Path) -> None:
    log = logdir / f"{tool.name}-run{res.run}-{name}"
    result = run_measured(argv, tool.env(lay), cwd, log)
    res.steps[name] = result
    settle_io()  # this step's writeback happens outside any timing
    if result.returncode not in tool.ok_codes:
        raise StepFailed(
            f"{tool.name} {name} exited {result.returncode}: {' '.join(argv)}\n"
            f"{tail(f'{log}.err')}"
        )
    if name in TIMED_STEPS:
        res.figures[name] = result.seconds
        res.figures[f"{name}_cpu"] = result.cpu_seconds


def run_tool(tool: Tool, src: Path, scratch: Path, logdir: Path, run: int, change: bool,
             trash: Trash, steps: Sequence[str] = TIMED_STEPS) -> RunResult:
    """init, backup, no-change backup, [mutate src, backup], restore, verify.

    steps: the ones to run besides init and the first backup (always needed).
    """
    res = RunResult(tool.name, run)
    lay = Layout(scratch / tool.name)
    trash.discard(lay.root)
    lay.root.mkdir(parents=True)
    lay.restore.mkdir()
    try:
        step(res, tool, lay, "init", tool.init(lay), tool.cwd(), logdir)
        step(res, tool, lay, "first", tool.backup(lay, src, 1), tool.cwd(), logdir)
        res.figures["repo_bytes_first"] = repo_size(lay.repo)
        last = 1
        if "nochange" in steps:
            step(res, tool, lay, "nochange", tool.backup(lay, src, 2), tool.cwd(), logdir)
            last = 2
        if change and "changed" in steps:
            mutate(src, logdir / f"{tool.name}-run{run}-mutate.out")
            step(res, tool, lay, "changed", tool.backup(lay, src, 3), tool.cwd(), logdir)
            last = 3
        res.figures["repo_bytes"] = repo_size(lay.repo)
        if "restore" in steps:
            argv, cwd = tool.restore(lay, last)
            step(res, tool, lay, "restore", argv, cwd, logdir)
            res.verify_error = verify(src, lay.restore)
        res.figures["peak_rss_bytes"] = max(
            res.steps[s].peak_bytes for s in TIMED_STEPS if s in res.steps
        )
    except (StepFailed, subprocess.CalledProcessError, OSError) as e:
        res.error = str(e)
        print(f"  {tool.name} run {run} FAILED: {e}", file=sys.stderr, flush=True)
    finally:
        trash.discard(lay.root)  # keeps disk use bounded
    return res


def describe(res: RunResult) -> str:
    parts = [f"{k} {res.figures[k]:.2f}s (CPU {res.figures.get(k + '_cpu', 0):.2f}s)"
             for k in TIMED_STEPS if k in res.figures]
    if "repo_bytes" in res.figures:
        parts.append(f"repo {res.figures['repo_bytes'] / MiB:.1f} MiB")
    if "peak_rss_bytes" in res.figures:
        parts.append(f"peak RSS {res.figures['peak_rss_bytes'] / MiB:.0f} MiB")
    if res.verify_error:
        parts.append(f"RESTORE VERIFY FAIL: {res.verify_error}")
    return ", ".join(parts) if parts else "no figures"


def bench_dataset(
    info: DatasetInfo, tools: list[Tool], runs: int, workdir: Path, change: bool, trash: Trash,
    steps: Sequence[str] = TIMED_STEPS,
) -> dict[str, list[RunResult]]:
    """Runs are interleaved across tools so slow drift (thermal, noisy neighbours)
    spreads over all of them."""
    results: dict[str, list[RunResult]] = {t.name: [] for t in tools}
    pristine = Path(info.path)
    logdir = workdir / "logs" / info.name
    for run in range(1, runs + 1):
        # Rotate the order: file-system state left by one tool's step (freed inodes,
        # writeback, discards) otherwise always lands on the same next tool.
        shift = (run - 1) % len(tools)
        for tool in [*tools[shift:], *tools[:shift]]:
            if change:
                # Each tool mutates its own copy, always at the same path.
                src = workdir / "src"
                fresh_copy(pristine, src, trash)
            else:
                src = pristine  # never modified: back it up in place
            warm(src)
            print(f"[{info.name} run {run}/{runs}] {tool.name} ...", flush=True)
            res = run_tool(tool, src, workdir / "scratch", logdir, run, change, trash, steps)
            print(f"  {describe(res)}", flush=True)
            results[tool.name].append(res)
    trash.discard(workdir / "src")
    return results

