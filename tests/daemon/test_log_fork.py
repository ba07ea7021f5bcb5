"""The replicated logs under attack (tests/daemon/logsec.py): a fork (two events at one position shown
to two daemons) found everywhere and the feed frozen alike, in an office of its own (section 3); and
the two bugs pinned here: fork proofs compared as ordered pairs made forked peers sync forever, and a
re-encoded event passed for a fork (section 5, on the shared office).
"""

from __future__ import annotations

from peerbackup.core import codec
from peerbackup.core.events import GENESIS
from peerbackup.net.proto import logsync
from tests.daemon.evil_peer import EvilPeer, Forked
from tests.daemon.harness import holds_for
from tests.daemon.logsec import (
    Acme,
    assert_healthy_and_alerted,
    eid,
    genuine,
    ids_in_log,
    lines_about,
    office_log,
)


def test_fork_shown_to_two_peers_is_detected_everywhere_and_the_feed_frozen_alike(forked: Forked) -> None:
    acme, evil, first, ev_a, ev_b = forked.acme, forked.evil, forked.first, forked.ev_a, forked.ev_b
    frank = acme.members["frank"]
    alpha, beta, gamma = acme.nodes
    frozen = forked.wait_frozen()
    assert (2, (eid(ev_a),)) in evil.pulls(alpha.id, frank.peer_id)
    assert (2, (eid(ev_b),)) in evil.pulls(beta.id, frank.peer_id)
    assert all(start == 1 for start, _ in evil.pulls(gamma.id, frank.peer_id)), "gamma was shown only seq 1"

    # Shown the other branch now, a frozen daemon does not even pull it.
    pulled = {n.id: len(evil.pulls(n.id, frank.peer_id)) for n in acme.nodes}
    evil.serve({alpha.id: [first, ev_b], beta.id: [first, ev_a], gamma.id: [first, ev_a]})
    for n in acme.nodes:
        evil.settle(n)
        assert len(evil.pulls(n.id, frank.peer_id)) == pulled[n.id], n.name
    assert acme.converged() == frozen

    for n in acme.nodes:
        alerts = assert_healthy_and_alerted(acme, n, [], cli=True)
        forks = [a for a in alerts if a["verdict"] == "fork" and a.get("feed") == frank.peer_id]
        assert forks and all(a["seq"] == 2 and "frozen at" in a["reason"] for a in forks), (n.name, alerts)
        events = office_log(acme, n, cli=True)
        franks = [(e["seq"], e["id"]) for e in events if e["writer"] == frank.peer_id]
        assert franks == [(1, eid(first).hex())], (n.name, franks)
        assert not {eid(ev_a).hex(), eid(ev_b).hex()} & {e["id"] for e in events}


def test_known_fork_proof_in_other_order_does_not_start_a_sync(forked: Forked) -> None:
    acme, evil = forked.acme, forked.evil
    alpha = acme.nodes[0]
    forked.wait_frozen()
    status, raw = evil.call(alpha, logsync.HEADS_PATH, logsync.Heads((), ()).to_wire())
    assert status == 200
    mine = logsync.Heads.from_wire(raw)
    assert len(mine.forks) == 1
    a, b = mine.forks[0]
    # alpha's own heads back, and its own fork proof with the two events swapped, as beta holds it:
    # nothing alpha lacks, so nothing to sync for.
    evil.serve({"*": []}, forks=[(b, a)])
    before = evil.heads_requests(alpha.id)
    status, _ = evil.call(alpha, logsync.HEADS_PATH, logsync.Heads(mine.heads, ((b, a),)).to_wire())
    assert status == 200
    holds_for(lambda: evil.heads_requests(alpha.id) <= before, 3.0,
              "alpha not syncing back for a fork proof it already holds")



# ---- 5: a re-encoded event ----------------------------------------------------------------------------


def test_reencoded_event_is_not_a_fork(acme: Acme) -> None:
    victor, trudy = acme.members["victor"], acme.members["trudy"]
    first = genuine(victor.key, 1, GENESIS, 11)
    with EvilPeer(victor, acme.nodes) as evil:
        evil.show_until_held(acme.nodes, first, "victor's claim")
    before = acme.converged()

    # trudy, without victor's key, shows victor's event with its two outer fields in the other order:
    # the same signed body, the same signature, other bytes, so another event id.
    outer = codec.unpack_map(first, "test event")
    reencoded = codec.pack({"s": outer["s"], "e": outer["e"]})
    assert reencoded != first and codec.unpack_map(reencoded, "test event") == outer
    with EvilPeer(trudy, acme.nodes) as relay:
        relay.certs[victor.peer_id] = victor.certificate.raw
        relay.serve({"*": [reencoded]})
        for n in acme.nodes:
            # It syncs (and must not take the bytes for a fork), or it sees nothing new at all.
            relay.settle(n, timeout=5.0, required=False)
    for n in acme.nodes:
        assert not lines_about(n.peer, "log.fork", victor.peer_id, ""), f"{n.name} froze victor's feed"
        assert eid(first).hex() in ids_in_log(n)
    assert acme.converged() == before

