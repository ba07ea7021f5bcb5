"""bench.py's report: the Markdown table of one data set's medians against issue 17's targets, and the
machine the figures were taken on."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

from tests.bench.common import GiB, MiB
from tests.bench.datasets import DatasetInfo
from tests.bench.measure import run_quiet
from tests.bench.runs import TIMED_STEPS, RunResult
from tests.bench.tools import ALL_TOOLS, Tool

# Figure key -> (table label, peerbackup/restic target on the 4 GiB office set: issue 17's).
FIGURES: dict[str, tuple[str, float]] = {
    "first": ("first backup s", 0.45),
    "nochange": ("no-change backup s", 0.5),
    "changed": ("after-change backup s", 0.55),
    "restore": ("restore s", 0.65),
    "repo_bytes": ("repo size MiB", 1.02),
    "peak_rss_bytes": ("peak RSS MiB", 1.0),
}
# Issue 17's targets for the small-files set, where they differ from the office set's.
SMALL_TARGETS = {"first": 0.8, "restore": 0.9}


def medians(runs: list[RunResult]) -> dict[str, float]:
    keys = {k for r in runs for k in r.figures}
    return {
        k: statistics.median(r.figures[k] for r in runs if k in r.figures) for k in sorted(keys)
    }


def fmt(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key.endswith("bytes"):
        return f"{value / MiB:.1f}"
    return f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(info: DatasetInfo, results: dict[str, list[RunResult]], change: bool) -> str:
    med = {t: medians(rs) for t, rs in results.items()}
    failed = {t for t, rs in results.items() if any(r.verify_error for r in rs)}
    multi = {
        t
        for t, rs in results.items()
        for r in rs
        for s in r.steps.values()
        if s.tree_pss_bytes > s.maxrss_bytes
    }
    extra = [t for t in results if t not in ALL_TOOLS]  # baselines
    cols = [*ALL_TOOLS, *extra]
    lines = _header(info, cols, extra)
    for key, (label, target) in _rows(change).items():
        if key.startswith("changed") and not change:
            continue
        vals = {t: med.get(t, {}).get(key) for t in cols}
        if all(v is None for v in vals.values()):
            continue  # a step not run (--steps)
        lines.append(_row(key, label, target, vals, extra, failed, multi))
    lines += _footer(results, failed, multi)
    return "\n".join(lines)


def _header(info: DatasetInfo, cols: list[str], extra: list[str]) -> list[str]:
    return [
        f"### {info.name} data set: {info.bytes / GiB:.2f} GiB, {info.files} files "
        f"({info.source})",
        "",
        f"| figure | {' | '.join(cols)} | pb/restic | pb/borg "
        f"{''.join(f'| pb/{t} ' for t in extra)}| target pb/restic | pass/miss |",
        f"|---|{'---:|' * (len(cols) + 2 + len(extra))}---:|---|",
    ]


def _rows(change: bool) -> dict[str, tuple[str, float]]:
    """Figure key -> (label, target) of the data set's rows, CPU seconds after the figures."""
    rows = dict(FIGURES)
    if not change:  # the small-files set
        rows |= {k: (rows[k][0], t) for k, t in SMALL_TARGETS.items()}
    for key in TIMED_STEPS:  # CPU seconds (user+sys): steadier than wall time on a shared machine
        rows[f"{key}_cpu"] = (f"{FIGURES[key][0].removesuffix(' s')} CPU s", 0.0)
    return rows


def _row(key: str, label: str, target: float, vals: dict[str, float | None], extra: list[str],
         failed: set[str], multi: set[str]) -> str:
    """One figure's row: a cell per tool, peerbackup's ratios to the others, the target and the verdict."""
    cells = []
    for t, value in vals.items():
        cell = fmt(key, value)
        if key == "restore" and t in failed:
            cell += " **FAIL**"
        if key == "peak_rss_bytes" and t in multi and value is not None:
            cell += "*"
        cells.append(cell)
    r_restic = ratio(vals["peerbackup"], vals["restic"])
    r_borg = ratio(vals["peerbackup"], vals["borg"])
    if key == "restore" and "peerbackup" in failed:
        verdict = "**FAIL**"  # a fast wrong restore passes nothing
    elif r_restic is None:
        verdict = "n/a"
    else:
        verdict = "pass" if r_restic <= target else "miss"
    if not target:
        verdict = "n/a"
    r_extra = [ratio(vals["peerbackup"], vals[t]) for t in extra]
    ratios = [f"{r:.2f}" if r is not None else "—" for r in (r_restic, r_borg, *r_extra)]
    goal = f"<= {target:g}" if target else ""
    return f"| {label} | {' | '.join(cells)} | {' | '.join(ratios)} | {goal} | {verdict} |"


def _footer(results: dict[str, list[RunResult]], failed: set[str], multi: set[str]) -> list[str]:
    lines = [""]
    lines.append(f"Median of {max(map(len, results.values()), default=0)} run(s). Targets: "
                 "issue 17's, defined for the 4 GiB office set and the small-files set.")
    if multi:
        lines.append("\\* peak of the summed PSS over the tool's process tree (worker "
                     "processes), larger than the biggest single process.")
    for t in sorted(failed):
        for r in results[t]:
            if r.verify_error:
                lines.append(f"**FAIL** {t} run {r.run}: restore differs: {r.verify_error}")
    for t, rs in results.items():
        for r in rs:
            if r.error:
                lines.append(f"**ERROR** {t} run {r.run}: {r.error.splitlines()[0]}")
    return lines


def machine_info(tools: list[Tool], workdir: Path) -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    fs = run_quiet(["stat", "-f", "-c", "%T", str(workdir)]).stdout.strip()
    info = {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": f"{int(mem) / (1024 * 1024):.1f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "workdir filesystem": fs,
        # Anything else running skews the timings: make it visible.
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    for t in tools:
        info[t.name] = t.version()
    return info

