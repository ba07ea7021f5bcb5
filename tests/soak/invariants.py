"""The soak's invariants, judged from what it recorded. Pure: no daemon, no clock, so they can be tested on
made-up records (tests/soak/test_invariants.py).

Runs of a job are counted two ways, and the larger count stands: the `job.done` events of its id in the
node's log (every writer's, as `/v1/log` lists them), and its snapshots (`extra.job`) per data set, which
also catch a run whose agent died after saving and before logging its end.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core.schedule import Schedule, job_id, slots_after

JOB_MISSED = "job.missed"


@dataclass
class Verdict:
    key: str
    name: str
    ok: bool
    figure: str
    details: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "ok": self.ok, "figure": self.figure, "details": self.details}


@dataclass(frozen=True)
class NetFault:
    """A cut or a partition as the soak applied it: its sides by daemon name, in the soak's time."""

    began: float
    ended: float
    sides: tuple[tuple[str, ...], ...]


def expected_slots(every: float, window: float, schedule_id: str, node: str, since: float,
                   until: float) -> list[tuple[float, str]]:
    """The slots after `since` whose window closed by `until`, with their job ids (core/schedule.py)."""
    sc = Schedule(id=schedule_id, node=node, every=every, window=window, since=since)
    return [(t, job_id(node, schedule_id, t)) for t in slots_after(sc, since, until - window)]


def _f(e: dict[str, Any]) -> dict[str, Any]:
    return dict(e.get("fields") or {})


def runs_of(job: str, events: list[dict[str, Any]], snapshots: Iterable[dict[str, Any]],
            names: dict[str, str], side: set[str] | None = None) -> tuple[int, int, int]:
    """(runs, job.done events, most snapshots of one data set) of a job, by the agents of `side` if given
    (names: peer id -> daemon name)."""
    def in_side(peer: Any) -> bool:
        return side is None or names.get(str(peer)) in side

    done = sum(1 for e in events if e["kind"] == "job.done" and _f(e).get("job") == job and in_side(e["writer"]))
    per_ds = Counter(",".join(s.get("paths") or []) for s in snapshots
                     if (s.get("extra") or {}).get("job") == job and in_side((s.get("extra") or {}).get("agent")))
    snaps = max(per_ds.values(), default=0)
    return max(done, snaps), done, snaps


def _overlapping(faults: list[NetFault], a: float, b: float) -> list[NetFault]:
    return [f for f in faults if f.began <= b and f.ended >= a]


MARGIN = 5.0  # seconds around a job's span: the soak sees an event a poll (4 s) after it is written


def job_span(job: str, slot: float | None, window: float, events: list[dict[str, Any]],
             first_seen: dict[str, float]) -> tuple[float, float]:
    """When a job may have run, in the soak's time: its slot's window, widened to every moment the soak saw
    one of its events (a clock-stepped coordinator dispatches early; the other side of a partition is seen
    late), with a margin."""
    seen = [first_seen[str(e["id"])] for e in events if _f(e).get("job") == job and str(e["id"]) in first_seen]
    lo = [*([slot] if slot is not None else []), *seen]
    hi = [*([slot + window] if slot is not None else []), *seen]
    return (min(lo) - MARGIN, max(hi) + MARGIN) if lo else (0.0, 0.0)


