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
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: tests/ is importable from the checkout
    sys.path.insert(0, str(REPO_ROOT))

from tests.bench import bench  # noqa: E402
from tests.daemon.harness import daemon_env, stop_group, wait_for  # noqa: E402

ALL_SYSTEMS = ("local", "peer", "restic", "borg")
NODE = "bench"
REPLICAS = 2
MB = 1_000_000  # throughput in MB/s (10^6 bytes of source per second)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETUP_TIMEOUT = 120.0  # office start-up, liveness and the node reaching every peer (default timings)

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
THROUGHPUT_TARGET = 0.8  # local-store time / peer-store time for the first backup


class StepFailed(Exception):
    """A command exited with an error or a check failed: that system's run is abandoned."""


# --------------------------------------------------------------------------
# the office: three daemons on loopback
# --------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process (all its threads), from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


@dataclass
class Daemon:
    name: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def api(self, path: str) -> Any:
        """GET on the daemon's admin API (what `peerbackup status|peers --json` print)."""
        info = json.loads((self.home / "admin.json").read_text())
        token = (self.home / "admin.token").read_text().strip()
        req = urllib.request.Request(info["url"] + path, headers={"X-Peerbackup-Token": token})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def cpu_seconds(self) -> tuple[float, float]:
        return proc_cpu_seconds(self.proc.pid) if self.proc is not None else (0.0, 0.0)

    def held(self, ftype: str) -> set[str]:
        """Names of the node's files of one type on this peer's disk (its holder directory)."""
        base = self.home / "held" / "nodes" / NODE / ftype
        return {p.name for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")} if base.is_dir() \
            else set()


class Office:
    """alpha (first admin, the source machine), beta and gamma (storage peers), with homes under root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = daemon_env()  # kit passphrase for init, no inherited PEERBACKUP_HOME
        self.daemons = {n: Daemon(n, root / n, root / f"{n}.log") for n in ("alpha", "beta", "gamma")}

    @property
    def alpha(self) -> Daemon:
        return self.daemons["alpha"]

    def holders(self) -> list[Daemon]:
        return [self.daemons["beta"], self.daemons["gamma"]]

    def cli(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([sys.executable, "-m", "peerbackup", *args], capture_output=True, text=True,
                              env=self.env, cwd=REPO_ROOT, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise StepFailed(f"peerbackup {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args))

    def start(self, d: Daemon, static_peers: Sequence[str] = ()) -> None:
        args = ["up", "--home", str(d.home), "--listen", "127.0.0.1:0", "--no-mdns"]
        for address in static_peers:
            args += ["--peer", address]
        with open(d.log, "ab") as log:
            # A session (process group) of its own: Ctrl-C in the terminal does not reach it, and
            # stop_group() ends it and anything it started.
            d.proc = subprocess.Popen([sys.executable, "-m", "peerbackup", *args], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, env=self.env, cwd=REPO_ROOT, start_new_session=True)

        def up() -> bool:
            assert d.proc is not None
            if d.proc.poll() is not None:
                raise StepFailed(f"daemon {d.name} exited {d.proc.returncode}:\n{bench.tail(str(d.log))}")
            return (d.home / "admin.json").exists() and bool(d.api("/v1/status")["peer_id"])

        wait_for(up, 30, f"daemon {d.name} to start (log {d.log})", interval=0.2)

    def setup(self) -> None:
        alpha = self.alpha
        self.cli("init", "--home", str(alpha.home), "--office", "Acme", "--name", "alpha")
        self.start(alpha)
        address = str(alpha.api("/v1/status")["listen"][0])
        for d in self.holders():
            token = self.cli("invite", "--home", str(alpha.home)).strip()
            self.cli("join", "--home", str(d.home), "--name", d.name, token)
        for d in self.holders():
            self.start(d, [address])

        def alive() -> bool:
            peers = {p["name"]: p for p in alpha.api("/v1/peers")}
            return all(peers.get(d.name, {}).get("state") == "alive" for d in self.holders())

        wait_for(alive, SETUP_TIMEOUT, "beta and gamma alive on alpha", interval=0.5)
        self.cli("node", "add", NODE, "--replicas", str(REPLICAS), "--home", str(alpha.home))

        def same_config() -> bool:
            digests = {d.api("/v1/status")["config_digest"] for d in self.daemons.values()}
            return len(digests) == 1

        wait_for(same_config, SETUP_TIMEOUT, "the same config_digest on all three daemons", interval=0.5)
        # The peer store uses every storage peer the daemon believes alive, with its known addresses.
        wait_for(alive, SETUP_TIMEOUT, "beta and gamma still alive on alpha", interval=0.5)

    def cpu_seconds(self) -> dict[str, tuple[float, float]]:
        return {n: d.cpu_seconds() for n, d in self.daemons.items()}

    def cpu_since(self, before: dict[str, tuple[float, float]]) -> dict[str, float]:
        """CPU seconds of each daemon since `before`: cpu_s_NAME (user + system) and sys_s_NAME."""
        out: dict[str, float] = {}
        for n, (user, sys_) in self.cpu_seconds().items():
            user0, sys0 = before.get(n, (0.0, 0.0))
            out[f"cpu_s_{n}"] = user - user0 + sys_ - sys0
            out[f"sys_s_{n}"] = sys_ - sys0
        return out

    def check_daemons(self) -> None:
        for d in self.daemons.values():
            if d.proc is None or d.proc.poll() is not None:
                raise StepFailed(f"daemon {d.name} is not running:\n{bench.tail(str(d.log))}")

    def close(self) -> None:
        """Stop every daemon started (each on its own: one that fails to stop does not spare the others)."""
        for d in self.daemons.values():
            if d.proc is None:
                continue
            try:
                stop_group(d.proc)
            except Exception as exc:  # keep going: the others must stop too
                print(f"WARNING: stopping daemon {d.name} (pid {d.proc.pid}): {exc}", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(d.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def no_interrupts() -> Iterator[None]:
    """Clean-up runs to the end even when Ctrl-C is pressed again."""
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# --------------------------------------------------------------------------
# one system, one run
# --------------------------------------------------------------------------


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
                out[os.path.relpath(p, root)] = bench.sha256_file(p)
    return out


def verify_restore(src: Path, target: Path, want: dict[str, str]) -> None:
    """Metadata as bench.py checks it, then every file's bytes."""
    problem = bench.verify(src, target)
    if problem:
        raise StepFailed(f"restore differs from the source: {problem}")
    root = bench.find_restored_root(target, src)
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
        result = bench.run_measured(argv, self.env, cwd, log)
        raw: dict[str, float] = {"seconds": result.seconds, "cpu_s": result.cpu_seconds,
                                 "peak_rss_mib": result.peak_bytes / bench.MiB}
        if self.office:
            raw.update(self.office.cpu_since(before))
        self.res.steps[name] = raw
        bench.settle_io()  # this step's writeback happens outside any timing
        if result.returncode not in ok:
            raise StepFailed(f"{self.res.system} {name} exited {result.returncode}: {' '.join(argv)}\n"
                             f"{bench.tail(f'{log}.err')}")
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


def pb_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "peerbackup", *args]


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


