"""The replicated logs under attack (tests/daemon/logsec.py): who may write what. A term no honest peer
can follow and the start of a coming slot by an agent not granted (issue 14, findings 2 and 4), and a
backup node's log taking each kind of event only from its role (section 6).
"""

from __future__ import annotations

import time
from functools import partial

from peerbackup.core.events import GENESIS
from peerbackup.core.identity import SigningKey
from tests.daemon.evil_peer import EvilPeer, accepted_everywhere, refused_everywhere
from tests.daemon.harness import wait_for
from tests.daemon.logsec import (
    WAIT,
    Acme,
    Node,
    assert_healthy_and_alerted,
    eid,
    genuine,
    holds,
    node_event,
)


def test_a_term_no_honest_peer_can_follow_is_refused_on_every_peer(acme: Acme) -> None:
    """Issue 14, finding 2: a coordinator-role member claiming term 2**64-1 in the control log made the next
    honest claim impossible to write, and every schedule stopped for good (the term was persisted)."""
    cora = acme.members["cora"]
    refused_everywhere(acme, cora, genuine(cora.key, 1, GENESIS, 2**64 - 1), "term must be an integer from 1")


def test_a_start_of_a_coming_slot_counts_only_from_a_granted_agent(acme: Acme) -> None:
    """Issue 14, finding 4: slot job ids are predictable, and any agent-role member could write the start of
    a coming slot's job under a claimed term: the coordinator took the slot as run and skipped it, and the
    missed-backup alert stayed silent. Such a start now counts only from a granted agent of the node."""
    ursula, ned = acme.members["ursula"], acme.members["ned"]
    alpha = acme.alpha
    acme.office.cli("node", "add", "payroll", "--home", str(alpha.peer.home))
    claim = genuine(ursula.key, 1, GENESIS, 20)
    start = node_event(ned.key, "node:payroll", 1, GENESIS, "job.started", {
        "job": "payroll-slot", "node": "payroll", "agent": ned.peer_id, "term": 20,
        "coordinator": ursula.peer_id, "deadline": int(time.time()) + 3600, "job_kind": "backup"})
    accepted_everywhere(acme, ursula, claim)
    accepted_everywhere(acme, ned, start, "node:payroll")

    def known(n: Node) -> bool:
        return bool(n.peer.api("GET", "/v1/ui/job?job=payroll-slot")[0] == 200)

    # Accepted on merge (ned has the agent role), but not a job: ned is no agent of payroll.
    assert not any(known(n) for n in acme.nodes)
    # Granted, the same start is what an agent whose coordinator died before its dispatch spread leaves.
    acme.office.cli("grant", "payroll", "ned", "--home", str(alpha.peer.home))
    for n in acme.nodes:
        wait_for(partial(known, n), WAIT, f"{n.name} to count the start of a granted agent")



# ---- 6: who may write in a backup node's log ---------------------------------------------------------


def test_a_node_log_takes_each_kind_from_its_role_and_counts_dispatches_of_claimed_terms(acme: Acme) -> None:
    sybil, oscar, walter = acme.members["sybil"], acme.members["oscar"], acme.members["walter"]
    alpha = acme.alpha
    acme.office.cli("node", "add", "ledger", "--home", str(alpha.peer.home))
    acme.converged()
    log = "node:ledger"

    def dispatch(key: SigningKey, seq: int, prev: bytes, job: str, term: int) -> bytes:
        return node_event(key, log, seq, prev, "job.dispatched", {
            "job": job, "node": "ledger", "agent": key.peer_id, "coordinator": key.peer_id, "term": term,
            "deadline": int(time.time()) + 3600, "job_kind": "backup"})

    # Refused on merge, the same on every peer: a storage-only member dispatching, and a member logging
    # a job's end in another agent's name.
    by_sybil = dispatch(sybil.key, 1, GENESIS, "sybil-job", 1)
    by_oscar = node_event(oscar.key, log, 1, GENESIS, "job.done", {"job": "j", "node": "ledger", "agent": alpha.id})
    refusals = [(sybil, by_sybil, f"{sybil.peer_id} has no coordinator role and cannot write job.dispatched"),
                (oscar, by_oscar, f"job.done names '{alpha.id}' as its agent, not its writer {oscar.peer_id}")]
    # Accepted on merge (walter may coordinate), but a dispatch under a term walter never claimed is no
    # dispatch: any member could otherwise have a coming slot skipped. Once he claims a term, his
    # dispatch under it counts.
    skipped = dispatch(walter.key, 1, GENESIS, "slot-to-skip", 1)
    claim = genuine(walter.key, 1, GENESIS, 12)
    counted = dispatch(walter.key, 2, eid(skipped), "walter-job", 12)
    for member, raw, reason in refusals:
        with EvilPeer(member, acme.nodes) as evil:
            evil.show_until_refused(acme.nodes, raw, reason, f"refuse: {reason}")
    with EvilPeer(walter, acme.nodes) as evil:
        evil.serve({"*": [skipped, claim, counted]})
        for n in acme.nodes:
            evil.poke(n)

        def holds_both(n: Node) -> bool:
            held = {e["id"] for e in n.peer.api("GET", f"/v1/log?log={log}")[1]}
            return {eid(skipped).hex(), eid(counted).hex()} <= held

        for n in acme.nodes:
            wait_for(partial(holds_both, n), WAIT, f"{n.name} to hold walter's node events")
            wait_for(partial(holds, n, claim), WAIT, f"{n.name} to hold walter's claim")
    for n in acme.nodes:
        events = n.peer.api("GET", f"/v1/log?log={log}")[1]
        assert {e["writer"] for e in events} == {walter.peer_id}, events
        assert_healthy_and_alerted(acme, n, [{"verdict": "refused", "feed": m.peer_id, "source": m.peer_id,
                                              "reason": reason} for m, _, reason in refusals])
        # The dashboard's job lookup reads the node's job states (core/jobs.fold).
        code, found = n.peer.api("GET", "/v1/ui/job?job=walter-job")
        assert (code, found) == (200, {"job": "walter-job", "node": "ledger"})
        code, found = n.peer.api("GET", "/v1/ui/job?job=slot-to-skip")
        assert code != 200, found
    acme.converged()
