"""Office commands: init, join, up, status, ui, peers, invite, remove-peer, storage, office log, admin recover.

init, join and admin recover work on the home directly; the others talk to the
running daemon through its local admin API (found through the home).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import socket
import sys
import time
from typing import Any
from urllib.parse import quote

from peerbackup import logs
from peerbackup.cli.common import EXIT_OK, api, home_of, kdf, password, print_json, resolve_peer, show
from peerbackup.cli.progress import human_bytes
from peerbackup.cli.tables import roles_short, table
from peerbackup.core.certs import DEFAULT_RANK, DEFAULT_ROLES, ROLES, check_name
from peerbackup.core.settings import Settings, parse_size
from peerbackup.daemon.config import load_config
from peerbackup.errors import AlreadyInitialised, FormatError, NotInitialised, UsageError


def _name(args: argparse.Namespace) -> str:
    """--name, or the host name; a bad name is a usage error, caught before anything is written."""
    name = args.name or socket.gethostname()[:64] or "peer"
    try:
        return check_name(name)
    except FormatError as exc:
        raise UsageError(str(exc)) from None


def _settings(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(getattr(args, "set", None) or [])



def _kit_passphrase(args: argparse.Namespace, confirm: bool) -> bytes:
    return password(args, confirm=confirm, prompt="Recovery kit passphrase: ", env="PEERBACKUP_KIT_PASSWORD",
                    file_opt="password_file")


# ---- commands --------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    # Here, not at the top: enrolment speaks to peers (aiohttp, ~0.15 s of imports with its TLS context),
    # which every other command, a local repository's backup first, would pay for at start.
    from peerbackup.office.membership.enrol import init_office

    home = home_of(args)
    if home.initialised():  # before asking for a passphrase
        ident = home.load()
        raise AlreadyInitialised(home.path, ident.office.name, ident.peer_id)
    kit = args.kit or str(home.path / "recovery-kit.pbkit")
    passphrase = _kit_passphrase(args, confirm=True)
    ident = init_office(home, args.office, _name(args), passphrase, kit, kdf(),
                        secrets.token_bytes, int(time.time()))
    out = {"office": ident.office.name, "office_fingerprint": ident.office.fingerprint, "peer_id": ident.peer_id,
           "name": ident.certificate.name, "home": str(home.path), "recovery_kit": os.path.abspath(kit)}
    if args.json:
        print_json(out)
        return EXIT_OK
    print(f"Created office {out['office']!r} (fingerprint {out['office_fingerprint']}).")
    print(f"This peer is {out['peer_id']} ({out['name']}), the office's first admin; home {out['home']}.")
    print(f"Recovery kit for the office key: {out['recovery_kit']}")
    print("  Copy it off this machine (USB stick, password manager). With it and its passphrase,")
    print("  `peerbackup admin recover KIT` rebuilds an admin if this machine is lost.")
    print("Next: `peerbackup up` to start the daemon, then `peerbackup invite` for each other machine.")
    return EXIT_OK


def cmd_join(args: argparse.Namespace) -> int:
    from peerbackup.office.membership.enrol import join_office, seed_state  # lazily: see cmd_init

    home = home_of(args)
    joined = join_office(home, args.token, _name(args), _settings(args),
                         secrets.token_bytes)
    asyncio.run(seed_state(home, joined))
    ident = joined.ident
    out = {"office": ident.office.name, "office_fingerprint": ident.office.fingerprint, "peer_id": ident.peer_id,
           "name": ident.certificate.name, "roles": list(ident.certificate.roles), "rank": ident.certificate.rank,
           "admin": ident.office_key is not None, "home": str(home.path), "inviter": joined.inviter.peer_id}
    show(args.json, out, f"Joined office {out['office']!r} ({out['office_fingerprint']}) as {out['peer_id']} "
         f"({out['name']}), roles {','.join(ident.certificate.roles)}, rank {ident.certificate.rank}.",
         "Next: `peerbackup up` to start the daemon.")
    return EXIT_OK


def cmd_recover(args: argparse.Namespace) -> int:
    from peerbackup.office.membership.enrol import recover_admin  # lazily: see cmd_init

    home = home_of(args)
    try:
        with open(args.kit, "rb") as f:
            kit = f.read(1024 * 1024)
    except OSError as exc:
        raise UsageError(f"cannot read recovery kit {args.kit}: {exc.strerror}") from None
    ident = recover_admin(home, kit, _kit_passphrase(args, confirm=False), _name(args),
                          secrets.token_bytes, int(time.time()))
    out = {"office": ident.office.name, "office_fingerprint": ident.office.fingerprint, "peer_id": ident.peer_id,
           "name": ident.certificate.name, "home": str(home.path)}
    show(args.json, out, f"Recovered admin of office {out['office']!r} ({out['office_fingerprint']}) as new peer "
         f"{out['peer_id']} ({out['name']}). Start it with `peerbackup up --peer HOST:PORT` or on the LAN.")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    # Not a cycle: the daemon's modules take 0.2 s to import, which only `up` should pay.
    from peerbackup.daemon.service import DaemonOptions, run

    home = home_of(args)
    if not home.initialised():
        raise NotInitialised(home.path)
    conf = load_config(home.path)  # the home's config.toml; the command line wins
    quota = args.storage_quota or conf.storage_quota
    limit_text = args.limit_upload or conf.limit_upload
    limit = parse_size(limit_text) if limit_text else None
    if limit == 0:
        raise UsageError("--limit-upload must be more than 0 (leave it out for no limit)")
    settings = Settings().with_overrides(conf.settings + (args.set or []))
    options = DaemonOptions(listen=args.listen or conf.listen or "0.0.0.0:7420", peers=(args.peer or []) + conf.peers,
                            mdns=not args.no_mdns and conf.mdns is not False,
                            mdns_interface=args.mdns_interface or conf.mdns_interface, settings=settings,
                            storage_quota=parse_size(quota) if quota else None, restore_root=conf.restore_root,
                            metrics_listen=args.metrics_listen or conf.metrics_listen, limit_upload=limit)
    log = logs.setup(args.log_json, logging.DEBUG if args.verbose else logging.INFO)
    with home.locked():
        ident = home.load()
        run(home, ident, options, log)
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    """The dashboard's address. The token rides in the fragment (#…), which the browser never sends to a
    server; the page moves it to its session storage and takes it out of the address bar."""
    home = home_of(args)
    base, token = home.admin_endpoint()
    st = api(home, "GET", "/v1/status")  # the daemon runs and answers to this token
    url = f"{base}/ui/#token={token}"
    if args.json:
        print_json({"url": url, "peer": st["name"], "office": st["office"]})
    else:
        print(url)
        print(f"# the dashboard of {st['name']} ({st['office']}); the address opens it with this home's admin "
              "token: keep it to yourself", file=sys.stderr)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    st = api(home_of(args), "GET", "/v1/status")
    if args.json:
        print_json(st)
        return EXIT_OK
    print(f"peer        {st['peer_id']} ({st['name']})")
    print(f"office      {st['office']} ({st['office_fingerprint']})")
    print(f"roles       {','.join(st['roles'])}, rank {st['rank']}{', admin' if st['admin'] else ''}")
    print(f"listening   {', '.join(st['listen'])}")
    print(f"coordinator {st['coordinator'] or '-'} (term {st['term'] if st['term'] is not None else '-'})")
    print(f"uptime      {st['uptime_s']:.0f} s")
    if st.get("removed"):
        print("REMOVED     this peer has been removed from the office; every member refuses it")
    clock = st.get("clock") or {}
    if clock.get("refused_by"):
        who = ", ".join(sorted(clock["refused_by"]))
        print(f"CLOCK       {who} refuse this peer's messages: {next(iter(clock['refused_by'].values()))}")
        if clock.get("this_clock_suspect"):
            print("            most peers do: set this machine's clock right (NTP); until then the office cannot "
                  "hear it")
        else:
            print(f"            the other peers accept this one: {who}'s clock is probably the wrong one")
    for name, off in sorted((clock.get("peers_off") or {}).items()):
        print(f"CLOCK       {name}'s clock is {abs(off)} s {'ahead of' if off > 0 else 'behind'} this peer's "
              f"(at most {clock['skew_limit']:.0f} s is accepted): its messages are refused")
    return EXIT_OK


def cmd_peers(args: argparse.Namespace) -> int:
    peers = api(home_of(args), "GET", "/v1/peers")
    if args.json:
        print_json(peers)
        return EXIT_OK
    rows = [[p["name"] + (" *" if p["self"] else ""), p["state"], "yes" if p["coordinator"] else "",
             p["address"] or "-", roles_short(p["roles"]), str(p["rank"]), p["peer_id"]] for p in peers]
    print(table(["NAME", "STATE", "COORD", "ADDRESS", "ROLES", "RANK", "PEER"], rows, right=(5,), shrink=(0, 3)))
    print("* this peer; roles: a agent, s storage, c coordinator, A admin")
    return EXIT_OK


def cmd_storage(args: argparse.Namespace) -> int:
    home = home_of(args)
    ran: dict[str, Any] = {}
    if args.scrub_now:
        ran["scrub"] = api(home, "POST", "/v1/storage/scrub", {})
    if args.repair_now:
        ran["repair"] = api(home, "POST", "/v1/storage/repair", {})
    out = api(home, "GET", "/v1/storage")
    if args.json:
        print_json({**out, **ran})
        return EXIT_OK
    rows = [[p["name"], p["state"], "-" if p["used"] is None else human_bytes(p["used"]),
             "-" if p["quota"] is None else human_bytes(p["quota"]), "-" if p["packs"] is None else str(p["packs"]),
             p["peer_id"]] for p in out["peers"]]
    print(table(["NAME", "STATE", "USED", "QUOTA", "PACKS", "PEER"], rows, right=(2, 3, 4), shrink=(0,)))
    if out["under_replicated"] is None:
        print("under-replicated files: not checked yet (no repair round here since start;\n"
              "  the coordinator runs one every repair_interval, --repair-now runs one here)")
    else:
        print(f"under-replicated files: {out['under_replicated']}")
    for what, result in ran.items():
        print(f"{what}: " + ", ".join(f"{k} {v}" for k, v in sorted(_flat(result).items())))
    return EXIT_OK


def _flat(result: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in result.items():
        if isinstance(v, dict):
            for k2, v2 in _flat(v).items():
                flat[f"{k}.{k2}"] = v2
        else:
            flat[k] = v
    return flat


def cmd_office_log(args: argparse.Namespace) -> int:
    events = api(home_of(args), "GET", f"/v1/log?log={quote(args.log)}")
    if args.json:
        print_json(events)
        return EXIT_OK
    for e in events:
        fields = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                          for k, v in e["fields"].items() if v is not None)
        who = e["writer_name"] or e["writer"]
        print(f"{e['time']}  {who:<12} #{e['seq']:<4} {e['kind']:<18} {fields}")
    return EXIT_OK


def cmd_invite(args: argparse.Namespace) -> int:
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    out = api(home_of(args), "POST", "/v1/invite", {"roles": roles, "rank": args.rank, "expires": args.expires})
    if args.json:
        print_json(out)
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(out["expires"]))
        print(out["token"])
        print(f"# one use, until {when}; roles {','.join(out['roles'])}, rank {out['rank']}; "
              f"on the new machine: peerbackup join TOKEN", file=sys.stderr)
    return EXIT_OK


def cmd_remove_peer(args: argparse.Namespace) -> int:
    home = home_of(args)
    peer = resolve_peer(home, args.peer)
    out = api(home, "POST", "/v1/remove-peer", {"peer": peer, "reason": args.reason or ""})
    show(args.json, out, f"removed {out['removed']}: every peer refuses it once the revocation reaches it")
    return EXIT_OK




# ---- parsers -----------------------------------------------------------------------


def add_peer_parsers(add: Any) -> None:
    i = add("init", cmd_init, "create an office with this machine as its first admin")
    i.add_argument("--office", required=True, help="the office's name")
    i.add_argument("--name", help="this peer's name (default: the host name)")
    i.add_argument("--kit", help="where to write the recovery kit (default HOME/recovery-kit.pbkit)")
    i.add_argument("--password-file", help="read the recovery kit passphrase from this file")
    j = add("join", cmd_join, "join an office with an invite token")
    j.add_argument("token")
    j.add_argument("--name", help="this peer's name (default: the host name)")
    u = add("up", cmd_up, "run the daemon in the foreground")
    u.add_argument("--listen", help="HOST:PORT for peers (default 0.0.0.0:7420; port 0 picks one). `up` also "
                   "reads HOME/config.toml (see docs/daemon.md); options given here win")
    u.add_argument("--peer", action="append", metavar="HOST:PORT", help="a static peer (repeatable)")
    u.add_argument("--no-mdns", action="store_true", help="no mDNS: use --peer on networks without multicast")
    u.add_argument("--mdns-interface", metavar="IP", help="announce and browse only on this address (127.0.0.1 for "
                   "several instances on one machine)")
    u.add_argument("--set", action="append", metavar="NAME=DURATION",
                   help="override a timing (repeatable): " + ", ".join(f.name for f in dataclasses.fields(Settings)))
    u.add_argument("--storage-quota", metavar="SIZE",
                   help="most this peer keeps for the office's backup nodes (e.g. 200G; default: the disk)")
    u.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics, no token (e.g. 127.0.0.1:9742)")
    u.add_argument("--limit-upload", metavar="SIZE",
                   help="bytes a second this peer's backup jobs send to storage peers at most (e.g. 10M; "
                   "default: no limit)")
    u.add_argument("--log-json", action="store_true", help="JSON lines on stderr")
    u.add_argument("-v", "--verbose", action="store_true", help="debug events too")
    add("status", cmd_status, "this peer and its office")
    add("ui", cmd_ui, "print the address of this peer's dashboard (it carries the admin token once)")
    add("peers", cmd_peers, "the office's members and their liveness")
    inv = add("invite", cmd_invite, "print a one-time token for a new machine (admins)")
    inv.add_argument("--expires", default="1h", help="how long the token works (default 1h, at most 7d)")
    inv.add_argument("--roles", default=",".join(DEFAULT_ROLES),
                     help=f"comma-separated, of {','.join(ROLES)} (default {','.join(DEFAULT_ROLES)})")
    inv.add_argument("--rank", type=int, default=DEFAULT_RANK,
                     help=f"coordinator preference, lower first (default {DEFAULT_RANK}; the first admin has 0)")
    rp = add("remove-peer", cmd_remove_peer, "revoke a member (admins)")
    rp.add_argument("peer", help="peer id or unique name")
    rp.add_argument("--reason", help="recorded in the revocation")


def add_storage_parser(add: Any) -> None:
    st = add("storage", cmd_storage, "what each storage peer keeps, and files short of their copies")
    st.add_argument("--repair-now", action="store_true", help="run a repair round here now (normally the "
                    "coordinator's, every repair_interval)")
    st.add_argument("--scrub-now", action="store_true", help="re-verify what this peer holds now")


def add_group_parsers(top: Any, home: argparse.ArgumentParser) -> None:
    """`office log` and `admin recover`: subcommands of their own, with the home options."""
    off = top.add_parser("office", help="the office's replicated state")
    off_sub = off.add_subparsers(dest="office_cmd", required=True)
    ol = off_sub.add_parser("log", parents=[home], help="the office control log, in order")
    ol.add_argument("--log", default="office", help=argparse.SUPPRESS)
    ol.set_defaults(func=cmd_office_log)
    adm = top.add_parser("admin", help="admin tasks")
    adm_sub = adm.add_subparsers(dest="admin_cmd", required=True)
    rec = adm_sub.add_parser("recover", parents=[home], help="rebuild an admin from the recovery kit")
    rec.add_argument("kit")
    rec.add_argument("--name", help="this peer's name (default: the host name)")
    rec.add_argument("--password-file", help="read the recovery kit passphrase from this file")
    rec.set_defaults(func=cmd_recover)
