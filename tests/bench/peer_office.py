"""peer_bench.py's office: three daemons on loopback (alpha: admin and the source machine; beta, gamma:
storage peers) set up with a node of two replicas, their CPU time from /proc, and stopping them whatever
happens."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import REPO_ROOT, StepFailed
from tests.bench.measure import tail
from tests.daemon.harness import daemon_env, stop_group, wait_for

NODE = "bench"
REPLICAS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETUP_TIMEOUT = 120.0  # office start-up, liveness and the node reaching every peer (default timings)


def pb_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "peerbackup", *args]


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
        proc = subprocess.run(pb_cli(*args), capture_output=True, text=True,
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
            d.proc = subprocess.Popen(pb_cli(*args), stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, env=self.env, cwd=REPO_ROOT, start_new_session=True)

        def up() -> bool:
            assert d.proc is not None
            if d.proc.poll() is not None:
                raise StepFailed(f"daemon {d.name} exited {d.proc.returncode}:\n{tail(str(d.log))}")
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
                raise StepFailed(f"daemon {d.name} is not running:\n{tail(str(d.log))}")

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

