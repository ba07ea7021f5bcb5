"""An office of real daemons in one event loop on a virtual clock (tests/inproc/clock.py).

Each member is a real `Daemon`: its own home under tmp_path with real SQLite databases, its peer server
on 127.0.0.1 (aiohttp, real sockets), no mDNS. They share one `VirtualClockLoop`; each Daemon's wall
clock is `epoch + loop.time()`, so liveness, leases, signed timestamps and schedules all read the
same virtual time, and `advance`/`until` step it instead of sleeping. See tests/inproc/README.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from peerbackup.core.certs import COORDINATOR_ROLES
from peerbackup.core.crypto import KdfParams
from peerbackup.core.settings import Settings
from peerbackup.daemon.service import Daemon, DaemonOptions
from peerbackup.logs import LOGGER
from peerbackup.office.membership.enrol import init_office, join_office, seed_state
from peerbackup.office.membership.home import Home, Identity
from tests.inproc.clock import VirtualClockLoop, count_aiosqlite

POLL = 0.1  # virtual seconds between two looks of `until`: free in real time, fine enough for any timing
INVITE_VALID = 600.0


class LinkCut(aiohttp.ClientConnectionError):
    """The test cut the link between these two members."""


@dataclass
class Member:
    """One daemon of the office: its home and identity outlive the Daemon, so it can stop and start again."""

    name: str
    home: Home
    ident: Identity
    log: logging.Logger
    events: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)  # (virtual time, what, fields)
    port: int = 0  # kept across restarts, so the others' address book stays right
    storage_quota: int | None = None  # bytes it keeps for others (DaemonOptions.storage_quota)
    daemon: Daemon | None = None

    @property
    def peer_id(self) -> str:
        return self.ident.peer_id

    @property
    def running(self) -> Daemon:
        assert self.daemon is not None, f"{self.name} is stopped"
        return self.daemon

    def logged(self, what: str) -> int:
        """How many times this member's daemon logged the event `what` (its message, e.g. "peer.dead")."""
        return sum(1 for _t, w, _f in self.events if w == what)


class _Lines(logging.Handler):
    """A member's log, each line stamped with the virtual time, kept for assertions and failure reports."""

    def __init__(self, member: Member, loop: VirtualClockLoop) -> None:
        super().__init__(logging.DEBUG)
        self.member = member
        self.loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        self.member.events.append((self.loop.time(), record.getMessage(), dict(getattr(record, "pb_fields", {}))))


