"""The coordinator's tick: schedules, missed slots, retries, jobs of dead or stalled agents, retention.

What it does, and the rules that keep a slot from being lost or run twice, are told in the
docstring of office/jobs/service.py; every job it starts goes through JobService.start there.
"""

from __future__ import annotations

import logging

from peerbackup.core.jobs import BACKUP, FAILED, RETENTION, attempt_of, next_attempt, retention_due, unended
from peerbackup.core.nodelog import JOB_MISSED, JOB_STALLED, node_log
from peerbackup.core.schedule import Missed, Schedule, job_id, settle, slots_after
from peerbackup.core.settings import Settings
from peerbackup.errors import PeerBackupError, UsageError
from peerbackup.logs import event
from peerbackup.office.jobs.service import JobService, Live
from peerbackup.office.membership.liveness import DEAD

# How far back a new coordinator settles a schedule's slots (each one after the last the log shows settled is
# started or logged missed): a day. An office off for longer logs its slots missed from a day back only.
MISSED_BACKLOG = 86400.0
RETENTION_DEADLINE = 2 * 3600.0


class Scheduler:
    """Run by the daemon every heartbeat; does anything only on the coordinator, and there once its claim
    is in the control log and it has listened to the agents for a while (listen_first)."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.nodes = jobs.nodes
        self.logs = jobs.logs
        self.peers = jobs.peers
        self.coordination = jobs.coordination
        self.clock = jobs.clock
        self.log = jobs.log
        self.evaluated: dict[str, float] = {}  # node/schedule -> slots up to here were considered
        self.waiting: dict[str, dict[float, str]] = {}  # node/schedule -> slots not started: last refusal
        self.coordinating_since: float | None = None  # when this peer last became the coordinator

    @property
    def settings(self) -> Settings:
        return self.peers.settings

    async def _retry(self, name: str, now: float) -> None:
        """A scheduled job that failed is tried again with back-off (retry_delay doubling), while the
        schedule's retries and the slot's window last."""
        schedules = self.nodes.nodes()[name].schedules
        for job, st in self.jobs.job_states(name).items():
            f = st.fields
            sc = schedules.get(str(f.get("schedule")))
            if st.state != FAILED or sc is None or "slot" not in f:
                continue  # a manual backup is not retried: whoever asked sees it failed
            attempt = st.attempt
            # Never started by any agent: tried again a lease later, not after the back-off.
            at = next_attempt(sc, float(f["slot"]), st, self.settings.lease)
            if at is None or now < at:
                continue
            event(self.log, "job.retry", job=job, node=name, attempt=attempt + 1)
            try:
                await self.jobs.start(name, job, deadline=float(f["slot"]) + sc.window,
                                 why={"schedule": sc.id, "slot": int(f["slot"]), "attempt": attempt + 1})
            except UsageError as exc:
                event(self.log, "job.not_started", logging.WARNING, node=name, job=job, reason=str(exc))

    async def _redispatch(self, name: str, now: float) -> None:
        """A job whose agent died mid-way, or stalled (alive, but silent or with counters that have not
        moved for stall_after), goes to another agent inside its window; the second agent reuses the packs
        the first one stored (the engine indexes packs found without an index). A stalled agent that
        wakes up may still finish: at most one extra snapshot, never a lost one."""
        for job, f in self.jobs.open_jobs(name).items():
            agent = str(f.get("agent"))
            deadline = float(f.get("deadline", 0))
            if f.get("adhoc"):
                continue  # a backup by hand (office/jobs/adhoc.py): only its command knows what it backs up
            if now >= deadline:
                self.jobs.live.pop(job, None)
                continue
            live = self.jobs.live.get(job)
            if live is None and (job, agent) in self.jobs.reported:
                continue  # its agent reported the end; the log has not caught up yet
            if live is None or live.agent != agent:
                # A job dispatched before this peer was coordinator (or to another agent): watched from now.
                live = self.jobs.live[job] = Live(agent, name, now, now, now)
            dead = agent != self.peers.me and self.peers.liveness.state(agent, now) == DEAD
            # A backup's counters must move; a retention job's (a prune reads for long) need only be heard.
            counted = live.progress is not None and f.get("job_kind", BACKUP) == BACKUP
            quiet = now - max(live.moved if counted else live.heard, live.since)
            stalled = not dead and quiet >= self.settings.stall_after
            if not dead and not stalled:
                continue
            why = {k: v for k, v in f.items() if k in ("schedule", "slot", "job_kind", "prune")}
            why.update(attempt=attempt_of(f) + 1, replaces=agent)
            if stalled:
                await self.logs.append(JOB_STALLED, {"job": job, "node": name, "agent": agent,
                                                     "term": self.coordination.election.token[0],
                                                     "quiet": round(quiet)}, log=node_log(name))
                why["stalled"] = True
            event(self.log, "job.redispatch", logging.WARNING, job=job, node=name, agent=agent,
                  why="stalled" if stalled else "dead")
            self.jobs.live.pop(job, None)
            try:
                await self.jobs.start(name, job, deadline=deadline, why=why, exclude=frozenset({agent}))
            except UsageError as exc:
                event(self.log, "job.not_started", logging.WARNING, node=name, job=job, reason=str(exc))

    async def _unended(self, name: str, now: float) -> None:
        """A scheduled job still open after its deadline (its agent killed or cut off with no one left to take
        it over inside the window) is logged missed, with why, once: else its slot would stay dispatched and
        never ended. The grace lets an end the agent wrote in time reach this peer's log first."""
        schedules = self.nodes.nodes()[name].schedules
        for st in unended(name, self.jobs.job_states(name), self.jobs.missed_slots(name), now, self.listen_first()):
            sc = schedules.get(str(st.fields["schedule"]))
            if sc is None:
                continue  # a schedule removed since: nobody wants its slots (as for slots never started)
            agent = self.peers.membership.name(st.agent)
            reason = (f"dispatched to {agent} (attempt {st.attempt}), which wrote no end by the deadline and "
                      "could not be replaced in time: killed, cut off from the office, or still running")
            await self._log_missed(name, sc, Missed(float(st.fields["slot"]), reason))

    async def _retention(self, name: str, now: float) -> None:
        """After a successful backup of a node with a retention policy: forget by it, prune now and then."""
        if not any(self.nodes.nodes()[name].policy.values()):
            return
        due_now = retention_due(name, self.jobs.job_states(name), now, self.settings.prune_interval)
        if due_now is None:
            return
        job, prune = due_now
        try:
            await self.jobs.start(name, job, deadline=now + RETENTION_DEADLINE, kind=RETENTION, why={"prune": prune})
        except UsageError as exc:
            event(self.log, "job.not_started", logging.WARNING, node=name, job=job, reason=str(exc))

    async def tick(self) -> None:
        """On the coordinator: start every scheduled slot that is due and not dispatched yet, and
        give the jobs of dead agents to live ones."""
        coordinator, _ = self.coordination.status()
        if coordinator != self.peers.me:
            # A coordinator that comes back re-reads the log, not its memory.
            self.evaluated.clear()
            self.waiting.clear()
            self.coordinating_since = None
            return
        if not self.coordination.claimed():
            # Just elected: its claim is being written to the control log (core/jobs.py counts no dispatch
            # before it is). Wait for it rather than have every start refused: the slots are evaluated
            # from where they were, none is skipped.
            return
        now = self.clock()
        if self.coordinating_since is None:
            self.coordinating_since = now
        if now - self.coordinating_since < self.listen_first():
            # A new coordinator first hears the agents: one still running its predecessor's attempt says so
            # with its next progress heartbeat (adopted in JobService.on_progress) even when the predecessor's
            # dispatch has not reached this peer's log, instead of being sent the same slot a second time.
            return
        still_open: set[str] = set()
        for name in sorted(self.nodes.nodes()):
            await self._redispatch(name, now)
            await self._unended(name, now)
            await self._retry(name, now)
            await self._retention(name, now)
            still_open |= set(self.jobs.open_jobs(name))
        # A job reported before its job.done reached this peer's log was watched again meanwhile: once the
        # log shows it ended, it is no longer running. One adopted from its agent's heartbeat before the log
        # shows it at all stays while its agent is heard.
        for job, live in list(self.jobs.live.items()):
            adopted = job not in self.jobs.job_states(live.node) and now - live.heard < 2 * self.listen_first()
            if job in still_open or adopted:
                continue
            del self.jobs.live[job]
        for name, node in sorted(self.nodes.nodes().items()):
            for sc in node.schedules.values():
                await self._slots(name, sc, now)
        # A schedule removed or paused: its slots wait no more (nor are they missed: nobody wants them).
        wanted = {f"{n}/{sc}" for n, node in self.nodes.nodes().items() for sc in node.schedules}
        self.waiting = {k: v for k, v in self.waiting.items() if k in wanted}

    async def _slots(self, name: str, sc: Schedule, now: float) -> None:
        """Start the schedule's due slot, or log the slots that never will start as missed (core/schedule.settle).
        A slot whose start is refused waits, with the refusal, until it starts or is missed: none is lost."""
        key = f"{name}/{sc.id}"
        if key in self.evaluated:
            since = self.evaluated[key]
        else:
            # A new coordinator looks back to the last slot the log shows settled (dispatched, started or
            # missed, by any coordinator), at most MISSED_BACKLOG: every slot after it either starts or is
            # logged missed. Looking back one window only lost the slots whose window closed between two
            # coordinators (a clock step, a stop, a partition: seen by the soak), with nothing in the log.
            settled = self._last_settled(name, sc)
            since = now - sc.window if settled is None else max(settled, now - MISSED_BACKLOG)
        since = max(since, sc.since)  # nothing before it existed (or was resumed)
        self.evaluated[key] = now
        waiting = self.waiting.setdefault(key, {})
        for t in slots_after(sc, since, now):
            waiting.setdefault(t, "")
        known, missed = self.jobs.known_jobs(name), self.jobs.missed_slots(name)
        # A slot an agent says it runs (adopted in JobService.on_progress before the log shows it) is taken too.
        taken = {t for t in waiting if job_id(name, sc.id, t) in known or job_id(name, sc.id, t) in self.jobs.live
                 or (sc.id, int(t)) in missed}
        start, never, self.waiting[key] = settle(sc, waiting, taken, now)
        for m in never:
            if not await self._log_missed(name, sc, m):
                self.waiting[key][m.slot] = waiting[m.slot]  # written at the next tick
        if start is None:
            return
        try:
            await self.jobs.start(name, start.job_id, deadline=start.slot + sc.window,
                             why={"schedule": sc.id, "slot": int(start.slot), "caught_up": start.caught_up})
            del self.waiting[key][start.slot]
        except UsageError as exc:
            self.waiting[key][start.slot] = str(exc)
            event(self.log, "job.not_started", logging.WARNING, node=name, schedule=sc.id,
                  slot=int(start.slot), reason=str(exc))

    def _last_settled(self, name: str, sc: Schedule) -> float | None:
        """The latest slot of the schedule that the node's log shows dispatched, started or logged missed."""
        slots = [float(st.fields["slot"]) for st in self.jobs.job_states(name).values()
                 if st.fields.get("schedule") == sc.id and isinstance(st.fields.get("slot"), int | float)]
        slots += [float(slot) for sid, slot in self.jobs.missed_slots(name) if sid == sc.id]
        return max(slots, default=None)

    async def _log_missed(self, name: str, sc: Schedule, m: Missed) -> bool:
        """A slot that never ran, in the node's log: the alert and `log` say why. False when not written."""
        term = self.coordination.election.token[0]
        try:
            await self.logs.append(JOB_MISSED, {"node": name, "schedule": sc.id, "slot": int(m.slot),
                                                "reason": m.reason[:4096], "term": term,
                                                "coordinator": self.peers.me}, log=node_log(name))
        except PeerBackupError as exc:
            event(self.log, "job.missed_unlogged", logging.ERROR, node=name, schedule=sc.id, slot=int(m.slot),
                  reason=str(exc))
            return False
        event(self.log, "job.missed", logging.WARNING, node=name, schedule=sc.id, slot=int(m.slot), reason=m.reason)
        return True

    def listen_first(self) -> float:
        """How long a new coordinator listens before it dispatches: an agent's progress heartbeat and its way."""
        return float(self.settings.progress_interval + self.settings.request_timeout)
