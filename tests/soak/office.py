"""The soak's office: five real daemons on loopback, each on its own 127.0.77.N address and group id.

alpha is the admin, beta, gamma and delta the agents of node `data` (they may coordinate too), epsilon a
storage-only peer whose home is a small tmpfs (the disk-full fault fills it). Every daemon runs under
libfaketime with a timestamp file the clock-step fault rewrites, and under its own group id, so nft rules
can match the packets its sockets send (loopback has one source address for everyone: the group is what
tells the senders apart; see faults.Firewall).
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerbackup.core.settings import Settings
from tests.daemon.harness import FAST, Office, Peer, wait_for

NODE = "data"
ADMIN, AGENTS, STORAGE = "alpha", ("beta", "gamma", "delta"), "epsilon"
NAMES = (ADMIN, *AGENTS, STORAGE)
SUBNET = "127.0.77"
STORAGE_HOME_SIZE = "48m"


@dataclass(frozen=True)
class Timings:
    """One profile of the soak: the daemons' timings, the schedule, the faults' pace."""

    name: str
    daemon: dict[str, str]
    every: int  # the schedule's interval (s)
    window: int  # the schedule's window (s)
    user_every: float  # the user changes the data once per this many seconds
    fault_gap: tuple[float, float]  # seconds between two faults
    stop_for: tuple[float, float]  # SIGSTOP length
    fault_for: tuple[float, float]  # length of a cut, a partition, a full disk, a clock step
    restart_after: tuple[float, float]  # a killed daemon comes back after this
    quiet: float  # seconds without faults at the end of the run
    snapshot_poll: float  # seconds between two listings of the node's snapshots
    keep_last: int  # the node's retention policy

    @property
    def lease(self) -> float:
        return float(self.daemon["lease"])

    @property
    def dead(self) -> float:
        return float(self.daemon["dead"])

    @property
    def unended_grace(self) -> float:
        """How long after its deadline the coordinator logs a job left open missed (office/jobs/scheduler.py
        listen_first), and a heartbeat for its tick."""
        s = Settings()
        return (float(self.daemon.get("progress_interval", s.progress_interval))
                + float(self.daemon["request_timeout"]) + float(self.daemon["heartbeat"]))


def _defaults() -> dict[str, str]:
    # The product's own timings, written out: the harness applies FAST under whatever it is given.
    s = Settings()
    return {k: (f"{getattr(s, k):g}s" if k == "min_schedule_interval" else f"{getattr(s, k):g}") for k in FAST}


# Faster than the defaults, slower than the daemon tests' FAST: five daemons, a user and a fault injector share
# this machine's two cores with whatever else runs, and FAST's 1 s request timeout makes peers dead under load.
FAST_SOAK = {**FAST, "heartbeat": "0.5", "suspect": "3", "dead": "5", "request_timeout": "2", "lease": "6",
             "renew": "2"}

TIMINGS = {
    "default": Timings("default", _defaults(), every=60, window=45, user_every=60, fault_gap=(10, 40),
                       stop_for=(5, 60), fault_for=(10, 60), restart_after=(1, 10), quiet=180,
                       snapshot_poll=60, keep_last=8),
    "fast": Timings("fast", FAST_SOAK, every=15, window=12, user_every=15, fault_gap=(5, 20), stop_for=(3, 20),
                    fault_for=(5, 25), restart_after=(1, 5), quiet=45, snapshot_poll=30, keep_last=4),
}


def faketime_lib() -> str:
    libs = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1")) + \
        sorted(Path("/usr/lib/faketime").glob("libfaketime.so.1"))
    if not libs:
        raise SystemExit("libfaketime is missing: apt-get install faketime (.ci/system-deps does)")
    return str(libs[0])


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    """One daemon of the soak and what it takes to start it again the same way."""

    name: str
    index: int
    address: str  # HOST:PORT it listens on and is known at
    gid: int
    clock_file: Path
    peer: Peer | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]


class SoakOffice:
    def __init__(self, root: Path, timings: Timings) -> None:
        self.root = root
        self.t = timings
        self.office = Office(root / "homes")
        self.office.env["PEERBACKUP_CACHE_DIR"] = str(root / "cache")
        (root / "homes").mkdir(parents=True, exist_ok=True)
        base = 300_000 + (os.getpid() % 100_000) * 8  # group ids no one else uses, one set per soak process
        self.members: dict[str, Member] = {}
        for i, name in enumerate(NAMES):
            host = f"{SUBNET}.{11 + i}"
            self.members[name] = Member(name, i, f"{host}:{free_port(host)}", base + i, root / f"clock-{name}")
        self.data = root / "data"
        self.datasets = [self.data / "docs", self.data / "mail"]
        self.storage_home = root / "homes" / STORAGE
        self.mounted = False
        self.lib = faketime_lib()

    # ---- the daemons ------------------------------------------------------------------

    def env(self, m: Member) -> dict[str, str]:
        # Monotonic stays true (a step of the wall clock does not move it); the file is re-read every second.
        # Without FORCE_MONOTONIC_FIX=0, libfaketime 0.9.10 with a true monotonic clock turns every timed wait
        # of a thread (aiosqlite's polling) into a futex spin: 40 % of a core per idle daemon, measured.
        return {"LD_PRELOAD": self.lib, "FAKETIME_TIMESTAMP_FILE": str(m.clock_file),
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_FORCE_MONOTONIC_FIX": "0"}

    def start(self, m: Member) -> Peer:
        assert m.peer is not None
        others = [x.address for x in self.members.values() if x is not m]
        args = ["--listen", m.address, *[a for addr in others for a in ("--peer", addr)]]
        return self.office.start(m.peer, *args, mdns=False, timings=self.t.daemon, env=self.env(m), group=m.gid)

    def alive(self, m: Member) -> bool:
        return m.peer is not None and m.peer.proc is not None and m.peer.proc.poll() is None

    def mount_storage_home(self) -> None:
        self.storage_home.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORAGE_HOME_SIZE},mode=700", "pbsoak",
                        str(self.storage_home)], check=True, capture_output=True)
        self.mounted = True

    def setup(self, log: Any) -> dict[str, Any]:
        """Start the office and configure node `data`; returns the schedule as the admin API gave it."""
        for m in self.members.values():
            m.clock_file.write_text("+0\n")
        self.mount_storage_home()
        o = self.office
        a = self.members[ADMIN]
        a.peer = o.init(ADMIN, office="Soak")
        self.start(a)
        for name in AGENTS:
            self.members[name].peer = o.join(name, o.invite(a.peer))
        self.members[STORAGE].peer = o.join(STORAGE, o.invite(a.peer, "--roles", "storage"))
        for name in (*AGENTS, STORAGE):
            self.start(self.members[name])
        log(f"daemons up: {', '.join(f'{m.name} {m.address}' for m in self.members.values())}")
        peers = [m.peer for m in self.members.values() if m.peer is not None]
        wait_for(lambda: all(p["state"] == "alive" for p in a.peer.peers().values())  # type: ignore[union-attr]
                 and len(a.peer.peers()) == len(NAMES), 180, "every peer alive")  # type: ignore[union-attr]
        home = ["--home", str(a.peer.home)]
        for d in self.datasets:
            d.mkdir(parents=True, exist_ok=True)
        # Generous timeouts, and the grant does not wait for every peer: a loaded machine makes peers
        # suspect for a moment, and the configuration is awaited below anyway.
        o.cli("node", "add", NODE, "--replicas", "2", *home, timeout=180)
        o.cli("grant", NODE, *AGENTS, "--no-wait", *home, timeout=180)
        for d in self.datasets:
            # The agents are not asked whether they can read it: on a loaded machine one may be suspect
            # for a moment, and the folders are there.
            o.cli("dataset", "add", NODE, str(d), "--allow-missing", *home, timeout=180)
        o.cli("node", "policy", NODE, "--keep-last", str(self.t.keep_last), *home, timeout=180)
        wait_for(lambda: len({p.status()["config_digest"] for p in peers}) == 1
                 and all(p.status()["coordinator"] for p in peers), 180, "configuration and a coordinator everywhere")
        code, out = a.peer.api("POST", "/v1/schedules", {"node": NODE, "every": self.t.every,
                                                         "window": self.t.window, "tz": "UTC"})
        if code != 200:
            raise RuntimeError(f"schedule add failed: {code} {out}")
        log(f"node {NODE}: data sets {', '.join(map(str, self.datasets))}; schedule {out['schedule']['id']} "
            f"every {self.t.every} s, window {self.t.window} s; keep-last {self.t.keep_last}")
        return dict(out["schedule"])

    def close(self) -> list[str]:
        """Stop every daemon and unmount; what could not be undone, as messages."""
        problems: list[str] = []
        try:
            self.office.close()
        except Exception as exc:  # the mount must still go
            problems.append(f"stopping daemons: {exc}")
        if self.mounted:
            res = subprocess.run(["umount", str(self.storage_home)], capture_output=True, text=True)
            if res.returncode != 0:
                res = subprocess.run(["umount", "-l", str(self.storage_home)], capture_output=True, text=True)
            if res.returncode != 0:
                problems.append(f"umount {self.storage_home}: {res.stderr.strip()}")
            else:
                self.mounted = False
        return problems
