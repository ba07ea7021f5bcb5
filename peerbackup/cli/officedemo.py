"""`peerbackup demo` (and `make run`): an office of three daemons on this machine, backing up a folder.

alpha (the admin), beta and gamma (agents and storage peers) get homes under DIR
(default ./.run/demo), ports of their own and mDNS on 127.0.0.1. A sample folder,
a backup node `demo` with beta and gamma as its agents and a schedule every
minute are set up once; a first backup is asked for at once. Ctrl-C (or SIGTERM)
stops all three daemons, and nothing is left running.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerbackup.errors import StartError
from peerbackup.office.membership.home import Home, write_private

NODE = "demo"
NAMES = ("alpha", "beta", "gamma")


def _cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "peerbackup", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    if check and proc.returncode != 0:
        raise StartError(f"peerbackup {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _sample(folder: Path) -> None:
    rng = random.Random(7)
    for i in range(12):
        p = folder / ("reports" if i % 2 else "invoices") / f"document-{i:02d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"line {n} of document {i}: {rng.random():.6f}\n" for n in range(2000)))


def _status(home: Path) -> dict[str, object] | None:
    try:
        return dict(json.loads(_cli("status", "--json", "--home", str(home))))
    except StartError:
        return None


def _wait(what: str, pred: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise StartError(f"timed out waiting for {what}")


def _start_office(base: Path, homes: dict[str, Path], env: dict[str, str],
                  up: Callable[..., None]) -> tuple[Path, dict[str, Any], str]:
    """Three daemons up (the office made on the first run), then a first backup: the sample's path, that
    backup's job and the dashboard's address."""
    first_time = not Home(homes["alpha"]).initialised()
    if first_time:
        base.mkdir(parents=True, exist_ok=True)
        write_private(base / "kit-passphrase.txt", env["PEERBACKUP_KIT_PASSWORD"].encode())
        _cli("init", "--home", str(homes["alpha"]), "--office", "Demo office", "--name", "alpha",
             "--kit", str(base / "recovery-kit.pbkit"), env=env)
    up("alpha")
    _wait("alpha to start", lambda: (homes["alpha"] / "admin.json").exists() and _status(homes["alpha"]))
    alpha = _status(homes["alpha"]) or {}
    address = str(alpha["listen"][0])  # type: ignore[index]
    for name in ("beta", "gamma"):
        if not Home(homes[name]).initialised():
            # beta and gamma may coordinate too: kill alpha and watch one of them take over.
            token = _cli("invite", "--home", str(homes["alpha"]), "--roles", "agent,storage,coordinator").strip()
            _cli("join", "--home", str(homes[name]), "--name", name, token)
        up(name, "--peer", address)
    _wait("all three alive", lambda: all(
        p["state"] == "alive" for p in json.loads(_cli("peers", "--json", "--home", str(homes["alpha"])))))
    _wait("a coordinator", lambda: (_status(homes["alpha"]) or {}).get("coordinator"))
    a = ["--home", str(homes["alpha"])]
    sample = base / "sample"
    if first_time:
        _sample(sample)
        _cli("node", "add", NODE, *a)
        _cli("grant", NODE, "beta", "gamma", *a)
        _cli("dataset", "add", NODE, str(sample), *a)
        _cli("schedule", "add", NODE, "--every", "1m", "--window", "50s", *a)
    _wait("the configuration on every peer", lambda: len({str((_status(h) or {}).get("config_digest"))
                                                           for h in homes.values()}) == 1)
    job = json.loads(_cli("backup", NODE, "--json", *a))
    ui = json.loads(_cli("ui", "--json", *a))["url"]
    return sample, job, ui


def _banner(base: Path, homes: dict[str, Path], sample: Path, job: dict[str, Any], ui: str) -> None:
    pb = f"{sys.executable} -m peerbackup" if not Path(".venv/bin/peerbackup").exists() else ".venv/bin/peerbackup"
    print(f"""
Demo office running: alpha (admin), beta and gamma (agents, storage) with homes under {base}.
Backup node `{NODE}` backs up {sample} every minute; a first backup ({job['job']}) went to {job['agent_name']}.
Dashboard (alpha's; the address carries its admin token once, keep it to yourself):
  {ui}
Watch it, in another terminal:
  {pb} log {NODE} --home {homes['alpha']}          # who backed up what, under which coordinator
  {pb} snapshots {NODE} --home {homes['alpha']}
  {pb} status --home {homes['beta']}
  {pb} storage --home {homes['alpha']}
  {pb} restore {NODE} latest --target /tmp/demo-restore --home {homes['alpha']}
Stop an agent (kill -9 the `up --home {homes['beta']}` process): the next backups go to the other one.
Daemon logs: {base}/alpha.log, beta.log, gamma.log. Ctrl-C stops all three.
""", flush=True)


def run_office_demo(root: str) -> int:
    base = Path(root).absolute()
    homes = {n: base / n for n in NAMES}
    env = {**os.environ, "PEERBACKUP_KIT_PASSWORD": "demo passphrase, not for real backups"}
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def up(name: str, *extra: str) -> None:
        for stale in ("admin.json", "admin.token"):  # a killed run's, not to be taken for this one's
            (homes[name] / stale).unlink(missing_ok=True)
        with open(base / f"{name}.log", "ab") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "peerbackup", "up", "--home", str(homes[name]), "--listen", "127.0.0.1:0",
                 "--mdns-interface", "127.0.0.1", *extra], stdout=log, stderr=log, env=env, start_new_session=True))

    def on_signal(signum: int, _frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Set, not left to Python: a process started in the background by a non-interactive shell (`make run &`,
    # a CI script) inherits SIGINT ignored, and Python then installs no handler of its own.
    signal.signal(signal.SIGINT, on_signal)
    try:
        sample, job, ui = _start_office(base, homes, env, up)
        _banner(base, homes, sample, job, ui)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [NAMES[i] for i, p in enumerate(procs) if p.poll() is not None]
        print(f"peerbackup demo: daemon {', '.join(dead)} stopped (see its log); stopping the others",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the demo office...", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(run_office_demo(sys.argv[1] if len(sys.argv) > 1 else ".run/demo"))

