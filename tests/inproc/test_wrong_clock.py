"""A member whose wall clock is wrong, in one loop on a virtual clock, DEFAULT timings: the others refuse its
messages, each side says why in `status`, and the coordinator gives it no job.

Mirrors (real processes, FAST timings, libfaketime there; here the member's Daemon is handed a clock 10 minutes
ahead of the office's, and `status` is the command line's own `cmd_status` against its admin API):
- tests/daemon/test_job_lifecycle.py::test_an_agent_with_a_wrong_clock_is_refused_and_told_why
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from peerbackup.cli.office import cmd_status
from peerbackup.errors import PeerBackupError
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_events, node_office

AHEAD = 600.0  # gamma's clock: 10 minutes fast, five times the clock_skew the others accept
HEARD = 3 * SETTINGS.heartbeat + SETTINGS.request_timeout  # a round of heartbeats refused and answered


async def start_off(o: InprocOffice, m: Member, offset: float) -> None:
    """`m`'s daemon started with its wall clock `offset` seconds off the office's: the harness hands each Daemon
    `o.clock`, shadowed on the office for as long as this one starts."""
    vars(o)["clock"] = lambda: o.epoch + o.loop.time() + offset
    try:
        await o.start(m)
    finally:
        del vars(o)["clock"]


def clock(m: Member) -> dict[str, Any]:
    report: dict[str, Any] = m.running.view.status()["clock"]
    return report


async def status_text(m: Member, capsys: pytest.CaptureFixture[str]) -> str:
    """What `peerbackup status` prints for `m` (the command's own code, in a thread: its admin API is served by
    this loop)."""
    capsys.readouterr()
    await asyncio.to_thread(cmd_status, argparse.Namespace(home=str(m.home.path), json=False))
    return capsys.readouterr().out


@pytest.mark.timeout(120)
def test_an_agent_with_a_wrong_clock_is_refused_and_told_why(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:

    async def scenario(o: InprocOffice) -> None:
        a, b, c = await node_office(o, ["beta", "gamma"], files=2, size=20_000)
        await o.stop(c)
        await start_off(o, c, AHEAD)  # where the others know it is, so they keep knocking
        # Each side says so in `status`: alpha names gamma's clock, gamma learns that the others refuse it.
        await o.until(lambda: "gamma" in clock(a)["peers_off"], HEARD, "alpha sees gamma's clock")
        assert AHEAD - 10 <= clock(a)["peers_off"]["gamma"] <= AHEAD + 10
        # gamma hears it from refusals signed for requests of its own it can check (not of its hellos): its
        # claim to coordinate, once its log has waited a lease for a peer, is one.
        await o.until(lambda: clock(c)["refused_by"], SETTINGS.lease + HEARD, "gamma hears it is refused")
        assert "away from this peer's clock" in next(iter(clock(c)["refused_by"].values()))
        out = await status_text(c, capsys)
        assert "refuse this peer's messages" in out and "NTP" in out, out
        # gamma refuses the others too (signed refusals of their requests), but that makes no one else doubt
        # its own clock, nor stops its jobs.
        await o.until(lambda: "gamma" in clock(a)["refused_by"], HEARD, "alpha hears gamma refuse it")
        out = await status_text(a, capsys)
        assert "probably the wrong one" in out and "gamma's clock is 6" in out, out
        assert clock(c)["this_clock_suspect"] is True
        assert clock(a)["this_clock_suspect"] is False and clock(b)["this_clock_suspect"] is False

        # The coordinator never gives gamma a job: it cannot be heard. beta does the backups.
        async def gamma_dead() -> bool:
            return {p["name"]: p["state"] for p in await a.running.view.peers()}.get("gamma") == "dead"

        await o.until(gamma_dead, SETTINGS.dead + HEARD, "gamma dead to alpha")
        for n in (1, 2):
            out_ = await a.running.controls.jobs.request(NODE)
            assert out_["agent_name"] == "beta", out_
            await o.until(lambda: [e for e in node_events(a, "job.done") if e["job"] == out_["job"]],  # noqa: B023
                          HEARD, f"backup {n} done")
        # Asked on gamma, a backup fails with the reason, whatever gamma believes about who coordinates.
        with pytest.raises(PeerBackupError) as refused:
            await c.running.controls.jobs.request(NODE)
        why = str(refused.value)
        assert "refuse this peer's messages because of its clock" in why and "away from this peer's clock" in why
        assert "NTP" in why

    print(f"wrong clock: {run_office(tmp_path / 'office', scenario, SETTINGS).summary()}")
