"""The replicated logs under attack (tests/daemon/logsec.py): forged events and a forged fork proof
(section 1), and events tampered with after signing (section 2), refused on every daemon alike.
"""

from __future__ import annotations

import time
from typing import Any

from peerbackup.core import codec
from peerbackup.core.certs import Certificate
from peerbackup.core.events import CONTROL_LOG, GENESIS, decode_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import COORDINATOR_CLAIM, MEMBER_ADD
from peerbackup.net.proto import logsync
from tests.daemon.evil_peer import EvilPeer
from tests.daemon.logsec import (
    Acme,
    Node,
    assert_healthy_and_alerted,
    eid,
    genuine,
    lines_about,
    office_log,
    signed_event,
)

# ---- 1: forged events --------------------------------------------------------------------------------


def test_forged_events_and_a_forged_fork_proof_are_refused_on_every_peer(acme: Acme) -> None:
    oscar = acme.members["oscar"]
    alpha = acme.alpha
    before = acme.converged()
    alpha_office_key = alpha.ident.office_key
    assert alpha_office_key is not None
    stranger = SigningKey(bytes([0x5A]) * 32)
    eve = SigningKey(bytes([0xEE]) * 32)
    eve_cert = Certificate.issue(alpha_office_key, eve.public_key, "eve", ("admin", "coordinator"), 0,
                                 int(time.time()))

    with EvilPeer(oscar, acme.nodes) as evil:
        alpha_head, alpha_last = head_of_feed(evil, alpha)
        last = decode_event(alpha_last)

        # oscar's own feed, signed by a key that is not oscar's.
        forged_claim = signed_event(stranger, oscar.peer_id, 1, GENESIS, COORDINATOR_CLAIM, {"term": 1})
        # The admin's feed, extended by oscar: "alpha adds eve as an admin" (a genuinely office-signed
        # certificate, so only the event's signature is wrong).
        forged_add = signed_event(oscar.key, alpha.id, alpha_head.seq + 1, alpha_head.id, MEMBER_ADD,
                                  {"cert": eve_cert.raw})
        # A fork proof that would freeze the admin's feed: its real head event and a twin oscar signed.
        twin = signed_event(oscar.key, alpha.id, last.seq, last.prev, MEMBER_ADD, {"cert": eve_cert.raw},
                            hlc=last.hlc)
        evil.serve({"*": [forged_claim, forged_add]}, forks=[(alpha_last, twin)])
        for n in acme.nodes:
            evil.poke(n)

        expect: list[dict[str, Any]] = [
            {"verdict": "refused", "feed": oscar.peer_id, "source": oscar.peer_id,
             "reason": f"forged or tampered: the signature of {oscar.peer_id} does not verify"},
            {"verdict": "refused", "feed": alpha.id, "source": oscar.peer_id,
             "reason": f"forged or tampered: the signature of {alpha.id} does not verify"},
            {"verdict": "refused", "feed": None, "source": oscar.peer_id, "reason": "fork proof with a forged event"},
        ]
        for n in acme.nodes:
            for want in expect:
                n.wait_for_line("log.refused", want["feed"], want["reason"], f"refuse: {want['reason']}")
            # The forgeries really were delivered to this daemon, by the protocol's own pull.
            assert (1, (eid(forged_claim),)) in evil.pulls(n.id, oscar.peer_id)
            assert (alpha_head.seq + 1, (eid(forged_add),)) in evil.pulls(n.id, alpha.id)

    for n in acme.nodes:
        assert_healthy_and_alerted(acme, n, expect)
        events = office_log(acme, n, cli=False)
        assert not [e for e in events if e["writer"] == oscar.peer_id]
        assert not [e for e in events if e["kind"] == MEMBER_ADD and e["fields"]["peer_id"] == eve.peer_id]
        assert eid(twin).hex() not in {e["id"] for e in events}
        assert max(e["seq"] for e in events if e["writer"] == alpha.id) == alpha_head.seq
        assert "eve" not in n.peer.peers()
        assert not lines_about(n.peer, "log.fork", alpha.id, ""), f"{n.name} froze the admin's feed"
    # Nothing of it was accepted anywhere, and the admin's feed was not frozen: the logs did not change.
    assert acme.converged() == before


