"""Backup nodes: `node add|list|show|policy|remove|restore-config|purge`, who may act for them (`grant`,
`revoke`, `grants`), and reading their repositories (`snapshots NODE`, `restore NODE`).

All but the reads are admin changes the running daemon writes to the office control log.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from peerbackup.cli.common import EXIT_OK, Lazy, api, home_of, print_json, resolve_peer, show
from peerbackup.cli.tables import table
from peerbackup.core.nodes import POLICY_UNITS
from peerbackup.errors import UsageError
from peerbackup.office.membership.home import Home

GRANT_WAIT = 20  # seconds `grant` and `revoke` wait for the change to reach every live peer (API timeout 30 s)


def _print_node(n: dict[str, Any]) -> None:
    print(f"node      {n['node']}")
    print(f"replicas  {n['replicas']}")
    print(f"key epoch {n['epoch']}")
    print(f"agents    {', '.join(n['agent_names']) or '-'}")
    print(f"holders   {', '.join(n['holder_names'])}{' (this peer among them)' if n['i_hold_keys'] else ''}")


def cmd_node(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.node_cmd not in ("list",) and not args.node:
        raise UsageError(f"node {args.node_cmd} needs the node's name")
    if args.node_cmd in ("remove", "restore-config", "purge"):
        return _node_life(home, args)
    if args.node_cmd == "policy":
        pol = _policy(home, args)
        show(args.json, pol, f"backup node {pol['node']} keeps "
             + ", ".join(f"{v} {k}" for k, v in pol["policy"].items()))
        return EXIT_OK
    if args.node_cmd == "add":
        out = api(home, "POST", "/v1/nodes", {"node": args.node, "replicas": args.replicas})
        show(args.json, out, f"added backup node {out['node']}: {out['replicas']} replicas, keys held by "
             f"{', '.join(out['holder_names'])}")
        return EXIT_OK
    nodes = api(home, "GET", "/v1/nodes" + ("?removed=1" if args.removed else ""))
    if args.node_cmd == "show":
        match = [n for n in nodes if n["node"] == args.node]
        if not match:
            raise UsageError(f"no backup node named {args.node!r} (see `peerbackup node list`)")
        if args.json:
            print_json(match[0])
        else:
            _print_node(match[0])
        return EXIT_OK
    if args.json:
        print_json(nodes)
    elif args.removed:
        print(table(["NODE", "REMOVED", "RESTORABLE UNTIL", "PACKS"],
                    [[n["node"], _utc(n["removed"]), "-" if n["purged"] else _utc(n["restorable_until"]),
                      f"purged {_utc(n['purged'])}" if n["purged"] else "kept"] for n in nodes]))
    else:
        rows = [[n["node"], str(n["replicas"]), str(n["epoch"]), ", ".join(n["agent_names"]) or "-"] for n in nodes]
        print(table(["NODE", "REPLICAS", "EPOCH", "AGENTS"], rows, right=(1, 2), shrink=(3,)))
    return EXIT_OK


def _policy(home: Home, args: argparse.Namespace) -> dict[str, Any]:
    keep = {unit: getattr(args, f"keep_{unit}") for unit in POLICY_UNITS}
    if not any(keep.values()):
        raise UsageError("node policy NODE needs at least one --keep-* option")
    out: dict[str, Any] = api(home, "POST", "/v1/policy", {"node": args.node, "keep": keep})
    return out


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) + "Z"


def _node_life(home: Home, args: argparse.Namespace) -> int:
    """node remove / restore-config (configuration only: neither deletes data) / purge (deletes, after the
    grace)."""
    out = api(home, "POST", f"/v1/nodes/{args.node_cmd}", {"node": args.node})
    if args.json:
        print_json(out)
    elif args.node_cmd == "purge":
        print(f"purged backup node {out['node']}: {out['deleted']} file(s) moved to the storage peers' trash "
              "(freed after gc_grace)")
        for peer, what in sorted(out["peers"].items()):
            print(f"  {peer}: {what if isinstance(what, str) else str(what) + ' file(s)'}")
    elif args.node_cmd == "remove":
        print(f"removed backup node {out['node']}: no more jobs, its keys stay in the log and its packs on the "
              f"storage peers; `peerbackup node restore-config {out['node']}` brings it back until "
              f"{_utc(out['restorable_until'])}")
    else:
        print(f"restored backup node {out['node']}: {len(out['datasets'])} data set(s), "
              f"{len(out['schedules'])} schedule(s), agents {', '.join(out['agent_names']) or '-'}")
    if args.node_cmd == "purge" and any(isinstance(v, str) for v in out["peers"].values()):
        return 1  # a storage peer still holds the node's files: run it again
    return EXIT_OK


def _resolve_agent(home: Home, node: str, peer: str) -> str:
    """For revoke: a member, or else one of the node's agents by name (a machine removed from the
    office is no member any more, but its grant stays until revoked)."""
    try:
        return resolve_peer(home, peer)
    except UsageError:
        for n in api(home, "GET", "/v1/nodes"):
            matches = [a for a, name in zip(n["agents"], n["agent_names"], strict=True) if name == peer]
            if n["node"] == node and len(matches) == 1:
                return str(matches[0])
        raise


def cmd_grant(args: argparse.Namespace) -> int:
    home = home_of(args)
    revoking = args.func is cmd_revoke
    agents = [_resolve_agent(home, args.node, a) if revoking else resolve_peer(home, a) for a in args.agents]
    path = "/v1/grants/revoke" if revoking else "/v1/grants"
    wait = 0 if args.no_wait else GRANT_WAIT
    out = api(home, "POST", path, {"node": args.node, "agents": agents, "wait": wait})
    if args.json:
        print_json(out)
        return EXIT_OK
    verb = f"revoked (new key epoch {out['epoch']})" if revoking else "granted"
    print(f"{args.node}: {verb}; agents now {', '.join(out['agent_names']) or '-'}")
    if out.get("not_yet"):
        # The change is made and will spread; what the reader would otherwise run into next, said now.
        print(f"peerbackup: warning: not on {', '.join(out['not_yet'])} yet after {wait} s (it spreads at each "
              "heartbeat): " + ("until it has, the new agent's `repo ... --repo office:NODE` says it does not hold "
                                "the keys; try again in a few seconds" if not revoking else
                                "until it has, that peer still goes by the old grants"), file=sys.stderr)
    if out.get("down"):
        print(f"peerbackup: {', '.join(out['down'])} not alive now: gets the change when back", file=sys.stderr)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    return cmd_grant(args)


def cmd_grants(args: argparse.Namespace) -> int:
    nodes = api(home_of(args), "GET", "/v1/nodes")
    rows = [{"node": n["node"], "agents": n["agents"], "agent_names": n["agent_names"]} for n in nodes
            if args.node is None or n["node"] == args.node]
    if args.node is not None and not rows:
        raise UsageError(f"no backup node named {args.node!r}")
    if args.json:
        print_json(rows)
    else:
        print(table(["NODE", "AGENTS"], [[r["node"], ", ".join(r["agent_names"]) or "-"] for r in rows], shrink=(1,)))
    return EXIT_OK



# ---- parsers -----------------------------------------------------------------------


def add_node_parsers(add: Any) -> None:
    node = add("node", cmd_node, "backup nodes (add on an admin)")
    node.add_argument("node_cmd", choices=["add", "list", "show", "policy", "remove", "restore-config", "purge"])
    node.add_argument("node", nargs="?", help="the node's name (all but list)")
    node.add_argument("--removed", action="store_true", help="(list, show) removed nodes, and until when they "
                      "can be restored")
    node.add_argument("--replicas", type=int, default=2, help="copies of each pack on other peers (default 2)")
    for unit in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        node.add_argument(f"--keep-{unit}", type=int, default=0, metavar="N", help=f"(policy) keep {unit} snapshots")
    sn = add("snapshots", Lazy("noderepo", "cmd_node_snapshots"), "a backup node's snapshots (on a holder of its keys)")
    sn.add_argument("node")
    sn.add_argument("--cache-dir", help="local cache directory")
    rs = add("restore", Lazy("noderepo", "cmd_node_restore"),
             "restore a backup node's snapshot (on a holder of its keys); logged")
    rs.add_argument("node")
    rs.add_argument("snapshot", help="id, unique prefix, or latest")
    rs.add_argument("--target", required=True)
    rs.add_argument("--include", action="append", metavar="PATH")
    rs.add_argument("--overwrite", action="store_true")
    rs.add_argument("--no-sparse", action="store_true", help="write the zeros of holes (file systems without holes)")
    rs.add_argument("--path", action="append", metavar="PATH",
                    help="with latest: the newest snapshot of this data set (a node has one per data set)")
    rs.add_argument("--cache-dir", help="local cache directory")
    rs.add_argument("-q", "--quiet", action="store_true")


def add_grant_parsers(add: Any) -> None:
    g = add("grant", cmd_grant, "let agents act for a backup node (admins)")
    g.add_argument("node")
    g.add_argument("agents", nargs="+", metavar="AGENT", help="peer id or unique name")
    rv = add("revoke", cmd_revoke, "withdraw agents from a backup node: new data-key epoch (admins)")
    rv.add_argument("node")
    rv.add_argument("agents", nargs="+", metavar="AGENT", help="peer id or unique name")
    for p in (g, rv):
        p.add_argument("--no-wait", action="store_true",
                       help=f"return at once instead of waiting (up to {GRANT_WAIT} s) until every live peer has it")
    gs = add("grants", cmd_grants, "agents of each backup node")
    gs.add_argument("node", nargs="?")
