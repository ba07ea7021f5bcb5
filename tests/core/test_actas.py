"""Act-as tokens: bound to one agent, one node, one job, the coordinator of one term, and a time."""

from __future__ import annotations

import pytest

from peerbackup.core import codec
from peerbackup.core.actas import ActAs, coordinator_of
from peerbackup.core.identity import SigningKey
from peerbackup.errors import FormatError

COORD = SigningKey(bytes(range(32)))
AGENT = SigningKey(bytes(range(1, 33)))
OTHER = SigningKey(bytes(range(2, 34)))
NOW = 1_800_000_000
CLAIMS = [(1, OTHER.peer_id), (2, COORD.peer_id)]


def token(**kw: object) -> ActAs:
    args: dict[str, object] = {"term": 2, "agent": AGENT.peer_id, "node": "accounts", "job": "j1", "now": NOW,
                               "valid_for": 3600, **kw}
    return ActAs.issue(COORD, **args)  # type: ignore[arg-type]


def test_a_token_verifies_and_allows_its_agent_for_its_node() -> None:
    t = ActAs.from_bytes(token().raw, COORD.public_key)
    assert coordinator_of(t.raw) == COORD.peer_id
    assert t.refusal("accounts", AGENT.peer_id, NOW + 10, CLAIMS, 120) == ""


@pytest.mark.parametrize(("node", "signer", "now", "claims", "why"), [
    ("design", AGENT.peer_id, NOW, CLAIMS, "not design"),
    ("accounts", OTHER.peer_id, NOW, CLAIMS, "not the peer that sent it"),
    ("accounts", AGENT.peer_id, NOW + 3600 + 121, CLAIMS, "expired"),
    ("accounts", AGENT.peer_id, NOW - 121, CLAIMS, "not valid yet"),
    ("accounts", AGENT.peer_id, NOW, [(2, OTHER.peer_id)], "was not the coordinator of term 2"),
])
def test_a_token_refuses_everything_else(node: str, signer: str, now: float, claims: list[tuple[int, str]],
                                         why: str) -> None:
    assert why in token().refusal(node, signer, now, claims, 120)


def test_forged_or_altered_tokens_do_not_verify() -> None:
    with pytest.raises(FormatError, match="does not verify"):
        ActAs.from_bytes(token().raw, OTHER.public_key)
    outer = codec.unpack_map(token().raw, "t")
    body = codec.unpack_map(outer["body"], "t")
    body["agent"] = OTHER.peer_id  # an agent rewriting the token for a friend
    forged = codec.pack({"body": codec.pack(body), "sig": outer["sig"]})
    with pytest.raises(FormatError, match="does not verify"):
        ActAs.from_bytes(forged, COORD.public_key)
    for bad in ({"valid_for": 0}, {"valid_for": 10**9}):
        with pytest.raises(FormatError):
            token(**bad)
    with pytest.raises(FormatError):
        ActAs.from_bytes(b"\x81\xa1x\x01", COORD.public_key)


def test_only_a_prune_token_deletes() -> None:
    backup = ActAs.from_bytes(token().raw, COORD.public_key)
    assert backup.scope == "backup"
    assert "only adds" in backup.refusal("accounts", AGENT.peer_id, NOW, CLAIMS, 120, delete=True)
    prune = ActAs.from_bytes(token(scope="prune").raw, COORD.public_key)
    assert prune.scope == "prune"
    assert prune.refusal("accounts", AGENT.peer_id, NOW, CLAIMS, 120, delete=True) == ""
    assert prune.refusal("accounts", AGENT.peer_id, NOW, CLAIMS, 120) == ""  # a prune also writes (repacks)
    # A scope the reader does not know is refused, not taken for less.
    body = codec.pack({"v": 1, "coordinator": COORD.peer_id, "term": 2, "agent": AGENT.peer_id, "node": "a",
                       "job": "j", "issued": NOW, "expires": NOW + 60, "scope": "everything"})
    with pytest.raises(FormatError, match="unknown scope"):
        ActAs.from_bytes(codec.pack({"body": body, "sig": COORD.sign(body)}), COORD.public_key)
