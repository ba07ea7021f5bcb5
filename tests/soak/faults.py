"""Faults, seeded: kill -9 and restart, SIGSTOP/SIGCONT, one daemon cut off, a partition of two against
three, the storage peer's disk filled, a clock step. At most two at once, never two on the same resource.

Every fault records when it began and ended (the soak's own clock) and is undone by `undo()`, which the
injector calls when the fault's time is up and `Injector.stop()` calls for whatever is still active.

Firewall: every daemon talks from 127.0.0.1 (loopback's source for every 127/8 destination), so the
source address cannot tell senders apart. Each daemon runs under its own group id instead, and an nft rule
`meta skgid G ip daddr D drop` in the output hook drops what the daemon of group G sends to the daemon
listening on D. Blocking both senders of a pair stops every exchange between them (a reply needs a
request). The rules live in a table of their own (`inet pbsoak<pid>`), removed whole at the end.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.soak.office import STORAGE, Member, SoakOffice

KINDS = ("kill", "stop", "cut", "partition", "disk_full", "clock_step")
MAX_ACTIVE = 2
TABLE_PREFIX = "pbsoak"


def nft(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["nft", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"nft {' '.join(args)}: {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tables() -> list[str]:
    """Tables of earlier soaks whose process is gone (a SIGKILLed run cannot clean up after itself)."""
    out = nft("list", "tables", check=False).stdout
    removed = []
    for m in re.finditer(rf"table inet ({TABLE_PREFIX}(\d+))", out):
        if int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            nft("delete", "table", "inet", m.group(1), check=False)
            removed.append(m.group(1))
    return removed


class Firewall:
    def __init__(self) -> None:
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self.created = False
        self.lock = threading.Lock()

    def create(self) -> None:
        nft("add", "table", "inet", self.table)
        self.created = True
        nft("add", "chain", "inet", self.table, "out", "{ type filter hook output priority 0; policy accept; }")

    def block(self, side_a: list[Member], side_b: list[Member]) -> list[int]:
        """Drop everything between the two sides; the rules' handles, for unblock."""
        handles = []
        with self.lock:
            for x in side_a:
                for y in side_b:
                    for src, dst in ((x, y), (y, x)):
                        res = nft("-e", "-a", "add", "rule", "inet", self.table, "out", "meta", "skgid", str(src.gid),
                                  "ip", "daddr", dst.host, "drop")
                        m = re.search(r"# handle (\d+)", res.stdout)
                        if m is None:
                            raise RuntimeError(f"nft gave no rule handle: {res.stdout!r}")
                        handles.append(int(m.group(1)))
        return handles

    def unblock(self, handles: list[int]) -> None:
        with self.lock:
            for h in handles:
                nft("delete", "rule", "inet", self.table, "out", "handle", str(h), check=False)

    def remove(self) -> str | None:
        if not self.created:
            return None
        res = nft("delete", "table", "inet", self.table, check=False)
        if res.returncode != 0:
            return f"nft delete table {self.table}: {res.stderr.strip()}"
        self.created = False
        return None


@dataclass
class Fault:
    kind: str
    targets: list[str]  # daemon names (a cut: the daemon cut off first; a partition: the side of two first)
    resources: frozenset[str]
    duration: float
    began: float = 0.0
    ended: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    undo_fn: Callable[[], None] | None = None
    errors: list[str] = field(default_factory=list)

    def sides(self) -> list[list[str]]:
        """A network fault's two sides: the daemon cut off, or the two, against the others."""
        k = 1 if self.kind == "cut" else 2
        return [self.targets[:k], self.targets[k:]]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "targets": self.targets, "began": round(self.began, 2),
                "ended": round(self.ended, 2) if self.ended else None, "duration": round(self.duration, 1),
                **self.detail, **({"errors": self.errors} if self.errors else {})}


