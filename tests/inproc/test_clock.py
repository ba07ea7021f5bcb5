"""The virtual clock and the harness themselves: what every scenario relies on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite
import pytest

from tests.inproc.harness import InprocOffice, Member, run_office

FAR = 100.0  # a timer far ahead, which an idle loop would jump to at once
WAIT = 30.0  # a timeout far longer than the work in a thread takes, even on a loaded machine


def test_an_hour_of_sleeping_takes_no_real_time(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        await o.advance(3600)
        assert o.now() >= 3600

    office = run_office(tmp_path, scenario)
    assert office.real_seconds < 2, office.summary()


def test_work_in_a_thread_is_not_jumped_over(tmp_path: Path) -> None:
    """While a thread works the clock runs at the real rate: a far timer does not fire meanwhile, and a
    timeout longer than the work does not expire."""

    async def scenario(o: InprocOffice) -> None:
        fired: list[float] = []
        o.loop.call_later(FAR, lambda: fired.append(o.now()))
        t0 = o.now()
        await asyncio.wait_for(asyncio.to_thread(time.sleep, 0.2), timeout=WAIT)
        assert o.now() - t0 < WAIT and not fired, "the clock jumped while the thread worked"
        assert o.loop.flowed >= 0.1  # the work's real time passed on the virtual clock too

    run_office(tmp_path, scenario)


def test_an_aiosqlite_query_is_not_jumped_over(tmp_path: Path) -> None:
    """aiosqlite runs each connection in a thread of its own, outside run_in_executor: counted all the same."""
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000) "
            "SELECT count(*) FROM c")

    async def scenario(o: InprocOffice) -> None:
        fired: list[float] = []
        o.loop.call_later(FAR, lambda: fired.append(o.now()))
        async with aiosqlite.connect(tmp_path / "slow.db") as db:

            async def query() -> object:
                async with db.execute(slow) as cur:  # the whole count is computed here, in the thread
                    return await cur.fetchone()

            t0 = o.now()
            assert await asyncio.wait_for(query(), timeout=WAIT) == (500000,)
            assert o.now() - t0 < WAIT and not fired, "the clock jumped while SQLite worked"

    run_office(tmp_path, scenario)


def test_until_fails_saying_what_and_when_in_virtual_time(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        await o.until(lambda: False, 30, "something that never happens")

    with pytest.raises(AssertionError, match=r"not within 30 virtual seconds: something that never happens"):
        run_office(tmp_path, scenario)


def test_every_daemon_is_stopped_when_the_scenario_fails(tmp_path: Path) -> None:
    started: list[Member] = []

    async def scenario(o: InprocOffice) -> None:
        a = await o.init("alpha")
        started.append(a)
        await o.advance(10)
        raise RuntimeError("the scenario failed")

    with pytest.raises(RuntimeError, match="the scenario failed"):
        run_office(tmp_path, scenario)
    [a] = started
    assert a.daemon is None and a.logged("daemon.stopped") == 1
