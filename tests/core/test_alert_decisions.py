"""What to send when (core/alertrules.py), on fixed clocks: failed and missed backup slots, dead peers,
under-replication, and the incident record with its channels' retries.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from peerbackup.core.alertrules import MAX_ATTEMPTS, evaluate
from peerbackup.core.alerts import (
    ALERT_RESOLVED,
    BACKUP_FAILED,
    BACKUP_MISSED,
    BACKUP_PARTIAL,
    EMAIL,
    OK,
    PEER_DEAD,
    TEST,
    UNDER_REPLICATED,
    WEBHOOK,
    Alert,
    AlertConfig,
    Incident,
    history,
)
from peerbackup.core.events import CONTROL_LOG
from peerbackup.core.jobs import fold
from peerbackup.core.nodelog import missed_slots
from peerbackup.core.schedule import Schedule, job_id
from tests.core._alerts import CFG, HOURLY, KEY, PEER, T0, Log, quiet, seen, sent


def test_a_failed_slot_alerts_only_once_its_retries_are_spent() -> None:
    log = Log("node:acc")
    log.attempt(T0, "job.failed")
    # A retry is still to come (attempt 2 at slot + 60 s): no alert.
    assert evaluate(T0 + 30, CFG, seen(fold(log.events, None)), {}, 30).send == []
    log.attempt(T0, "job.failed", attempt=2)
    assert evaluate(T0 + 100, CFG, seen(fold(log.events, None)), {}, 30).send == []
    log.attempt(T0, "job.failed", attempt=3, reason="storage peer refused: over quota")
    plan = evaluate(T0 + 200, CFG, seen(fold(log.events, None)), {}, 30)
    [alert] = plan.send
    assert (alert.kind, alert.incident, alert.subject, alert.node, alert.slot) == (
        BACKUP_FAILED, f"backup:acc/s1:{int(T0)}", "backup:acc/s1", "acc", int(T0))
    assert "failed after 3 attempts: storage peer refused: over quota" in alert.message
    assert alert.channels == (WEBHOOK, EMAIL) and alert.attempt == 1


def test_a_slot_no_agent_started_is_not_alerted_while_the_coordinator_may_still_retry_it() -> None:
    """The coordinator tries a job no agent ever started again a lease later (core/jobs.py next_attempt), not
    after the back-off: the alert waits by the same rule, until the window closes."""
    tight = Schedule(id="s1", node="acc", every=3600, window=60, retries=2, retry_delay=600, since=T0 - 10)
    log = Log("node:acc")
    job = job_id("acc", "s1", T0)
    log.add("job.dispatched", T0, job=job, agent="B", schedule="s1", slot=int(T0), deadline=int(T0 + 60))
    log.add("job.dispatch_failed", T0 + 1, job=job, agent="B", reason="stale fencing token")
    observed = seen(fold(log.events, None), schedules=(tight,))
    assert evaluate(T0 + 30, CFG, observed, {}, 30).send == []  # a retry is still to come
    [alert] = evaluate(T0 + 61, CFG, observed, {}, 30).send
    assert alert.kind == BACKUP_FAILED and "stale fencing token" in alert.message


def test_consecutive_bad_slots_are_one_incident_closed_by_the_next_success() -> None:
    jobs, control = Log("node:acc"), Log(CONTROL_LOG)
    jobs.attempt(T0, "job.failed", attempt=3)
    [alert] = evaluate(T0 + 700, CFG, seen(fold(jobs.events, None)), {}, 30).send
    sent(control, alert, T0 + 700, webhook=OK, email=OK)
    # The next slot fails too, the one after is missed: the same incident, nothing new to send.
    jobs.attempt(T0 + 3600, "job.failed", attempt=3)
    later = evaluate(T0 + 2 * 3600 + 700, CFG, seen(fold(jobs.events, None)), history(control.events), 30)
    assert later == type(later)([], [])
    # A slot succeeds: the incident is over (resolved), and a failure after it is a new incident.
    jobs.attempt(T0 + 3 * 3600, "job.done")
    plan = evaluate(T0 + 3 * 3600 + 60, CFG, seen(fold(jobs.events, None)), history(control.events), 30)
    assert plan.send == [] and [i.incident for i in plan.resolve] == [alert.incident]
    control.add(ALERT_RESOLVED, T0 + 3 * 3600 + 60, incident=alert.incident, subject=alert.subject)
    jobs.attempt(T0 + 4 * 3600, "job.failed", attempt=3)
    [again] = evaluate(T0 + 4 * 3600 + 700, CFG, seen(fold(jobs.events, None)), history(control.events), 30).send
    assert again.incident == f"backup:acc/s1:{int(T0 + 4 * 3600)}"


def _slot_done(log: Log, slot: float, *failed: tuple[str, str], manual: bool = False) -> None:
    """A backup of slot `slot` that ended done, or partial when it names failing (path, reason)s."""
    job = f"manual-{int(slot)}" if manual else job_id("acc", "s1", slot)
    where = {} if manual else {"schedule": "s1", "slot": int(slot)}
    log.add("job.dispatched", slot, job=job, agent="B", deadline=int(slot + 600), **where)
    result: dict[str, Any] = {"result": "done"}
    if failed:
        result = {"result": "partial", "failures": len(failed) + 10,
                  "failed": [{"path": p, "reason": r} for p, r in failed]}
    log.add("job.done", slot + 30, job=job, agent="B", snapshots=["s"], **result)


def test_partial_backups_are_one_incident_per_streak_closed_by_a_full_one() -> None:
    jobs, control = Log("node:acc"), Log(CONTROL_LOG)
    _slot_done(jobs, T0)
    assert evaluate(T0 + 60, CFG, seen(fold(jobs.events, None)), {}, 30).send == []
    # A manual backup that left files out is not alerted (whoever asked saw exit 3); a scheduled one is.
    _slot_done(jobs, T0 + 100, ("/srv/x", "not found"), manual=True)
    assert evaluate(T0 + 200, CFG, seen(fold(jobs.events, None)), {}, 30).send == []
    _slot_done(jobs, T0 + 3600, ("/srv/books.db", "permission denied"), ("/srv/gone.txt", "not found"))
    [alert] = evaluate(T0 + 3700, CFG, seen(fold(jobs.events, None)), {}, 30).send
    assert (alert.kind, alert.subject, alert.node) == (BACKUP_PARTIAL, "backup_partial:acc", "acc")
    assert alert.incident == f"backup_partial:acc:{int(T0 + 3630)}"
    assert "without 12 file(s) or data set(s): 1 not found, 1 permission denied" in alert.message
    assert "/srv/books.db (permission denied); /srv/gone.txt (not found) and 10 more" in alert.message
    sent(control, alert, T0 + 3700, webhook=OK, email=OK)
    # The next slot leaves files out too: the same incident, nothing more is sent.
    _slot_done(jobs, T0 + 7200, ("/srv/books.db", "permission denied"))
    assert evaluate(T0 + 7300, CFG, seen(fold(jobs.events, None)), history(control.events), 30).send == []
    # A full backup closes it; the next partial one is a new incident.
    _slot_done(jobs, T0 + 3 * 3600)
    plan = evaluate(T0 + 3 * 3600 + 60, CFG, seen(fold(jobs.events, None)), history(control.events), 30)
    assert plan.send == [] and [i.incident for i in plan.resolve] == [alert.incident]
    control.add(ALERT_RESOLVED, T0 + 3 * 3600 + 60, incident=alert.incident, subject=alert.subject)
    _slot_done(jobs, T0 + 4 * 3600, ("/srv/books.db", "I/O error"))
    [again] = evaluate(T0 + 4 * 3600 + 60, CFG, seen(fold(jobs.events, None)), history(control.events), 30).send
    assert again.incident == f"backup_partial:acc:{int(T0 + 4 * 3600 + 30)}" and "1 I/O error" in again.message
    # Nothing from before alerts were configured.
    cfg = dataclasses.replace(CFG, since=T0 + 5 * 3600)
    assert evaluate(T0 + 5 * 3600, cfg, seen(fold(jobs.events, None)), {}, 30).send == []


def test_a_slot_is_missed_when_its_window_closes_without_a_job() -> None:
    assert evaluate(T0 + 599, CFG, seen(), {}, 30).send == []  # it may still start
    [alert] = evaluate(T0 + 601, CFG, seen(), {}, 30).send
    assert (alert.kind, alert.slot) == (BACKUP_MISSED, int(T0))
    assert "no backup started within its 10 min window" in alert.message
    # Not for a slot before the schedule existed, nor one whose window closed before alerts were configured.
    late = dataclasses.replace(HOURLY, since=T0 + 1)
    assert evaluate(T0 + 601, CFG, seen(schedules=(late,)), {}, 30).send == []
    assert evaluate(T0 + 601, dataclasses.replace(CFG, since=T0 + 700), seen(), {}, 30).send == []


def test_a_slot_written_by_an_agent_does_not_silence_the_missed_alert() -> None:
    """Issue 14, finding 4: the alert took `slot` from the job's fields, which an agent's own start could
    set: a done job claiming slot 2**40 moved "last done" into the future and no slot was ever missed again.
    A slot counts only as the job's id (hash of node, schedule and slot) names it."""
    log = Log("node:acc")
    log.add("job.started", T0 - 100, job="manual-x", agent="B", schedule="s1", slot=2**40)
    log.add("job.done", T0 - 90, job="manual-x", agent="B")
    [alert] = evaluate(T0 + 601, CFG, seen(fold(log.events, None)), {}, 30).send
    assert (alert.kind, alert.slot) == (BACKUP_MISSED, int(T0))