def judge_jobs(slots: list[tuple[float, str]], window: float, events: list[dict[str, Any]],
               snapshots: list[dict[str, Any]], faults: list[NetFault], names: dict[str, str],
               first_seen: dict[str, float]) -> tuple[Verdict, Verdict, dict[str, Any]]:
    """Invariants 1 (every slot done exactly once, or logged missed with its reason; every retention job at
    most once) and 2 (while a partition lasts, at most one run per slot and per side): a slot is judged by
    (2) when a cut or a partition overlapped its job's span."""
    rows: list[dict[str, Any]] = []
    dup: list[dict[str, Any]] = []
    silent: list[dict[str, Any]] = []
    never_ended: list[dict[str, Any]] = []
    side_dup: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for slot, job in slots:
        row, extra_on_a_side = _judge_slot(slot, job, window, events, snapshots, faults, names, first_seen)
        {"never ended": never_ended, "silently missed": silent, "run more than once": dup}.get(
            row["state"], []).append(row)
        if extra_on_a_side:
            side_dup.append(row)
        counts[row["state"]] += 1
        rows.append(row)
    ret_jobs, ret_rows, ret_dup = _judge_retention(window, events, faults, names, first_seen)

    n = len(slots)
    ok1 = not dup and not silent and not never_ended and not ret_dup
    fig1 = (f"{counts['done once']} of {n} slots done once, {counts['missed']} logged missed, "
            f"{counts['failed']} failed (reason logged); BROKEN: {len(dup)} run more than once "
            f"(max {max((r['runs'] for r in dup), default=0)}), {len(silent)} silently missed, "
            f"{len(never_ended)} dispatched and never ended, {len(ret_dup)} of {len(ret_jobs)} retention jobs "
            f"run more than once")
    v1 = Verdict("exactly_once", "every slot done exactly once or logged missed with its reason", ok1, fig1,
                 dup + silent + never_ended + ret_dup)
    n_over = sum(1 for r in rows if r["partitioned"])
    v2 = Verdict("partition_extra", "at most one run per slot and per side while a partition lasts",
                 not side_dup, f"{len(side_dup)} of {n_over} partitioned slots run more than once on one side",
                 side_dup)
    return v1, v2, {"slots": rows, "retention_jobs": ret_rows, "slot_states": dict(counts)}


def _judge_slot(slot: float, job: str, window: float, events: list[dict[str, Any]],
                snapshots: list[dict[str, Any]], faults: list[NetFault], names: dict[str, str],
                first_seen: dict[str, float]) -> tuple[dict[str, Any], bool]:
    """One slot's row, its state in it; and whether a side of a partition ran it more than it may."""
    a, b = job_span(job, slot, window, events, first_seen)
    over = _overlapping(faults, a, b)
    runs, done, snaps = runs_of(job, events, snapshots, names)
    mine = [e for e in events if _f(e).get("job") == job]
    missed = [e for e in events if e["kind"] == JOB_MISSED and _f(e).get("slot") == int(slot)]
    # A dispatch no agent took (job.dispatch_failed, with why) as the job's last word fails it, as the
    # daemons' fold (core/jobs.py) and the backup-failed alert count it: e.g. a partition healing as
    # the slot came due, every agent refusing the coordinator's token of the term before.
    ends = [e for e in mine if e["kind"] in ("job.dispatched", "job.dispatch_failed", "job.started", "job.done",
                                              "job.failed")]
    failed = [e for e in mine if e["kind"] == "job.failed"] or \
        ([ends[-1]] if ends and ends[-1]["kind"] == "job.dispatch_failed" else [])
    row: dict[str, Any] = {"slot": int(slot), "job": job, "runs": runs, "done_events": done,
                           "snapshots_per_dataset": snaps, "partitioned": bool(over)}
    if runs == 0:
        if missed:
            state = "missed"
            row["reason"] = _f(missed[0]).get("reason")
        elif failed:
            state = "failed"
            row["reason"] = _f(failed[-1]).get("reason") or _f(failed[-1]).get("error")
        else:
            state = "never ended" if mine else "silently missed"
    elif runs == 1:
        state = "done once"
    else:
        state = "run more than once, partitioned" if over else "run more than once"
    extra_on_a_side = False
    if over:
        per_side = {",".join(s): runs_of(job, events, snapshots, names, set(s))[0]
                    for f in over for s in f.sides}
        row["runs_per_side"] = per_side
        allowed = 1 + sum(len(f.sides) - 1 for f in over)
        extra_on_a_side = runs > allowed or (len(over) == 1 and max(per_side.values(), default=0) > 1)
    row["state"] = state
    return row, extra_on_a_side


