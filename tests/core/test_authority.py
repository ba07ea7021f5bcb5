"""The one table of rights (core/authority.py), attacked from the table itself: for every kind, every role
that may not write it, every field it checks set to values it must refuse, and every field a dispatch owns
rewritten by an agent. Each event goes through the real merge (LogState.add) as a member running modified
software would send it: signed with its own, legitimate key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from peerbackup.core import authority
from peerbackup.core.authority import CONTROL, NODE, TABLE, Rule
from peerbackup.core.certs import ROLES, Certificate
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.identity import SigningKey
from peerbackup.core.jobs import fold
from peerbackup.core.logstate import ACCEPTED, REFUSED, Outcome
from peerbackup.core.nodelog import DISPATCH_FIELDS, JOB_DISPATCHED, JOB_STARTED
from tests.core._logstate import NOW, OFFICE_KEY, Feed, add, new_state

WRITER = SigningKey(b"\x77" * 32)
NODE_NAME = "acc"
DOCS = Path(__file__).parents[2] / "docs" / "election-and-logs.md"
# Values a field check may have to refuse: wrong types, negatives, sizes past every bound, look-alikes.
BAD = ["x", "", -1, 2**64 - 1, 2**63, None, True, 1.5, [], {}, b"\x00", ["x"] * 10_001, "y" * 5000,
       [{"path": 1}], {"a": -1}]


def cert(*roles: str) -> Certificate:
    return Certificate.issue(OFFICE_KEY, WRITER.public_key, "mallory", tuple(roles), 100, NOW)


def send(rule: Rule, fields: dict[str, Any], c: Certificate) -> Outcome:
    s = new_state(c, node_logs=True)
    log = CONTROL_LOG if rule.log == CONTROL else f"node:{NODE_NAME}"
    return add(s, Feed(WRITER, log=log).next(rule.kind, fields))


def rules() -> list[Rule]:
    return sorted(TABLE.values(), key=lambda r: (r.log, r.kind))


def test_the_docs_print_the_table_the_code_has() -> None:
    assert authority.markdown() in DOCS.read_text(), "regenerate the table: python -m peerbackup.core.authority"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r.log}:{r.kind}")
def test_every_role_without_the_right_is_refused(rule: Rule) -> None:
    for role in ROLES:
        if role in rule.roles:
            continue
        out = send(rule, {}, cert(role))
        assert out.verdict == REFUSED, (role, out)
        assert rule.denied.split("{writer}")[-1].split("{")[0].strip() in out.reason, (role, out.reason)


@pytest.mark.parametrize("rule", [r for r in rules() if r.fields], ids=lambda r: f"{r.log}:{r.kind}")
def test_every_checked_field_refuses_what_it_must(rule: Rule) -> None:
    c = cert(*ROLES)
    for name, f in rule.fields:
        if name == rule.names_writer:
            continue  # its own test: any other value than the writer is refused
        for value in BAD:
            if f.check(value):
                continue
            out = send(rule, {"job": "j1", name: value}, c)
            assert out.verdict == REFUSED and f"{name} must be" in out.reason, (name, value, out.reason)


@pytest.mark.parametrize("rule", [r for r in rules() if r.names_writer], ids=lambda r: f"{r.log}:{r.kind}")
def test_a_writer_cannot_write_in_another_members_name(rule: Rule) -> None:
    other = SigningKey(b"\x78" * 32).peer_id
    out = send(rule, {"job": "j1", rule.names_writer: other}, cert(*ROLES))
    assert out.verdict == REFUSED and "not its writer" in out.reason


def test_a_node_event_cannot_speak_for_another_node_nor_be_an_unknown_kind() -> None:
    out = send(TABLE[(NODE, JOB_STARTED)], {"job": "j1", "node": "other"}, cert(*ROLES))
    assert out.verdict == REFUSED and "for node 'other'" in out.reason
    out = send(Rule("node.add", NODE, ("admin",), ""), {}, cert(*ROLES))
    assert out.verdict == REFUSED and "not an event of a backup node's log" in out.reason


def test_an_unknown_control_kind_is_an_admins_only() -> None:
    rule = Rule("future.kind", CONTROL, ("admin",), "")
    assert send(rule, {}, cert("agent", "storage", "coordinator")).verdict == REFUSED
    assert send(rule, {}, cert("admin")).verdict == ACCEPTED


@pytest.mark.parametrize("field", sorted(DISPATCH_FIELDS - {"job", "node", "agent"}))
def test_an_agent_never_rewrites_a_field_its_dispatch_owns(field: str) -> None:
    """Merge accepts the start (its values are well formed); the fold keeps the dispatch's word, or keeps the
    field unset when the dispatch did not set it."""
    coord, agent = SigningKey(b"\x01" * 32), SigningKey(b"\x03" * 32)
    certs = [Certificate.issue(OFFICE_KEY, k.public_key, n, ("coordinator", "agent"), 100, NOW)
             for k, n in ((coord, "c"), (agent, "a"))]
    s = new_state(*certs, node_logs=True)
    log = f"node:{NODE_NAME}"
    dispatch = {"job": "j1", "agent": agent.peer_id, "term": 1, "coordinator": coord.peer_id,
                "deadline": NOW + 3600, "job_kind": "backup"}
    assert add(s, Feed(coord, log=log).next(JOB_DISPATCHED, dispatch)).verdict == ACCEPTED
    tampered = {"agent": coord.peer_id, "term": 2, "coordinator": agent.peer_id, "deadline": NOW + 10**8,
                "job_kind": "retention", "schedule": "evil", "slot": 2**39, "attempt": 99,
                "replaces": coord.peer_id, "prune": True, "stalled": True}
    start = {"job": "j1", "agent": agent.peer_id, field: tampered[field]} if field != "agent" else {}
    out = add(s, Feed(agent, log=log).next(JOB_STARTED, start))
    assert out.verdict == ACCEPTED, out.reason
    st = fold(s.ordered(log), {(1, coord.peer_id)}, {agent.peer_id})["j1"]
    assert st.fields.get(field) == dispatch.get(field), (field, st.fields)


# Where the code reads a node-log job event's fields: each name it reads must be declared in the table (a rule
# that reads a field the table does not bound would trust whatever a member wrote there).
READERS = ["peerbackup/core/jobs.py", "peerbackup/core/nodelog.py", "peerbackup/office/jobs/service.py",
           "peerbackup/office/jobs/scheduler.py", "peerbackup/office/jobs/logon.py", "peerbackup/office/jobs/adhoc.py",
           "peerbackup/office/jobs/runner.py"]
_READ = re.compile(r"""\b(?:f|fields|st\.fields|ev\.fields|state\.fields)(?:\.get\(|\[)["'](\w+)["']""")


def test_every_field_the_job_rules_read_is_in_the_table() -> None:
    root = Path(__file__).parents[2]
    declared = {name for r in TABLE.values() if r.log == NODE for name, _ in r.fields} | DISPATCH_FIELDS
    read = {(path, name) for path in READERS for name in _READ.findall((root / path).read_text())}
    assert read, "the pattern finds no field reads: update it to the code"
    assert {(p, n) for p, n in read if n not in declared} == set()
