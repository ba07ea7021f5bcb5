"""A grant and a backup by hand with real daemons in one loop on a virtual clock, DEFAULT timings: a grant
returns once every live member holds it, naming the members it could not wait for; a backup by hand on an
agent (what `repo backup --repo office:NODE` asks its daemon) waits for a coordinator, is a job of the node
that no coordinator gives to another agent; a storage peer's refusals name peers by name.

Ported from (real processes, FAST timings, deleted there; the commands' own output stays in
tests/daemon/test_nodes.py::test_node_commands_say_what_they_did_and_refuse_mistakes for `grant` and `revoke
--no-wait`, and tests/daemon/test_adhoc.py::test_backup_by_hand_on_an_agent_prints_what_it_waits_for for `repo
backup`):
- tests/daemon/test_adhoc.py::test_grant_returns_once_every_live_peer_holds_it
- tests/daemon/test_adhoc.py::test_grant_names_the_peers_it_could_not_wait_for
- tests/daemon/test_adhoc.py::test_backup_by_hand_on_an_agent_waits_for_a_coordinator_and_is_a_job_of_the_node
- tests/daemon/test_adhoc.py::test_an_open_backup_by_hand_is_never_given_to_another_agent
- tests/daemon/test_adhoc.py::test_refusals_name_peers_by_name
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from peerbackup.cli.nodes import GRANT_WAIT
from peerbackup.core.actas import ActAs
from peerbackup.core.crypto import content_hash
from peerbackup.errors import PeerRefused, UsageError
from peerbackup.office.peerstore.client import StoreClient
from peerbackup.storage.store import FileType
from tests.inproc.harness import InprocOffice, Member, run_office
from tests.inproc.scenarios import NODE, SETTINGS, node_events
from tests.inproc.test_config import described, refused

STALL = dataclasses.replace(SETTINGS, stall_after=60.0)  # 600 s by default: the same, ten times as short


async def unsigned_office(o: InprocOffice) -> list[Member]:
    """alpha (admin, best rank), beta and gamma, node `accounts` on every member, nobody granted yet; right
    after their start, before any coordinator is elected (a lease of listening first)."""
    a = await o.init("alpha")
    members = [a, await o.join("beta", a, rank=10), await o.join("gamma", a, rank=20)]
    await a.running.controls.nodes.add(NODE)
    await o.until(lambda: all(NODE in m.running.controls.nodes.nodes() for m in members), 3 * SETTINGS.heartbeat,
                  "the node on every member")
    return members


def config_digests(members: list[Member]) -> set[bytes]:
    return {m.running.logs.state.config().digest() for m in members}


@pytest.mark.timeout(120)
def test_a_grant_returns_once_every_live_member_holds_it_and_names_those_it_could_not_wait_for(
        tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = everyone = await unsigned_office(o)
        nodes = a.running.controls.nodes
        assert not described(b)["i_hold_keys"]
        t0 = o.now()
        await nodes.grant(NODE, b.peer_id)
        spread = await nodes.spread(GRANT_WAIT)  # as `grant` asks it
        # Straight after, not a heartbeat later: the agent opens the keys, and every live member (the
        # coordinator that lets it act as the node, the storage peers that take its writes) has it.
        assert o.now() - t0 < SETTINGS.heartbeat
        assert described(b)["i_hold_keys"], "the agent does not hold the keys when the grant returns"
        assert len(config_digests(everyone)) == 1
        assert spread == {"not_yet": [], "down": []}

        # gamma stopped and dead: not waited for, named.
        await o.stop(c)
        await o.until(lambda: _state_of(a, "gamma", "dead"), SETTINGS.dead + 2 * SETTINGS.heartbeat, "gamma dead")
        t0 = o.now()
        await nodes.revoke(NODE, b.peer_id)
        spread = await nodes.spread(GRANT_WAIT)
        # Given up on once it has not answered for `suspect` (one just started may not have said hello yet).
        assert o.now() - t0 <= SETTINGS.suspect + SETTINGS.heartbeat < GRANT_WAIT, "a dead peer was waited for"
        assert spread == {"not_yet": [], "down": ["gamma"]}
        assert not described(b)["i_hold_keys"] and len(config_digests([a, b])) == 1

    print(f"grant: {run_office(tmp_path, scenario, SETTINGS).summary()}")


async def _state_of(by: Member, name: str, state: str) -> bool:
    return any(p["name"] == name and p["state"] == state for p in await by.running.view.peers())


def job_kinds(m: Member, job: str) -> list[str]:
    return [e["kind"] for e in node_events(m) if e.get("job") == job]


@pytest.mark.timeout(120)
def test_a_backup_by_hand_on_an_agent_waits_for_a_coordinator_and_is_a_job_of_the_node(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, _c = await unsigned_office(o)
        await a.running.controls.nodes.grant(NODE, b.peer_id)
        await a.running.controls.nodes.spread(GRANT_WAIT)
        assert b.running.coordination.status()[0] is None, "a coordinator before the backup was asked"
        access = await b.running.controls.access.store_access(NODE, backup=["/srv/docs"])
        job = access["job"]
        assert job.startswith("adhoc-") and access["act_as"], access
        coordinator = a.running.coordination.status()[0]
        await b.running.controls.adhoc.end(NODE, job, {"state": "done", "snapshots": ["5a" * 32], "errors": 0,
                                                       "added": 3})
        await o.until(lambda: len(job_kinds(b, job)) >= 4, 3 * SETTINGS.heartbeat, "the coordinator's events on beta")
        events = [e for e in node_events(b) if e.get("job") == job]
        assert [e["kind"] for e in events] == ["agent.logon", "act_as.issued", "job.started", "job.done"], events
        logon, issued, started, done = events
        assert logon["writer"] == issued["writer"] == coordinator and issued["agent"] == b.peer_id
        assert issued["scope"] == "backup"  # it only adds: deleting takes a retention job's token
        assert started["writer"] == done["writer"] == b.peer_id and started["coordinator"] == coordinator
        assert started["adhoc"] is True and started["paths"] == ["/srv/docs"] and started["agent"] == b.peer_id
        assert done["snapshots"] == ["5a" * 32] and done["errors"] == 0 and done["added"] == 3

        # An admin writes with its own grant: no act-as, no job (beta's job.started reaches alpha with the
        # log; nothing more comes after alpha's own access).
        await o.until(lambda: "job.started" in job_kinds(a, job), 3 * SETTINGS.heartbeat, "beta's job on alpha")
        own = await a.running.controls.access.store_access(NODE, backup=["/srv/docs"])
        assert (own["job"], own["act_as"]) == ("", "")
        await o.advance(3 * SETTINGS.heartbeat)
        assert len(node_events(a, "job.started")) == len(node_events(b, "job.started")) == 1

    print(f"backup by hand: {run_office(tmp_path, scenario, SETTINGS).summary()}")


@pytest.mark.timeout(120)
def test_an_open_backup_by_hand_is_never_given_to_another_agent_and_only_its_agent_ends_it(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, c = await unsigned_office(o)
        for agent in (b, c):
            await a.running.controls.nodes.grant(NODE, agent.peer_id)
        await a.running.controls.nodes.spread(GRANT_WAIT)
        # As `repo backup` does it, and then nothing: the command was killed before it said how it ended.
        access = await b.running.controls.access.store_access(NODE, backup=[str(tmp_path)])
        job = access["job"]
        await o.until(lambda: "job.started" in job_kinds(a, job), 3 * SETTINGS.heartbeat, "the start on alpha")
        await o.advance(3 * STALL.stall_after)  # silent that long: a dispatched job would have gone to gamma
        assert job_kinds(a, job) == ["agent.logon", "act_as.issued", "job.started"]

        adhoc = b.running.controls.adhoc
        await adhoc.end(NODE, job, {"state": "failed", "reason": "interrupted"})
        failed = [e for e in node_events(b) if e.get("job") == job][-1]
        assert (failed["kind"], failed["reason"], failed["writer"]) == ("job.failed", "interrupted", b.peer_id)
        await refused(lambda: adhoc.end(NODE, job, {"state": "done", "snapshots": []}),
                      "no backup of accounts by hand is open", UsageError)
        # Another peer cannot end it either (it is beta's job).
        await refused(lambda: c.running.controls.adhoc.end(NODE, job, {"state": "failed"}), "by hand", UsageError)

    print(f"open backup by hand: {run_office(tmp_path / 'office', scenario, STALL).summary()}")


async def put_as(o: InprocOffice, sender: Member, holder: Member, act_as: bytes) -> PeerRefused:
    """`sender` writes a data file of the node to `holder` with `act_as`: the refusal it gets."""
    data = b"x" * 1000
    peer = next(p for p in await sender.running.roster.storage_peers() if p.peer_id == holder.peer_id)
    try:
        await StoreClient(sender.running.client, NODE).put(peer, FileType.DATA, content_hash(data).hex(), data,
                                                           content_hash(data), act_as)
    except PeerRefused as exc:
        return exc
    raise AssertionError(f"{holder.name} took {sender.name}'s write")


@pytest.mark.timeout(120)
def test_a_storage_peer_refusing_an_agent_names_the_peers_by_name(tmp_path: Path) -> None:
    async def scenario(o: InprocOffice) -> None:
        a, b, g = everyone = await unsigned_office(o)
        await a.running.controls.nodes.grant(NODE, b.peer_id)
        term = await o.until(lambda: _led_by(everyone, a), 3 * SETTINGS.lease, "alpha coordinator everywhere")

        def token(signer: Member = a, agent: Member = b) -> bytes:
            return ActAs.issue(signer.ident.key, term, agent.peer_id, NODE, "job-1", int(o.clock()), 600).raw

        for act_as, said in ((b"", "beta is an agent of accounts: writing as the node takes the coordinator's"),
                             (token(agent=a), "the act-as token names alpha, not the peer that sent it"),
                             (token(signer=b), "beta was not the coordinator of term")):
            refusal = await put_as(o, b, g, act_as)
            msg = str(refusal)
            assert refusal.code == "forbidden" and said in msg, msg
            assert a.peer_id not in msg and b.peer_id not in msg

    print(f"refusals by name: {run_office(tmp_path, scenario, SETTINGS).summary()}")


def _led_by(members: list[Member], leader: Member) -> int | None:
    seen = {m.running.coordination.status() for m in members}
    holder, term = next(iter(seen))
    return term if len(seen) == 1 and holder == leader.peer_id else None