def test_slots_skipped_by_catch_up_are_not_missed() -> None:
    # Every minute, 10-minute window: the coordinator was away from T0 to T0 + 5 min and caught up that slot.
    every = Schedule(id="s1", node="acc", every=60, window=600, since=T0 - 10)
    log = Log("node:acc")
    job = job_id("acc", "s1", T0 + 300)
    log.add("job.dispatched", T0 + 300, job=job, agent="B", schedule="s1", slot=int(T0 + 300), deadline=int(T0 + 900))
    log.add("job.done", T0 + 320, job=job, agent="B")
    for t in range(6, 11):  # and every slot since ran
        j = job_id("acc", "s1", T0 + 60 * t)
        log.add("job.dispatched", T0 + 60 * t, job=j, agent="B", schedule="s1", slot=int(T0 + 60 * t),
                deadline=int(T0 + 60 * t + 600))
        log.add("job.done", T0 + 60 * t + 5, job=j, agent="B")
    assert evaluate(T0 + 60 * 10 + 30, CFG, seen(fold(log.events, None), schedules=(every,)), {}, 30).send == []


def test_a_job_left_open_past_its_deadline_counts_as_failed() -> None:
    log = Log("node:acc")
    log.attempt(T0, "")  # dispatched, never ended (its agent died, nobody could take it over)
    assert evaluate(T0 + 600 + 599, CFG, seen(fold(log.events, None)), {}, 30).send == []
    [alert] = evaluate(T0 + 600 + 601, CFG, seen(fold(log.events, None)), {}, 30).send
    assert alert.kind == BACKUP_FAILED and "still not finished" in alert.message
    # The coordinator logged its slot missed with why (office/jobs/scheduler.py): the alert says it.
    log.add("job.missed", T0 + 607, node="acc", schedule="s1", slot=int(T0), term=4, coordinator=KEY.peer_id,
            reason="dispatched to beta (attempt 1), which wrote no end by the deadline")
    observed = dataclasses.replace(seen(fold(log.events, None)),
                                   missed={"acc": missed_slots(log.events, {(4, KEY.peer_id)})})
    [alert] = evaluate(T0 + 600 + 601, CFG, observed, {}, 30).send
    assert alert.kind == BACKUP_FAILED and "still not finished" in alert.message
    assert "dispatched to beta (attempt 1)" in alert.message


