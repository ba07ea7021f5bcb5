"""Real daemons as subprocesses, on loopback, with fast timings; always cleaned up."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from peerbackup.cli.common import api
from peerbackup.cli.jobs import node_events
from peerbackup.core.certs import COORDINATOR_ROLES
from peerbackup.core.events import CONTROL_LOG
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.office.membership.home import Home
from tests.helpers import Result

KIT_PASSWORD = "kit passphrase for tests"
# Fast but not flaky on a loaded 2-core machine: a heartbeat every 0.5 s, dead after 3 s (suspect after
# heartbeat + request_timeout, as the daemon requires). A daemon's idle CPU is mostly its heartbeats: at
# 0.25 s each idle daemon took 2.3 % of a core, at 0.5 s 1.2 %, and make test runs thousands of daemon-seconds.
# Schedules every few seconds too (the office minimum is 1 min by default).
FAST = {"heartbeat": "0.5", "suspect": "2", "dead": "3", "request_timeout": "1", "lease": "3", "renew": "1",
        "min_schedule_interval": "1s"}


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll pred until it returns something truthy; fail with what was awaited and the last answer."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = pred()
        except Exception as exc:  # the last failure goes into the message
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


async def await_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """wait_for inside an event loop (daemons in the test's own loop); pred may be a coroutine function."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = pred()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def holds_for(pred: Callable[[], Any], duration: float, what: str, interval: float = 0.2) -> None:
    """Fail as soon as pred stops holding within duration (a flap), with the answer that broke it."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        got = pred()
        if not got:
            raise AssertionError(f"{what} stopped holding: {got!r}")
        time.sleep(interval)


def _home(home: Path | str | Sequence[str]) -> Home:
    return Home(Path(home if isinstance(home, Path | str) else home[list(home).index("--home") + 1]))


def node_log(home: Path | str | Sequence[str], node: str) -> list[dict[str, Any]]:
    """What `peerbackup log NODE --json --home HOME` prints, asked of the daemon's admin API in this process:
    polls need no interpreter start each (the command's own output is tested in test_jobs.py)."""
    return node_events(_home(home), node)


def office_log(home: Path | str | Sequence[str]) -> list[dict[str, Any]]:
    """What `peerbackup office log --json --home HOME` prints, asked in this process."""
    return list(api(_home(home), "GET", f"/v1/log?log={CONTROL_LOG}"))


def daemon_env(kit_password: str = KIT_PASSWORD) -> dict[str, str]:
    """The environment daemons and CLI calls run with: weak KDF, a kit passphrase, no inherited home."""
    env = {**os.environ, "PEERBACKUP_INSECURE_TEST_KDF": "1", "PEERBACKUP_KIT_PASSWORD": kit_password}
    env.pop("PEERBACKUP_HOME", None)
    return env


def post_raw(address: str, path: str, data: bytes | None, method: str = "POST") -> tuple[int, bytes]:
    """Raw bytes to a daemon's peer port, as any client could send them: (HTTP status, body)."""
    req = urllib.request.Request(f"http://{address}{path}", data=data, method=method,
                                 headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def print_logs_if_failed(request: pytest.FixtureRequest, logs: Callable[[], str]) -> None:
    """At fixture teardown: the daemons' logs go into the report of a test that failed."""
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(logs())


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (a clean stop), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        os.killpg(proc.pid, signal.SIGCONT)  # a daemon a test stopped (SIGSTOP) must see its SIGTERM
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@dataclass
class Peer:
    name: str
    home: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        info = json.loads((self.home / "admin.json").read_text())
        tok = (self.home / "admin.token").read_text().strip() if token is None else token
        hdrs = {"X-Peerbackup-Token": tok, "Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(info["url"] + path, method=method, headers=hdrs,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def status(self) -> dict[str, Any]:
        code, st = self.api("GET", "/v1/status")
        assert code == 200, st
        return dict(st)

    def peers(self) -> dict[str, dict[str, Any]]:
        code, ps = self.api("GET", "/v1/peers")
        assert code == 200, ps
        return {p["name"]: p for p in ps}

    @property
    def address(self) -> str:
        return str(self.status()["listen"][0])

    @property
    def peer_id(self) -> str:
        return str(self.status()["peer_id"])


class Office:
    """Homes under tmp, daemons started with `peerbackup up`, killed at teardown whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.peers: dict[str, Peer] = {}
        self.env = daemon_env()

    def cli(self, *args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run([sys.executable, "-m", "peerbackup", *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"peerbackup {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return res

    def peer(self, name: str) -> Peer:
        if name not in self.peers:
            self.peers[name] = Peer(name, self.tmp / name, self.tmp / f"{name}.log")
        return self.peers[name]

    def init(self, name: str, office: str = "Acme") -> Peer:
        p = self.peer(name)
        self.cli("init", "--home", str(p.home), "--office", office, "--name", name)
        return p

    def invite(self, inviter: Peer, *extra: str) -> str:
        """An invite; unless told otherwise, for a machine that may coordinate too (the scenarios kill the
        coordinator and watch another take over). The product's own default is agent,storage."""
        roles = [] if "--roles" in extra else ["--roles", ",".join(COORDINATOR_ROLES)]
        return self.cli("invite", "--home", str(inviter.home), *roles, *extra).out.strip()

    def join(self, name: str, token: str) -> Peer:
        p = self.peer(name)
        self.cli("join", "--home", str(p.home), "--name", name, token)
        return p

    def start(self, p: Peer, *extra: str, mdns: bool = True, timings: dict[str, str] | None = None,
              env: dict[str, str] | None = None, group: int | None = None) -> Peer:
        """`group`: the daemon's group id, so firewall rules can match its sockets (tests/soak)."""
        args = ["up", "--home", str(p.home), "--listen", "127.0.0.1:0", "-v"]
        args += ["--mdns-interface", "127.0.0.1"] if mdns else ["--no-mdns"]
        for k, v in {**FAST, **(timings or {})}.items():
            args += ["--set", f"{k}={v}"]
        args += list(extra)
        p.args = args
        # Stale endpoint files from a killed run must not be mistaken for the new daemon's.
        for stale in ("admin.json", "admin.token"):
            (p.home / stale).unlink(missing_ok=True)
        with open(p.log, "ab") as log:
            p.proc = subprocess.Popen([sys.executable, "-m", "peerbackup", *args], stdout=log, stderr=log,
                                      env={**self.env, **(env or {})}, start_new_session=True, group=group)
        wait_for(lambda: self._up(p), 20, f"daemon {p.name} to start (log {p.log})")
        return p

    def _up(self, p: Peer) -> bool:
        assert p.proc is not None
        if p.proc.poll() is not None:
            raise AssertionError(f"daemon {p.name} exited {p.proc.returncode}:\n{p.log.read_text()}")
        if not (p.home / "admin.json").exists():
            return False
        return bool(p.status()["peer_id"])

    def kill(self, p: Peer, sig: int = signal.SIGKILL) -> int:
        assert p.proc is not None
        try:
            os.killpg(p.proc.pid, sig)
        except ProcessLookupError:
            pass
        rc = p.proc.wait(timeout=15)
        return rc

    def close(self) -> None:
        for p in self.peers.values():
            if p.proc is not None:
                stop_group(p.proc)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log.read_text() if p.log.exists() else ''}"
                         for p in self.peers.values())
