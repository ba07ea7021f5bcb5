"""What a backup node backs up, when, and what it keeps: dataset, schedule and node policy commands.

All are admin changes written to the office control log (node.dataset,
node.schedule, node.policy), so every peer, and whichever peer is coordinator,
sees the same configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from peerbackup.core.nodes import POLICY_UNITS
from peerbackup.core.schedule import Schedule, next_slot, zone
from peerbackup.core.settings import parse_duration
from peerbackup.errors import UsageError

EXIT_OK = 0


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
    from peerbackup.cli.office import _api, _home, _print_json, _resolve_peer

    home = _home(args)
    if not args.path.startswith("/"):
        raise UsageError(f"{args.path!r}: give the data set's absolute path, as the agents see it")
    on = [_resolve_peer(home, p) for p in args.on or []]
    out = _api(home, "POST", "/v1/datasets", {"node": args.node, "path": args.path, "on": on,
                                              "exclude": args.exclude or []})
    if args.json:
        _print_json(out)
    else:
        print(f"backup node {out['node']} backs up {args.path}" + (f" on {', '.join(args.on)}" if on else ""))
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    from peerbackup.cli.office import _api, _home, _print_json

    home = _home(args)
    if args.schedule_cmd == "add":
        if not args.node or bool(args.cron) == bool(args.every):
            raise UsageError("schedule add NODE needs --cron EXPRESSION or --every DURATION (one of them)")
        body = {"node": args.node, "cron": args.cron or "", "every": parse_duration(args.every) if args.every else 0,
                "tz": args.tz or local_zone_name(), "window": parse_duration(args.window),
                "catch_up": not args.no_catch_up, "retries": args.retries,
                "retry_delay": parse_duration(args.retry_delay)}
        out = _api(home, "POST", "/v1/schedules", body)
        if args.json:
            _print_json(out)
        else:
            sc = out["schedule"]
            print(f"schedule {sc['id']} of {args.node}: {sc['cron'] or 'every ' + str(sc['every']) + ' s'} "
                  f"({sc['tz']}), next {_when(sc)}")
        return EXIT_OK
    rows = [{**sc, "next": _when(sc)} for n in _api(home, "GET", "/v1/nodes") for sc in n["schedules"]]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    for r in rows:
        what = r["cron"] or f"every {r['every']:g} s"
        print(f"{r['node']:<20} {r['id']:<8} {what:<16} {r['tz']:<16} window {r['window']:g} s  next {r['next']}")
    return EXIT_OK


def _when(sc: dict[str, Any]) -> str:
    s = Schedule(**{k: sc[k] for k in ("id", "node", "cron", "every", "tz", "window", "catch_up", "retries",
                                      "retry_delay")})
    t = next_slot(s, time.time())
    return dt.datetime.fromtimestamp(t, zone(s.tz)).isoformat(timespec="seconds")


def cmd_policy(args: argparse.Namespace) -> dict[str, Any]:
    from peerbackup.cli.office import _api, _home

    keep = {unit: getattr(args, f"keep_{unit}") for unit in POLICY_UNITS}
    if not any(keep.values()):
        raise UsageError("node policy NODE needs at least one --keep-* option")
    out: dict[str, Any] = _api(_home(args), "POST", "/v1/policy", {"node": args.node, "keep": keep})
    return out


def add_parsers(add: Any) -> None:
    d = add("dataset", cmd_dataset, "what a backup node backs up (admins)")
    d.add_argument("dataset_cmd", choices=["add"])
    d.add_argument("node")
    d.add_argument("path", help="absolute path as the agents see it")
    d.add_argument("--on", action="append", metavar="PEER", help="only these peers can reach it (repeatable)")
    d.add_argument("--exclude", action="append", metavar="PATTERN")
    s = add("schedule", cmd_schedule, "when a backup node is backed up (add on an admin)")
    s.add_argument("schedule_cmd", choices=["add", "list"])
    s.add_argument("node", nargs="?")
    s.add_argument("--cron", metavar="EXPRESSION", help='five fields, e.g. "0 2 * * *"')
    s.add_argument("--every", metavar="DURATION", help="or a fixed interval, e.g. 30s, 1h")
    s.add_argument("--tz", help="IANA time zone of the cron expression (default: this machine's)")
    s.add_argument("--window", default="4h", help="how late a slot may still start (default 4h)")
    s.add_argument("--no-catch-up", action="store_true", help="skip slots missed while no coordinator ran")
    s.add_argument("--retries", type=int, default=3, help="attempts after a failure (default 3)")
    s.add_argument("--retry-delay", default="10m", help="first back-off, doubling (default 10m)")