def _judge_retention(window: float, events: list[dict[str, Any]], faults: list[NetFault], names: dict[str, str],
                     first_seen: dict[str, float]) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Retention jobs: one per successful backup, so each at most once (per side while partitioned).
    The jobs, a row of each, and the rows of those run more than that."""
    ret_dup, ret_rows = [], []
    ret_jobs = sorted({str(_f(e).get("job")) for e in events if str(_f(e).get("job", "")).startswith("retention-")})
    for job in ret_jobs:
        runs, _, _ = runs_of(job, events, [], names)
        a, b = job_span(job, None, window, events, first_seen)
        over = _overlapping(faults, a, b)
        allowed = 1 + sum(len(f.sides) - 1 for f in over)
        row = {"job": job, "runs": runs, "partitioned": bool(over)}
        ret_rows.append(row)
        if runs > allowed:
            ret_dup.append(row)
    return ret_jobs, ret_rows, ret_dup


def coordinator_gaps(samples: list[tuple[float, dict[str, str | None]]], ids: dict[str, str]) -> dict[str, Any]:
    """Seconds when no live daemon held the coordinator's lease (no status naming its own peer as
    coordinator), total and longest; and seconds when two or more held it at once."""
    total = longest = run = both = 0.0
    prev: float | None = None
    for t, seen in samples:
        holders = [n for n, c in seen.items() if c is not None and c == ids.get(n)]
        dt = 0.0 if prev is None else min(t - prev, 5.0)
        prev = t
        if not holders:
            run += dt
            total += dt
            longest = max(longest, run)
        else:
            run = 0.0
        if len(holders) > 1:
            both += dt
    return {"samples": len(samples), "without_s": round(total, 1), "longest_gap_s": round(longest, 1),
            "two_or_more_s": round(both, 1)}


def terms(control: list[dict[str, Any]]) -> dict[str, Any]:
    claims = [(int(_f(e).get("term", 0)), str(e.get("writer_name") or e["writer"])) for e in control
              if e["kind"] == "coordinator.claim"]
    by_term: dict[int, set[str]] = {}
    for term, who in claims:
        by_term.setdefault(term, set()).add(who)
    return {"claims": len(claims), "terms": len(by_term), "highest_term": max(by_term, default=0),
            "terms_claimed_by_several": {str(t): sorted(w) for t, w in by_term.items() if len(w) > 1}}


LOOP_FAILED = "daemon.loop_failed"


def log_failures(texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per daemon: loop failures, tracebacks, and the first lines of the first traceback."""
    out = {}
    for name, text in texts.items():
        lines = text.splitlines()
        first = next((i for i, line in enumerate(lines) if "Traceback" in line), None)
        out[name] = {"loop_failed": text.count(LOOP_FAILED), "tracebacks": len(re.findall(r"Traceback", text)),
                     "first_traceback": lines[max(0, first - 1):first + 25] if first is not None else []}
    return out


def open_jobs(events: list[dict[str, Any]], now: float, grace: float = 0.0) -> list[str]:
    """Jobs of the node's log (as `log --json` gives it) still open before their deadline and `grace` (after
    which the coordinator logs a scheduled one's slot missed: office/jobs/scheduler.py), and not logged
    missed yet: what the soak waits for before it compares the logs."""
    last: dict[str, tuple[str, float]] = {}
    missed = {(str(_f(e).get("schedule")), _f(e).get("slot")) for e in events if e["kind"] == JOB_MISSED}
    for e in events:
        f = e.get("fields") or {}
        if e["kind"] in ("job.dispatched", "job.started", "job.done", "job.failed", "job.dispatch_failed"):
            if (str(f.get("schedule")), f.get("slot")) in missed:
                continue
            deadline = float(f.get("deadline") or 0) or last.get(str(f.get("job")), ("", 0.0))[1]
            last[str(f.get("job"))] = (e["kind"], deadline + grace)
    # Done is final, as in the daemons' fold (core/jobs.py): an agent whose clock ran behind writes its
    # start and end with times before the dispatch, so the dispatch can come last in log order.
    done = {str((e.get("fields") or {}).get("job")) for e in events if e["kind"] == "job.done"}
    return [j for j, (k, d) in last.items() if k in ("job.dispatched", "job.started") and d > now and j not in done]


