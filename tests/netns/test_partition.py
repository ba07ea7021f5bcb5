"""Election, partition and heal across hosts: one side elects its own coordinator, the other removes a
member; after the heal the logs merge, the removal holds everywhere and one coordinator remains."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tests.daemon.harness import holds_for, wait_for
from tests.netns.lan import LEASE, Lan, NetOffice, Node, agreed, claims

REVOKE = "member.revoke"

# Real daemons on several network namespaces: seconds, not milliseconds; bounded well below 300 s.
pytestmark = pytest.mark.timeout(180)


@dataclass
class Four:
    """alpha, beta and gamma running on hosts 1-3 of the lan; delta a member that is never started (host 4)."""

    lan: Lan
    office: NetOffice
    a: Node
    b: Node
    c: Node
    d: Node

    @property
    def nodes(self) -> list[Node]:
        return [self.a, self.b, self.c]


def test_partition_elects_on_both_sides_and_heal_merges_to_one_coordinator(
        make_lan: Callable[[int], Lan], office: NetOffice) -> None:
    four = start_four(make_lan(4), office)
    term1 = agreed_on_alpha_with_one_log(four)
    term_g = partitioned_gamma_elects_itself(four, term1)
    terms_seen = removal_on_alpha_side_only(four, term1, term_g)
    term_final, log, peers = healed_office_converges(four, term1, term_g, terms_seen)
    one_coordinator_that_stays(four, peers, term_final)
    merged_log_holds_every_claim_once_and_the_removal(four, log, term_g, term_final)


def start_four(lan: Lan, office: NetOffice) -> Four:
    h1, h2, h3, h4 = lan.hosts
    a = office.start(office.init("alpha", h1))  # rank 0
    # delta is a member that is never started.
    b, c, d = office.join_all(a, ("beta", h2, ("--rank", "10")), ("gamma", h3, ("--rank", "20")),
                              ("delta", h4, ("--rank", "30")))
    office.start_all(b, c)
    return Four(lan, office, a, b, c, d)


def agreed_on_alpha_with_one_log(four: Four) -> int:
    """A common starting point: alpha coordinates and every log holds the same events. Its term."""
    office, a, c, nodes = four.office, four.a, four.c, four.nodes

    def agreed_and_synced() -> int | None:
        sts = office.statuses(nodes)
        leaders = {(st["coordinator"], st["term"]) for st in sts}
        if len(leaders) == 1 and len({st["logs_digest"] for st in sts}) == 1:
            coordinator, term = next(iter(leaders))
            if coordinator == a.peer_id and isinstance(term, int):
                return term
        return None

    term1 = wait_for(agreed_and_synced, 25, "alpha, beta and gamma to agree on alpha and hold the same log")
    before, peers_c = office.par(partial(office.office_log, c), partial(office.peers, c))
    assert sorted(e["fields"]["name"] for e in before if e["kind"] == "member.add") == \
        ["alpha", "beta", "delta", "gamma"]
    assert "delta" in peers_c
    return int(term1)


def partitioned_gamma_elects_itself(four: Four, term1: int) -> int:
    """gamma's switch port goes down: it elects itself, alpha still coordinates the majority. gamma's term."""
    lan, office, a, b, c, h3 = four.lan, four.office, four.a, four.b, four.c, four.lan.hosts[2]
    lan.partition(h3)
    t_part = time.time()
    term_g = wait_for(lambda: agreed(office, [c], c), 5 * LEASE, "gamma, cut off, to elect itself")
    polled = time.time() - t_part
    elected_g = [t for t, line in c.events("coordinator.elected") if f"term={term_g} " in line]
    assert elected_g, c.log_text()
    print(f"\n[netns] partition: gamma elected itself {elected_g[0] - t_part:.2f} s after it was cut off (its log; "
          f"the poll saw it at {polled:.2f} s), term {term1} -> {term_g}")
    assert term_g > term1
    # The majority side is undisturbed: alpha still coordinates it under its own term.
    assert agreed(office, [a, b], a) == term1
    return int(term_g)


def removal_on_alpha_side_only(four: Four, term1: int, term_g: int) -> list[int]:
    """alpha removes delta: its side drops delta, gamma's hears nothing of it. Every term seen so far."""
    office, a, b, c, nodes = four.office, four.a, four.b, four.c, four.nodes
    office.remove_peer(a, "delta")

    def removed_on_alpha_side() -> bool:
        peers_a, peers_b, log_b = office.par(partial(office.peers, a), partial(office.peers, b),
                                             partial(office.office_log, b))
        return "delta" not in peers_a and "delta" not in peers_b and any(e["kind"] == REVOKE for e in log_b)

    wait_for(removed_on_alpha_side, 10, "alpha and beta to drop delta and beta to hold alpha's member.revoke")
    # gamma's side hears nothing of it.
    log_c, peers_c, *sts = office.par(partial(office.office_log, c), partial(office.peers, c),
                                      *(partial(office.status, n) for n in nodes))
    assert not any(e["kind"] == REVOKE for e in log_c)
    assert "delta" in peers_c
    st_a, _, st_c = sts
    assert st_a["config_digest"] != st_c["config_digest"]
    assert st_c["coordinator"] == c.peer_id and st_c["term"] == term_g
    return [term1, term_g, *(st["highest_token"][0] for st in sts)]


