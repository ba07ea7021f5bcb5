"""Backup nodes derived from the control log: names, sealed keys, add / grant / revoke."""

from __future__ import annotations

import random

import pytest

from peerbackup.core.certs import ROLES, Certificate
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.identity import SigningKey
from peerbackup.core.keys import KeySet
from peerbackup.core.logstate import ACCEPTED, REFUSED, LogState
from peerbackup.core.nodes import (
    NODE_ADD,
    NODE_GRANT,
    NODE_REVOKE,
    check_node_name,
    derive_nodes,
    open_keys,
    seal_keys,
)
from peerbackup.errors import FormatError

NOW = 1_800_000_000
RNG = random.Random(5)
OFFICE = SigningKey(bytes(range(32)))
ADMIN = SigningKey(bytes(range(1, 33)))
AGENT = SigningKey(bytes(range(2, 34)))
OTHER = SigningKey(bytes(range(3, 35)))
ADMIN_CERT = Certificate.issue(OFFICE, ADMIN.public_key, "admin", ROLES, 0, NOW)
AGENT_CERT = Certificate.issue(OFFICE, AGENT.public_key, "agent", ("agent", "storage"), 100, NOW)


def state() -> LogState:
    s = LogState(office_key=OFFICE.public_key, max_ahead_ms=120_000)
    s.add_cert(ADMIN_CERT)
    s.add_cert(AGENT_CERT)
    return s


@pytest.mark.parametrize("name", ["accounts", "a", "team-1.data_2", "0x"])
def test_good_names(name: str) -> None:
    assert check_node_name(name) == name


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "Accounts", "a..b", "x" * 64, "a b", "é", "a\n"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(FormatError):
        check_node_name(name)


def test_sealed_keys_open_only_for_their_holder() -> None:
    keys = KeySet.generate(RNG.randbytes)
    boxes = seal_keys(keys, {ADMIN.peer_id: ADMIN.public_key})
    assert open_keys(boxes[ADMIN.peer_id], ADMIN) == keys
    with pytest.raises(FormatError):
        open_keys(boxes[ADMIN.peer_id], AGENT)


def test_add_grant_revoke_through_the_log() -> None:
    s = state()
    now = NOW * 1000
    keys = KeySet.generate(RNG.randbytes)
    admin_box = seal_keys(keys, {ADMIN.peer_id: ADMIN.public_key})
    assert s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "accounts", "replicas": 2, "keys": admin_box},
                    now).verdict == ACCEPTED
    assert s.append(ADMIN, CONTROL_LOG, NODE_GRANT, {"node": "accounts", "agent": AGENT.peer_id,
                    "keys": seal_keys(keys, {AGENT.peer_id: AGENT.public_key})}, now + 1).verdict == ACCEPTED
    node = s.config().nodes["accounts"]
    assert node.agents == {AGENT.peer_id} and node.holders == {ADMIN.peer_id, AGENT.peer_id} and node.epoch == 0
    assert open_keys(node.boxes[AGENT.peer_id], AGENT) == keys

    rotated = keys.rotated(RNG.randbytes)
    assert s.append(ADMIN, CONTROL_LOG, NODE_REVOKE, {"node": "accounts", "agent": AGENT.peer_id, "epoch": 1,
                    "keys": seal_keys(rotated, {ADMIN.peer_id: ADMIN.public_key})}, now + 2).verdict == ACCEPTED
    node = s.config().nodes["accounts"]
    assert node.agents == set() and node.holders == {ADMIN.peer_id} and node.epoch == 1
    # The new epoch is sealed to the remaining holders only; old data stays readable to the admin.
    new = open_keys(node.boxes[ADMIN.peer_id], ADMIN)
    assert new.epoch == 1 and new.id_key == keys.id_key and new.data_keys[0] == keys.data_keys[0]
    assert AGENT.peer_id not in node.boxes


def test_node_events_need_an_admin_and_well_formed_fields() -> None:
    s = state()
    now = NOW * 1000
    box = seal_keys(KeySet.generate(RNG.randbytes), {AGENT.peer_id: AGENT.public_key})
    out = s.append(AGENT, CONTROL_LOG, NODE_ADD, {"node": "mine", "replicas": 2, "keys": box}, now)
    assert out.verdict == REFUSED and "not an admin" in out.reason
    for fields in ({"node": "../x", "replicas": 2, "keys": box}, {"node": "ok", "replicas": 0, "keys": box},
                   {"node": "ok", "replicas": 2, "keys": {"nope": b"x"}}):
        out = s.append(ADMIN, CONTROL_LOG, NODE_ADD, fields, now)
        assert out.verdict == REFUSED, fields
    assert s.config().nodes == {}


def test_derivation_ignores_a_second_add_and_grants_for_unknown_nodes() -> None:
    s = state()
    now = NOW * 1000
    box = seal_keys(KeySet.generate(RNG.randbytes), {ADMIN.peer_id: ADMIN.public_key})
    s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "a", "replicas": 2, "keys": box}, now)
    s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "a", "replicas": 5, "keys": box}, now + 1)
    s.append(ADMIN, CONTROL_LOG, NODE_GRANT, {"node": "b", "agent": AGENT.peer_id, "keys": box}, now + 2)
    nodes = derive_nodes(s.ordered())
    assert list(nodes) == ["a"] and nodes["a"].replicas == 2
