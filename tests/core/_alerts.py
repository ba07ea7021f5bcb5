"""Shared by the alert tests of core/: a fixed configuration and hourly schedule, a signed log written at
chosen wall times, and what the coordinator observes.
"""

from __future__ import annotations

from typing import Any

from peerbackup.core import hlc
from peerbackup.core.alertrules import Observed
from peerbackup.core.alerts import (
    ALERT_SENT,
    Alert,
    AlertConfig,
)
from peerbackup.core.events import GENESIS, Event, make_event
from peerbackup.core.identity import SigningKey
from peerbackup.core.jobs import JobState
from peerbackup.core.nodes import Node
from peerbackup.core.schedule import Schedule, job_id

T0 = 1_800_000_000.0  # a whole hour: hourly slots fall on T0, T0 + 3600, ...
KEY = SigningKey(bytes(range(32)))
PEER = "PJUY-EF2C-WDPU-3NY4"
CFG = AlertConfig(webhook="http://127.0.0.1:9/hook", smtp_host="127.0.0.1", smtp_port=2525,
                  mail_from="pb@example.org", mail_to=("it@example.org",), peer_dead_after=3600,
                  under_replicated_after=1800, since=T0 - 86400)
HOURLY = Schedule(id="s1", node="acc", every=3600, window=600, retries=2, retry_delay=60, since=T0 - 10)


class Log:
    """Signed events of one log, at chosen wall times."""

    def __init__(self, log: str) -> None:
        self.log = log
        self.events: list[Event] = []

    def add(self, kind: str, at: float, /, **fields: Any) -> None:
        prev = self.events[-1].id if self.events else GENESIS
        self.events.append(make_event(KEY, self.log, len(self.events) + 1, prev, hlc.pack(int(at * 1000), 0),
                                      kind, fields))

    def attempt(self, slot: float, end: str, attempt: int = 1, reason: str = "disk full") -> None:
        job = job_id("acc", "s1", slot)
        extra = {"attempt": attempt} if attempt > 1 else {}
        at = slot + (attempt - 1) * 60
        self.add("job.dispatched", at, job=job, agent="B", schedule="s1", slot=int(slot), deadline=int(slot + 600),
                 **extra)
        if end:
            self.add(end, at + 5, job=job, agent="B", **extra, **({"reason": reason} if end == "job.failed" else {}))


def node(*schedules: Schedule) -> dict[str, Node]:
    return {"acc": Node("acc", 2, "A", schedules={s.id: s for s in schedules})}


def seen(jobs: dict[str, JobState] | None = None, dead: dict[str, float] | None = None,
         under: dict[str, tuple[int, float]] | None = None, schedules: tuple[Schedule, ...] = (HOURLY,)) -> Observed:
    return Observed(nodes=node(*schedules), jobs={"acc": jobs or {}}, dead=dead or {}, names={PEER: "gamma"},
                    under=under, open_grace=600)


def quiet(**kw: Any) -> Observed:
    """What the coordinator sees with no schedule: peers and replication alone."""
    return seen(schedules=(), **kw)


def sent(log: Log, alert: Alert, at: float, **results: str) -> None:
    log.add(ALERT_SENT, at, **alert.record(results))
