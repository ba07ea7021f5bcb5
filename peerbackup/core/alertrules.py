"""What to alert now: which incidents open and close, from what the coordinator observes. Pure.

An incident has a **subject** (a schedule of a node, a peer, a node's replication)
and at most one incident per subject is open at a time; it stays open, and is
not alerted again, until its condition clears:

- `backup_failed` / `backup_missed`: a schedule's slot whose job failed with no
  retry left (or stayed open past its deadline), or whose window closed with no
  job and no later slot run inside that window (the only slots catch-up skips on
  purpose); the coordinator's `job.missed` for the slot gives the reason.
  Consecutive bad slots of one schedule are one incident, closed by the
  schedule's next successful slot: a schedule every five minutes failing all
  night is one e-mail, not a hundred.
- `backup_partial`: a node's latest finished scheduled backup saved its snapshots without some
  files (core/jobs.py PARTIAL). Consecutive partial backups of a node are one incident, closed by
  its next scheduled backup that takes every file.
- `peer_dead`: a member silent for longer than `peer_dead_after`; closed when it
  is heard again (its next death is a new incident).
- `under_replicated`: files of a node left short of R copies by the repair for
  longer than `under_replicated_after`; closed by a round that finds none.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core.alerts import (
    BACKUP_FAILED,
    BACKUP_MISSED,
    BACKUP_PARTIAL,
    PEER_DEAD,
    UNDER_REPLICATED,
    Alert,
    AlertConfig,
    Incident,
    human,
    iso,
    open_by_subject,
)
from peerbackup.core.jobs import BACKUP, DONE, FAILED, OPEN, PARTIAL, JobState, next_attempt, slot_of, tally
from peerbackup.core.nodes import Node
from peerbackup.core.schedule import Schedule, job_id, slots_after

MAX_ATTEMPTS = 10  # a channel still failing after this many attempts is given up (the log says so)
MAX_BACKOFF = 3600.0
HORIZON = 2 * 86400.0  # slots older than this (plus their window) are never looked at again


@dataclass(frozen=True)
class Observed:
    """What the coordinator knows now, besides the logs."""

    nodes: dict[str, Node]
    jobs: dict[str, dict[str, JobState]]  # node -> its jobs (core/jobs.py fold)
    dead: dict[str, float]  # member peer id -> dead since (only members dead now)
    names: dict[str, str]  # peer id -> name, for messages
    under: dict[str, tuple[int, float]] | None  # node -> (files short, since) by the last repair; None: no round yet
    open_grace: float = 600.0  # a job still open this long after its deadline counts as failed
    # node -> (schedule, slot) -> its job.missed fields (core/nodelog.missed_slots): why the slot never started
    missed: dict[str, dict[tuple[str, int], dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    send: list[Alert]
    resolve: list[Incident]


def _slot_outcome(sc: Schedule, t: float, st: JobState | None, job_slots: list[float], now: float,
                  grace: float, missed: str = "") -> tuple[str, str] | None:
    """(kind, why) when slot t is a failure or a miss now, None when it is fine or not decided yet."""
    if st is None:
        if now < t + sc.window:
            return None  # it may still start
        i = bisect.bisect_right(job_slots, t)
        if i < len(job_slots) and job_slots[i] < t + sc.window:
            return None  # a later slot ran inside its window: what catch-up does on purpose
        # The coordinator's job.missed says why (no agent alive, ...); without one, no coordinator ran then.
        return BACKUP_MISSED, f"no backup started within its {human(sc.window)} window" + (
            f" ({missed})" if missed else "")
    if st.state == FAILED:
        attempt = st.attempt
        if next_attempt(sc, t, st, 0.0) is not None and now < t + sc.window:
            return None  # the coordinator retries it (office/jobs/scheduler.py, by the same rule)
        reason = str(st.result.get("reason", "")) or "no reason given"
        return BACKUP_FAILED, f"failed after {attempt} attempt{'s' if attempt > 1 else ''}: {reason}"
    if st.state == OPEN and st.deadline and now >= st.deadline + grace:
        # The coordinator logs such a job's slot missed, with its agent's name (office/jobs/scheduler.py).
        return BACKUP_FAILED, f"still not finished {human(now - st.deadline)} after its deadline" + (
            f" ({missed})" if missed else "")
    return None


def _schedule(node: Node, sc: Schedule, jobs: dict[str, JobState], cfg: AlertConfig, now: float,
              grace: float, open_: Incident | None, missed: dict[tuple[str, int], dict[str, Any]] | None = None,
              ) -> tuple[Alert | None, bool]:
    """(the new incident of this schedule, whether its open incident is over)."""
    by_slot: dict[float, JobState] = {}
    for st in jobs.values():
        # A slot counts only as the job's own id names it: a slot an agent wrote into a start of its own
        # must not move "last done" into the future.
        own = slot_of(node.name, st)
        if own is not None and own[0] == sc.id:
            by_slot[float(own[1])] = st
    last_done = max((t for t, st in by_slot.items() if st.state == DONE), default=0.0)
    if open_ is not None:
        return None, last_done > open_.slot
    lo = max(sc.since, last_done, cfg.since - sc.window, now - HORIZON - sc.window)
    job_slots = sorted(by_slot)
    bad = []
    for t in slots_after(sc, lo, now):
        # By job id first: a job whose dispatch never reached us is known by its job.started alone, which
        # names no slot.
        found = jobs.get(job_id(node.name, sc.id, t)) or by_slot.get(t)
        why = str((missed or {}).get((sc.id, int(t)), {}).get("reason", ""))[:500]
        out = _slot_outcome(sc, t, found, job_slots, now, grace, why)
        if out is not None:
            bad.append((t, *out))
    if not bad:
        return None, False
    t, kind, why = bad[0]
    more = f" ({len(bad) - 1} later slot{'s' if len(bad) > 2 else ''} not backed up either)" if len(bad) > 1 else ""
    subject = f"backup:{node.name}/{sc.id}"
    what = "failed" if kind == BACKUP_FAILED else "was missed"
    message = f"The backup of {node.name} (schedule {sc.id}) for {iso(t)} {what}: {why}{more}."
    return Alert(f"{subject}:{int(t)}", kind, subject, message, t, node=node.name, slot=int(t)), False


def _partial(node: Node, jobs: dict[str, JobState], cfg: AlertConfig, open_: Incident | None,
             ) -> tuple[Alert | None, bool]:
    """(the new partial-backup incident of this node, whether its open one is over), from its scheduled
    backups that saved snapshots: the latest partial opens one (once), the latest full one closes it."""
    ended = sorted((st for st in jobs.values() if st.state == DONE and st.kind == BACKUP
                    and "schedule" in st.fields), key=lambda st: st.ended_ms)
    if not ended:
        return None, False
    if open_ is not None:
        return None, ended[-1].outcome == DONE
    streak: list[JobState] = []
    for st in reversed(ended):
        if st.outcome != PARTIAL:
            break
        streak.insert(0, st)
    if not streak or streak[-1].ended_ms / 1000 < cfg.since:
        return None, False
    last, since = streak[-1].result, streak[0].ended_ms / 1000
    failed = [f for f in last.get("failed", []) if isinstance(f, dict)]
    count = last.get("failures", len(failed))
    paths = "; ".join(f"{f.get('path')} ({f.get('reason')})" for f in failed[:5])
    more = f" and {count - min(len(failed), 5)} more" if count > min(len(failed), 5) else ""
    message = (f"The backup of {node.name} ({iso(streak[-1].ended_ms / 1000)}) saved its snapshots without "
               f"{count} file(s) or data set(s): {tally(str(f.get('reason')) for f in failed)}. {paths}{more}. "
               f"`peerbackup log {node.name}` lists them.")
    subject = f"{BACKUP_PARTIAL}:{node.name}"
    if len(message) > 2000:
        message = message[:1999] + "…"
    return Alert(f"{subject}:{int(since)}", BACKUP_PARTIAL, subject, message, since, node=node.name), False


def _retry(inc: Incident, cfg: AlertConfig, retry_delay: float, now: float) -> Alert | None:
    pending = tuple(c for c in inc.pending if c in cfg.channels)
    if not pending or inc.attempts >= MAX_ATTEMPTS:
        return None
    if now < inc.last + min(retry_delay * 2 ** (inc.attempts - 1), MAX_BACKOFF):
        return None
    return Alert(inc.incident, inc.kind, inc.subject, inc.message, inc.since, inc.node, inc.peer, inc.slot,
                 pending, inc.attempts + 1)


# Each family of incidents: (the alerts of its new incidents, the subjects of its open incidents now over).
_Found = tuple[list[Alert], set[str]]


def _backups(now: float, cfg: AlertConfig, seen: Observed, opened: dict[str, Incident]) -> _Found:
    """backup_failed and backup_missed, schedule by schedule; a removed schedule's incident is over."""
    send: list[Alert] = []
    over: set[str] = set()
    for name, node in sorted(seen.nodes.items()):
        for sid, sc in sorted(node.schedules.items()):
            subject = f"backup:{name}/{sid}"
            alert, closed = _schedule(node, sc, seen.jobs.get(name, {}), cfg, now, seen.open_grace,
                                      opened.get(subject), seen.missed.get(name))
            if closed:
                over.add(subject)
            if alert is not None:
                send.append(alert)
    schedules = {f"backup:{n}/{s}" for n, node in seen.nodes.items() for s in node.schedules}
    over |= {s for s in opened if s.startswith("backup:") and s not in schedules}
    return send, over