# ---- peers and replication ---------------------------------------------------------------


def test_a_dead_peer_is_one_incident_per_death() -> None:
    control = Log(CONTROL_LOG)
    assert evaluate(T0 + 3599, CFG, quiet(dead={PEER: T0}), {}, 30).send == []
    [alert] = evaluate(T0 + 3600, CFG, quiet(dead={PEER: T0}), {}, 30).send
    assert (alert.kind, alert.incident, alert.peer) == (PEER_DEAD, f"peer_dead:{PEER}:{int(T0)}", PEER)
    assert "Peer gamma" in alert.message
    sent(control, alert, T0 + 3600, webhook=OK, email=OK)
    # Later rounds, or a new coordinator that saw it die a little later: the same incident.
    assert evaluate(T0 + 9000, CFG, quiet(dead={PEER: T0 + 20}), history(control.events), 30).send == []
    # Heard again: over. Dead again later: a new incident.
    plan = evaluate(T0 + 9000, CFG, quiet(), history(control.events), 30)
    assert [i.incident for i in plan.resolve] == [alert.incident]
    control.add(ALERT_RESOLVED, T0 + 9000, incident=alert.incident, subject=alert.subject)
    [again] = evaluate(T0 + 20000, CFG, quiet(dead={PEER: T0 + 10000}), history(control.events), 30).send
    assert again.incident == f"peer_dead:{PEER}:{int(T0 + 10000)}"


