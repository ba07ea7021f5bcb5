"""A backup node's jobs: what it backs up and when (`dataset`, `schedule`), `backup NODE` now, and its
event log (`log NODE`).

dataset and schedule are admin changes written to the office control log (node.dataset,
node.schedule), so every peer, and whichever peer is coordinator, sees the same configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from peerbackup.cli.common import EXIT_OK, api, home_of, print_json, resolve_peer, show
from peerbackup.cli.progress import Progress
from peerbackup.cli.tables import duration, table
from peerbackup.core.jobs import PARTIAL, tally
from peerbackup.core.nodelog import node_log
from peerbackup.core.schedule import Schedule, next_slot, zone
from peerbackup.core.settings import parse_duration
from peerbackup.errors import DaemonError, PartialBackup, UsageError


def local_zone_name() -> str:
    """This machine's IANA time zone, written out explicitly in the schedule (so a schedule made
    on a machine in Paris means Paris on every peer, whatever their own setting)."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                zone(name)
                return name
            except UsageError:
                continue
    return "UTC"


def cmd_dataset(args: argparse.Namespace) -> int:
    home = home_of(args)
    if not args.path.startswith("/"):
        raise UsageError(f"{args.path!r}: give the data set's absolute path, as the agents see it")
    if args.dataset_cmd == "remove":
        out = api(home, "POST", "/v1/datasets/remove", {"node": args.node, "path": args.path})
        show(args.json, out, f"backup node {out['node']} no longer backs up {args.path}; its snapshots stay "
             "(forget them on purpose if you must)")
        return EXIT_OK
    on = [resolve_peer(home, p) for p in args.on or []]
    out = api(home, "POST", "/v1/datasets", {"node": args.node, "path": args.path, "on": on,
                                             "exclude": args.exclude or [], "allow_missing": args.allow_missing})
    show(args.json, out,
         f"backup node {out['node']} backs up {args.path}" + (f" on {', '.join(args.on)}" if on else ""))
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.schedule_cmd == "add":
        if not args.node or bool(args.cron) == bool(args.every):
            raise UsageError("schedule add NODE needs --cron EXPRESSION or --every DURATION (one of them)")
        body = {"node": args.node, "cron": args.cron or "", "every": parse_duration(args.every) if args.every else 0,
                "tz": args.tz or local_zone_name(), "window": parse_duration(args.window),
                "catch_up": not args.no_catch_up, "retries": args.retries,
                "retry_delay": parse_duration(args.retry_delay)}
        out = api(home, "POST", "/v1/schedules", body)
        sc = out["schedule"]
        show(args.json, out, f"schedule {sc['id']} of {args.node}: {sc['cron'] or 'every ' + str(sc['every']) + ' s'} "
             f"({sc['tz']}), next {_when(sc)}")
        return EXIT_OK
    if args.schedule_cmd in ("remove", "pause", "resume"):
        if not args.node or not args.id:
            raise UsageError(f"schedule {args.schedule_cmd} needs NODE and the schedule's ID (see `peerbackup "
                             "schedule list`)")
        out = api(home, "POST", f"/v1/schedules/{args.schedule_cmd}", {"node": args.node, "id": args.id})
        done = {"remove": "removed", "pause": "paused: not run until resumed",
                "resume": "resumed: slots missed while paused are not run"}[args.schedule_cmd]
        show(args.json, out, f"schedule {args.id} of {args.node} {done}")
        return EXIT_OK
    rows = [{**sc, "state": "paused" if sc.get("paused") else "active", "next": "" if sc.get("paused")
             else _when(sc)} for n in api(home, "GET", "/v1/nodes") for sc in n["schedules"]
            if args.node is None or n["node"] == args.node]
    if args.json:
        print_json(rows)
        return EXIT_OK
    print(table(["NODE", "ID", "WHEN", "ZONE", "WINDOW", "STATE", "NEXT"],
                [[r["node"], r["id"], r["cron"] or f"every {duration(r['every'])}", r["tz"],
                  duration(r["window"]), r["state"], str(r["next"])[:16].replace("T", " ") or "-"] for r in rows],
                right=(4,), shrink=(0, 2, 3)))
    return EXIT_OK


def _when(sc: dict[str, Any]) -> str:
    s = Schedule(**{k: sc[k] for k in ("id", "node", "cron", "every", "tz", "window", "catch_up", "retries",
                                      "retry_delay")})
    t = next_slot(s, time.time())
    return dt.datetime.fromtimestamp(t, zone(s.tz)).isoformat(timespec="seconds")


def node_events(home: Any, node: str) -> list[dict[str, Any]]:
    """The node's log, merged in order, one flat object per event."""
    events = api(home, "GET", f"/v1/log?log={quote(node_log(node))}")
    # Members by name (an agent may not have written anything yet), and writers the office removed since.
    names = {p["peer_id"]: p["name"] for p in api(home, "GET", "/v1/peers")}
    names.update({e["writer"]: e["writer_name"] for e in events if e["writer_name"]})
    out = []
    for e in events:
        f = e["fields"]
        head = {"id": e["id"], "time": e["time"], "kind": e["kind"], "node": f.get("node", node),
                "writer": e["writer"], "writer_name": e["writer_name"], "agent": f.get("agent"),
                "agent_name": names.get(f.get("agent")), "term": f.get("term"), "job": f.get("job")}
        # An event's own fields never replace what names it (a field called "kind" stays a field).
        out.append({**head, **{k: v for k, v in f.items() if k not in head}})
    return out


