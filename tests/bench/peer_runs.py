"""One system's run in peer_bench.py (the local store, the peer store on an office of three daemons, or
restic or borg's first backup): its measured steps, the checks after them (every pack placed on both
holders, every restored file's bytes) and the figures drawn from the steps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.common import PASSWORD, REPO_ROOT, MiB, StepFailed
from tests.bench.datasets import DatasetInfo, warm
from tests.bench.disk import Trash, settle_io
from tests.bench.measure import run_measured, tail
from tests.bench.peer_office import NODE, Office, no_interrupts, pb_cli
from tests.bench.tools import TOOL_CLASSES, Layout, Tool
from tests.bench.verify import find_restored_root, sha256_file, verify

ALL_SYSTEMS = ("local", "peer", "restic", "borg")
MB = 1_000_000  # throughput in MB/s (10^6 bytes of source per second)

# Figure key -> table label (first_s, nochange_s, restore_s: wall-clock seconds).
FIGURES: dict[str, str] = {
    "first_s": "first backup s",
    "first_mbps": "first backup MB/s",
    "nochange_s": "no-change backup s",
    "restore_s": "restore s",
    "restore_mbps": "restore MB/s",
    "first_cpu_s": "first backup CPU s, client",
    "first_daemon_cpu_s": "first backup CPU s, daemons",
    "restore_cpu_s": "restore CPU s, client",
    "restore_daemon_cpu_s": "restore CPU s, daemons",
    "first_peak_rss_mib": "first backup peak RSS MiB, client",
}


@dataclass
class RunResult:
    system: str
    run: int
    position: int  # 1 = first in its run
    figures: dict[str, float] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # raw: seconds, CPU, daemons' CPU
    checks: list[str] = field(default_factory=list)
    error: str | None = None


def source_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every regular file under root, by relative path."""
    out: dict[str, str] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, root)] = sha256_file(p)
    return out


def verify_restore(src: Path, target: Path, want: dict[str, str]) -> None:
    """Metadata as bench.py checks it, then every file's bytes."""
    problem = verify(src, target)
    if problem:
        raise StepFailed(f"restore differs from the source: {problem}")
    root = find_restored_root(target, src)
    assert root is not None  # verify() found it
    got = source_digests(root)
    bad = sorted(p for p in want if got.get(p) != want[p])
    if bad or set(got) != set(want):
        raise StepFailed(f"restored bytes differ: {len(bad)} files (e.g. {bad[:1]}), "
                         f"{len(set(got) - set(want))} extra")


class Runner:
    """Runs the measured commands of one system's run and records their figures."""

    def __init__(self, res: RunResult, logdir: Path, env: dict[str, str], office: Office | None = None) -> None:
        self.res = res
        self.logdir = logdir
        self.env = env
        self.office = office

    def step(self, name: str, argv: list[str], cwd: Path = REPO_ROOT, ok: frozenset[int] = frozenset({0})) -> None:
        log = self.logdir / f"{self.res.system}-run{self.res.run}-{name}"
        before = self.office.cpu_seconds() if self.office else {}
        result = run_measured(argv, self.env, cwd, log)
        raw: dict[str, float] = {"seconds": result.seconds, "cpu_s": result.cpu_seconds,
                                 "peak_rss_mib": result.peak_bytes / MiB}
        if self.office:
            raw.update(self.office.cpu_since(before))
        self.res.steps[name] = raw
        settle_io()  # this step's writeback happens outside any timing
        if result.returncode not in ok:
            raise StepFailed(f"{self.res.system} {name} exited {result.returncode}: {' '.join(argv)}\n"
                             f"{tail(f'{log}.err')}")
        if self.office:
            self.office.check_daemons()

    def figures(self, size: int) -> None:
        f = self.res.figures
        for step in ("first", "nochange", "restore"):
            raw = self.res.steps.get(step)
            if raw is None:
                continue
            f[f"{step}_s"] = raw["seconds"]
            if step != "nochange":
                f[f"{step}_mbps"] = size / raw["seconds"] / MB
                f[f"{step}_cpu_s"] = raw["cpu_s"]
                daemons = [v for k, v in raw.items() if k.startswith("cpu_s_")]
                if daemons:
                    f[f"{step}_daemon_cpu_s"] = sum(daemons)
            if step == "first":
                f["first_peak_rss_mib"] = raw["peak_rss_mib"]


def run_local(r: Runner, src: Path, scratch: Path, digests: dict[str, str]) -> None:
    repo, target = scratch / "repo", scratch / "restore"
    target.mkdir(parents=True)
    r.step("init", pb_cli("repo", "init", "--repo", str(repo)))
    r.step("first", pb_cli("repo", "backup", "--repo", str(repo), str(src)))
    r.step("nochange", pb_cli("repo", "backup", "--repo", str(repo), str(src)))
    r.step("restore", pb_cli("repo", "restore", "--repo", str(repo), "latest", "--target", str(target)))
    verify_restore(src, target, digests)
    r.res.checks.append("restore: every file's bytes and metadata equal the source")