def _partials(now: float, cfg: AlertConfig, seen: Observed, opened: dict[str, Incident]) -> _Found:
    """backup_partial, node by node; a removed node's incident is over."""
    send: list[Alert] = []
    over: set[str] = set()
    for name, node in sorted(seen.nodes.items()):
        subject = f"{BACKUP_PARTIAL}:{name}"
        alert, closed = _partial(node, seen.jobs.get(name, {}), cfg, opened.get(subject))
        if closed:
            over.add(subject)
        if alert is not None:
            send.append(alert)
    over |= {s for s in opened if s.startswith(f"{BACKUP_PARTIAL}:") and s.split(":", 1)[1] not in seen.nodes}
    return send, over


def _dead_peers(now: float, cfg: AlertConfig, seen: Observed, opened: dict[str, Incident]) -> _Found:
    """peer_dead: a member dead for peer_dead_after; over once it is not dead."""
    send: list[Alert] = []
    for peer, since in sorted(seen.dead.items()):
        subject = f"{PEER_DEAD}:{peer}"
        if subject in opened or now - since < cfg.peer_dead_after:
            continue
        who = seen.names.get(peer, peer)
        send.append(Alert(f"{subject}:{int(since)}", PEER_DEAD, subject,
                          f"Peer {who} ({peer}) has not been heard since {iso(since)} ({human(now - since)}): it is "
                          f"dead to the office, which cannot store on it or give it jobs.", since, peer=peer))
    return send, {s for s in opened if s.startswith(f"{PEER_DEAD}:") and s.split(":", 1)[1] not in seen.dead}