def cmd_backup(args: argparse.Namespace) -> int:
    home = home_of(args)
    out = api(home, "POST", "/v1/backup", {"node": args.node})
    if not args.json:
        print(f"job {out['job']}: {out['node']} dispatched to {out['agent_name'] or out['agent']} "
              f"by coordinator {out.get('coordinator_name') or out['coordinator']} (term {out['term']})", flush=True)
    if not args.wait:
        if args.json:
            print_json(out)
        return EXIT_OK
    deadline = time.monotonic() + parse_duration(args.timeout)
    # On a terminal, the job's progress as the coordinator hears its heartbeats; the outcome is the log's.
    progress = Progress.for_terminal(args.json)
    progress.start()
    try:
        end = _follow(home, args.node, out["job"], deadline, progress, out["coordinator"])
    finally:
        progress.stop()
    if end is None:
        raise UsageError(f"job {out['job']} did not finish within {args.timeout} (see `peerbackup log {args.node}`)")
    state = outcome(end)
    out.update(state=state, snapshots=end.get("snapshots", []), reason=end.get("reason"))
    if state == PARTIAL:
        out.update(failures=end.get("failures", 0), failed=end.get("failed", []))
    if args.json:
        print_json(out)
    elif state == "failed":
        print(f"failed on {end['writer_name']}: {end.get('reason')}")
    else:
        print(f"{state}: snapshot {', '.join(s[:8] for s in end.get('snapshots', []))} by {end['writer_name']}")
        if state == PARTIAL:
            print(partial_summary(end), file=sys.stderr)
            for line in failed_lines(end):
                print(line, file=sys.stderr)
    return {"done": EXIT_OK, PARTIAL: PartialBackup.exit_code}.get(state, 1)


def outcome(end: dict[str, Any]) -> str:
    """done, partial or failed: how a job's end event (flat, as node_events gives it) says it ended."""
    if end["kind"] != "job.done":
        return "failed"
    return PARTIAL if end.get("result") == PARTIAL else "done"


def partial_summary(end: dict[str, Any]) -> str:
    """'partial: 3 file(s) or data set(s) could not be backed up: 2 permission denied, 1 not found'."""
    failed = end.get("failed", [])
    count = end.get("failures", len(failed))
    why = tally([str(f.get("reason")) for f in failed])
    listed = f" among the {len(failed)} listed" if count > len(failed) else ""
    return f"partial: {count} file(s) or data set(s) could not be backed up" + (f": {why}{listed}" if why else "")


def failed_lines(end: dict[str, Any]) -> list[str]:
    """One indented line per failing path of a partial job's end, and how many more it counted."""
    failed = end.get("failed", [])
    lines = [f"    {f.get('reason')}: {f.get('path')}" for f in failed]
    more = int(end.get("failures", len(failed))) - len(failed)
    return lines + ([f"    ... and {more} more"] if more > 0 else [])


def _follow(home: Any, node: str, job: str, deadline: float, progress: Progress,
            coordinator: str = "") -> dict[str, Any] | None:
    """Wait for the job's end in the node's log, feeding the progress line meanwhile. The progress comes
    from the coordinator (through this peer's daemon); when it cannot be reached (it died, and the next
    one is not elected yet), the job goes on without it: this keeps following the log, says so, and
    names the next coordinator once there is one."""
    lost, retry = "", 0.0  # the coordinator that did not answer; when to ask for progress again
    while time.monotonic() < deadline:
        ends = [e for e in node_events(home, node) if e["job"] == job and e["kind"] in ("job.done", "job.failed")]
        if ends:
            return ends[-1]
        if lost:
            now = api(home, "GET", "/v1/status")
            if now.get("coordinator") not in (None, lost):
                lost = ""
                _note(progress, f"coordinator now {_peer_name(home, now['coordinator'])} (term {now['term']})")
        if progress.enabled and time.monotonic() >= retry:
            try:
                p = api(home, "GET", "/v1/jobs")["running"].get(job)
            except DaemonError as exc:  # this peer's daemon answers; the coordinator it asks does not
                if not lost:
                    lost = api(home, "GET", "/v1/status").get("coordinator") or coordinator
                    _note(progress, f"the coordinator does not answer ({exc.message()}); following the job "
                                    "in the node's log until it ends")
                retry = time.monotonic() + 2.0
                p = None
            if p and "files" in p:  # dispatched, no heartbeat yet: nothing to draw
                progress.files, progress.bytes = p["files"], p["bytes"]
                progress.total_files, progress.total_bytes = max(p["files_total"], 0), max(p["bytes_total"], 0)
        time.sleep(0.3)
    return None


def _note(progress: Progress, text: str) -> None:
    """A line on stderr, above the progress line."""
    if progress.enabled:
        progress.stream.write("\r\x1b[K")
    print(f"peerbackup: {text}", file=sys.stderr, flush=True)


