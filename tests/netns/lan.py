"""Several hosts on one machine: network namespaces on a private bridge, real daemons inside them.

Layout of one `Lan` (nothing is connected to the root namespace, and no name is
created there, so a crashed run cannot disturb the machine's own network):

    switch namespace  <prefix>-sw : bridge br0, one port pN per host (pN is what a partition downs)
    host namespace    <prefix>-hN : eth0 = 10.77.0.(10+N)/24 (the other end of pN), lo up

Namespace names carry the pytest process id (`pbn<pid>-<k>-…`), so a run never
collides with the leftovers of a crashed one; `remove_stale()` deletes those
(whose process is gone) when a session starts.

Multicast route: not needed. Checked with a bare namespace holding only the
/24 route: zeroconf sets IP_MULTICAST_IF to the --mdns-interface address, and
Linux routes a multicast datagram with an output interface given without
consulting the routing table. test_discovery proves it on every run; pass
`multicast_route=True` to `Lan.create` to add `224.0.0.0/4 dev eth0` anyway.

Every daemon runs as `ip netns exec NS python -m peerbackup up ...`, in its own
session so teardown can kill its whole process group; every CLI call (status,
peers, office log, invite, join, remove-peer) goes through `ip netns exec` too,
because the admin API listens on 127.0.0.1 inside the namespace.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.daemon.harness import FAST, daemon_env, stop_group, wait_for
from tests.helpers import Result

T = TypeVar("T")
R = TypeVar("R")

PREFIX = "pbn"
SUBNET = "10.77.0"
PORT = 7420
KIT_PASSWORD = "kit passphrase for the netns tests"
# The tests/daemon timings: a heartbeat every 0.5 s, suspect after 2 s, dead after 3 s, lease 3 s.
TIMINGS = FAST
LEASE = float(TIMINGS["lease"])
HEARTBEAT = float(TIMINGS["heartbeat"])

_STALE = re.compile(rf"^{PREFIX}(\d+)-")
_counter = itertools.count(1)


class NetnsDenied(Exception):
    """`ip netns add` was refused for lack of privilege (the one reason to skip)."""


# ---- small helpers ---------------------------------------------------------------------


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> Result:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise AssertionError(f"{cmd[0]} not found: these tests need iproute2 (`ip netns`)") from None
    res = Result(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return res


def namespaces() -> list[str]:
    res = sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in res.out.splitlines() if line.strip()]


def _kill_inside(ns: str) -> None:
    res = sh("ip", "netns", "pids", ns, check=False)
    for pid in (int(p) for p in res.out.split() if p.isdigit()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pid_alive(pid: int) -> bool:
    # A zombie counts as gone: a killed pytest may wait a while for its reaper.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def remove_stale() -> list[str]:
    """Delete the namespaces (and what runs in them) of earlier runs whose pytest process is gone."""
    removed = []
    for ns in namespaces():
        m = _STALE.match(ns)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        _kill_inside(ns)
        sh("ip", "netns", "del", ns, check=False)
        removed.append(ns)
    return removed


# ---- the network -----------------------------------------------------------------------


@dataclass
class Host:
    index: int  # 1-based
    ns: str
    ip: str
    switch_port: str  # the veth end inside the switch namespace: down = partitioned

    @property
    def address(self) -> str:
        return f"{self.ip}:{PORT}"


@dataclass
class Lan:
    n: int
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-{next(_counter)}")
    hosts: list[Host] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    def _add_ns(self, name: str) -> None:
        res = sh("ip", "netns", "add", name, check=False)
        if res.rc != 0:
            if "Operation not permitted" in res.err or "Permission denied" in res.err:
                raise NetnsDenied(f"`ip netns add` is not permitted here: {res.err.strip()}")
            raise AssertionError(f"ip netns add {name} failed: {res.err.strip()}")
        self.created.append(name)

    def create(self, multicast_route: bool = False) -> Lan:
        sw = self.switch
        self._add_ns(sw)
        sh("ip", "-n", sw, "link", "set", "lo", "up")
        # No snooping: the bridge floods multicast like a dumb office switch.
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            ns, port, ip = f"{self.tag}-h{i}", f"p{i}", f"{SUBNET}.{10 + i}"
            self._add_ns(ns)
            # Both ends are born in their namespaces: nothing appears in the root namespace.
            sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            if multicast_route:
                sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            self.hosts.append(Host(i, ns, ip, port))
        for h in self.hosts:
            self._wait_up(h)
        return self

    @staticmethod
    def _wait_up(h: Host) -> None:
        def up() -> bool:
            return "state UP" in sh("ip", "-n", h.ns, "link", "show", "eth0").out

        wait_for(up, 10, f"{h.ns} eth0 to come up")

    def partition(self, host: Host) -> None:
        sh("ip", "-n", self.switch, "link", "set", host.switch_port, "down")

    def heal(self, host: Host) -> None:
        sh("ip", "-n", self.switch, "link", "set", host.switch_port, "up")

    def destroy(self) -> None:
        """Kill whatever still runs inside and delete every namespace; the switch last."""
        for ns in reversed(self.created):
            _kill_inside(ns)
            sh("ip", "netns", "del", ns, check=False)
        left = [ns for ns in namespaces() if ns in self.created]
        self.created = left
        if left:
            raise AssertionError(f"namespaces left behind: {left}")


# ---- daemons in the namespaces ---------------------------------------------------------


@dataclass
class Node:
    name: str
    host: Host
    home: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    peer_id: str = ""
    spawned_at: float = 0.0  # wall clock of the last start
    log_offset: int = 0  # size of the log at the last start

    @property
    def address(self) -> str:
        return self.host.address

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def events(self, what: str, since_last_start: bool = False) -> list[tuple[float, str]]:
        """(wall-clock time, line) of every log line of event `what` (the daemon's own timestamps)."""
        text = self.log_text()
        if since_last_start:
            text = self.log.read_bytes()[self.log_offset:].decode(errors="replace")
        out = []
        for line in text.splitlines():
            parts = line.split(maxsplit=2)
            if len(parts) >= 3 and parts[2].split(" ", 1)[0] == what:
                out.append((dt.datetime.fromisoformat(parts[0]).timestamp(), line))
        return out


class NetOffice:
    """Homes under tmp, one daemon per host namespace, every process killed at close() whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.nodes: dict[str, Node] = {}
        self.env = daemon_env(KIT_PASSWORD)
        self._pool = ThreadPoolExecutor(max_workers=8)

    def _argv(self, host: Host, *args: str) -> list[str]:
        return ["ip", "netns", "exec", host.ns, sys.executable, "-m", "peerbackup", *args]

    def cli(self, host: Host, *args: str, check: bool = True, timeout: float = 30) -> Result:
        proc = subprocess.run(self._argv(host, *args), capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{host.ns}] peerbackup {' '.join(args)} exited {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return res

    def node(self, name: str, host: Host) -> Node:
        if name not in self.nodes:
            self.nodes[name] = Node(name, host, self.tmp / name, self.tmp / f"{name}.log")
        return self.nodes[name]

    # ---- membership (init, invite, join, remove-peer) ----

    def init(self, name: str, host: Host, office: str = "Acme") -> Node:
        n = self.node(name, host)
        out = self.cli(host, "init", "--home", str(n.home), "--office", office, "--name", name, "--json").json()
        n.peer_id = out["peer_id"]
        return n

    def invite(self, inviter: Node, *extra: str) -> str:
        roles = [] if "--roles" in extra else ["--roles", "agent,storage,coordinator"]  # failover scenarios
        return str(self.cli(inviter.host, "invite", "--home", str(inviter.home), "--json", *roles, *extra)
                   .json()["token"])

    def join(self, name: str, host: Host, token: str) -> Node:
        n = self.node(name, host)
        out = self.cli(host, "join", "--home", str(n.home), "--name", name, "--json", token).json()
        n.peer_id = out["peer_id"]
        return n

    def join_all(self, inviter: Node, *specs: tuple[str, Host, tuple[str, ...]]) -> list[Node]:
        """(name, host, invite options) each: invite then join, the chains run side by side."""
        for name, host, _ in specs:
            self.node(name, host)
        return self.each(lambda spec: self.join(spec[0], spec[1], self.invite(inviter, *spec[2])), specs)

    def remove_peer(self, admin: Node, who: str) -> Any:
        return self.cli(admin.host, "remove-peer", "--home", str(admin.home), who, "--json").json()

    # ---- reading a running daemon ----

    def status(self, n: Node) -> dict[str, Any]:
        return dict(self.cli(n.host, "status", "--home", str(n.home), "--json").json())

    def peers(self, n: Node) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.cli(n.host, "peers", "--home", str(n.home), "--json").json()}

    def office_log(self, n: Node) -> list[dict[str, Any]]:
        return list(self.cli(n.host, "office", "log", "--home", str(n.home), "--json").json())

    def each(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """fn on every item at once (each CLI call costs a Python start-up, ~0.5 s)."""
        return list(self._pool.map(fn, list(items)))

    def par(self, *fns: Callable[[], Any]) -> list[Any]:
        """Run the thunks side by side; their results in order."""
        return self.each(lambda fn: fn(), fns)

    def statuses(self, nodes: Iterable[Node]) -> list[dict[str, Any]]:
        return self.each(self.status, nodes)

    # ---- daemons ----

    def start(self, n: Node, *extra: str) -> Node:
        self.spawn(n, *extra)
        self.wait_started(n)
        return n

    def start_all(self, *nodes: Node) -> None:
        """Spawn every daemon, then wait for each: the start-ups overlap."""
        for n in nodes:
            self.spawn(n)
        for n in nodes:
            self.wait_started(n)

    def spawn(self, n: Node, *extra: str) -> None:
        ip = n.host.ip
        args = ["up", "--home", str(n.home), "--listen", f"{ip}:{PORT}", "--mdns-interface", ip, "-v"]
        for k, v in TIMINGS.items():
            args += ["--set", f"{k}={v}"]
        args += list(extra)
        for stale in ("admin.json", "admin.token"):  # a killed daemon leaves them behind
            (n.home / stale).unlink(missing_ok=True)
        n.log_offset = n.log.stat().st_size if n.log.exists() else 0
        n.spawned_at = time.time()
        with open(n.log, "ab") as log:
            n.proc = subprocess.Popen(self._argv(n.host, *args), stdout=log, stderr=log, env=self.env,
                                      start_new_session=True)

    def wait_started(self, n: Node) -> None:
        wait_for(lambda: self._started(n), 20, f"daemon {n.name} to start in {n.host.ns} (log {n.log})")

    def _started(self, n: Node) -> bool:
        # Ready for the CLI once admin.json is written: the peer listener is up before it (joins work),
        # the mDNS probe and registration (~3 s) come after it and need not be waited for.
        assert n.proc is not None
        if n.proc.poll() is not None:
            raise AssertionError(f"daemon {n.name} exited {n.proc.returncode}:\n{n.log_text()}")
        return (n.home / "admin.json").exists()

    def kill(self, n: Node, sig: int = signal.SIGKILL) -> int:
        assert n.proc is not None
        try:
            os.killpg(n.proc.pid, sig)
        except ProcessLookupError:
            pass
        return n.proc.wait(timeout=15)

    def close(self) -> None:
        for n in self.nodes.values():
            if n.proc is not None:
                stop_group(n.proc)
        self._pool.shutdown(wait=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ({n.host.ns}, {n.address}) ---\n{n.log_text()}" for n in self.nodes.values())


# ---- what the tests ask of the office --------------------------------------------------


def agreed(office: NetOffice, nodes: list[Node], who: Node) -> int | None:
    """The term, when every node's status names who as coordinator under one term; else None."""
    seen = {(st["coordinator"], st["term"]) for st in office.statuses(nodes)}
    if len(seen) == 1:
        coordinator, term = next(iter(seen))
        if coordinator == who.peer_id and isinstance(term, int):
            return term
    return None


def claims(log: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """The (term, writer) tokens of the coordinator.claim events of an `office log --json` listing."""
    return [(int(e["fields"]["term"]), str(e["writer"])) for e in log if e["kind"] == "coordinator.claim"]
