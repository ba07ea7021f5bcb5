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
    NODE_DATASET,
    NODE_GRANT,
    NODE_POLICY,
    NODE_REVOKE,
    NODE_SCHEDULE,
    Dataset,
    check_node_name,
    derive_nodes,
    open_keys,
    schedule_fields,
    seal_keys,
    seal_office,
)
from peerbackup.core.schedule import Schedule
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


def _with_node(s: LogState) -> None:
    box = seal_keys(KeySet.generate(RNG.randbytes), {ADMIN.peer_id: ADMIN.public_key})
    assert s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "accounts", "replicas": 2, "keys": box},
                    NOW * 1000).verdict == ACCEPTED


def test_datasets_schedules_and_policy_through_the_log() -> None:
    s = state()
    _with_node(s)
    now = NOW * 1000 + 10
    ds = {"node": "accounts", "path": "/srv/accounts", "on": [AGENT.peer_id], "exclude": ["*.tmp"]}
    assert s.append(ADMIN, CONTROL_LOG, NODE_DATASET, ds, now).verdict == ACCEPTED
    # The latest word on a path wins.
    assert s.append(ADMIN, CONTROL_LOG, NODE_DATASET, {**ds, "on": []}, now + 1).verdict == ACCEPTED
    sc = schedule_fields(Schedule(id="n1", node="accounts", every=30).check())
    assert s.append(ADMIN, CONTROL_LOG, NODE_SCHEDULE, sc, now + 2).verdict == ACCEPTED
    keep = {"node": "accounts", "keep": {"last": 3, "daily": 7, "weekly": 0}}
    assert s.append(ADMIN, CONTROL_LOG, NODE_POLICY, keep, now + 3).verdict == ACCEPTED
    node = s.config().nodes["accounts"]
    assert node.datasets == {"/srv/accounts": Dataset("/srv/accounts", (), ("*.tmp",))}
    assert node.schedules["n1"].every == 30 and node.schedules["n1"].tz == "UTC"
    assert node.policy == {"last": 3, "daily": 7}
    assert node.describe()["schedules"][0]["id"] == "n1"


@pytest.mark.parametrize(("kind", "fields", "reason"), [
    (NODE_DATASET, {"path": "relative/path", "on": [], "exclude": []}, "absolute"),
    (NODE_DATASET, {"path": "/x", "on": ["not-a-peer"], "exclude": []}, "peer ids"),
    (NODE_DATASET, {"path": "/x", "on": [], "exclude": [""]}, "patterns"),
    (NODE_SCHEDULE, {**schedule_fields(Schedule(id="s", node="accounts", every=30)), "cron": "99 * * * *"},
     "bad schedule"),
    (NODE_SCHEDULE, {**schedule_fields(Schedule(id="S/..", node="accounts", every=30))}, "schedule id"),
    (NODE_SCHEDULE, {**schedule_fields(Schedule(id="s", node="accounts", every=30)), "tz": "Nowhere/City"},
     "time zone"),
    (NODE_POLICY, {"keep": {"forever": 1}}, "policy"),
    (NODE_POLICY, {"keep": {"last": -1}}, "policy"),
])
def test_bad_configuration_events_are_refused(kind: str, fields: dict[str, object], reason: str) -> None:
    s = state()
    _with_node(s)
    out = s.append(ADMIN, CONTROL_LOG, kind, {"node": "accounts", **fields}, NOW * 1000 + 10)
    assert out.verdict == REFUSED and reason in out.reason
    node = s.config().nodes["accounts"]
    assert not node.datasets and not node.schedules and not node.policy


def test_configuration_needs_an_admin() -> None:
    s = state()
    _with_node(s)
    out = s.append(AGENT, CONTROL_LOG, NODE_POLICY, {"node": "accounts", "keep": {"last": 1}}, NOW * 1000 + 10)
    assert out.verdict == REFUSED and "not an admin" in out.reason


def test_the_office_key_opens_every_epoch_of_a_nodes_keys() -> None:
    s = state()
    now = NOW * 1000
    keys = KeySet.generate(RNG.randbytes)
    assert s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "accounts", "replicas": 2,
                    "keys": seal_keys(keys, {ADMIN.peer_id: ADMIN.public_key}),
                    "office_keys": seal_office(keys, OFFICE.public_key)}, now).verdict == ACCEPTED
    node = s.config().nodes["accounts"]
    assert open_keys(node.office_box, OFFICE) == keys
    with pytest.raises(FormatError):
        open_keys(node.office_box, ADMIN)  # the office key's box, not a peer's
    rotated = keys.rotated(RNG.randbytes)
    assert s.append(ADMIN, CONTROL_LOG, NODE_REVOKE, {"node": "accounts", "agent": AGENT.peer_id, "epoch": 1,
                    "keys": seal_keys(rotated, {ADMIN.peer_id: ADMIN.public_key}),
                    "office_keys": seal_office(rotated, OFFICE.public_key)}, now + 1).verdict == ACCEPTED
    assert open_keys(s.config().nodes["accounts"].office_box, OFFICE).epoch == 1
    bad = s.append(ADMIN, CONTROL_LOG, NODE_ADD, {"node": "other", "replicas": 2, "keys": {}, "office_keys": "x"},
                   now + 2)
    assert bad.verdict == REFUSED and "office_keys" in bad.reason