def head_of_feed(evil: EvilPeer, node: Node) -> tuple[logsync.Head, bytes]:
    """`node`'s own feed as every daemon holds it: its head, and the head event's own bytes."""
    status, raw = evil.call(node, logsync.HEADS_PATH, logsync.Heads((), ()).to_wire())
    assert status == 200
    (head,) = [h for h in logsync.Heads.from_wire(raw).heads if h.feed == node.id]
    status, raw = evil.call(node, logsync.PULL_PATH, logsync.Pull(CONTROL_LOG, node.id, head.seq, 1).to_wire())
    assert status == 200
    (last,) = logsync.PullReply.from_wire(raw).events
    assert eid(last) == head.id
    return head, last


# ---- 2: tampered events ------------------------------------------------------------------------------


def _retouched(raw: bytes, **body_changes: Any) -> bytes:
    """The event with fields of its signed body changed after signing; the signature kept."""
    outer = codec.unpack_map(raw, "test event")
    body = codec.unpack_map(outer["e"], "test event body")
    body.update(body_changes)
    return codec.pack({"e": codec.pack(body), "s": outer["s"]})


def _sig_flipped(raw: bytes) -> bytes:
    outer = codec.unpack_map(raw, "test event")
    sig = bytearray(outer["s"])
    sig[5] ^= 0x10
    return codec.pack({"e": outer["e"], "s": bytes(sig)})


def test_tampered_events_are_refused_on_every_peer_and_the_genuine_one_accepted(acme: Acme) -> None:
    peggy = acme.members["peggy"]
    before = acme.converged()
    real = genuine(peggy.key, 1, GENESIS, 7)
    real_term = decode_event(real).fields["term"]
    tampered = {
        "fields": _retouched(real, f={"term": 99}),
        "kind": _retouched(real, kind="member.revoke"),
        "hlc": _retouched(real, hlc=decode_event(real).hlc + 1),
        "signature": _sig_flipped(real),
    }
    reason = f"forged or tampered: the signature of {peggy.peer_id} does not verify"
    with EvilPeer(peggy, acme.nodes) as evil:
        for what, raw in tampered.items():
            assert decode_event(raw).key == decode_event(real).key and eid(raw) != eid(real), what
            evil.serve({"*": [raw]})
            counts = {n.id: len(lines_about(n.peer, "log.refused", peggy.peer_id, reason)) for n in acme.nodes}
            for n in acme.nodes:
                evil.poke(n)
            for n in acme.nodes:
                n.wait_for_line("log.refused", peggy.peer_id, reason, f"refuse the event with its {what} tampered",
                                than=counts[n.id])
                assert (1, (eid(raw),)) in evil.pulls(n.id, peggy.peer_id), what
            assert acme.converged() == before, f"the event with its {what} tampered changed a log"
        expect = [{"verdict": "refused", "feed": peggy.peer_id, "source": peggy.peer_id, "reason": reason}]
        for n in acme.nodes:
            assert len(lines_about(n.peer, "log.refused", peggy.peer_id, reason)) >= len(tampered)
            assert_healthy_and_alerted(acme, n, expect)
            assert not [e for e in n.control_log() if e["writer"] == peggy.peer_id]

        # The refusals were about the tampering, not about peggy: her real event is accepted everywhere.
        evil.show_until_held(acme.nodes, real, "the genuine event")
    for n in acme.nodes:
        claims = [e for e in office_log(acme, n, cli=False) if e["writer"] == peggy.peer_id]
        assert [(c["seq"], c["kind"], c["fields"]["term"], c["id"]) for c in claims] == \
            [(1, COORDINATOR_CLAIM, real_term, eid(real).hex())]
    acme.converged()

