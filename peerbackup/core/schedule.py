"""When a backup node's backups are due. Pure: handed `now`, no clock, no I/O.

A schedule is a cron expression (with a time zone, so "0 2 * * *" is 2 a.m. where
the office is, daylight saving included) or a fixed interval. Every firing is a
**slot**: a UTC instant. A slot may start until `window` after it; a slot missed
while no coordinator ran is caught up once, the latest missed one only, if its
window is still open (unless catch-up is off). The job of a slot has an id that
every coordinator computes the same way (hash of node, schedule, slot), so a slot
never runs twice outside a partition.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import blake3
from cronsim import CronSim, CronSimError

from peerbackup.errors import UsageError

MAX_LOOKAHEAD = 400  # slots examined per evaluation: an every-30s schedule down for hours is not replayed


@dataclass(frozen=True)
class Schedule:
    id: str  # short, stable: names the schedule in job ids and commands
    node: str
    cron: str = ""  # five-field cron expression, or
    every: float = 0.0  # seconds between slots (counted from the Unix epoch, so every peer agrees)
    tz: str = "UTC"
    window: float = 4 * 3600.0
    catch_up: bool = True
    retries: int = 3
    retry_delay: float = 600.0
    since: float = 0.0  # when it was added or resumed (its event's time): no slot before it is due
    paused: float = 0.0  # when it was paused (0: it runs); a paused schedule is not dispatched nor alerted

    def check(self) -> Schedule:
        if bool(self.cron) == bool(self.every):
            raise UsageError("a schedule has either a cron expression or an interval (--cron or --every)")
        if self.cron:
            try:
                CronSim(self.cron, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
            except CronSimError as exc:
                raise UsageError(f"invalid cron expression {self.cron!r}: {exc}") from None
        if self.every and not 1 <= self.every <= 366 * 86400:
            raise UsageError("--every must be from 1 s to a year")
        zone(self.tz)
        if not 0 < self.window <= 7 * 86400:
            raise UsageError("--window must be more than 0 s and at most 7 days")
        if not 0 <= self.retries <= 100 or self.retry_delay < 0:
            raise UsageError("--retries must be 0 to 100 and --retry-delay not negative")
        return self


def zone(name: str) -> dt.tzinfo:
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", name) or ".." in name:
        raise UsageError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)") from None


def slots_after(s: Schedule, after: float, until: float) -> list[float]:
    """The slots in (after, until], oldest first, at most MAX_LOOKAHEAD of the latest."""
    out: list[float] = []
    if s.every:
        first = (int(after // s.every) + 1) * s.every
        if until >= first:
            count = int((until - first) // s.every) + 1
            start = max(0, count - MAX_LOOKAHEAD)
            out = [first + i * s.every for i in range(start, count)]
        return out
    it = CronSim(s.cron, dt.datetime.fromtimestamp(after, zone(s.tz)))
    for when in it:
        t = when.timestamp()
        if t > until:
            break
        if t > after:
            out.append(t)
            if len(out) > MAX_LOOKAHEAD:
                out.pop(0)
    return out


def next_slot(s: Schedule, now: float) -> float:
    if s.every:
        return (int(now // s.every) + 1) * s.every
    return next(iter(CronSim(s.cron, dt.datetime.fromtimestamp(now, zone(s.tz))))).timestamp()


@dataclass(frozen=True)
class Due:
    slot: float
    job_id: str
    caught_up: bool  # a slot missed while nobody evaluated the schedule


LATE = 60.0  # a slot started this long after its time counts as caught up, not on time


def due(s: Schedule, evaluated_until: float, now: float) -> list[Due]:
    """The slot to start now, given that slots up to evaluated_until were handled already.

    Only the latest slot whose window is still open is started: older missed slots
    are skipped. A slot more than LATE behind `now` was missed (no coordinator ran
    then): it starts only with catch-up on, once (its job id dedups it)."""
    # Slots older than one window can never start: do not walk them (a cron of every minute,
    # down for a month, would be 40,000 of them).
    slots = [t for t in slots_after(s, max(evaluated_until, now - s.window), now) if now - t < s.window]
    if not slots:
        return []
    latest = slots[-1]
    late = now - latest > LATE
    if late and not s.catch_up:
        return []
    return [Due(latest, job_id(s.node, s.id, latest), late)]


@dataclass(frozen=True)
class Missed:
    slot: float
    reason: str  # why it never started, with the last reason a start was refused


def settle(s: Schedule, waiting: dict[float, str], taken: Collection[float], now: float,
           ) -> tuple[Due | None, list[Missed], dict[float, str]]:
    """What becomes of the slots a coordinator has seen come due: (the one to start now, those that never
    can, each with why, those still waiting).

    `waiting` maps each slot seen and not settled yet to the last reason its start was refused ('' when not
    tried): every slot from the oldest of them to `now`. `taken` are those of them the node's log shows
    dispatched, started or logged missed (by any coordinator): they are settled already. Which slot may
    start is due()'s rule: the latest, while its window is open (with catch-up off, while it is less than
    LATE behind); an older one never will, the latest replaces it. Every slot of `waiting` ends in exactly
    one of the three answers or is taken, so none is lost silently."""
    if not waiting:
        return None, [], {}
    latest = max(waiting)
    startable = {d.slot: d for d in due(s, min(waiting) - 1, now)}
    missed, keep = [], {}
    for t, last in sorted(waiting.items()):
        if t in taken:
            continue
        tried = f" (last refusal: {last})" if last else ""
        if t < latest:
            missed.append(Missed(t, f"the slot {int(latest - t)} s later replaces it: only the latest slot "
                                    f"starts{tried}"))
        elif t not in startable:
            limit = f"its {int(s.window)} s window closed" if now - t >= s.window else \
                f"catch-up is off and it is {int(now - t)} s late"
            missed.append(Missed(t, f"not started: {limit}{tried or ' before a coordinator could try it'}"))
        else:
            keep[t] = last
    return (startable[latest] if latest in keep else None), missed, keep


def job_id(node: str, schedule_id: str, slot: float) -> str:
    return blake3.blake3(f"job\0{node}\0{schedule_id}\0{int(slot)}".encode()).hexdigest()[:24]


def retry_at(s: Schedule, slot: float, attempt: int, unstarted_at: float | None = None,
             soon: float = 0.0) -> float | None:
    """When retry number `attempt` (1, 2, ...) may start: back-off doubling from retry_delay
    (slot + d, + 3d, + 7d, ...); None when the retries are spent or the window has closed.

    `unstarted_at`: the job failed, at that time, with no agent ever starting it (every dispatch refused or
    unreachable, or its agent failed before its start): nothing ran, so it is tried again `soon` after
    instead (a partition healing as the slot came due had every agent refuse the coordinator's token of
    the term before, and the back-off of 10 minutes outlived the window: the slot was lost; seen by the
    soak)."""
    if not 1 <= attempt <= s.retries:
        return None
    t = slot + s.retry_delay * (2**attempt - 1)
    if unstarted_at is not None:
        t = min(t, max(unstarted_at + soon, slot))
    return t if t - slot < s.window else None