def test_under_replication_alerts_once_it_lasts() -> None:
    control = Log(CONTROL_LOG)
    assert evaluate(T0 + 1e6, CFG, quiet(under=None), {}, 30) == type(evaluate(T0, CFG, quiet(), {}, 30))([], [])
    assert evaluate(T0 + 1799, CFG, quiet(under={"acc": (12, T0)}), {}, 30).send == []
    [alert] = evaluate(T0 + 1800, CFG, quiet(under={"acc": (12, T0)}), {}, 30).send
    assert alert.kind == UNDER_REPLICATED and alert.node == "acc" and "12 files of backup node acc" in alert.message
    sent(control, alert, T0 + 1800, webhook=OK, email=OK)
    assert evaluate(T0 + 5000, CFG, quiet(under={"acc": (3, T0)}), history(control.events), 30).send == []
    # No repair round known (a new coordinator): neither alerted nor resolved.
    assert evaluate(T0 + 5000, CFG, quiet(under=None), history(control.events), 30).resolve == []
    plan = evaluate(T0 + 6000, CFG, quiet(under={}), history(control.events), 30)
    assert [i.incident for i in plan.resolve] == [alert.incident]


# ---- delivery record and retries -----------------------------------------------------------


def test_a_failed_channel_is_retried_with_back_off_then_given_up() -> None:
    control = Log(CONTROL_LOG)
    [alert] = evaluate(T0 + 3600, CFG, quiet(dead={PEER: T0}), {}, 30).send
    sent(control, alert, T0 + 3600, webhook="error: ClientConnectorError: refused", email=OK)
    inc = history(control.events)[alert.incident]
    assert (inc.delivered, inc.pending, inc.attempts) == ({EMAIL}, (WEBHOOK,), 1)
    assert evaluate(T0 + 3629, CFG, quiet(dead={PEER: T0}), history(control.events), 30).send == []
    [retry] = evaluate(T0 + 3630, CFG, quiet(dead={PEER: T0}), history(control.events), 30).send
    assert (retry.incident, retry.channels, retry.attempt) == (alert.incident, (WEBHOOK,), 2)
    sent(control, retry, T0 + 3630, webhook="error: HTTP 503")
    # The second retry waits twice as long.
    assert evaluate(T0 + 3630 + 59, CFG, quiet(dead={PEER: T0}), history(control.events), 30).send == []
    assert evaluate(T0 + 3630 + 60, CFG, quiet(dead={PEER: T0}), history(control.events), 30).send != []
    for n in range(3, MAX_ATTEMPTS + 1):
        sent(control, dataclasses.replace(retry, attempt=n), T0 + 3630 + n, webhook="error: HTTP 503")
    assert evaluate(T0 + 1e6, CFG, quiet(dead={PEER: T0}), history(control.events), 30).send == []
    # Delivered on a later attempt: nothing pending any more.
    control2 = Log(CONTROL_LOG)
    sent(control2, alert, T0 + 3600, webhook="error: down", email=OK)
    sent(control2, retry, T0 + 3630, webhook=OK)
    assert history(control2.events)[alert.incident].pending == ()


def test_nothing_is_sent_without_a_channel_and_tests_are_not_incidents() -> None:
    assert evaluate(T0 + 1e5, AlertConfig(), quiet(dead={PEER: T0}, under={"acc": (1, T0)}), {}, 30).send == []
    control = Log(CONTROL_LOG)
    test = Alert("test:alpha:1", TEST, "test", "Test alert", T0, channels=(WEBHOOK,))
    sent(control, test, T0, webhook=OK)
    assert history(control.events) == {}


def test_an_incident_reaches_only_the_channels_still_configured() -> None:
    inc = Incident("peer_dead:X:1", PEER_DEAD, f"peer_dead:{PEER}", "m", T0, peer=PEER, channels=(WEBHOOK, EMAIL),
                   delivered={EMAIL}, attempts=1, first=T0, last=T0)
    no_hook = dataclasses.replace(CFG, webhook="")
    assert evaluate(T0 + 1e4, no_hook, quiet(dead={PEER: T0}), {inc.incident: inc}, 30).send == []


def test_the_missed_alert_gives_the_coordinators_reason_for_the_slot() -> None:
    """Issue 16, cause 4: a slot the coordinator could not start is logged job.missed with why; the alert
    counts it and says why, and a slot replaced by a later one that ran inside its window stays unalerted."""
    log = Log("node:acc")
    log.add("job.missed", T0 + 600, node="acc", schedule="s1", slot=int(T0), term=4, coordinator=KEY.peer_id,
            reason="not started: its 600 s window closed (last refusal: no agent of acc can take the backup now)")
    missed = missed_slots(log.events, {(4, KEY.peer_id)})
    observed = dataclasses.replace(seen(), missed={"acc": missed})
    [alert] = evaluate(T0 + 601, CFG, observed, {}, 30).send
    assert (alert.kind, alert.slot) == (BACKUP_MISSED, int(T0))
    assert "no agent of acc can take the backup now" in alert.message and "10 min window" in alert.message
    # A missed look-alike from a term its writer never claimed says nothing.
    assert missed_slots(log.events, {(5, KEY.peer_id)}) == {}
