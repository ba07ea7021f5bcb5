"""Snapshots that retention jobs forgot, read from a node's log: what a holder that was away drops. Pure.

A retention job's agent deletes the snapshots the node's policy does not keep from
every holder it reaches. A holder that was down meanwhile keeps its copy; back, it
would list the snapshot again, the repair would copy it back to R holders, and the
next retention job would forget it a second time. The job's `job.done` records
what it forgot (`forgotten`: the first 16 hex digits of each id), so a holder drops
its copy when the record reaches it, refuses to take the snapshot again, and the
repair does not count it (office/peerstore/holder.py, office/peerstore/repair.py).

Invariant: *a holder drops or refuses a snapshot only on the word of an agent that
could have deleted it*: the `job.done` of a retention job that the coordinator of a
claimed term dispatched to the agent that wrote it (the authority of the `prune`
act-as token that let the agent delete, core/actas.py); an entry that is not 16 to
64 hex digits names nothing. A dropped copy goes to the holder's trash like any
deletion, freed only after `gc_grace`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from peerbackup.core.events import Event
from peerbackup.core.nodelog import JOB_DISPATCHED, JOB_DONE

RETENTION = "retention"
PREFIX = 16  # hex digits of a snapshot id a job.done's `forgotten` keeps
_ENTRY = re.compile(f"[0-9a-f]{{{PREFIX},64}}")


def forgotten(events: Iterable[Event], claims: Collection[tuple[int, str]]) -> set[str]:
    """The id prefixes (PREFIX hex digits) that dispatched retention jobs of a node's log forgot; `claims`
    are the control log's (term, coordinator) claims."""
    events = list(events)
    dispatched = {(str(e.fields.get("job")), str(e.fields.get("agent"))) for e in events
                  if e.kind == JOB_DISPATCHED and e.fields.get("job_kind") == RETENTION
                  and e.fields.get("coordinator") == e.feed and (e.fields.get("term"), e.feed) in claims}
    out: set[str] = set()
    for e in events:
        if e.kind != JOB_DONE or e.fields.get("job_kind") != RETENTION or \
                (str(e.fields.get("job")), e.feed) not in dispatched:
            continue
        entries = e.fields.get("forgotten")
        if isinstance(entries, list):
            out.update(x[:PREFIX] for x in entries if isinstance(x, str) and _ENTRY.fullmatch(x))
    return out


def is_forgotten(name: str, prefixes: Collection[str]) -> bool:
    return len(name) >= PREFIX and name[:PREFIX] in prefixes
