"""Who may write which event, with which fields: the one table of rights. Pure.

Every event kind of the office control log and of a backup node's log has a row:
the roles of which its writer needs one, the field that must name the writer,
the type and bounds of each field it may carry, which of its fields only a
coordinator's dispatch sets, and whether a stored event of the kind can ever
leave the logs. The merge rules (core/logstate.py, on arrival, the same verdict
on every peer whatever the order) call `refusal`; the job fold (core/jobs.py)
reads `DISPATCH_FIELDS` from here; docs/election-and-logs.md prints `markdown()`
(a test checks that the page shows the table the code has). A right that is not
in this table is not granted anywhere.

What needs another log (which terms were claimed, who is a granted agent) cannot
be decided on merge without the verdict depending on arrival order: those rules
are applied when a node's log is read (core/jobs.fold) and are listed here too,
in the `read` column, so that the table says everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peerbackup.core import alerts
from peerbackup.core.certs import Certificate, Revocation, valid_cutoff
from peerbackup.core.identity import is_peer_id
from peerbackup.core.nodelog import (
    ACT_AS_ISSUED,
    ACT_AS_REFUSED,
    DISPATCH_FIELDS,
    JOB_DISPATCHED,
    JOB_DONE,
    JOB_FAILED,
    JOB_MISSED,
    JOB_PROGRESS,
    JOB_STALLED,
    JOB_STARTED,
    JOB_UNSENT,
    LOGON,
    MAX_ATTEMPT,
    MAX_FAILED,
    MAX_FAILED_PATH,
    MAX_REASON,
    RESTORE_DONE,
)
from peerbackup.core.nodes import NODE_KINDS, check_fields
from peerbackup.errors import FormatError, UnsupportedVersion

MEMBER_ADD, MEMBER_REVOKE, COORDINATOR_CLAIM = "member.add", "member.revoke", "coordinator.claim"
CONTROL, NODE = "control", "node"
MAX_TERM = 2**62  # a term + 1 always fits; core/logstate bounds claims far lower, by time
MAX_COUNT = 2**63 - 1
MAX_TIME = 2**40  # unix seconds: year 36812; anything later is a forgery
MAX_ID = 128  # a job id, a snapshot id, a scope

# Who keeps an event once accepted. "cutoff": dropped only when its writer is removed from the office with a
# cutoff below it, or when its writer forks its own feed; even then it moves to events.db's `dropped` table and
# is never deleted. No kind is removable by anyone's request.
KEPT = "cutoff or fork only; kept in events.db"


def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _text(most: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) <= most


def _texts(most: int, each: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) <= most and all(isinstance(x, str) and len(x) <= each for x in v)


def _failed(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= MAX_FAILED and all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and len(f["path"]) <= MAX_FAILED_PATH
        and isinstance(f.get("reason"), str) and len(f["reason"]) <= MAX_REASON for f in v)


@dataclass(frozen=True)
class Field:
    check: Callable[[Any], bool]
    what: str  # for the docs and the refusal


PEER = Field(is_peer_id, "a peer id")
JOB = Field(_text(MAX_ID), f"text of at most {MAX_ID}")
TERM = Field(_int(0, MAX_TERM), "an integer 0..2**62")
TIME = Field(_int(0, MAX_TIME), "unix seconds")
COUNT = Field(_int(0, MAX_COUNT), "a count")
REASON = Field(_text(4096), "text of at most 4096")
FLAG = Field(lambda v: isinstance(v, bool), "true or false")

# The fields a node-log event may carry and what each must be; a field not listed is carried as it is (an
# older or newer peer's addition) but read by nobody.
JOB_WHERE = {"job": JOB, "agent": PEER, "term": TERM, "coordinator": PEER, "deadline": TIME,
             "job_kind": Field(lambda v: v in ("backup", "retention"), "backup or retention"),
             "attempt": Field(_int(1, MAX_ATTEMPT), f"1..{MAX_ATTEMPT}")}
DISPATCH = {**JOB_WHERE, "schedule": Field(_text(16), "a schedule id"), "slot": TIME,
            "replaces": PEER, "prune": FLAG, "stalled": FLAG}
PROGRESS = {**JOB_WHERE, "files": COUNT, "bytes": COUNT, "files_seen": COUNT, "bytes_seen": COUNT, "errors": COUNT}
ENDED = {**JOB_WHERE, "snapshots": Field(_texts(10_000, MAX_ID), "a list of snapshot ids"), "errors": COUNT,
         "added": COUNT, "result": Field(lambda v: v in ("done", "partial"), "done or partial"),
         "failures": COUNT, "failed": Field(_failed, f"at most {MAX_FAILED} {{path, reason}}"),
         "kept": COUNT, "forgotten": Field(_texts(100_000, MAX_ID), "a list of snapshot ids"), "pruned": FLAG,
         "packs_deleted": COUNT, "packs_repacked": COUNT, "bytes_freed": COUNT, "prune_deferred": FLAG}


@dataclass(frozen=True)
class Rule:
    kind: str
    log: str  # CONTROL or NODE
    roles: tuple[str, ...]  # the writer needs one of them
    denied: str  # the refusal when it has none ({writer}, {roles} and {kind} filled in)
    names_writer: str = ""  # a field that, when present, must be the writer's own peer id
    fields: tuple[tuple[str, Field], ...] = ()  # checked when present
    dispatch_owned: frozenset[str] = frozenset()  # fields only the coordinator's dispatch sets (core/jobs.fold)
    read: str = ""  # what is decided when the log is read, with another log's facts
    removable: str = KEPT


_COORD = "{writer} has no coordinator role and cannot write {kind} in node {node}'s log"
_AGENT = "{writer} has no agent role and cannot write {kind} in node {node}'s log"

_RULES = [
    Rule(MEMBER_ADD, CONTROL, ("admin",), "{writer} is not an admin and cannot add members",
         fields=(("cert", Field(lambda v: isinstance(v, bytes), "an office-signed certificate")),)),
    Rule(MEMBER_REVOKE, CONTROL, ("admin",), "{writer} is not an admin and cannot write a member's removal",
         fields=(("revocation", Field(lambda v: isinstance(v, bytes), "an office-signed revocation")),
                 ("cutoff", Field(valid_cutoff, "{log: seq}, the one the revocation signs"))),
         read="the lowest cutoff of all the removals of one peer applies"),
    Rule(COORDINATOR_CLAIM, CONTROL, ("coordinator",), "{writer} is not coordinator-eligible",
         fields=(("term", Field(_int(1, MAX_TERM), "an integer from 1 (and it never outruns one a second of the "
                                                   "claim's own time)")),)),
    *(Rule(k, CONTROL, ("admin",), "{writer} is not an admin and cannot change backup nodes",
           read="configuration events of a removed node change nothing; key events always apply")
      for k in NODE_KINDS),
    Rule(alerts.OFFICE_ALERTS, CONTROL, ("admin",), "{writer} is not an admin and cannot change the office's alerts"),
    *(Rule(k, CONTROL, ("coordinator", "admin"),
           "{writer} is neither coordinator-eligible nor an admin and cannot record alerts")
      for k in alerts.ALERT_EVENT_KINDS),
    Rule(JOB_DISPATCHED, NODE, ("coordinator",), _COORD, "coordinator", tuple(DISPATCH.items()),
         DISPATCH_FIELDS, read="counts only under a term its writer claimed in the control log"),
    Rule(JOB_UNSENT, NODE, ("coordinator",), _COORD, fields=(*JOB_WHERE.items(), ("reason", REASON)),
         read="counts only from the job's dispatcher"),
    Rule(JOB_STALLED, NODE, ("coordinator",), _COORD, fields=(*JOB_WHERE.items(), ("quiet", COUNT))),
    Rule(JOB_MISSED, NODE, ("coordinator",), _COORD, "coordinator",
         (("schedule", DISPATCH["schedule"]), ("slot", TIME), ("reason", REASON), ("term", TERM),
          ("coordinator", PEER)),
         read="counts only under a term its writer claimed in the control log; the first for a slot stands"),
    Rule(LOGON, NODE, ("coordinator",), _COORD, fields=tuple(JOB_WHERE.items())),
    Rule(ACT_AS_ISSUED, NODE, ("coordinator",), _COORD,
         fields=(*JOB_WHERE.items(), ("expires", TIME), ("scope", Field(lambda v: v in ("backup", "prune"),
                                                                         "backup or prune")))),
    Rule(ACT_AS_REFUSED, NODE, ("coordinator",), _COORD, fields=(*JOB_WHERE.items(), ("reason", REASON))),
    Rule(JOB_STARTED, NODE, ("agent",), _AGENT, "agent",
         (*JOB_WHERE.items(), ("adhoc", FLAG), ("paths", Field(_texts(64, 4096), "at most 64 paths"))),
         read="counts only from an agent the job was given; without its dispatch, only from a granted agent "
              "naming a claimed term; never changes a dispatch's fields"),
    Rule(JOB_PROGRESS, NODE, ("agent",), _AGENT, "agent", tuple(PROGRESS.items())),
    Rule(JOB_DONE, NODE, ("agent",), _AGENT, "agent", tuple(ENDED.items()),
         read="ends the job only from the agent of its current attempt, about that attempt; done is final"),
    Rule(JOB_FAILED, NODE, ("agent",), _AGENT, "agent", (*JOB_WHERE.items(), ("reason", REASON)),
         read="ends the job only from the agent of its current attempt, about that attempt"),
    # Restores are made by holders of the node's keys: its admins and its agents.
    Rule(RESTORE_DONE, NODE, ("admin", "agent"),
         "{writer} has no admin or agent role and cannot write {kind} in node {node}'s log", "agent",
         (("snapshot", JOB), ("target", Field(_text(4096), "a path")), ("files", COUNT), ("bytes", COUNT),
          ("errors", COUNT))),
]
TABLE: dict[tuple[str, str], Rule] = {(r.log, r.kind): r for r in _RULES}
# Any other control event: only from an admin (an older or newer admin's kind this version does not know).
OTHER_CONTROL = Rule("(any other)", CONTROL, ("admin",), "unknown control event {kind!r} from a non-admin")


def refusal(log: str, node: str, kind: str, fields: dict[str, Any], writer: str, cert: Certificate,
            office_key: bytes, wall_s: float) -> str:
    """'' when `writer` (with `cert`) may write this event, else why not. `log` is CONTROL or NODE (then
    `node` names the node), `wall_s` the event's own HLC time in seconds."""
    rule = TABLE.get((log, kind))
    if rule is None:
        if log == NODE:
            return f"{kind!r} is not an event of a backup node's log"
        rule = OTHER_CONTROL
    if not any(cert.has_role(r) for r in rule.roles):
        return rule.denied.format(writer=writer, kind=kind, node=node, roles=" or ".join(rule.roles))
    if log == NODE and fields.get("node", node) != node:
        return f"{kind} for node {fields.get('node')!r} written in node {node}'s log"
    if rule.names_writer and fields.get(rule.names_writer, writer) != writer:
        return f"{kind} names {fields.get(rule.names_writer)!r} as its {rule.names_writer}, not its writer {writer}"
    for name, f in rule.fields:
        if name in fields and not f.check(fields[name]):
            return f"{kind}: {name} must be {f.what}"
    try:
        return _special(kind, fields, office_key, wall_s) if log == CONTROL else ""
    except (FormatError, UnsupportedVersion) as exc:
        return f"{kind}: {exc}"


