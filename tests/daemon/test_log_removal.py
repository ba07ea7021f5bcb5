"""The replicated logs under attack (tests/daemon/logsec.py): an event by a removed writer, relayed by
another member after the removal, refused on every daemon; and a removal relayed with a cutoff of the
relay's own erases nothing (issue 14, finding 1).
"""

from __future__ import annotations

from functools import partial

from peerbackup.core.certs import Revocation
from peerbackup.core.events import CONTROL_LOG, GENESIS, decode_event, make_event
from peerbackup.net.proto import logsync
from peerbackup.net.proto.refusal import Refusal
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
    now_hlc,
    office_log,
    read_control_events,
)

# ---- 4: a removed writer -----------------------------------------------------------------------------------


def test_event_by_removed_writer_relayed_after_removal_is_refused_on_every_peer(acme: Acme) -> None:
    mallory, trudy = acme.members["mallory"], acme.members["trudy"]
    first = genuine(mallory.key, 1, GENESIS, 2)
    with EvilPeer(mallory, acme.nodes) as evil:
        evil.show_until_held(acme.nodes, first, "mallory's claim")
        acme.converged()

        acme.office.cli("remove-peer", "--home", str(acme.alpha.peer.home), "mallory")

        def revoked(n: Node) -> bool:
            revokes = [e for e in n.control_log() if e["kind"] == "member.revoke"
                       and e["fields"]["peer_id"] == mallory.peer_id]
            return bool(revokes) and "mallory" not in n.peer.peers()

        for n in acme.nodes:
            wait_for(partial(revoked, n), WAIT, f"{n.name} to apply mallory's removal")
            (rev,) = [e for e in n.control_log() if e["kind"] == "member.revoke"
                      and e["fields"]["peer_id"] == mallory.peer_id]
            assert rev["fields"]["cutoff"] == {CONTROL_LOG: 1} and rev["writer"] == acme.alpha.id
            # mallory herself is refused at the door now.
            status, body = evil.call(n, logsync.HEADS_PATH, evil.heads_for(n.id).to_wire())
            assert (status, Refusal.from_wire(body).code) == (403, "revoked")
    before = acme.converged()

    # mallory's next event, validly signed by her, relayed by trudy (a member in good standing).
    second = genuine(mallory.key, 2, eid(first), 9)
    reason = f"written by {mallory.peer_id} after its removal (last accepted seq 1)"
    with EvilPeer(trudy, acme.nodes) as relay:
        relay.certs[mallory.peer_id] = mallory.certificate.raw
        relay.serve({"*": [first, second]})
        for n in acme.nodes:
            relay.poke(n)
        for n in acme.nodes:
            n.wait_for_line("log.refused", mallory.peer_id, reason, "refuse mallory's event after her removal")
            assert (2, (eid(second),)) in relay.pulls(n.id, mallory.peer_id)
    assert acme.converged() == before

    expect = [{"verdict": "refused", "feed": mallory.peer_id, "source": trudy.peer_id, "reason": reason}]
    for n in acme.nodes:
        assert_healthy_and_alerted(acme, n, expect, cli=True)
        events = office_log(acme, n, cli=True)
        mallorys = [(e["seq"], e["id"]) for e in events if e["writer"] == mallory.peer_id]
        assert mallorys == [(1, eid(first).hex())], (n.name, mallorys)


def test_a_member_relaying_a_public_revocation_with_its_own_cutoff_erases_nothing(acme: Acme) -> None:
    """Issue 14, finding 1: after any remove-peer the revocation is public in the control log. A storage-only
    member running modified software wrote it again into its own feed with an empty cutoff, and every peer
    dropped every event the removed peer had ever written (its member.adds, the node keys it sealed).
    Now only an admin writes a removal, and the cutoff is the one signed inside the revocation."""
    rita, stan = acme.members["rita"], acme.members["stan"]
    first = genuine(rita.key, 1, GENESIS, 3)
    accepted_everywhere(acme, rita, first)
    acme.converged()
    acme.office.cli("remove-peer", "--home", str(acme.alpha.peer.home), "rita")
    for n in acme.nodes:
        wait_for(lambda n=n: "rita" not in n.peer.peers(), WAIT, f"{n.name} to apply rita's removal")  # type: ignore[misc]
    (revocation,) = [decode_event(raw).fields["revocation"] for raw in read_control_events(acme.alpha)
                     if decode_event(raw).kind == "member.revoke"
                     and Revocation.from_bytes(decode_event(raw).fields["revocation"],
                                               acme.alpha.ident.office.public_key).peer_id == rita.peer_id]
    relayed = make_event(stan.key, CONTROL_LOG, 1, GENESIS, now_hlc(), "member.revoke",
                         {"revocation": revocation, "cutoff": {}}).raw
    refused_everywhere(acme, stan, relayed, "is not an admin and cannot write a member's removal")
    for n in acme.nodes:
        assert holds(n, first), f"{n.name} dropped rita's claim"