def run_other(r: Runner, tool: bench.Tool, lay: bench.Layout, src: Path) -> None:
    r.step("init", tool.init(lay), tool.cwd(), tool.ok_codes)
    r.step("first", tool.backup(lay, src, 1), tool.cwd(), tool.ok_codes)


def run_system(system: str, run: int, position: int, info: bench.DatasetInfo, scratch: Path, logdir: Path,
               digests: dict[str, str], trash: bench.Trash) -> RunResult:
    res = RunResult(system, run, position)
    src = Path(info.path)
    base = scratch / f"{system}-run{run}"
    base.mkdir(parents=True)
    cache = base / "cache"
    office: Office | None = None
    try:
        if system == "local":
            env = dict(os.environ, PEERBACKUP_PASSWORD=bench.PASSWORD, PEERBACKUP_CACHE_DIR=str(cache))
            env.pop("PEERBACKUP_REPO", None)
            runner = Runner(res, logdir, env)
            bench.warm(src)
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
            bench.warm(src)
            bench.settle_io()
            run_peer(runner, office, src, base, digests)
        else:
            tool = bench.TOOL_CLASSES[system]()
            lay = bench.Layout(base)
            runner = Runner(res, logdir, tool.env(lay))
            bench.warm(src)
            run_other(runner, tool, lay, src)
        runner.figures(info.bytes)
    except (StepFailed, AssertionError, subprocess.SubprocessError, OSError) as exc:
        res.error = str(exc)
        print(f"  {system} run {run} FAILED: {exc}", file=sys.stderr, flush=True)
        if office is not None:
            for d in office.daemons.values():
                print(f"--- {d.name} log (last lines) ---\n{bench.tail(str(d.log))}", file=sys.stderr)
    finally:
        if office is not None:
            with no_interrupts():
                office.close()
        trash.discard(base)  # restores are many files: truncated, not deleted (bench.Trash)
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


