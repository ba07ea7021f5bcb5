"""peer_bench.py --profile: a peer-store first backup and restore, untimed, with py-spy sampling the client
and the three daemons; where their busy samples go, per function."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.common import REPO_ROOT, StepFailed
from tests.bench.datasets import DatasetInfo, warm
from tests.bench.disk import Trash, settle_io
from tests.bench.measure import tail
from tests.bench.peer_office import NODE, Office, no_interrupts, pb_cli


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
    settle_io()
    if client.returncode != 0:
        raise StepFailed(f"profiled {label} failed: {tail(f'{log}.err')}")
    lines = [f"### {label}: {seconds:.2f} s wall with py-spy attached; CPU s: client "
             f"{usage.ru_utime + usage.ru_stime:.2f} (sys {usage.ru_stime:.2f}), "
             + ", ".join(f"{n} {cpu[f'cpu_s_{n}']:.2f} (sys {cpu[f'sys_s_{n}']:.2f})" for n in office.daemons)]
    for name in ("client", *office.daemons):
        path = outdir / f"{label}-{name}.txt"
        lines.append(summarize_profile(path) if path.exists() else f"{path.name}: not written")
    return "\n\n".join(lines)


def profile_peer_store(info: DatasetInfo, scratch: Path, outdir: Path, trash: Trash) -> str:
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
        warm(src)
        settle_io()
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
