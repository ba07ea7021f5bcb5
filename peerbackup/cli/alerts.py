"""`peerbackup alerts set|show|test`: the office's alert channels (docs/alerts.md).

`set` replaces the whole configuration (an `office.alerts` event in the control
log, admins only): what it is not given is off or at its default, so the command
line shows all of it. The daemon checks every field again and says what is wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from peerbackup.cli.common import EXIT_OK, api, home_of, print_json
from peerbackup.core.alerts import DEFAULT_AFTER, human, parse_smtp
from peerbackup.core.settings import parse_duration
from peerbackup.errors import UsageError


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return dt.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _print_config(cfg: dict[str, Any]) -> None:
    if not cfg["channels"]:
        print("alerts         off (no webhook, no SMTP server): `peerbackup alerts set --help`")
    print(f"webhook        {cfg['webhook'] or '-'}")
    if cfg["smtp_host"]:
        tls = " with STARTTLS" if cfg["smtp_starttls"] else ""
        print(f"e-mail         via {cfg['smtp_host']}:{cfg['smtp_port']}{tls}, from {cfg['mail_from']} "
              f"to {', '.join(cfg['mail_to'])}")
    else:
        print("e-mail         -")
    print(f"peer dead      alert after {human(cfg['peer_dead_after'])}")
    print(f"under-repl.    alert after {human(cfg['under_replicated_after'])}")


def cmd_alerts(args: argparse.Namespace) -> int:
    check_unused(args)
    home = home_of(args)
    if args.alerts_cmd == "set":
        body: dict[str, Any] = {"webhook": args.webhook or "", "mail_to": args.mail_to or [],
                                "mail_from": args.mail_from or "", "smtp_starttls": bool(args.starttls),
                                "peer_dead_after": parse_duration(args.peer_dead_after),
                                "under_replicated_after": parse_duration(args.under_replicated_after)}
        if args.smtp:
            body["smtp_host"], body["smtp_port"] = parse_smtp(args.smtp)
        out = api(home, "POST", "/v1/alerts", body)
        if args.json:
            print_json(out)
        else:
            _print_config(out["config"])
            if out["config"]["channels"]:
                print("Saved for the whole office. `peerbackup alerts test` sends a test alert now.")
        return EXIT_OK
    if args.alerts_cmd == "test":
        out = api(home, "POST", "/v1/alerts/test", {})
        if args.json:
            print_json(out)
        else:
            for channel, result in sorted(out["results"].items()):
                print(f"{channel:<8} {result}")
        return EXIT_OK if all(r == "ok" for r in out["results"].values()) else 1
    out = api(home, "GET", "/v1/alerts")
    if args.json:
        print_json(out)
        return EXIT_OK
    _print_config(out["config"])
    if out["incidents"]:
        print(f"\nincidents ({out['open']} open, latest first):")
    for inc in out["incidents"]:
        state = f"resolved {_when(inc['resolved'])}" if inc["resolved"] else "open"
        sent = ", ".join(inc["delivered"]) or "nothing yet"
        line = f"  {_when(inc['first'])}  {inc['kind']:<16} {state:<28} delivered: {sent}"
        if inc["errors"]:
            line += f" (failing: {', '.join(f'{c} {e}' for c, e in sorted(inc['errors'].items()))}; " \
                    f"{inc['attempts']} attempts)"
        print(line)
        print(f"      {inc['message']}")
    return EXIT_OK


def add_parsers(add: Any) -> None:
    a = add("alerts", cmd_alerts, "the office's alerts: webhook and e-mail (set and test on an admin)")
    a.add_argument("alerts_cmd", choices=["set", "show", "test"])
    a.add_argument("--webhook", metavar="URL", help="(set) POST each alert as JSON to this http(s) URL")
    a.add_argument("--smtp", metavar="HOST[:PORT]", help="(set) send e-mail through this relay (port 25 by "
                   "default; no login: a relay that accepts the office's machines)")
    a.add_argument("--starttls", action="store_true", help="(set) upgrade the SMTP connection with STARTTLS")
    a.add_argument("--mail-from", metavar="ADDRESS", help="(set) the alerts' sender")
    a.add_argument("--mail-to", action="append", metavar="ADDRESS", help="(set) a recipient (repeatable)")
    default = human(DEFAULT_AFTER)
    a.add_argument("--peer-dead-after", default="1h", metavar="DURATION",
                   help=f"(set) alert when a peer has been dead this long (default {default})")
    a.add_argument("--under-replicated-after", default="1h", metavar="DURATION",
                   help=f"(set) alert when files stay short of copies this long (default {default})")


def check_unused(args: argparse.Namespace) -> None:
    """Options of `set` given to show or test are a mistake worth saying."""
    if args.alerts_cmd != "set" and (args.webhook or args.smtp or args.mail_to or args.mail_from or args.starttls):
        raise UsageError(f"alerts {args.alerts_cmd} takes no channel options: they belong to `alerts set`")
