"""Configuration that can be undone (issue 13), tried to be broken with random sequences of node events.

The invariants of docs/nodes.md ("What undoing never does"), each a property over random sequences of
add / grant / revoke / data set / schedule / pause / resume / policy / remove / restore-config / purge
events written by two admins, with random clocks (several events in one millisecond too):

- a node's keys are never lost: remove, restore-config and purge change nothing of its keys, agents,
  epoch or sealed boxes, and no node ever leaves the fold (removed ones are listed apart);
- restore-config brings a node back exactly as it was removed;
- removing a data set changes nothing but that data set (its snapshots: tests/inproc/test_node_removal.py);
- the fold is a function of the set of events: any arrival order into the log gives the same nodes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from peerbackup.core import hlc
from peerbackup.core.alertrules import Observed, evaluate
from peerbackup.core.alerts import BACKUP_MISSED, AlertConfig
from peerbackup.core.certs import ROLES, Certificate
from peerbackup.core.events import CONTROL_LOG, GENESIS, Event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.logstate import ACCEPTED, PENDING, REFUSED, LogState
from peerbackup.core.nodes import (
    LIFE_KINDS,
    NODE_ADD,
    NODE_DATASET,
    NODE_DATASET_REMOVE,
    NODE_GRANT,
    NODE_POLICY,
    NODE_PURGE,
    NODE_REMOVE,
    NODE_RESTORE,
    NODE_REVOKE,
    NODE_SCHEDULE,
    NODE_SCHEDULE_PAUSE,
    NODE_SCHEDULE_REMOVE,
    NODE_SCHEDULE_RESUME,
    Node,
    derive_nodes,
    fold_nodes,
    schedule_fields,
)
from peerbackup.core.schedule import Schedule, due

NOW_MS = 1_800_000_000_000
OFFICE = SigningKey(bytes(range(32)))
ADMINS = [SigningKey(bytes(range(1, 33))), SigningKey(bytes(range(4, 36)))]
AGENTS = [SigningKey(bytes(range(2, 34))), SigningKey(bytes(range(3, 35)))]
CERTS = [Certificate.issue(OFFICE, k.public_key, f"admin{i}", ROLES, i, NOW_MS // 1000) for i, k in enumerate(ADMINS)]
CERTS += [Certificate.issue(OFFICE, k.public_key, f"agent{i}", ("agent", "storage"), 100 + i, NOW_MS // 1000)
          for i, k in enumerate(AGENTS)]
NODES = ("accounts", "team")
PATHS = ("/srv/a", "/srv/b", "/home")
SCHEDULE_IDS = ("s1", "s2", "s3")
FOLD = settings(max_examples=150, derandomize=True, deadline=None)


@dataclass(frozen=True)
class Op:
    kind: str
    node: str
    writer: int  # which admin
    step_ms: int  # after the previous event (0: the same millisecond)
    arg: int  # which path / schedule / agent / grace, by kind


OPS = st.builds(Op, st.sampled_from([NODE_ADD, NODE_GRANT, NODE_REVOKE, NODE_DATASET, NODE_DATASET_REMOVE,
                                     NODE_SCHEDULE, NODE_SCHEDULE_REMOVE, NODE_SCHEDULE_PAUSE, NODE_SCHEDULE_RESUME,
                                     NODE_POLICY, NODE_REMOVE, NODE_RESTORE, NODE_PURGE]),
                st.sampled_from(NODES), st.integers(0, 1), st.sampled_from([0, 0, 1, 700, 3000]), st.integers(0, 5))
SEQUENCES = st.lists(OPS, min_size=1, max_size=28)


def _fields(op: Op, n: int, wall_ms: int) -> dict[str, Any]:
    """The event's fields; n makes every sealed box distinct, so a lost or swapped one shows."""
    box = {k.peer_id: f"box-{n}-{k.peer_id[:6]}".encode() for k in (*ADMINS, *AGENTS)}
    agent = AGENTS[op.arg % 2].peer_id
    if op.kind == NODE_ADD:
        return {"node": op.node, "replicas": 1 + op.arg % 3, "keys": {k.peer_id: box[k.peer_id] for k in ADMINS},
                "office_keys": f"office-{n}".encode()}
    if op.kind == NODE_GRANT:
        return {"node": op.node, "agent": agent, "keys": {agent: box[agent]}}
    if op.kind == NODE_REVOKE:
        return {"node": op.node, "agent": agent, "epoch": n, "office_keys": f"office-{n}".encode(),
                "keys": {p: b for p, b in box.items() if p != agent}}
    if op.kind == NODE_DATASET:
        return {"node": op.node, "path": PATHS[op.arg % 3], "on": [agent] if op.arg > 2 else [], "exclude": [f"*.{n}"]}
    if op.kind == NODE_DATASET_REMOVE:
        return {"node": op.node, "path": PATHS[op.arg % 3]}
    if op.kind == NODE_SCHEDULE:
        sc = Schedule(id=SCHEDULE_IDS[op.arg % 3], node=op.node, every=60.0 * (1 + op.arg), window=3600.0 + n)
        return schedule_fields(sc.check())
    if op.kind in (NODE_SCHEDULE_REMOVE, NODE_SCHEDULE_PAUSE, NODE_SCHEDULE_RESUME):
        return {"node": op.node, "id": SCHEDULE_IDS[op.arg % 3]}
    if op.kind == NODE_POLICY:
        return {"node": op.node, "keep": {"daily": n, "last": op.arg}}
    if op.kind == NODE_REMOVE:  # a grace of 0 s to about an hour after this event
        return {"node": op.node, "until": wall_ms // 1000 + (0, 1, 2, 5, 30, 3600)[op.arg]}
    return {"node": op.node}


def events_of(ops: list[Op]) -> list[Event]:
    """Signed events, chained per writer, in the order written (and so in HLC order)."""
    out: list[Event] = []
    heads: dict[int, tuple[int, bytes]] = {}
    wall = NOW_MS
    for n, op in enumerate(ops, 1):
        wall += op.step_ms
        seq, prev = heads.get(op.writer, (0, GENESIS))
        ev = make_event(ADMINS[op.writer], CONTROL_LOG, seq + 1, prev, hlc.pack(wall, 0), op.kind,
                        _fields(op, n, wall))
        heads[op.writer] = (seq + 1, ev.id)
        out.append(ev)
    return sorted(out, key=Event.order)


def keys_of(node: Node) -> tuple[Any, ...]:
    return (node.name, node.replicas, node.created_by, node.created, node.epoch, sorted(node.agents),
            sorted(node.boxes.items()), node.office_box)


def config_of(node: Node) -> tuple[Any, ...]:
    return (sorted(node.datasets.items()), sorted(node.schedules.items()), sorted(node.paused.items()),
            sorted(node.policy.items()))


@FOLD
@given(SEQUENCES)
def test_undoing_never_loses_a_nodes_keys(ops: list[Op]) -> None:
    events = events_of(ops)
    everything = fold_nodes(events)
    without_life = fold_nodes([e for e in events if e.kind not in LIFE_KINDS])
    # No node leaves the fold, and remove / restore-config / purge change nothing of any node's keys.
    assert set(everything) == set(without_life) == {op.node for op in ops if op.kind == NODE_ADD} & set(everything)
    for name, node in everything.items():
        assert keys_of(node) == keys_of(without_life[name])
    # In force or removed, never both, never neither.
    active = derive_nodes(events)
    assert set(active) | {n for n, node in everything.items() if node.removed} == set(everything)
    assert not set(active) & {n for n, node in everything.items() if node.removed}


@FOLD
@given(SEQUENCES, SEQUENCES, st.integers(0, 1))
def test_restore_config_brings_a_node_back_exactly_as_it_was_removed(before_ops: list[Op], meanwhile: list[Op],
                                                                       writer: int) -> None:
    # Always at least one removal and one restore-config of accounts (about an hour of grace), random
    # events around them, including other removals, restores and purges.
    ops = [Op(NODE_ADD, "accounts", 0, 0, 0), *before_ops, Op(NODE_REMOVE, "accounts", writer, 1, 5), *meanwhile,
           Op(NODE_RESTORE, "accounts", 1 - writer, 1, 0)]
    events = events_of(ops)
    at_removal: dict[str, tuple[Any, ...]] = {}
    before: dict[str, Node] = {}
    for i in range(len(events)):
        after = fold_nodes(events[: i + 1])
        for name, node in after.items():
            was = before.get(name)
            if was is None:
                continue
            if not was.removed and node.removed:
                at_removal[name] = config_of(was)
            if was.removed and not node.removed:
                assert events[i].kind == NODE_RESTORE
                assert config_of(node) == at_removal[name]
            if was.removed and node.removed:
                assert config_of(node) == config_of(was)  # nothing changes a removed node's configuration
            if was.purged:
                assert node.removed and node.purged == was.purged  # a purge is final
            if node.removed:
                assert config_of(node) == at_removal[name]  # removing changes none of it
        before = after
    # The last restore-config takes effect whenever the node is removed, not purged, inside its grace.
    last = fold_nodes(events[:-1])["accounts"]
    inside = last.removed and not last.purged and hlc.wall_ms(events[-1].hlc) / 1000 < last.restorable_until
    assert events[-1].kind == NODE_RESTORE
    assert ("accounts" in derive_nodes(events)) == (inside or not last.removed)


def test_restore_config_examples_restore_inside_and_refuse_outside_the_grace() -> None:
    ops = [Op(NODE_ADD, "accounts", 0, 0, 0), Op(NODE_DATASET, "accounts", 0, 1, 0),
           Op(NODE_SCHEDULE, "accounts", 1, 1, 1), Op(NODE_SCHEDULE_PAUSE, "accounts", 0, 1, 1),
           Op(NODE_POLICY, "accounts", 1, 1, 2), Op(NODE_GRANT, "accounts", 0, 1, 1),
           Op(NODE_REMOVE, "accounts", 1, 1, 4),  # a grace of 30 s
           Op(NODE_DATASET, "accounts", 0, 1, 1), Op(NODE_SCHEDULE_RESUME, "accounts", 0, 1, 1),
           Op(NODE_RESTORE, "accounts", 0, 29_000, 0)]
    events = events_of(ops)
    before = fold_nodes(events[:6])["accounts"]
    node = derive_nodes(events)["accounts"]
    assert config_of(node) == config_of(before) and keys_of(node) == keys_of(before)
    assert list(node.paused) == ["s2"] and not node.schedules and list(node.datasets) == ["/srv/a"]
    # One second later the grace is over: no restore, and a purge is taken.
    late = events_of([*ops[:-1], Op(NODE_RESTORE, "accounts", 0, 30_000, 0), Op(NODE_PURGE, "accounts", 1, 0, 0),
                      Op(NODE_RESTORE, "accounts", 0, 0, 0)])
    assert derive_nodes(late) == {}
    gone = fold_nodes(late)["accounts"]
    assert gone.removed and gone.purged and keys_of(gone) == keys_of(before)
    # A purge inside the grace changes nothing.
    early = events_of([*ops[:-1], Op(NODE_PURGE, "accounts", 1, 1, 0)])
    assert not fold_nodes(early)["accounts"].purged


@FOLD
@given(SEQUENCES, st.integers(0, 2))
def test_removing_a_data_set_changes_nothing_but_that_data_set(ops: list[Op], which: int) -> None:
    ops = [Op(NODE_ADD, "accounts", 0, 0, 0), Op(NODE_DATASET, "accounts", 0, 1, which), *ops]
    events = events_of(ops)
    path = PATHS[which]
    removals = [e for e in events if e.kind == NODE_DATASET_REMOVE and e.fields["path"] == path]
    kept = [e for e in events if e not in removals]
    with_removal, without = fold_nodes(events), fold_nodes(kept)
    for name in with_removal:
        a, b = with_removal[name], without[name]
        assert keys_of(a) == keys_of(b)
        assert (a.schedules, a.paused, a.policy, a.removed, a.purged) == (b.schedules, b.paused, b.policy,
                                                                           b.removed, b.purged)
        assert {p: d for p, d in a.datasets.items() if p != path} == {p: d for p, d in b.datasets.items() if p != path}


def _state() -> LogState:
    s = LogState(office_key=OFFICE.public_key, max_ahead_ms=120_000)
    for cert in CERTS:
        s.add_cert(cert)
    return s


def _merged(events: list[Event], seed: int) -> LogState:
    """The events arriving in a random order, each pending one retried once its predecessor arrived."""
    s = _state()
    waiting = list(events)
    random.Random(seed).shuffle(waiting)
    now = NOW_MS + 10_000_000
    while waiting:
        later = []
        for ev in waiting:
            verdict = s.add(ev.raw, now).verdict
            assert verdict in (ACCEPTED, PENDING), verdict
            if verdict == PENDING:
                later.append(ev)
        assert len(later) < len(waiting)
        waiting = later
    return s


@FOLD
@given(SEQUENCES, st.integers(0, 2**32))
def test_the_fold_is_the_same_whatever_the_arrival_order(ops: list[Op], seed: int) -> None:
    events = events_of(ops)
    one, other = _merged(events, seed).config(), _merged(events, seed + 1).config()
    expected = fold_nodes(events)
    for cfg in (one, other):
        assert {n: node.describe() for n, node in cfg.nodes.items()} == \
            {n: node.describe() for n, node in expected.items() if not node.removed}
        assert {n: node.describe() for n, node in cfg.removed_nodes.items()} == \
            {n: node.describe() for n, node in expected.items() if node.removed}
    assert one.digest() == other.digest()


def test_only_admins_undo_configuration() -> None:
    """An agent (any non-admin) cannot remove, restore or purge a node, nor remove or pause its parts."""
    s = _state()
    events = events_of([Op(NODE_ADD, "accounts", 0, 0, 0), Op(NODE_DATASET, "accounts", 0, 1, 0),
                        Op(NODE_SCHEDULE, "accounts", 0, 1, 0)])
    for ev in events:
        assert s.add(ev.raw, NOW_MS + 1000).verdict == ACCEPTED
    agent = AGENTS[0]
    for kind, fields in ((NODE_REMOVE, {"node": "accounts", "until": 0}), (NODE_RESTORE, {"node": "accounts"}),
                         (NODE_PURGE, {"node": "accounts"}), (NODE_DATASET_REMOVE, {"node": "accounts",
                                                                                    "path": "/srv/a"}),
                         (NODE_SCHEDULE_REMOVE, {"node": "accounts", "id": "s1"}),
                         (NODE_SCHEDULE_PAUSE, {"node": "accounts", "id": "s1"})):
        out = s.append(agent, CONTROL_LOG, kind, fields, NOW_MS + 2000)
        assert out.verdict == REFUSED and "not an admin" in out.reason, (kind, out)
    node = s.config().nodes["accounts"]
    assert list(node.datasets) == ["/srv/a"] and list(node.schedules) == ["s1"]


def test_malformed_undo_events_are_refused() -> None:
    s = _state()
    for kind, fields in ((NODE_REMOVE, {"node": "accounts"}), (NODE_REMOVE, {"node": "accounts", "until": True}),
                         (NODE_DATASET_REMOVE, {"node": "accounts", "path": "relative"}),
                         (NODE_SCHEDULE_PAUSE, {"node": "accounts", "id": "UPPER"}),
                         (NODE_RESTORE, {"node": "../etc"})):
        out = s.append(ADMINS[0], CONTROL_LOG, kind, fields, NOW_MS)
        assert out.verdict == REFUSED, (kind, fields, out)


def test_a_paused_schedule_is_not_alerted_and_resuming_does_not_alert_the_pause() -> None:
    """core/alertrules.py sees the fold: a paused schedule has no missed slot, and once resumed it counts from
    the resume (the slots missed while paused are neither run nor alerted)."""
    t0 = 1_800_000_000.0  # a whole hour
    cfg = AlertConfig(webhook="http://127.0.0.1:9/hook", since=t0 - 86400)
    hourly = schedule_fields(Schedule(id="s1", node="acc", every=3600, window=600).check())
    log: list[Event] = []

    def write(kind: str, at: float, fields: dict[str, Any]) -> None:
        prev = log[-1].id if log else GENESIS
        log.append(make_event(ADMINS[0], CONTROL_LOG, len(log) + 1, prev, hlc.pack(int(at * 1000), 0), kind, fields))

    def alerts_at(now: float) -> list[str]:
        seen = Observed(nodes=derive_nodes(log), jobs={"acc": {}}, dead={}, names={}, under=None)
        return [a.kind for a in evaluate(now, cfg, seen, {}, 30).send]

    write(NODE_ADD, t0 - 20, {"node": "acc", "replicas": 2, "keys": {ADMINS[0].peer_id: b"box"}})
    write(NODE_SCHEDULE, t0 - 10, hourly)
    assert alerts_at(t0 + 601) == [BACKUP_MISSED]  # unpaused, the slot at t0 is missed
    write(NODE_SCHEDULE_PAUSE, t0 - 5, {"node": "acc", "id": "s1"})
    assert alerts_at(t0 + 601) == [] and alerts_at(t0 + 3600 + 601) == []
    write(NODE_SCHEDULE_RESUME, t0 + 3600 + 700, {"node": "acc", "id": "s1"})
    assert alerts_at(t0 + 3600 + 800) == []  # the two slots of the pause are not alerted
    resumed = derive_nodes(log)["acc"].schedules["s1"]
    assert resumed.since == t0 + 3600 + 700 and not resumed.paused
    assert due(resumed, resumed.since, t0 + 3600 + 800) == []  # nor run: the next one is at t0 + 7200
    assert alerts_at(t0 + 7200 + 601) == [BACKUP_MISSED]  # and the next slot counts again
