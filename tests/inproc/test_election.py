"""The coordinator election with three real daemons in one loop on a virtual clock, DEFAULT timings.

Ported from (real processes, FAST timings, wall-clock waits; deleted there; here the lease is the product's
15 s and each step is bounded in virtual seconds. `peers --json` flagging the coordinator and `status`
saying REMOVED are checked in tests/daemon/test_nodes.py::test_node_commands_say_what_they_did_and_refuse_mistakes):
- tests/daemon/test_election.py::test_one_coordinator_failover_and_return
- tests/daemon/test_election.py::test_stale_coordinator_is_fenced (SIGSTOP there; a cut link here)
- tests/daemon/test_election.py::test_a_peer_removed_while_it_was_off_learns_it_when_it_comes_back
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbackup.core.events import CONTROL_LOG
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import SETTINGS, three


def agreed(members: list[Member], who: Member) -> int | None:
    """The term under which every running one of `members` follows `who`, or None."""
    seen = {m.running.coordination.status() for m in members}
    if len(seen) == 1:
        holder, term = next(iter(seen))
        if holder == who.peer_id and term is not None:
            return term
    return None


def elected(members: list[Member]) -> list[tuple[int, str]]:
    """Every (term, peer) a daemon logged it was elected under."""
    return [(int(str(f["term"])), str(f["peer"])) for m in members for _t, what, f in m.events
            if what == "coordinator.elected"]


async def claims_everywhere(o: InprocOffice, members: list[Member], expected: list[tuple[int, Member]]) -> None:
    """Every claim is in the control log, the same on every member, `expected` (term, claimer) among them."""
    await o.until(lambda: len({m.running.logs.state.digest() for m in members}) == 1, 3 * SETTINGS.heartbeat,
                  "identical logs")
    logs = [m.running.logs.listing(CONTROL_LOG) for m in members]
    assert all(log == logs[0] for log in logs)
    claims = [(e["fields"]["term"], e["writer"]) for e in logs[0] if e["kind"] == "coordinator.claim"]
    for term, m in expected:
        assert (term, m.peer_id) in claims, f"{m.name}'s claim of term {term} not in the control log: {claims}"


@pytest.mark.timeout(120)
def test_one_coordinator_failover_within_lease_and_dead_and_return_under_a_higher_term(tmp_path: Path) -> None:
    terms: dict[str, int] = {}
    failover: list[float] = []

    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await three(o)
        terms["first"] = await o.until(lambda: agreed(everyone, a), 3 * SETTINGS.lease, "all three follow alpha")

        await o.stop(a)  # no goodbye: its lease just stops being renewed
        t0 = o.now()
        terms["failover"] = await o.until(lambda: agreed([b, c], b), SETTINGS.lease + SETTINGS.dead,
                                          "beta (next rank) takes over from the stopped alpha")
        failover.append(o.now() - t0)
        assert terms["failover"] > terms["first"]

        await o.start(a)
        terms["back"] = await o.until(lambda: agreed(everyone, a), 3 * SETTINGS.lease,
                                      "the restarted alpha (best rank) takes the role back")
        # It never goes back to its own old term: the term it holds now is above the one beta held.
        assert terms["back"] > terms["failover"]
        await o.advance(2 * SETTINGS.lease)  # and it keeps it: no flapping once settled
        assert agreed(everyone, a) == terms["back"]

        tokens = elected(everyone)
        assert len(tokens) == len(set(tokens)), f"a term was claimed twice: {tokens}"
        for m in everyone:
            mine = [t for t, who in tokens if who == m.peer_id]
            assert mine == sorted(set(mine)), f"{m.name} claimed terms out of order: {mine}"
        await claims_everywhere(o, everyone, [(terms["failover"], b), (terms["back"], a)])

    office = run_office(tmp_path, scenario, SETTINGS)
    print(f"election: {office.summary()}, failover {failover[0]:.1f} virtual s, terms {terms}")


@pytest.mark.timeout(120)
def test_a_coordinator_cut_off_is_replaced_then_steps_down_and_wins_back_under_a_higher_term(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await three(o)
        first = await o.until(lambda: agreed(everyone, a), 3 * SETTINGS.lease, "all three follow alpha")
        o.cut(a, b)
        o.cut(a, c)  # alpha keeps running, still holding its token, but cannot renew it with anyone
        second = await o.until(lambda: agreed([b, c], b), SETTINGS.lease + SETTINGS.dead,
                               "beta takes over from the cut-off alpha")
        assert second > first
        o.restore(a, b)
        o.restore(a, c)
        third = await o.until(lambda: agreed(everyone, a), 3 * SETTINGS.lease,
                              "alpha, back in touch, holds the role again")
        assert third > second, "alpha came back under its old token"
        assert a.logged("coordinator.stepped_down") >= 1 or any(m.logged("coordinator.fenced") for m in (b, c)), \
            "alpha's old token was neither given up nor refused"
        tokens = elected(everyone)
        assert len(tokens) == len(set(tokens)), f"a term was claimed twice: {tokens}"

    print(f"fencing: {run_office(tmp_path, scenario, SETTINGS).summary()}")


def refusals(m: Member) -> int:
    """How many requests `m` refused because their sender was removed from the office."""
    return sum(1 for _t, _what, f in m.events if f.get("code") == "revoked")


@pytest.mark.timeout(120)
def test_a_peer_removed_while_it_was_off_learns_it_when_it_comes_back_and_stops_knocking(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await three(o)
        await o.until(lambda: len({m.running.logs.state.digest() for m in everyone}) == 1, 3 * SETTINGS.heartbeat,
                      "identical logs")
        await o.stop(c)
        await a.running.admissions.remove_peer(c.peer_id, "sold")
        await o.until(lambda: b.running.view.status()["config_digest"] == a.running.view.status()["config_digest"],
                      3 * SETTINGS.heartbeat, "beta learns the removal")
        await o.start(c)
        # Every member refuses gamma; the refusal carries the office-signed revocation, which gamma checks.
        await o.until(lambda: c.running.view.status()["removed"], 3 * SETTINGS.heartbeat, "gamma learns it was removed")
        assert any(what == "member.revoked" and f.get("me") is True for _t, what, f in c.events)
        await o.advance(SETTINGS.heartbeat)
        knocked = refusals(a) + refusals(b)
        assert knocked >= 1, "no member refused the removed gamma"
        await o.advance(2 * SETTINGS.lease)
        assert refusals(a) + refusals(b) == knocked, "the removed gamma kept knocking"
        assert c.running.coordination.status()[0] != c.peer_id

    print(f"removed while off: {run_office(tmp_path, scenario, SETTINGS).summary()}")