def healed_office_converges(four: Four, term1: int, term_g: int,
                            terms_seen: list[int]) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """After the heal: one log, one coordinator (alpha, under a new term), delta gone everywhere."""
    lan, office, a, c, d, nodes, h3 = four.lan, four.office, four.a, four.c, four.d, four.nodes, four.lan.hosts[2]
    lan.heal(h3)
    t_heal, t_heal_wall = time.monotonic(), time.time()

    def converged() -> Any:
        sts = office.statuses(nodes)
        digests = {(st["logs_digest"], st["config_digest"]) for st in sts}
        leaders = {(st["coordinator"], st["term"]) for st in sts}
        if len(digests) != 1 or len(leaders) != 1:
            return False
        coordinator, term = next(iter(leaders))
        if coordinator != a.peer_id or term is None or term <= max(terms_seen):
            return False
        got = office.par(*(partial(office.office_log, n) for n in nodes), *(partial(office.peers, n) for n in nodes))
        logs, peers = got[:3], got[3:]
        if len({tuple(e["id"] for e in log) for log in logs}) != 1 or any("delta" in ps for ps in peers):
            return False
        return term, logs[0], peers

    term_final, log, peers = wait_for(converged, 30, "the healed office to converge on one log and coordinator")
    polled = time.monotonic() - t_heal
    # The daemons' side, from their own log timestamps: alpha's new claim, gamma stepping down, gamma
    # storing the revocation (beta logs nothing when it merely moves from alpha's old term to its new one).
    done = [t for t, line in a.events("coordinator.elected") if f"term={term_final} " in line]
    stepped = [t for t, _ in c.events("coordinator.stepped_down") if t >= t_heal_wall]
    assert stepped, f"gamma reports alpha as coordinator but logged no step-down:\n{c.log_text()}"
    done.append(stepped[0])
    done += [t for t, line in c.events("member.revoked") if f"peer={d.peer_id}" in line]
    print(f"[netns] heal convergence: alpha re-elected, gamma stepped down and gamma holding the removal "
          f"{max(done) - t_heal_wall:.2f} s after the heal (daemon logs); the CLI poll confirmed same log and "
          f"config digests, same office log, delta gone and one coordinator at {polled:.2f} s; "
          f"terms {term1} -> {term_g} (gamma, cut off) -> {term_final} (alpha)")
    return term_final, log, peers


def one_coordinator_that_stays(four: Four, peers: list[dict[str, Any]], term_final: int) -> None:
    """One coordinator, in every peer list too, and it stays so (no flapping between alpha and gamma)."""
    for ps in peers:
        assert [name for name, p in ps.items() if p["coordinator"]] == ["alpha"], ps
    holds_for(lambda: agreed(four.office, four.nodes, four.a) == term_final, 2 * LEASE / 3, "agreement on alpha")


def merged_log_holds_every_claim_once_and_the_removal(four: Four, log: list[dict[str, Any]], term_g: int,
                                                      term_final: int) -> None:
    """The merged control log: gamma's partition-time claim is in it, no token was claimed twice, and the
    final term is above every other term ever claimed."""
    a, b, c, d = four.a, four.b, four.c, four.d
    toks = claims(log)
    names = {a.peer_id: "alpha", b.peer_id: "beta", c.peer_id: "gamma"}
    print(f"[netns] claims in the merged office log: {[(t, names[w]) for t, w in toks]}")
    assert (term_g, c.peer_id) in toks, toks
    assert (term_final, a.peer_id) in toks, toks
    assert len(toks) == len(set(toks)), f"a (term, writer) token was claimed twice: {toks}"
    assert all(t < term_final for t, w in toks if (t, w) != (term_final, a.peer_id)), toks
    revokes = [e for e in log if e["kind"] == REVOKE]
    assert [(e["writer"], e["fields"]["peer_id"]) for e in revokes] == [(a.peer_id, d.peer_id)]
    # gamma stored the revocation itself (from the merged log or a hello).
    assert f"member.revoked peer={d.peer_id} me=False" in c.log_text()
