#!/usr/bin/env python3
"""The sparse case of `make bench`: a 200 MiB file holding 1 MiB of data (a VM disk, a database, an Outlook
.ost), backed up and restored by each tool; seconds for each step and the space the file allocates
(st_blocks * 512) before and after.

bench.py calls sparse_case() with its tools (it runs and measures them the way bench.py does); run alone
(a smaller file, for a quick look) with:

  python tests/bench/sparse_case.py [--size 200M] [--data 1M] [--runs 3] [--workdir DIR] [--tools ...]

Each tool restores with its default, and borg also with `extract --sparse` (restic 0.14 has no such option;
peerbackup restores holes by default and writes them out with --no-sparse). Times are medians of 3 runs,
the tools' order rotated; each run starts from a fresh repository.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script, as bench.py is
from tests.bench.datasets import parse_size
from tests.bench.disk import settle_io
from tests.bench.measure import run_measured
from tests.bench.tools import TOOL_CLASSES, Tool
from tests.bench.tools import Layout as BenchLayout

MiB = 1024 * 1024
EXTENTS = 4  # the data sits in this many places: the start, two inside, the very end


@dataclass
class Layout(BenchLayout):
    """bench.py's scratch space of a tool; `target` names the restore directory, so one repository restores
    twice."""

    target: str = "restore"

    @property
    def restore(self) -> Path:
        return self.root / self.target


@dataclass
class Row:
    label: str
    backup_s: float | None
    restore_s: float | None
    after: int | None  # allocated by the restored file, the largest over the runs
    identical: bool


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def make_file(path: Path, size: int, data: int) -> None:
    """size bytes, `data` of them random, in EXTENTS places; the rest never written (holes)."""
    rng = random.Random(1)
    piece = data // EXTENTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(EXTENTS):
            where = min(size - piece, i * (size // (EXTENTS - 1)) // 4096 * 4096)
            f.seek(where)
            f.write(rng.randbytes(piece))


def _restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def sparse_case(tools: Sequence[Tool], workdir: Path, size: int = 200 * MiB, data: int = MiB,
                runs: int = 3) -> tuple[str, dict[str, object], bool]:
    """(Markdown table, raw figures, whether any restore differed from the original). Times are medians
    over `runs` runs, the tools' order rotated from run to run."""
    base = workdir / "sparse"
    shutil.rmtree(base, ignore_errors=True)
    src = base / "src" / "disk.img"
    make_file(src, size, data)
    want, before = digest(src), allocated(src)
    by_label: dict[str, list[Row]] = {}
    for n in range(runs):
        for tool in [*tools[n % len(tools):], *tools[:n % len(tools)]]:
            for row in _one(tool, base, workdir / "sparse-logs" / tool.name, src, want):
                by_label.setdefault(row.label, []).append(row)
    shutil.rmtree(base, ignore_errors=True)
    rows = [_median(label, rs) for label, rs in by_label.items()]
    return _table(size, data, before, rows), {"size": size, "data": data, "before": before,
                                              "rows": [r.__dict__ for r in rows]}, not all(r.identical for r in rows)


def _one(tool: Tool, base: Path, logs: Path, src: Path, want: str) -> list[Row]:
    """One backup and restore(s) of the file by one tool, in a fresh repository."""
    lay = Layout(base / tool.name)
    shutil.rmtree(lay.root, ignore_errors=True)
    lay.root.mkdir(parents=True)
    env = tool.env(lay)
    rows: list[Row] = []
    try:
        if run_measured(tool.init(lay), env, tool.cwd(), logs / "init").returncode not in tool.ok_codes:
            raise RuntimeError("init")
        settle_io()
        b = run_measured(tool.backup(lay, src.parent, 1), env, tool.cwd(), logs / "backup")
        if b.returncode not in tool.ok_codes:
            raise RuntimeError("backup")
        variants: list[tuple[str, list[str]]] = [(tool.name, [])]
        if tool.name == "borg":
            variants.append(("borg extract --sparse", ["--sparse"]))
        for i, (label, extra) in enumerate(variants):
            out = Layout(lay.root, f"restore{i}")
            out.restore.mkdir(parents=True)
            argv, cwd = tool.restore(out, 1)
            settle_io()
            r = run_measured([*argv, *extra], env, cwd, logs / f"restore{i}")
            if r.returncode not in tool.ok_codes:
                raise RuntimeError(label)
            got = _restored(out.restore, src)
            rows.append(Row(label, b.seconds if i == 0 else None, r.seconds, allocated(got), digest(got) == want))
    except (RuntimeError, OSError) as exc:
        print(f"  sparse case: {tool.name} failed at {exc} (logs in {logs})", file=sys.stderr, flush=True)
        rows.append(Row(f"{tool.name} (failed)", None, None, None, False))
    shutil.rmtree(lay.root, ignore_errors=True)
    return rows


def _median(label: str, rows: list[Row]) -> Row:
    def med(xs: list[float | None]) -> float | None:
        known = [x for x in xs if x is not None]
        return statistics.median(known) if known else None

    afters = [r.after for r in rows if r.after is not None]
    return Row(label, med([r.backup_s for r in rows]), med([r.restore_s for r in rows]),
               max(afters) if afters else None, all(r.identical for r in rows))


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:.1f}"


def _s(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}"


def _table(size: int, data: int, before: int, rows: list[Row]) -> str:
    lines = [f"### Sparse file: {size // MiB} MiB holding {data / MiB:g} MiB of data in {EXTENTS} places",
             "",
             "| tool | backup s | restore s | allocated before MiB | allocated after MiB | bytes identical |",
             "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r.label} | {_s(r.backup_s)} | {_s(r.restore_s)} | {_mib(before)} | {_mib(r.after)} | "
              f"{'yes' if r.identical else 'NO'} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="200M")
    ap.add_argument("--data", default="1M")
    ap.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "peerbackup-bench")
    ap.add_argument("--tools", default="peerbackup,restic,borg")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    tools = [TOOL_CLASSES[t]() for t in args.tools.split(",") if shutil.which(t) or t == "peerbackup"]
    text, _, bad = sparse_case(tools, args.workdir, parse_size(args.size), parse_size(args.data), args.runs)
    print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
