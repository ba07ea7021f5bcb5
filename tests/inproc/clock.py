"""An asyncio event loop whose time is virtual: it jumps to the next timer whenever the loop is idle.

The loop's `time()` (what `asyncio.sleep`, `asyncio.wait_for`, `asyncio.timeout` and aiohttp's timeouts
read) is a number this loop owns. Each turn of the loop asks its selector to wait until the next timer;
this loop's selector first waits a short REAL time (`grace`) for I/O, so loopback requests between
daemons in the same loop land and are answered before time moves. When no I/O came and no work is out
in a thread, the virtual time jumps by the whole wait: the next timer is due at once, and minutes of
heartbeats, leases and timeouts pass in a few real seconds.

While work is out in a thread, the clock does not jump: it runs at the real rate (each real wait
adds its real length), so a request is never timed out because SQLite took 20 real
milliseconds, and a thread that waits for coroutines it handed to this loop (the agent's backup, whose
peer store runs its transfers here) still sees their sleeps and timeouts expire, in real time.
Work out in a thread is what the loop can count:
- `run_in_executor` (what `asyncio.to_thread` uses) counts its futures;
- aiosqlite runs each connection in its own thread: `count_aiosqlite` wraps its `_connect` and
  `_execute` so each connect and query counts too while it is out.

What still takes real time: the work itself (signing, SQLite, the engine's chunking), virtual time
while a thread works (at the real rate), `grace` per jump; and work this loop cannot count (a thread of
its own, a subprocess): the clock may jump while it is out, as if that machine were slow.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any, TypeVar, TypeVarTuple

import aiosqlite.core

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

GRACE = 0.001  # real seconds the loop waits for I/O before it lets virtual time jump (loopback I/O between
# daemons of this loop is readable when the send returns; the grace is a margin, and the real cost of each jump)


class _SteppingSelector:
    """The loop's selector, whose waits are real only for `grace`, then a jump of the virtual clock."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualClockLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._inner.select(0)
        while True:
            began = time.monotonic()
            events = self._inner.select(self._loop.grace if timeout is None else min(self._loop.grace, timeout))
            if timeout is not None and self._loop.busy:
                # A thread works: the real time that passed passes on the clock too, up to the next timer.
                self._loop.flow(min(time.monotonic() - began, timeout))
                return events
            if events:
                return events
            if timeout is None:
                continue  # no timer at all: only I/O (a thread's answer) can wake us
            self._loop.jump(timeout)
            return []

    def __getattr__(self, name: str) -> Any:
        # register, unregister, modify, get_key, get_map, close: the real selector's.
        return getattr(self._inner, name)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at 0 (see the module docstring)."""

    def __init__(self, grace: float = GRACE) -> None:
        super().__init__()
        self.grace = grace
        self.busy = 0  # calls out in threads: while any is, the clock runs at the real rate instead of jumping
        self.jumps = 0
        self.flowed = 0.0  # virtual seconds that passed at the real rate, while a thread worked
        self._virtual = 0.0
        self._selector: Any = _SteppingSelector(self._selector, self)

    def time(self) -> float:
        return self._virtual

    def jump(self, seconds: float) -> None:
        """Idle: straight to the next timer."""
        self._virtual += seconds
        self.jumps += 1

    def flow(self, seconds: float) -> None:
        """Busy (a thread works): the real time that passed."""
        self._virtual += seconds
        self.flowed += seconds

    def run_in_executor(self, executor: Executor | None, func: Callable[[*Ts], T],
                        *args: *Ts) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self.hold(fut)
        return fut

    def hold(self, fut: asyncio.Future[Any]) -> None:
        """No jump until `fut` is done (its result comes from another thread): the clock runs at the real rate."""
        self.busy += 1
        fut.add_done_callback(self._release)

    def _release(self, _fut: asyncio.Future[Any]) -> None:
        self.busy -= 1


def _counted(original: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """`original` (a coroutine method whose work is done in another thread), counted as work out while
    it runs in a VirtualClockLoop."""

    async def counted(*args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualClockLoop):
            return await original(*args, **kwargs)
        loop.busy += 1
        try:
            return await original(*args, **kwargs)
        finally:
            loop.busy -= 1

    return counted


@contextmanager
def count_aiosqlite() -> Iterator[None]:
    """While inside, each aiosqlite connect and query counts as work out in a thread (no jump) until it is
    answered: aiosqlite runs each connection in a thread of its own, outside run_in_executor."""
    conn = aiosqlite.core.Connection
    originals = conn._connect, conn._execute
    conn._connect = _counted(originals[0])  # type: ignore[method-assign,assignment]
    conn._execute = _counted(originals[1])  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        conn._connect, conn._execute = originals  # type: ignore[method-assign]
