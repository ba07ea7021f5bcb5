"""Reading a backup node's repository from the command line: `snapshots NODE`, `restore NODE` (on a holder of
its keys). Apart from cli/nodes.py because these need the backup engine, which no other node command imports
(cli/common.py Lazy)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from peerbackup.cli.common import EXIT_OK, api, home_of, local_time, print_json
from peerbackup.cli.repo import cmd_restore, open_repo, snap_json
from peerbackup.cli.tables import table
from peerbackup.core.jobs import PARTIAL


def _node_repo_args(args: argparse.Namespace) -> argparse.Namespace:
    args.repo = f"office:{args.node}"
    args.repo_cmd = "restore"
    return args


def cmd_node_snapshots(args: argparse.Namespace) -> int:
    repo = open_repo(_node_repo_args(args))
    snaps = repo.snapshots(errors=[])
    # A snapshot saved without some files (they could not be read) is partial; `log NODE` lists them.
    def result(s: Any) -> str:
        return f"partial ({s.summary.errors})" if s.summary.errors else "done"

    if args.json:
        print_json([{**snap_json(s), "agent": s.extra.get("agent"), "agent_name": s.extra.get("agent_name"),
                     "job": s.extra.get("job"), "result": PARTIAL if s.summary.errors else "done"} for s in snaps])
        return EXIT_OK
    print(table(["ID", "TIME", "RESULT", "AGENT", "PATHS"],
                [[s.short_id, local_time(s.time_ns), result(s), s.extra.get("agent_name", s.host),
                  ", ".join(s.paths)] for s in snaps], shrink=(3, 4)))
    print(f"{len(snaps)} snapshot(s) of {args.node}")
    return EXIT_OK


def cmd_node_restore(args: argparse.Namespace) -> int:
    def logged(snap: Any, stats: Any) -> None:
        api(home_of(args), "POST", "/v1/nodes/restored", {
            "node": args.node, "snapshot": snap.id, "target": os.path.abspath(args.target),
            "files": stats.files, "bytes": stats.bytes, "errors": len(stats.errors)})

    args.on_restored = logged
    return cmd_restore(_node_repo_args(args))