class Injector:
    """A fault every fault_gap seconds (uniform), at most MAX_ACTIVE at once, until `stop_at`."""

    def __init__(self, soak: SoakOffice, firewall: Firewall, seed: int, stop_at: float,
                 log: Callable[[str], None]) -> None:
        self.soak = soak
        self.fw = firewall
        self.rng = random.Random(seed)
        self.stop_at = stop_at
        self.log = log
        self.lock = threading.Lock()
        self.active: list[Fault] = []
        self.history: list[Fault] = []
        self.down: set[str] = set()  # daemons killed or stopped right now: not sampled
        self.ballast = soak.storage_home / "ballast"
        self.stopping = threading.Event()
        self.restarts = True  # False on the way out: a killed daemon is not brought back only to be stopped
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.timers: list[threading.Thread] = []

    def start(self) -> None:
        self.thread.start()

    # ---- choosing -----------------------------------------------------------------------

    def _pick(self) -> Fault | None:
        t = self.soak.t
        names = list(self.soak.members)
        busy = frozenset().union(*(f.resources for f in self.active))
        for _ in range(20):
            kind = self.rng.choice(KINDS)
            if kind in ("kill", "stop"):
                who = self.rng.choice(names)
                span = t.stop_for if kind == "stop" else t.restart_after
                f = Fault(kind, [who], frozenset({f"proc:{who}"}), self.rng.uniform(*span))
            elif kind == "cut":
                who = self.rng.choice(names)
                f = Fault(kind, [who] + [n for n in names if n != who], frozenset({"net"}),
                          self.rng.uniform(*t.fault_for))
            elif kind == "partition":
                two = sorted(self.rng.sample(names, 2), key=names.index)
                f = Fault(kind, two + [n for n in names if n not in two], frozenset({"net"}),
                          self.rng.uniform(*t.fault_for))
            elif kind == "disk_full":
                f = Fault(kind, [STORAGE], frozenset({"disk"}), self.rng.uniform(*t.fault_for))
            else:
                who = self.rng.choice(names)
                step = self.rng.choice((-1, 1)) * self.rng.uniform(20, 180)
                f = Fault(kind, [who], frozenset({f"clock:{who}"}), self.rng.uniform(*t.fault_for),
                          detail={"step_s": round(step, 1)})
            if not f.resources & busy:
                return f
        return None

    # ---- doing and undoing --------------------------------------------------------------------

    def _apply(self, f: Fault) -> None:
        m = self.soak.members
        if f.kind == "kill":
            who = m[f.targets[0]]
            assert who.peer is not None and who.peer.proc is not None
            self.down.add(who.name)
            try:
                os.killpg(who.peer.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            who.peer.proc.wait(timeout=15)
            f.undo_fn = lambda: self._restart(who, f)
        elif f.kind == "stop":
            who = m[f.targets[0]]
            assert who.peer is not None and who.peer.proc is not None
            pid = who.peer.proc.pid
            self.down.add(who.name)
            os.killpg(pid, signal.SIGSTOP)

            def cont() -> None:
                try:
                    os.killpg(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                self.down.discard(who.name)
            f.undo_fn = cont
        elif f.kind in ("cut", "partition"):
            sides = f.sides()
            handles = self.fw.block([m[n] for n in sides[0]], [m[n] for n in sides[1]])
            f.detail["sides"] = sides
            f.undo_fn = lambda: self.fw.unblock(handles)
        elif f.kind == "disk_full":
            st = os.statvfs(self.soak.storage_home)
            free = st.f_bavail * st.f_frsize
            f.detail["filled_bytes"] = free
            with open(self.ballast, "wb") as fh:
                try:
                    os.posix_fallocate(fh.fileno(), 0, max(free, 1))
                except OSError:
                    pass
                # Whatever fallocate left (rounding), written until the disk says no.
                try:
                    while True:
                        fh.write(b"\0" * 65536)
                        fh.flush()
                except OSError:
                    pass
            f.undo_fn = lambda: self.ballast.unlink(missing_ok=True)
        elif f.kind == "clock_step":
            who = m[f.targets[0]]
            who.clock_file.write_text(f"{f.detail['step_s']:+.1f}\n")

            def back() -> None:
                who.clock_file.write_text("+0\n")
            f.undo_fn = back

    def _restart(self, who: Member, f: Fault) -> None:
        # A start can fail while the machine is loaded or the disk full: try again until it comes up.
        deadline = time.monotonic() + 120
        while self.restarts:
            try:
                self.soak.start(who)
                break
            except (AssertionError, OSError) as exc:
                f.errors.append(f"restart: {str(exc)[:300]}")
                if time.monotonic() > deadline:
                    break
                time.sleep(3)
        self.down.discard(who.name)

    def _undo(self, f: Fault) -> None:
        with self.lock:
            if f not in self.active:
                return
            self.active.remove(f)
        try:
            if f.undo_fn is not None:
                f.undo_fn()
        except Exception as exc:
            f.errors.append(f"undo: {exc}")
        f.ended = time.time()
        self.log(f"fault end   {f.kind} {','.join(f.targets)}" + (f" ({'; '.join(f.errors)})" if f.errors else ""))

    def _timer(self, f: Fault) -> None:
        self.stopping.wait(f.duration)
        self._undo(f)

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.stopping.wait(self.rng.uniform(*self.soak.t.fault_gap)):
                return
            while len(self.active) >= MAX_ACTIVE and not self.stopping.is_set():
                time.sleep(0.5)
            if self.stopping.is_set() or time.time() >= self.stop_at:
                return
            f = self._pick()
            if f is None:
                continue
            with self.lock:
                self.active.append(f)
                self.history.append(f)
            f.began = time.time()
            # A fault shorter than what is left of the fault time: the quiet tail stays quiet.
            f.duration = min(f.duration, max(1.0, self.stop_at - f.began))
            try:
                self._apply(f)
            except Exception as exc:
                f.errors.append(f"apply: {exc}")
            self.log(f"fault begin {f.kind} {','.join(f.targets)} for {f.duration:.0f} s"
                     + (f" {f.detail}" if f.detail else ""))
            th = threading.Thread(target=self._timer, args=(f,), name=f"fault-{f.kind}", daemon=True)
            self.timers.append(th)
            th.start()

    def stop(self, restarts: bool = True) -> None:
        """No new fault; every active one undone now (the timers see the event and undo theirs). Without
        `restarts`, killed daemons stay down (the way out after an error or Ctrl-C)."""
        self.restarts = restarts
        self.stopping.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=30)
        for th in self.timers:
            th.join(timeout=150 if restarts else 10)
        for f in list(self.active):
            self._undo(f)

    def emergency_undo(self) -> None:
        """On the way out whatever happened: every daemon continued, every clock true, the disk freed."""
        for m in self.soak.members.values():
            if m.peer is not None and m.peer.proc is not None and m.peer.proc.poll() is None:
                try:
                    os.killpg(m.peer.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            try:
                m.clock_file.write_text("+0\n")
            except OSError:
                pass
        self.ballast.unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for f in self.history:
            out[f.kind] += 1
        return out
