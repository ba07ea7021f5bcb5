"""peer_bench.py's report: the Markdown table of each system's medians, the local/peer ratios against the
throughput target, the daemons' CPU, each run's times and the checks made."""

from __future__ import annotations

import statistics

from tests.bench.common import GiB
from tests.bench.datasets import DatasetInfo
from tests.bench.peer_runs import ALL_SYSTEMS, FIGURES, RunResult
from tests.bench.report import ratio

THROUGHPUT_TARGET = 0.8  # local-store time / peer-store time for the first backup
LABELS = {"local": "local store", "peer": "peer store", "restic": "restic", "borg": "borg"}


def medians(runs: list[RunResult]) -> dict[str, float]:
    ok = [r for r in runs if r.error is None]
    keys = {k for r in ok for k in r.figures}
    return {k: statistics.median(r.figures[k] for r in ok if k in r.figures) for k in sorted(keys)}


def cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table(results: dict[str, list[RunResult]], info: DatasetInfo) -> str:
    systems = [s for s in ALL_SYSTEMS if s in results]
    med = {s: medians(results[s]) for s in systems}
    runs = max(map(len, results.values()), default=0)
    lines = [f"### Office data set: {info.bytes / GiB:.2f} GiB, {info.files} files ({info.source}), "
             f"median of {runs} run(s)", "",
             "| figure | " + " | ".join(LABELS[s] for s in systems) + " | local/peer |",
             "|---|" + "---:|" * (len(systems) + 1)]
    for key, label in FIGURES.items():
        vals = [med[s].get(key) for s in systems]
        if all(v is None for v in vals):
            continue
        timed = key in ("first_s", "nochange_s", "restore_s")
        r = ratio(med.get("local", {}).get(key), med.get("peer", {}).get(key)) if timed else None
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in vals) + f" | {cell(r)} |")
    lines.append("")
    lines += _ratios(med)
    lines += [_daemons_cpu(results, step) for step in ("first", "restore") if _daemons_cpu(results, step)]
    lines += ["", "Each run (seconds: first / no-change / restore; [position in its run]):", ""]
    lines += _each_run(results, systems)
    lines += _checks(results)
    return "\n".join(lines)


def _ratios(med: dict[str, dict[str, float]]) -> list[str]:
    """The throughput target's verdict, the restore ratio and restic's and borg's first backup against the
    peer store."""
    lines = []
    local, peer = med.get("local", {}), med.get("peer", {})
    first = ratio(local.get("first_s"), peer.get("first_s"))
    if first is not None:
        verdict = "pass" if first >= THROUGHPUT_TARGET else "miss"
        lines.append(f"Throughput ratio (local-store time / peer-store time, first backup, medians): "
                     f"**{first:.2f}** (target >= {THROUGHPUT_TARGET:g}: {verdict}).")
    rest = ratio(local.get("restore_s"), peer.get("restore_s"))
    if rest is not None:
        lines.append(f"Restore ratio (local / peer): **{rest:.2f}**.")
    for other in ("restic", "borg"):
        r = ratio(med.get(other, {}).get("first_s"), peer.get("first_s"))
        if r is not None:
            lines.append(f"{other} first-backup time / peer-store time: {r:.2f}.")
    return lines


def _daemons_cpu(results: dict[str, list[RunResult]], step: str) -> str:
    """The daemons' median CPU during one peer-store step, "" if none was measured."""
    by_daemon: dict[str, list[float]] = {}
    for res in results.get("peer", []):
        for k, v in res.steps.get(step, {}).items():
            if k.startswith(("cpu_s_", "sys_s_")) and res.error is None:
                by_daemon.setdefault(k, []).append(v)
    names = [k[len("cpu_s_"):] for k in by_daemon if k.startswith("cpu_s_")]
    if not names:
        return ""
    med_d = {k: statistics.median(v) for k, v in by_daemon.items()}
    return (f"Daemons' CPU during the peer-store {step} (median s, of which system): "
            + ", ".join(f"{n} {med_d[f'cpu_s_{n}']:.2f} ({med_d[f'sys_s_{n}']:.2f})" for n in names) + ".")


def _each_run(results: dict[str, list[RunResult]], systems: list[str]) -> list[str]:
    lines = []
    for s in systems:
        for res in results[s]:
            f = res.figures
            times = " / ".join(cell(f.get(k)) for k in ("first_s", "nochange_s", "restore_s") if k in f)
            error = f" **ERROR** {res.error.splitlines()[0]}" if res.error else ""
            lines.append(f"- {LABELS[s]} run {res.run} [{res.position}]: {times or '—'}{error}")
    # Within-run ratios show how much of the spread of the medians is the machine.
    per_run = []
    for lr, pr in zip(results.get("local", []), results.get("peer", []), strict=False):
        r = ratio(lr.figures.get("first_s"), pr.figures.get("first_s"))
        if r is not None:
            per_run.append(f"run {lr.run} {r:.2f}")
    if per_run:
        lines.append(f"- throughput ratio per run: {', '.join(per_run)}")
    return lines


def _checks(results: dict[str, list[RunResult]]) -> list[str]:
    lines = []
    placed = [c for r in results.get("peer", []) if r.error is None for c in r.checks if c.startswith("placement")]
    if placed:
        lines += ["", f"Checked after each peer-store first backup: {placed[-1].split(': ', 1)[1]}."]
    restored = [r for s in ("local", "peer") for r in results.get(s, [])]
    if restored and all(r.error is None for r in restored):
        lines.append("Every restore was checked: each file's metadata and SHA-256 equal the source's.")
    return lines