def runs_began(slots: list[tuple[float, str]], window: float, events: list[dict[str, Any]],
               first_seen: dict[str, float], steps: list[tuple[float, float, float]]) -> dict[str, float]:
    """When each slot's run may have begun: its job's span's start, or earlier by a forward clock step of its
    agent (steps: began, ended, seconds): the agent's clock is what the snapshot's own time says, so the soak
    takes no chance with it."""
    run_from: dict[str, float] = {}
    for slot, job in slots:
        lo, _ = job_span(job, slot, window, events, first_seen)
        ahead = [st for b0, b1, st in steps if st > 0 and b0 <= slot + window and b1 >= lo - 200]
        run_from[job] = lo - max([0.0, *ahead])
    return run_from


def done_first_seen(events: list[dict[str, Any]], first_seen: dict[str, float], now: float) -> dict[str, float]:
    """Each snapshot a job.done names: when the watcher first saw that job.done."""
    done_seen: dict[str, float] = {}
    for e in events:
        if e["kind"] == "job.done":
            for s in (e.get("fields") or {}).get("snapshots") or []:
                sid = s.get("id") if isinstance(s, dict) else s
                done_seen.setdefault(str(sid), first_seen.get(str(e["id"]), now))
    return done_seen


def end_verdicts(settled: dict[str, Any], repair: dict[str, Any], check: dict[str, Any],
                 restores: list[dict[str, Any]], fails: dict[str, dict[str, Any]], gaps: dict[str, Any],
                 bound: float) -> list[Verdict]:
    """The invariants judged once the soak is over: converged logs, replicas repaired, check --read-data,
    restores, no loop failure, and the time without a coordinator (its longest gap at most `bound`)."""
    ur = repair.get("under_replicated")
    bad = [r for r in restores if r["problems"]]
    return [
        Verdict("logs_converge", "logs converge on every peer (same heads)", bool(settled["converged"]),
                f"{len(set(settled['digests'].values()))} distinct log digest(s) over "
                f"{len(settled['digests'])} peers", [settled["digests"]] if not settled["converged"] else []),
        Verdict("replicated", "0 under-replicated after repair", ur == 0, f"{ur} under-replicated", [repair]),
        Verdict("check_read_data", "check --read-data clean", check["exit"] == 0,
                f"exit {check['exit']}", [check["output"]] if check["exit"] else []),
        Verdict("restores", "every kept snapshot restores to a recorded source state",
                not bad and bool(restores), f"{len(restores) - len(bad)} of {len(restores)} restored right",
                bad),
        Verdict("no_loop_failure", "no loop failure and no traceback in any daemon's log",
                not any(f["loop_failed"] or f["tracebacks"] for f in fails.values()),
                f"{sum(f['loop_failed'] for f in fails.values())} loop failures, "
                f"{sum(f['tracebacks'] for f in fails.values())} tracebacks",
                [{n: f} for n, f in fails.items() if f["tracebacks"] or f["loop_failed"]]),
        Verdict("coordinator", f"time without a coordinator (longest gap at most lease + dead = {bound:g} s)",
                gaps["longest_gap_s"] <= bound,
                f"{gaps['without_s']} s in all, longest {gaps['longest_gap_s']} s "
                f"({gaps['two_or_more_s']} s with two or more)", [gaps]),
    ]