def check_placement(office: Office) -> str:
    """After the first backup: nothing under-replicated, beta and gamma each hold every pack."""
    # --repair-now: the count is null until a repair round has run on the peer asked.
    report = office.cli_json("storage", "--json", "--repair-now", "--home", str(office.alpha.home))
    if report["under_replicated"] != 0:
        raise StepFailed(f"peerbackup storage reports {report['under_replicated']} under-replicated files")
    rows = {row["name"]: row for row in report["peers"]}
    beta, gamma = office.holders()
    packs = beta.held("data")
    if not packs or packs != gamma.held("data"):
        raise StepFailed(f"beta holds {len(packs)} packs, gamma {len(gamma.held('data'))}, "
                         f"{len(packs ^ gamma.held('data'))} not on both")
    for d in (beta, gamma):
        if rows.get(d.name, {}).get("state") != "alive" or rows[d.name].get("packs") is None:
            raise StepFailed(f"peerbackup storage does not report {d.name} alive with packs: {rows.get(d.name)}")
    on_alpha = len(office.alpha.held("data"))
    index = beta.held("index")
    if index != gamma.held("index"):
        raise StepFailed("beta and gamma do not hold the same index files")
    used = {n: rows[n].get("used") for n in ("beta", "gamma")}
    return (f"placement: under_replicated 0; beta and gamma each hold all {len(packs)} packs and "
            f"{len(index)} index files (storage --json: packs beta {rows['beta']['packs']}, "
            f"gamma {rows['gamma']['packs']}, used {used}); alpha (the source) holds {on_alpha}")


def run_peer(r: Runner, office: Office, src: Path, scratch: Path, digests: dict[str, str]) -> None:
    target = scratch / "restore"
    target.mkdir(parents=True)
    repo = ["--repo", f"office:{NODE}", "--home", str(office.alpha.home)]
    r.step("first", pb_cli("repo", "backup", *repo, str(src)))
    r.res.checks.append(check_placement(office))
    r.step("nochange", pb_cli("repo", "backup", *repo, str(src)))
    r.step("restore", pb_cli("repo", "restore", *repo, "latest", "--target", str(target)))
    verify_restore(src, target, digests)
    r.res.checks.append("restore: every file's bytes and metadata equal the source")


def run_other(r: Runner, tool: Tool, lay: Layout, src: Path) -> None:
    r.step("init", tool.init(lay), tool.cwd(), tool.ok_codes)
    r.step("first", tool.backup(lay, src, 1), tool.cwd(), tool.ok_codes)


def run_system(system: str, run: int, position: int, info: DatasetInfo, scratch: Path, logdir: Path,
               digests: dict[str, str], trash: Trash) -> RunResult:
    res = RunResult(system, run, position)
    src = Path(info.path)
    base = scratch / f"{system}-run{run}"
    base.mkdir(parents=True)
    cache = base / "cache"
    office: Office | None = None
    try:
        if system == "local":
            env = dict(os.environ, PEERBACKUP_PASSWORD=PASSWORD, PEERBACKUP_CACHE_DIR=str(cache))
            env.pop("PEERBACKUP_REPO", None)
            runner = Runner(res, logdir, env)
            warm(src)
            run_local(runner, src, base, digests)
        elif system == "peer":
            office = Office(base / "office")
            office.root.mkdir()
            t0 = time.perf_counter()
            office.setup()
            res.checks.append(f"setup: office of 3 daemons up, node added, in {time.perf_counter() - t0:.1f} s "
                              "(untimed)")
            env = dict(os.environ, PEERBACKUP_CACHE_DIR=str(cache))
            for var in ("PEERBACKUP_HOME", "PEERBACKUP_REPO", "PEERBACKUP_PASSWORD"):
                env.pop(var, None)
            runner = Runner(res, logdir, env, office)
            warm(src)
            settle_io()
            run_peer(runner, office, src, base, digests)
        else:
            tool = TOOL_CLASSES[system]()
            lay = Layout(base)
            runner = Runner(res, logdir, tool.env(lay))
            warm(src)
            run_other(runner, tool, lay, src)
        runner.figures(info.bytes)
    except (StepFailed, AssertionError, subprocess.SubprocessError, OSError) as exc:
        res.error = str(exc)
        print(f"  {system} run {run} FAILED: {exc}", file=sys.stderr, flush=True)
        if office is not None:
            for d in office.daemons.values():
                print(f"--- {d.name} log (last lines) ---\n{tail(str(d.log))}", file=sys.stderr)
    finally:
        if office is not None:
            with no_interrupts():
                office.close()
        trash.discard(base)  # restores are many files: truncated, not deleted (Trash)
    return res


def describe(res: RunResult) -> str:
    parts = [f"{FIGURES[k]} {v:.2f}" for k, v in res.figures.items() if k in FIGURES]
    for step in ("first", "restore"):
        raw = res.steps.get(step, {})
        daemons = {k[len("cpu_s_"):]: v for k, v in raw.items() if k.startswith("cpu_s_")}
        if daemons:
            parts.append(f"{step} CPU s by daemon: " + ", ".join(f"{n} {v:.2f} (sys {raw[f'sys_s_{n}']:.2f})"
                                                                  for n, v in daemons.items()))
    parts += [c for c in res.checks if c.startswith("setup")]
    return "; ".join(parts) if parts else "no figures"