# --------------------------------------------------------------------------
# profile: one peer-store first backup under py-spy
# --------------------------------------------------------------------------


def py_spy() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) stacks.

    py-spy counts a thread as busy unless it sees it waiting, so the shares are of busy
    samples, not of CPU time: set them against the CPU seconds from /proc."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n  # --threads: the first frame names the thread
        body = frames[1:] or frames
        own[body[-1]] += n
        for fr in set(body):
            if "peerbackup/" in fr:
                incl[fr] += n
    if not total:
        return f"{path.name}: no samples"
    out = [f"{path.name}: {total} busy samples; by thread: "
           + ", ".join(f"{t} {n / total:.0%}" for t, n in threads.most_common(6))]
    out.append("  self:")
    out += [f"    {n / total:6.1%}  {fr}" for fr, n in own.most_common(top)]
    out.append("  inclusive, peerbackup functions:")
    out += [f"    {n / total:6.1%}  {fr}" for fr, n in incl.most_common(top)]
    return "\n".join(out)


def profiled_step(office: Office, spy: str, outdir: Path, label: str, argv: list[str], env: dict[str, str]) -> str:
    """Run one CLI command under py-spy while py-spy also samples the three daemons."""
    rate = "97"
    common = ["--format", "raw", "--threads", "--nonblocking", "--rate", rate]
    spies: list[subprocess.Popen[bytes]] = []
    try:
        for d in office.daemons.values():
            assert d.proc is not None
            spies.append(subprocess.Popen([spy, "record", "--pid", str(d.proc.pid), *common,
                                           "-o", str(outdir / f"{label}-{d.name}.txt")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy attached
        before = office.cpu_seconds()
        log = outdir / f"{label}-client-run"
        start = time.perf_counter()
        with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
            client = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        # Attached by pid rather than as py-spy's child: wait4 then measures the client's own CPU (the
        # first milliseconds of its start-up go unsampled).
        spies.append(subprocess.Popen([spy, "record", "--pid", str(client.pid), *common,
                                       "-o", str(outdir / f"{label}-client.txt")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _, status, usage = os.wait4(client.pid, 0)
        seconds = time.perf_counter() - start
        client.returncode = os.waitstatus_to_exitcode(status)
        cpu = office.cpu_since(before)
        for p in spies:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT (or when its process ends)
        for p in spies:
            p.wait(timeout=60)
    finally:
        for p in spies:
            if p.poll() is None:
                p.kill()
                p.wait()
    bench.settle_io()
    if client.returncode != 0:
        raise StepFailed(f"profiled {label} failed: {bench.tail(f'{log}.err')}")
    lines = [f"### {label}: {seconds:.2f} s wall with py-spy attached; CPU s: client "
             f"{usage.ru_utime + usage.ru_stime:.2f} (sys {usage.ru_stime:.2f}), "
             + ", ".join(f"{n} {cpu[f'cpu_s_{n}']:.2f} (sys {cpu[f'sys_s_{n}']:.2f})" for n in office.daemons)]
    for name in ("client", *office.daemons):
        path = outdir / f"{label}-{name}.txt"
        lines.append(summarize_profile(path) if path.exists() else f"{path.name}: not written")
    return "\n\n".join(lines)


def profile_peer_store(info: bench.DatasetInfo, scratch: Path, outdir: Path, trash: bench.Trash) -> str:
    """A peer-store first backup and a restore, each under py-spy (client and daemons)."""
    spy = py_spy()
    if spy is None:
        return "py-spy not found: `.venv/bin/pip install py-spy` to profile"
    outdir.mkdir(parents=True, exist_ok=True)
    src = Path(info.path)
    base = scratch / "profile"
    (base / "restore").mkdir(parents=True)
    office = Office(base / "office")
    office.root.mkdir()
    env = dict(os.environ, PEERBACKUP_CACHE_DIR=str(base / "cache"))
    env.pop("PEERBACKUP_HOME", None)
    repo = ["--repo", f"office:{NODE}", "--home", str(office.alpha.home)]
    try:
        office.setup()
        bench.warm(src)
        bench.settle_io()
        backup = profiled_step(office, spy, outdir, "backup", pb_cli("repo", "backup", *repo, str(src)), env)
        restore = profiled_step(office, spy, outdir, "restore",
                                pb_cli("repo", "restore", *repo, "latest", "--target", str(base / "restore")), env)
        return f"{backup}\n\n{restore}"
    except (StepFailed, AssertionError, subprocess.SubprocessError, OSError) as exc:
        return f"profiling failed: {exc}"
    finally:
        with no_interrupts():
            office.close()
        trash.discard(base)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def medians(runs: list[RunResult]) -> dict[str, float]:
    ok = [r for r in runs if r.error is None]
    keys = {k for r in ok for k in r.figures}
    return {k: statistics.median(r.figures[k] for r in ok if k in r.figures) for k in sorted(keys)}


def cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(results: dict[str, list[RunResult]], info: bench.DatasetInfo) -> str:
    systems = [s for s in ALL_SYSTEMS if s in results]
    med = {s: medians(results[s]) for s in systems}
    labels = {"local": "local store", "peer": "peer store", "restic": "restic", "borg": "borg"}
    runs = max(map(len, results.values()), default=0)
    lines = [f"### Office data set: {info.bytes / bench.GiB:.2f} GiB, {info.files} files ({info.source}), "
             f"median of {runs} run(s)", "",
             "| figure | " + " | ".join(labels[s] for s in systems) + " | local/peer |",
             "|---|" + "---:|" * (len(systems) + 1)]
    for key, label in FIGURES.items():
        vals = [med[s].get(key) for s in systems]
        if all(v is None for v in vals):
            continue
        timed = key in ("first_s", "nochange_s", "restore_s")
        r = ratio(med.get("local", {}).get(key), med.get("peer", {}).get(key)) if timed else None
        lines.append(f"| {label} | " + " | ".join(cell(v) for v in vals) + f" | {cell(r)} |")
    lines.append("")
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
    for step in ("first", "restore"):
        by_daemon: dict[str, list[float]] = {}
        for res in results.get("peer", []):
            for k, v in res.steps.get(step, {}).items():
                if k.startswith(("cpu_s_", "sys_s_")) and res.error is None:
                    by_daemon.setdefault(k, []).append(v)
        names = [k[len("cpu_s_"):] for k in by_daemon if k.startswith("cpu_s_")]
        if names:
            med_d = {k: statistics.median(v) for k, v in by_daemon.items()}
            lines.append(f"Daemons' CPU during the peer-store {step} (median s, of which system): "
                         + ", ".join(f"{n} {med_d[f'cpu_s_{n}']:.2f} ({med_d[f'sys_s_{n}']:.2f})" for n in names) + ".")
    lines += ["", "Each run (seconds: first / no-change / restore; [position in its run]):", ""]
    for s in systems:
        for res in results[s]:
            f = res.figures
            times = " / ".join(cell(f.get(k)) for k in ("first_s", "nochange_s", "restore_s") if k in f)
            error = f" **ERROR** {res.error.splitlines()[0]}" if res.error else ""
            lines.append(f"- {labels[s]} run {res.run} [{res.position}]: {times or '—'}{error}")
    # Within-run ratios show how much of the spread of the medians is the machine.
    per_run = []
    for lr, pr in zip(results.get("local", []), results.get("peer", []), strict=False):
        r = ratio(lr.figures.get("first_s"), pr.figures.get("first_s"))
        if r is not None:
            per_run.append(f"run {lr.run} {r:.2f}")
    if per_run:
        lines.append(f"- throughput ratio per run: {', '.join(per_run)}")
    placed = [c for r in results.get("peer", []) if r.error is None for c in r.checks if c.startswith("placement")]
    if placed:
        lines += ["", f"Checked after each peer-store first backup: {placed[-1].split(': ', 1)[1]}."]
    restored = [r for s in ("local", "peer") for r in results.get(s, [])]
    if restored and all(r.error is None for r in restored):
        lines.append("Every restore was checked: each file's metadata and SHA-256 equal the source's.")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


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
    bench.lock_workdir(workdir)
    others = [s for s in args.systems if s in ("restic", "borg")]
    usable = set(bench.ensure_installed(others))
    systems = [s for s in args.systems if s not in others or s in usable]
    trash = bench.Trash(workdir)
    trash.purge()  # left over by an interrupted invocation
    tools: list[bench.Tool] = [bench.Peerbackup(), *(bench.TOOL_CLASSES[n]() for n in others if n in usable)]
    machine = bench.machine_info(tools, workdir)
    if trash.window:
        machine["workdir filesystem"] += (" without journal: trees are truncated, not deleted, "
                                          "between runs (see bench.py's INODE_REUSE_WINDOW)")
    print("\n".join(f"{k}: {v}" for k, v in machine.items()), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir))
    results: dict[str, list[RunResult]] = {s: [] for s in systems}
    profile = ""
    try:
        info = bench.office_dataset(workdir, args.size, trash)
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
