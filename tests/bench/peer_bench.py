#!/usr/bin/env python3
"""Benchmark the peer store (issue 5) against the local directory store, restic and borg.

On the office data set of bench.py (../shared/bench/make_dataset.py --seed 1), in
one invocation, each run measures:

  local   `repo init` + `repo backup` into a directory repository, a no-change
          backup, a full restore (passphrase from PEERBACKUP_PASSWORD, as bench.py);
  peer    an office of three daemons on loopback (alpha: admin and the source
          machine; beta, gamma: storage peers; default timings, static peers, no
          mDNS), node `bench` with --replicas 2, then `repo backup --repo
          office:bench --home ALPHA` (the packs go to beta and gamma; checked with
          `peerbackup storage --json` and on the holders' disks), a no-change
          backup and a full restore;
  restic, borg  the first backup only (bench.py's commands, installed from Debian
          if missing).

Every restore is checked file by file (metadata as bench.py checks it, and the
SHA-256 of every file against the source). Figures are the median over --runs runs;
the order of the systems rotates from run to run. Caches are warm (the source is
read before each system's run; dropping the page cache needs root); outside the
timings the disks are synced and left to go idle between steps. The office's
daemons run only during the peer-store steps, and their CPU time (from
/proc/PID/stat) is reported beside the client's.

Every daemon is stopped (SIGTERM to its process group, then SIGKILL) and the
scratch directory removed whatever happens, Ctrl-C and SIGTERM included. The data
set is cached in --workdir (default $TMPDIR/peerbackup-peer-bench, apart from
bench.py's, so that neither rebuilds the other's set of a different size).

--profile DIR adds an untimed peer-store first backup and restore under py-spy (client
and the three daemons, raw collapsed stacks in DIR) and prints where their time goes.

Usage:
  python tests/bench/peer_bench.py [--size 1G] [--runs 3] [--workdir DIR]
      [--systems local,peer,restic,borg] [--json OUT] [--profile DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: tests/ is importable from the checkout
    sys.path.insert(0, str(REPO_ROOT))

from tests.bench.datasets import office_dataset  # noqa: E402
from tests.bench.disk import Trash, lock_workdir  # noqa: E402
from tests.bench.peer_office import no_interrupts  # noqa: E402
from tests.bench.peer_profile import profile_peer_store  # noqa: E402
from tests.bench.peer_report import medians, table  # noqa: E402
from tests.bench.peer_runs import ALL_SYSTEMS, RunResult, describe, run_system, source_digests  # noqa: E402
from tests.bench.report import machine_info  # noqa: E402
from tests.bench.tools import TOOL_CLASSES, Peerbackup, Tool, ensure_installed  # noqa: E402


def default_workdir() -> Path:
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "peerbackup-peer-bench"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--size", default="1G", help="office data set size (default 1G)")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per system; medians reported (default 3; 0 with --profile: profile only)")
    ap.add_argument("--workdir", type=Path, default=default_workdir(),
                    help="data set cache and scratch (default $TMPDIR/peerbackup-peer-bench)")
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS), help="comma-separated subset of "
                    + ",".join(ALL_SYSTEMS))
    ap.add_argument("--json", type=Path, help="write all raw figures here")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="after the runs, profile a peer-store first backup and restore with py-spy into DIR")
    args = ap.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        ap.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if args.runs < 1 and not (args.runs == 0 and args.profile):
        ap.error("--runs must be >= 1 (0 only with --profile)")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: daemons stopped, scratch removed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lock_workdir(workdir)
    others = [s for s in args.systems if s in ("restic", "borg")]
    usable = set(ensure_installed(others))
    systems = [s for s in args.systems if s not in others or s in usable]
    trash = Trash(workdir)
    trash.purge()  # left over by an interrupted invocation
    tools: list[Tool] = [Peerbackup(), *(TOOL_CLASSES[n]() for n in others if n in usable)]
    machine = machine_info(tools, workdir)
    if trash.window:
        machine["workdir filesystem"] += (" without journal: trees are truncated, not deleted, "
                                          "between runs (see bench.py's INODE_REUSE_WINDOW)")
    print("\n".join(f"{k}: {v}" for k, v in machine.items()), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir))
    results: dict[str, list[RunResult]] = {s: [] for s in systems}
    profile = ""
    try:
        info = office_dataset(workdir, args.size, trash)
        trash.wait_for_inode_reuse()
        print("hashing the source for restore checks ...", flush=True)
        digests = source_digests(Path(info.path))
        logdir = workdir / "logs"
        for run in range(1, args.runs + 1):
            shift = (run - 1) % len(systems)
            for position, system in enumerate([*systems[shift:], *systems[:shift]], 1):
                print(f"[run {run}/{args.runs}] {system} ...", flush=True)
                res = run_system(system, run, position, info, scratch, logdir, digests, trash)
                print(f"  {describe(res)}", flush=True)
                results[system].append(res)
        if args.profile:
            print("profiling a peer-store first backup and restore with py-spy ...", flush=True)
            profile = profile_peer_store(info, scratch, args.profile.resolve(), trash)
    finally:
        with no_interrupts():
            shutil.rmtree(scratch, ignore_errors=True)
            trash.purge()

    print("\n## Peer store benchmark results\n")
    print("\n".join(f"- {k}: {v}" for k, v in machine.items()))
    print("- caches: warm (source read before each system's run); sync and wait for idle disks between steps, "
          "outside the timings; daemons' CPU from /proc/PID/stat\n")
    if args.runs:
        print(table(results, info))
    if profile:
        print(f"\n## Profile of a peer-store first backup and restore (py-spy; raw stacks in {args.profile})\n")
        print(profile)
    if args.json:
        report = {"machine": machine, "args": sys.argv[1:], "dataset": dataclasses.asdict(info),
                  "medians": {s: medians(rs) for s, rs in results.items()},
                  "runs": {s: [dataclasses.asdict(r) for r in rs] for s, rs in results.items()}}
        args.json.write_text(json.dumps(report, indent=1))
        print(f"\nraw figures written to {args.json}")
    failed = any(r.error for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: daemons stopped, scratch removed", file=sys.stderr)
        sys.exit(130)