def _special(kind: str, fields: dict[str, Any], office_key: bytes, wall_s: float) -> str:
    """What a control event's fields must prove beyond their types (signatures by the office key, terms
    bounded by time, well-formed node and alert configuration)."""
    if kind == MEMBER_ADD:
        if "cert" not in fields:
            return "member.add without a certificate"
        Certificate.from_bytes(fields["cert"], office_key)
    elif kind == MEMBER_REVOKE:
        if "revocation" not in fields or "cutoff" not in fields:
            return "member.revoke without a revocation or a well-formed cutoff"
        rev = Revocation.from_bytes(fields["revocation"], office_key)
        if rev.cutoff is not None and rev.cutoff != fields["cutoff"]:
            return "member.revoke with a cutoff other than the one its revocation signs"
    elif kind == COORDINATOR_CLAIM:
        term = fields.get("term")
        if not isinstance(term, int) or isinstance(term, bool):
            return "coordinator.claim without a term"
        if not term_plausible(term, wall_s):
            return (f"coordinator.claim of term {term}: terms start at 1 and never outrun one a second "
                    "of the claim's own time")
    elif kind in NODE_KINDS:
        return check_fields(kind, fields)
    elif kind == alerts.OFFICE_ALERTS:
        return alerts.check_config(fields)
    elif kind in alerts.ALERT_EVENT_KINDS:
        return alerts.check_event(kind, fields)
    return ""