def _peer_name(home: Any, peer_id: str) -> str:
    return next((str(p["name"]) for p in api(home, "GET", "/v1/peers") if p["peer_id"] == peer_id), peer_id)


def _since(text: str | None) -> str:
    """--since as the ISO time events carry (UTC, "Z"): a duration ago (2h) or a date/time."""
    if not text:
        return ""
    try:
        when = time.time() - parse_duration(text)
        return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except UsageError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (2h, 1d) or a date/time (2026-11-26T02:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a person types it
    return parsed.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _print_event(e: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(e), flush=True)
        return
    shown = dict(e)
    groups = shown.pop("groups", None)
    if e.get("agent_name"):
        shown["agent"] = f"{e['agent_name']}({e['agent']})"
    rest = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in shown.items()
                    if k not in ("id", "time", "kind", "node", "writer", "writer_name", "agent_name", "failed")
                    and v is not None)
    line = f"{e['time'][:19].replace('T', ' ')}Z {e['writer_name'] or e['writer']:<8} {e['kind']:<15} {rest}"
    if sys.stdout.isatty():  # one event a line on a terminal; the whole event is in --json
        width = shutil.get_terminal_size((80, 24)).columns
        line = line if len(line) <= width else line[: width - 1] + "…"
    print(line, flush=True)
    for g in groups if isinstance(groups, list) else []:  # a retention job: per data set, what stays and why
        why = "; ".join(f"{sid[:8]} {rules}" for sid, rules in g.get("why", {}).items())
        print(f"    {g.get('path')}: kept {g.get('kept')}, removed {g.get('removed')}"
              + (f" (held: {g['held']})" if g.get("held") else f" ({why})" if why else ""), flush=True)
    if e["kind"] == "job.done" and outcome(e) == PARTIAL:  # what the snapshots lack, a path a line
        print("\n".join(failed_lines(e)), flush=True)


def cmd_log(args: argparse.Namespace) -> int:
    home = home_of(args)
    since = _since(args.since)
    events = node_events(home, args.node)
    if not events and args.node not in {n["node"] for n in api(home, "GET", "/v1/nodes")}:
        raise UsageError(f"no backup node named {args.node!r} (see `peerbackup node list`)")
    events = [e for e in events if e["time"] >= since]
    if args.json and not args.follow:
        print_json(events)
        return EXIT_OK
    seen: set[str] = set()
    for e in events:
        seen.add(e["id"])
        _print_event(e, args.json)
    while args.follow:  # one JSON object per line with --json; Ctrl-C ends it
        time.sleep(1.0)
        for e in node_events(home, args.node):
            if e["id"] not in seen and e["time"] >= since:
                seen.add(e["id"])
                _print_event(e, args.json)
    return EXIT_OK


def add_parsers(add: Any) -> None:
    b = add("backup", cmd_backup, "back a node up now: the coordinator dispatches it to an agent")
    b.add_argument("node")
    b.add_argument("--wait", action="store_true",
                   help="wait for the job to end; exit 1 if it failed, 3 if partial (some files not backed up)")
    b.add_argument("--timeout", default="4h", help="how long --wait waits (default 4h)")
    lg = add("log", cmd_log, "a backup node's event log, merged in order")
    lg.add_argument("node")
    lg.add_argument("--follow", action="store_true", help="keep printing new events (--json: one per line)")
    lg.add_argument("--since", metavar="TIME", help="only events after TIME: a duration ago (2h) or a date/time")
    d = add("dataset", cmd_dataset, "what a backup node backs up (admins; remove keeps its snapshots)")
    d.add_argument("dataset_cmd", choices=["add", "remove"])
    d.add_argument("node")
    d.add_argument("path", help="absolute path as the agents see it")
    d.add_argument("--on", action="append", metavar="PEER", help="only these peers can reach it (repeatable)")
    d.add_argument("--exclude", action="append", metavar="PATTERN")
    d.add_argument("--allow-missing", action="store_true",
                   help="add it even if no granted agent has the folder now (it will appear later)")
    s = add("schedule", cmd_schedule, "when a backup node is backed up (add, remove, pause, resume on an admin)")
    s.add_argument("schedule_cmd", choices=["add", "list", "remove", "pause", "resume"])
    s.add_argument("node", nargs="?", help="the node (list: only its schedules)")
    s.add_argument("id", nargs="?", help="the schedule's id (remove, pause, resume; see schedule list)")
    s.add_argument("--cron", metavar="EXPRESSION", help='five fields, e.g. "0 2 * * *"')
    s.add_argument("--every", metavar="DURATION", help="or a fixed interval, e.g. 30s, 1h")
    s.add_argument("--tz", help="IANA time zone of the cron expression (default: this machine's)")
    s.add_argument("--window", default="4h", help="how late a slot may still start (default 4h)")
    s.add_argument("--no-catch-up", action="store_true", help="skip slots missed while no coordinator ran")
    s.add_argument("--retries", type=int, default=3, help="attempts after a failure (default 3)")
    s.add_argument("--retry-delay", default="10m", help="first back-off, doubling (default 10m)")
