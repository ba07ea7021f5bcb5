"""The "user": changes the node's data sets now and then and records every state they went through.

Every change is one atomic step: a file written beside the data sets (same file system) and renamed into
place, or a file unlinked. So a reader sees either the state before a step or the state after it, never a
half-written file. Each state is recorded with the interval it may have been current in: from just before
the step that made it (the step may take effect at once) to just after the step that replaced it. A backup
that ran from `a` to `b` is right when each file it restored equals that file (or its absence) in some state
whose interval meets [a, b]: that is all a backup of a changing folder can promise.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class State:
    begin: float  # may have been current from here (just before its step)
    end: float | None  # ... until here (just after the next step); None: still current
    files: dict[str, str]  # relative path -> sha256


class User:
    def __init__(self, datasets: list[Path], staging: Path, seed: int, every: float) -> None:
        self.datasets = datasets
        self.staging = staging
        self.rng = random.Random(f"user-{seed}")
        self.every = every
        self.states: dict[str, list[State]] = {str(d): [] for d in datasets}
        self.changes = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="user", daemon=True)
        self._n = 0

    def _data(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(1_000, 40_000))

    def _write(self, d: Path, rel: str) -> str:
        data = self._data()
        self._n += 1
        tmp = self.staging / f"tmp{self._n}"
        tmp.write_bytes(data)
        dest = d / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, dest)
        return hashlib.sha256(data).hexdigest()

    def seed_data(self) -> None:
        """The first state: a dozen files in each data set, in a few folders."""
        self.staging.mkdir(parents=True, exist_ok=True)
        for d in self.datasets:
            d.mkdir(parents=True, exist_ok=True)
            files = {f"dir{i % 3}/file{i}.bin": self._write(d, f"dir{i % 3}/file{i}.bin") for i in range(12)}
            self.states[str(d)].append(State(0.0, None, files))

    def _step(self, d: Path) -> None:
        states = self.states[str(d)]
        cur = dict(states[-1].files)
        op = self.rng.choice(("add", "modify", "delete")) if len(cur) > 4 else "add"
        before = time.time()
        if op == "add":
            self._n += 1
            rel = f"dir{self.rng.randrange(4)}/new{self._n}.bin"
            cur[rel] = self._write(d, rel)
        elif op == "modify":
            rel = self.rng.choice(sorted(cur))
            cur[rel] = self._write(d, rel)
        else:
            rel = self.rng.choice(sorted(cur))
            os.unlink(d / rel)
            del cur[rel]
        after = time.time()
        with self.lock:
            states[-1].end = after
            states.append(State(before, None, cur))

    def change(self) -> None:
        """One change of the data: a few steps in each data set, a moment apart."""
        for d in self.datasets:
            for _ in range(self.rng.randint(1, 4)):
                self._step(d)
                if self.stopping.wait(self.rng.uniform(0, 1.5)):
                    return
        self.changes += 1

    def _run(self) -> None:
        # Once per period, at a random moment in it: some changes overlap a backup, some do not.
        while not self.stopping.is_set():
            offset = self.rng.uniform(0, self.every)
            if self.stopping.wait(offset):
                return
            self.change()
            if self.stopping.wait(self.every - offset):
                return

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=30)

    def candidates(self, dataset: str, a: float, b: float) -> list[State]:
        """The states that may have been current at some instant of [a, b]."""
        with self.lock:
            return [s for s in self.states[dataset] if s.begin <= b and (s.end is None or s.end >= a)]


def compare(restored: dict[str, str], states: list[State]) -> list[str]:
    """Each path (restored or in a candidate state) as restored must be as in one of the states."""
    problems = []
    paths = set(restored).union(*(s.files for s in states))
    for p in sorted(paths):
        allowed = {s.files.get(p) for s in states}
        got = restored.get(p)
        if got not in allowed:
            problems.append(f"{p}: restored {'missing' if got is None else got[:12]}, source had "
                            + ", ".join(sorted('absent' if h is None else h[:12] for h in allowed)))
    return problems