def term_plausible(term: int, now: float) -> bool:
    """Whether a coordinator term can be genuine at unix time `now`. Honest terms start at 1 and go up by
    one an election, far slower than one a second; a member claiming 2**64-1 made the next honest claim
    (term + 1) impossible to write, and every schedule stopped for good. Bounded by the claim's own time,
    a term an attacker pushes up is overtaken a second later, and term + 1 always fits in 63 bits."""
    return 0 < term <= min(now, MAX_TERM)


def markdown() -> str:
    """The table as docs/election-and-logs.md prints it."""
    rows = ["| log | kind | writer needs | names its writer | fields checked on merge | set only by the dispatch "
            "| decided on reading | leaves the log |", "|---|---|---|---|---|---|---|---|"]
    for r in [*_RULES, OTHER_CONTROL]:
        checked = "; ".join(f"`{n}`: {f.what}" for n, f in r.fields) or "—"
        owned = ", ".join(f"`{f}`" for f in sorted(r.dispatch_owned)) or "—"
        names = f"`{r.names_writer}`" if r.names_writer else "—"
        rows.append(f"| {r.log} | `{r.kind}` | {' or '.join(r.roles)} | {names} "
                    f"| {checked} | {owned} | {r.read or '—'} | {r.removable} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # the table for docs/election-and-logs.md
    print(markdown(), end="")
