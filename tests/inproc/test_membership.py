"""Membership with real daemons in one loop on a virtual clock, DEFAULT timings: a removal is a control log
event every member holds and acts on, and a member without the coordinator role is never followed.

Ported from (real processes, FAST timings, deleted there; the `remove-peer` and `office log` commands' own
output is checked in tests/daemon/test_nodes.py::test_node_commands_say_what_they_did_and_refuse_mistakes):
- tests/daemon/test_election.py::test_remove_peer_is_a_control_log_event_everywhere
- tests/daemon/test_office.py::test_removed_peer_is_refused_by_every_peer
- tests/daemon/test_election.py::test_a_member_without_the_coordinator_role_is_not_followed
"""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from peerbackup.core.events import CONTROL_LOG
from peerbackup.net import envelope
from peerbackup.net.client import CONTENT_TYPE
from peerbackup.net.proto import coordinator as proto
from peerbackup.net.proto.refusal import Refusal
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import SETTINGS, three
from tests.inproc.test_election import agreed


def control_log(m: Member) -> list[dict[str, Any]]:
    """The office control log as `m` has it (what `office log --json` prints)."""
    return m.running.logs.listing(CONTROL_LOG)


async def names_seen(by: Member) -> set[str]:
    return {p["name"] for p in await by.running.view.peers()}


def in_step(members: list[Member]) -> bool:
    return len({m.running.logs.state.digest() for m in members}) == 1


@pytest.mark.timeout(120)
def test_a_removal_is_a_control_log_event_everywhere_every_member_drops_the_peer_and_it_learns_it(
        tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await three(o)
        await o.until(lambda: in_step(everyone), 3 * SETTINGS.heartbeat, "identical logs")
        await a.running.admissions.remove_peer(c.peer_id, "laptop stolen")
        soon = SETTINGS.heartbeat + SETTINGS.request_timeout  # told by the admin, or by the next heartbeat
        for m in (a, b):
            await o.until(partial(_without, m, "gamma"), soon, f"{m.name} drops gamma")
        await o.until(lambda: any(w == "member.revoked" and f.get("me") is True for _t, w, f in c.events),
                      soon, "gamma learns it was removed")
        await o.until(lambda: in_step([a, b]), soon, "alpha and beta agree")
        log = control_log(b)
        assert log == control_log(a)
        revokes = [e for e in log if e["kind"] == "member.revoke"]
        assert [(e["fields"]["name"], e["fields"]["reason"], e["writer"]) for e in revokes] == \
            [("gamma", "laptop stolen", a.peer_id)], revokes
        assert [e["fields"]["name"] for e in log if e["kind"] == "member.add"] == ["alpha", "beta", "gamma"]

        # A revocation survives a restart of the member that learned it second-hand.
        await o.stop(b)
        await o.start(b)
        await o.advance(2 * SETTINGS.heartbeat)
        peers = await b.running.view.peers()
        assert "gamma" not in {p["name"] for p in peers} and c.peer_id not in {p["peer_id"] for p in peers}
        assert not await _without(b, "alpha"), "the restarted beta lost alpha"

    print(f"removal: {run_office(tmp_path, scenario, SETTINGS).summary()}")


async def _without(m: Member, name: str) -> bool:
    return name not in await names_seen(m)


async def announce_as(o: InprocOffice, sender: Member, to: Member, term: int) -> tuple[int, str]:
    """A coordinator announcement for `term`, signed with `sender`'s real key, posted to `to`'s peer port as
    any client could: (HTTP status, the message of the refusal it answered, if it refused)."""
    body = proto.Announce((term, sender.peer_id), int(SETTINGS.lease * 40_000)).to_wire()
    data, _ = envelope.seal(sender.ident.key, to.peer_id, "POST", proto.PATH, body, o.clock(), secrets.token_bytes)
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{to.port}{proto.PATH}", data=data,
                   headers={"Content-Type": CONTENT_TYPE}) as resp:
        raw = await resp.read()
        if resp.status < 400:
            return resp.status, "(accepted)"
        return resp.status, Refusal.from_wire(envelope.open_envelope(raw).body).message


@pytest.mark.timeout(120)
def test_a_member_without_the_coordinator_role_is_refused_and_not_followed_whatever_its_term(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, _c = everyone = await three(o)
        sybil = await o.join("sybil", a, rank=1, roles=("storage",))  # best rank, but no coordinator role
        term = await o.until(lambda: agreed(everyone, a), 3 * SETTINGS.lease, "all three follow alpha")
        await o.until(lambda: _knows(b, "sybil"), 3 * SETTINGS.heartbeat, "beta knows sybil")
        status, refusal = await announce_as(o, sybil, b, term + 100)
        assert status == 403 and "has no coordinator role" in refusal, (status, refusal)
        assert b.logged("coordinator.refused") >= 1
        # Nobody follows sybil, and alpha was not made to step down by its higher term.
        await o.advance(2 * SETTINGS.lease)
        assert agreed([*everyone, sybil], a) == term
        assert a.logged("coordinator.stepped_down") == 0

    print(f"no coordinator role: {run_office(tmp_path, scenario, SETTINGS).summary()}")


async def _knows(m: Member, name: str) -> bool:
    return name in await names_seen(m)