class Webhook:
    """An alert webhook receiver served by the office's own loop: no thread, so the clock never has to
    guess whether it is still answering. `stop` closes the port (a webhook that is down), `start` reopens it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hook", self._receive)
        self._runner = runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p.get("kind") == kind]

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.Response(status=204)


class InprocOffice:
    """Build members with `init`/`join`, drive time with `advance`/`until`, break things with `stop`/`cut`."""

    def __init__(self, root: Path, settings: Settings, loop: VirtualClockLoop, seed: int = 1) -> None:
        self.root = root
        self.settings = settings
        self.loop = loop
        # Whole minutes, so a schedule's slots fall at the same virtual times in every run; a real time
        # at most a minute old, because `join` signs its requests with the real clock (within clock_skew).
        self.epoch = math.floor(time.time() / 60) * 60.0
        self.rng = random.Random(seed)
        self.members: dict[str, Member] = {}
        self._cut: set[frozenset[str]] = set()
        self._webhooks: list[Webhook] = []
        self.real_seconds = 0.0  # how long run_office took, for `summary`

    # --- time

    def clock(self) -> float:
        """The members' wall clock: the epoch plus the loop's virtual time."""
        return self.epoch + self.loop.time()

    def now(self) -> float:
        """Virtual seconds since the office was built."""
        return self.loop.time()

    async def advance(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, every daemon running its rounds meanwhile."""
        await asyncio.sleep(seconds)

    async def until(self, pred: Callable[[], object], within: float, what: str) -> Any:
        """The first true answer of `pred` (sync or async), looked at every POLL virtual seconds; fails
        with `what` if none came within `within` virtual seconds."""
        start = self.now()
        while True:
            got = pred()
            if asyncio.iscoroutine(got) or isinstance(got, asyncio.Future):
                got = await got
            if got:
                return got
            if self.now() - start >= within:
                raise AssertionError(f"not within {within:g} virtual seconds: {what} "
                                     f"(virtual time {self.now():.1f} s)")
            await asyncio.sleep(POLL)

    def summary(self) -> str:
        """Virtual time covered against real time taken, for a test's output."""
        return (f"{self.loop.time():.0f} virtual s in {self.real_seconds:.1f} real s ({self.loop.jumps} jumps, "
                f"{self.loop.flowed:.1f} s at the real rate)")

    # --- members

    def _member(self, name: str, ident: Identity, home: Home) -> Member:
        log = logging.getLogger(f"{LOGGER}.inproc.{name}.{id(self)}")
        log.propagate = False
        log.setLevel(logging.INFO)
        m = Member(name, home, ident, log)
        log.handlers[:] = [_Lines(m, self.loop)]
        self.members[name] = m
        return m

    async def init(self, name: str, storage_quota: int | None = None) -> Member:
        """A new office with `name` as its first member (an admin), started."""
        home = Home(self.root / name)
        ident = await asyncio.to_thread(init_office, home, "Acme", name, b"pw", str(self.root / "kit"),
                                        KdfParams.weak(), self.rng.randbytes, int(self.epoch))
        m = self._member(name, ident, home)
        m.storage_quota = storage_quota
        await self.start(m)
        return m

    async def join(self, name: str, inviter: Member, rank: int, roles: tuple[str, ...] = COORDINATOR_ROLES,
                   storage_quota: int | None = None) -> Member:
        """A new member invited by `inviter` (running) with `roles` and `rank` (lower is better), started."""
        token = await inviter.running.admissions.create_invite(roles, rank, INVITE_VALID)
        home = Home(self.root / name)
        # join_office runs its own event loop (it is the command line's) in a thread: no jump meanwhile.
        joined = await asyncio.to_thread(join_office, home, token.encode(), name, self.settings, self.rng.randbytes)
        await seed_state(home, joined)
        m = self._member(name, joined.ident, home)
        m.storage_quota = storage_quota
        await self.start(m)
        return m

    async def start(self, m: Member) -> Daemon:
        """Start `m`'s daemon (again), on the port it had before."""
        assert m.daemon is None, f"{m.name} is already running"
        ident = await asyncio.to_thread(m.home.load)
        options = DaemonOptions(listen=f"127.0.0.1:{m.port}", mdns=False, settings=self.settings,
                                storage_quota=m.storage_quota)
        daemon = Daemon(m.home, ident, options, m.log, clock=self.clock)
        m.daemon = daemon
        await daemon.start()
        m.port = int(daemon.advertised[0].rsplit(":", 1)[1])
        assert daemon.session is not None
        self._watch(daemon.session, m)
        return daemon

    async def stop(self, m: Member) -> None:
        """Stop `m`'s daemon. Daemon.stop says goodbye to no one, so to its peers this is a kill -9."""
        daemon, m.daemon = m.running, None
        await daemon.stop()

    async def close(self) -> None:
        """Stop every daemon still running, then the webhooks (teardown; each stop is tried even if
        another fails)."""
        for m in self.members.values():
            if m.daemon is not None:
                with suppress(Exception):
                    await self.stop(m)
        for hook in self._webhooks:
            with suppress(Exception):
                await hook.stop()

    async def webhook(self) -> Webhook:
        """A webhook receiver on loopback, listening, stopped with the office."""
        hook = await Webhook().start()
        self._webhooks.append(hook)
        return hook

    # --- links

    def cut(self, a: Member, b: Member) -> None:
        """Every request between `a` and `b`, both ways, fails as a refused connection until `restore`."""
        self._cut.add(frozenset((a.name, b.name)))

    def restore(self, a: Member, b: Member) -> None:
        self._cut.discard(frozenset((a.name, b.name)))

    def _watch(self, session: aiohttp.ClientSession, m: Member) -> None:
        # The seam is the sender's aiohttp session (a trace hook that raises before the connection is
        # made): the product is unchanged and a cut link looks like a peer that does not answer.
        trace = aiohttp.TraceConfig()

        async def on_start(_s: aiohttp.ClientSession, _ctx: SimpleNamespace,
                           params: aiohttp.TraceRequestStartParams) -> None:
            to = self._by_port(urlsplit(str(params.url)).port)
            if to is not None and frozenset((m.name, to.name)) in self._cut:
                raise LinkCut(f"link {m.name} - {to.name} cut by the test")

        trace.on_request_start.append(on_start)
        trace.freeze()
        session._trace_configs.append(trace)

    def _by_port(self, port: int | None) -> Member | None:
        return next((m for m in self.members.values() if m.port == port), None)


def run_office(root: Path, scenario: Callable[[InprocOffice], Awaitable[None]],
               settings: Settings | None = None, seed: int = 1) -> InprocOffice:
    """Run `scenario` over a new office in a new VirtualClockLoop; every daemon is stopped afterwards,
    whether the scenario passed, failed or was interrupted (pytest-timeout). Answers the office, so the
    caller can read `loop.time()` and the members' logs."""
    loop = VirtualClockLoop()
    office = InprocOffice(root, settings or Settings(), loop, seed)

    async def main() -> None:
        try:
            await scenario(office)
        finally:
            await office.close()

    began = time.monotonic()
    asyncio.set_event_loop(loop)
    try:
        with count_aiosqlite():
            try:
                loop.run_until_complete(main())
            except BaseException:
                print("\n".join(report(office)))  # the members' logs, in the failed test's output
                raise
            finally:
                if any(m.daemon is not None for m in office.members.values()):
                    loop.run_until_complete(office.close())  # main() itself was interrupted
                _drain(loop)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
        office.real_seconds = time.monotonic() - began
        for m in office.members.values():
            m.log.handlers.clear()  # loggers live as long as the process: let the members' records go
    return office


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the daemons left running, so the loop closes without 'Task was destroyed' noise."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())


def report(office: InprocOffice) -> Iterator[str]:
    """Every member's log, for a failed test's output."""
    for m in office.members.values():
        yield f"--- {m.name} ({m.peer_id[:8]})"
        for t, what, fields in m.events:
            yield f"{t:10.2f} {what} " + " ".join(f"{k}={v}" for k, v in fields.items())


async def recover(o: InprocOffice, name: str, via: Member) -> Member:
    """An admin rebuilt from the office's recovery kit on a new machine (`peerbackup admin recover`, then
    `up --peer VIA`): a new peer key, the office key opened from the kit, started knowing `via`'s address."""
    from peerbackup.office.membership.enrol import Joined, recover_admin  # only a recovery needs them

    home = Home(o.root / name)
    kit = await asyncio.to_thread((o.root / "kit").read_bytes)
    ident = await asyncio.to_thread(recover_admin, home, kit, b"pw", name, o.rng.randbytes, int(o.clock()))
    await seed_state(home, Joined(ident, via.ident.certificate, f"127.0.0.1:{via.port}", (), ()))
    m = o._member(name, ident, home)
    await o.start(m)
    return m
