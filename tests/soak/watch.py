"""What the soak watches while it runs: who coordinates (every second, each live daemon's status), when each
event of the node's log was first seen, and the node's snapshots (listed now and then: retention forgets
some, and a run whose agent died before its job.done left only its snapshots)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.soak.office import ADMIN, NODE, Member, SoakOffice


def admin_get(home: Path, path: str, timeout: float) -> Any:
    info = json.loads((home / "admin.json").read_text())
    tok = (home / "admin.token").read_text().strip()
    req = urllib.request.Request(info["url"] + path, headers={"X-Peerbackup-Token": tok})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


class Watcher:
    def __init__(self, soak: SoakOffice, down: set[str], snapshot_poll: float) -> None:
        self.soak = soak
        self.down = down
        self.snapshot_poll = snapshot_poll
        self.samples: list[tuple[float, dict[str, str | None]]] = []  # (time, name -> coordinator it names)
        self.first_seen: dict[str, float] = {}  # node-log event id -> when the soak first saw it
        self.snapshots: dict[str, dict[str, Any]] = {}  # id -> the listing's entry, with first_seen
        self.errors: dict[str, int] = {}
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=len(soak.members), thread_name_prefix="status")
        self.threads = [threading.Thread(target=fn, name=fn.__name__, daemon=True)
                        for fn in (self._sample_loop, self._log_loop, self._snapshot_loop)]
        self.ids: dict[str, str] = {}  # name -> peer id

    def start(self) -> None:
        for m in self.soak.members.values():
            assert m.peer is not None
            self.ids[m.name] = m.peer.peer_id
        for th in self.threads:
            th.start()

    def stop(self) -> None:
        self.stopping.set()
        for th in self.threads:
            if th.ident is not None:
                th.join(timeout=10)  # a snapshot listing in flight ends on its own
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _err(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    # ---- the coordinator, every second ------------------------------------------------------

    def _status(self, m: Member) -> str | None:
        assert m.peer is not None
        st = admin_get(m.peer.home, "/v1/status", 1.5)
        return str(st["coordinator"]) if st.get("coordinator") else None

    def sample(self) -> None:
        now = time.time()
        live = [m for m in self.soak.members.values() if m.name not in self.down and self.soak.alive(m)]
        futs = {m.name: self.pool.submit(self._status, m) for m in live}
        out: dict[str, str | None] = {}
        for name, fut in futs.items():
            try:
                out[name] = fut.result(timeout=2.0)
            except Exception:
                self._err("status")  # stopped or killed meanwhile, or too slow: no answer this second
        self.samples.append((now, out))

    def _sample_loop(self) -> None:
        nxt = time.monotonic()
        while not self.stopping.is_set():
            self.sample()
            nxt += 1.0
            self.stopping.wait(max(0.0, nxt - time.monotonic()))

    # ---- the node's log, every few seconds -----------------------------------------------

    def node_log(self, timeout: float = 10.0) -> list[dict[str, Any]] | None:
        """The node's log from the first daemon that answers (the admin first)."""
        order = [self.soak.members[ADMIN]] + [m for m in self.soak.members.values() if m.name != ADMIN]
        for m in order:
            if m.name in self.down or not self.soak.alive(m) or m.peer is None:
                continue
            try:
                return list(admin_get(m.peer.home, f"/v1/log?log={quote('node:' + NODE)}", timeout))
            except Exception:
                continue
        return None

    def _log_loop(self) -> None:
        while not self.stopping.wait(4.0):
            events = self.node_log()
            if events is None:
                self._err("node log")
                continue
            now = time.time()
            for e in events:
                self.first_seen.setdefault(str(e["id"]), now)

    # ---- the snapshots, now and then -------------------------------------------------------

    def list_snapshots(self, timeout: float = 60) -> list[dict[str, Any]] | None:
        m = self.soak.members[ADMIN]
        assert m.peer is not None
        try:
            res = subprocess.run([sys.executable, "-m", "peerbackup", "snapshots", NODE, "--json", "--home",
                                  str(m.peer.home)], capture_output=True, text=True, timeout=timeout,
                                 env=self.soak.office.env)
        except subprocess.TimeoutExpired:
            return None
        if res.returncode != 0:
            return None
        return list(json.loads(res.stdout))

    def record_snapshots(self, snaps: list[dict[str, Any]]) -> None:
        now = time.time()
        for s in snaps:
            if s["id"] not in self.snapshots:
                self.snapshots[s["id"]] = {**s, "first_seen": now}

    def _snapshot_loop(self) -> None:
        while not self.stopping.wait(self.snapshot_poll):
            if ADMIN in self.down:
                continue
            snaps = self.list_snapshots()
            if snaps is None:
                self._err("snapshots")
                continue
            self.record_snapshots(snaps)
