"""Liveness with real daemons in one loop on a virtual clock, DEFAULT timings (suspect 8 s, dead 15 s).

Ported from tests/daemon/test_office.py::test_killed_peer_goes_suspect_then_dead_and_comes_back (real
processes, FAST timings; deleted there): stopped, and (new) a link cut while both daemons keep running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.inproc.harness import POLL, InprocOffice, Member, run_office
from tests.inproc.scenarios import SETTINGS


async def state_of(of: Member, seen_by: Member) -> str | None:
    return {p["name"]: p["state"] for p in await seen_by.running.view.peers()}.get(of.name)


async def silent_then_back(o: InprocOffice, a: Member, b: Member, silence: str) -> dict[str, float]:
    """From the moment `b` goes silent to `a`: when a saw it suspect and dead (virtual seconds)."""
    t0 = o.now()

    async def is_(state: str) -> bool:
        return await state_of(b, a) == state

    await o.until(lambda: is_("suspect"), SETTINGS.suspect + 2 * SETTINGS.heartbeat, f"beta suspect ({silence})")
    suspect = o.now() - t0
    await o.until(lambda: is_("dead"), SETTINGS.dead + 2 * SETTINGS.heartbeat, f"beta dead ({silence})")
    dead = o.now() - t0
    # Last heard at most a heartbeat before the silence began: never marked before that allows.
    assert SETTINGS.suspect - SETTINGS.heartbeat - POLL <= suspect < dead
    assert dead >= SETTINGS.dead - SETTINGS.heartbeat - POLL
    return {"suspect": suspect, "dead": dead}


@pytest.mark.timeout(120)
def test_a_stopped_peer_goes_suspect_then_dead_and_alive_again_after_restart(tmp_path: Path) -> None:
    seen: dict[str, float] = {}

    async def scenario(o: InprocOffice) -> None:
        a, b = await _pair(o)
        await o.stop(b)
        seen.update(await silent_then_back(o, a, b, "stopped"))
        await o.advance(SETTINGS.dead)  # dead stays dead while it is away
        assert await state_of(b, a) == "dead"
        await o.start(b)
        seen["back"] = await _back(o, a, b, "beta alive again after its restart")
        assert a.logged("peer.suspect") >= 1 and a.logged("peer.dead") >= 1

    _timed(tmp_path, scenario, "stopped", seen)


@pytest.mark.timeout(120)
def test_a_cut_link_makes_each_side_dead_to_the_other_and_healing_it_brings_both_back(tmp_path: Path) -> None:
    seen: dict[str, float] = {}

    async def scenario(o: InprocOffice) -> None:
        a, b = await _pair(o)
        o.cut(a, b)
        seen.update(await silent_then_back(o, a, b, "link cut"))
        assert await state_of(a, b) == "dead", "the cut is both ways: beta finds alpha dead too"
        o.restore(a, b)
        seen["back"] = await _back(o, a, b, "both alive again once the link is back")

    _timed(tmp_path, scenario, "cut", seen)


async def _pair(o: InprocOffice) -> tuple[Member, Member]:
    """alpha and beta, each alive to the other."""
    a = await o.init("alpha")
    b = await o.join("beta", a, rank=10)
    await o.until(lambda: _alive_both(a, b), 3 * SETTINGS.heartbeat + SETTINGS.request_timeout, "both alive")
    return a, b


async def _back(o: InprocOffice, a: Member, b: Member, what: str) -> float:
    """Virtual seconds until `a` and `b` are alive to each other again (within two heartbeats and a request)."""
    t0 = o.now()
    await o.until(lambda: _alive_both(a, b), 2 * SETTINGS.heartbeat + SETTINGS.request_timeout, what)
    return o.now() - t0


async def _alive_both(a: Member, b: Member) -> bool:
    return await state_of(b, a) == "alive" and await state_of(a, b) == "alive"


def _timed(tmp_path: Path, scenario: Callable[[InprocOffice], Awaitable[None]], how: str,
           seen: dict[str, float]) -> None:
    office = run_office(tmp_path, scenario, SETTINGS)
    print(f"liveness ({how}): {office.summary()}, seen (virtual s after the silence) {seen}")
