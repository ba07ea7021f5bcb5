"""`peerbackup`: the command line. Exit codes: 0 ok, 1 error, 2 usage, 3 partial."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from peerbackup import __version__
from peerbackup.cli import alerts, jobs, nodes, office
from peerbackup.cli.common import EXIT_ERROR, EXIT_OK, Lazy, closers
from peerbackup.cli.officedemo import run_office_demo
from peerbackup.core.retention import DEFAULT_GROUP_BY
from peerbackup.errors import PeerBackupError, UsageError

Command = Callable[[argparse.Namespace], int] | Lazy
Add = Callable[[str, Command, str], argparse.ArgumentParser]


def _latest_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", action="append", metavar="PATH", help="with latest: the newest snapshot of this path")
    p.add_argument("--host", action="append", metavar="HOST", help="with latest: the newest snapshot of this host")


def _adder(sub: Any, parent: argparse.ArgumentParser) -> Add:
    """`add(name, func, help)`: a subcommand with the family's common options that runs `func`."""

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = sub.add_parser(name, parents=[parent], help=help)
        sp.set_defaults(func=func)
        return sp

    return add


def _office_parsers(top: Any) -> None:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", help="this peer's data directory (or PEERBACKUP_HOME)")
    home.add_argument("--json", action="store_true", help="machine-readable output")
    add = _adder(top, home)
    office.add_peer_parsers(add)
    nodes.add_node_parsers(add)
    jobs.add_parsers(add)
    alerts.add_parsers(add)
    nodes.add_grant_parsers(add)
    office.add_storage_parser(add)
    office.add_group_parsers(top, home)


def _repo_parsers(top: Any) -> None:
    sub = top.add_parser("repo", help="a standalone local repository (USB disk, NAS mount)").add_subparsers(
        dest="repo_cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", help="repository directory, or office:NODE for a backup node's repository "
                        "in the peer store (or PEERBACKUP_REPO)")
    common.add_argument("--home", help="peer home, for office:NODE (default: PEERBACKUP_HOME or the user data dir)")
    common.add_argument("--password-file", help="read the passphrase from this file")
    common.add_argument("--cache-dir", help="local cache directory (default ~/.cache/peerbackup)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    add = _adder(sub, common)
    add("init", Lazy("repo", "cmd_init"), "create a repository")
    b = add("backup", Lazy("repo_backup", "cmd_backup"), "back up files and directories")
    b.add_argument("source", nargs="+")
    b.add_argument("--exclude", action="append", metavar="PATTERN")
    b.add_argument("--exclude-file", action="append", metavar="FILE")
    b.add_argument("--tag", action="append", default=[])
    add("snapshots", Lazy("repo", "cmd_snapshots"), "list snapshots")
    ls = add("ls", Lazy("repo", "cmd_ls"), "list the files of a snapshot")
    ls.add_argument("snapshot")
    ls.add_argument("path", nargs="?")
    ls.add_argument("-l", "--long", action="store_true")
    r = add("restore", Lazy("repo", "cmd_restore"), "restore a snapshot")
    r.add_argument("snapshot")
    r.add_argument("--target", required=True)
    r.add_argument("--include", action="append", metavar="PATH")
    r.add_argument("--overwrite", action="store_true", help="restore into a non-empty target")
    r.add_argument("--no-sparse", action="store_true", help="write the zeros of holes (file systems without holes)")
    _latest_filters(r)
    d = add("diff", Lazy("repo", "cmd_diff"), "show what changed between two snapshots")
    d.add_argument("snapshot1")
    d.add_argument("snapshot2")
    c = add("check", Lazy("repo", "cmd_check"), "verify the repository")
    c.add_argument("--read-data", action="store_true", help="also read and verify every pack")
    _forget_parsers(add)
    k = add("key", Lazy("repo", "cmd_key"), "manage passphrases")
    k.add_argument("key_cmd", choices=["add", "list", "remove"])
    k.add_argument("id", nargs="?", help="key id (for remove)")
    k.add_argument("--new-password-file", help="new passphrase for `key add`")


def _forget_parsers(add: Add) -> None:
    f = add("forget", Lazy("repo_forget", "cmd_forget"), "remove snapshots by id or by policy")
    f.add_argument("snapshots", nargs="*")
    for unit in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        f.add_argument(f"--keep-{unit}", type=int, default=0, metavar="N")
    f.add_argument("--group-by", default=",".join(DEFAULT_GROUP_BY), metavar="FIELDS",
                   help="apply the policy to each group of snapshots on its own: host,paths (default), "
                        "paths, host, tags, a comma list of them, or none")
    f.add_argument("--host", action="append", metavar="HOST", help="only snapshots of this host")
    f.add_argument("--path", action="append", metavar="PATH",
                   help="only snapshots of exactly these paths (repeat for a snapshot of several)")
    f.add_argument("--tag", action="append", metavar="TAG", help="only snapshots with this tag")
    f.add_argument("--prune", action="store_true", help="prune unreferenced data afterwards")
    f.add_argument("--dry-run", action="store_true")
    f.add_argument("--grace", type=float, default=0.0, help=argparse.SUPPRESS)
    pr = add("prune", Lazy("repo_forget", "cmd_prune"), "delete data no snapshot needs")
    pr.add_argument("--dry-run", action="store_true")
    pr.add_argument("--grace", type=float, default=0.0,
                    help="seconds a mark must age before its packs are deleted (default 0)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peerbackup", description=__doc__)
    p.add_argument("--version", action="version", version=f"peerbackup {__version__}")
    top = p.add_subparsers(dest="cmd", required=True)
    demo = top.add_parser("demo", help="an office of three daemons on this machine backing up a sample folder")
    demo.add_argument("--dir", default=".run/demo", help="where the three homes live (default ./.run/demo)")
    _office_parsers(top)
    _repo_parsers(top)
    return p


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "demo":
        return run_office_demo(args.dir)
    if getattr(args, "repo_cmd", None) == "key" and args.key_cmd == "remove" and not args.id:
        raise UsageError("key remove needs a key id (see `key list`)")
    try:
        rc: int = args.func(args)
    finally:
        while closers:
            closers.pop()()
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except PeerBackupError as exc:
        print(f"peerbackup: {exc.message()}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`peerbackup log NODE | head`): not an error. Point stdout at /dev/null
        # so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        # Anything the engine did not wrap (a path we may not read, a vanished mount).
        where = f" {exc.filename}" if exc.filename else ""
        print(f"peerbackup: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("peerbackup: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