def _under_replicated(now: float, cfg: AlertConfig, seen: Observed, opened: dict[str, Incident]) -> _Found:
    """under_replicated, node by node, once a repair round has run; over when a round finds none short."""
    if seen.under is None:
        return [], set()
    send: list[Alert] = []
    for name, (count, since) in sorted(seen.under.items()):
        subject = f"{UNDER_REPLICATED}:{name}"
        if subject in opened or count <= 0 or now - since < cfg.under_replicated_after:
            continue
        info = seen.nodes.get(name)
        want = f"{info.replicas} " if info is not None else ""
        send.append(Alert(f"{subject}:{int(since)}", UNDER_REPLICATED, subject,
                          f"{count} file{'s' if count != 1 else ''} of backup node {name} have had fewer than "
                          f"{want}live copies since {iso(since)} ({human(now - since)}), and the repair could "
                          f"not add them: add storage peers or room (`peerbackup storage`).", since, node=name))
    return send, {s for s in opened if s.startswith(f"{UNDER_REPLICATED}:")
                  and seen.under.get(s.split(":", 1)[1], (0, 0.0))[0] <= 0}


def evaluate(now: float, cfg: AlertConfig, seen: Observed, incidents: dict[str, Incident],
             retry_delay: float) -> Plan:
    """The alerts to send now and the open incidents that are over. Nothing when no channel is set."""
    if not cfg.channels:
        return Plan([], [])
    opened = open_by_subject(incidents)
    send: list[Alert] = []
    over: set[str] = set()
    for family in (_backups, _partials, _dead_peers, _under_replicated):
        alerts, closed = family(now, cfg, seen, opened)
        send += alerts
        over |= closed

    for subject, inc in sorted(opened.items()):
        if subject not in over:
            again = _retry(inc, cfg, retry_delay, now)
            if again is not None:
                send.append(again)
    return Plan([a if a.channels else dataclasses.replace(a, channels=cfg.channels) for a in send],
                [opened[s] for s in sorted(over)])
