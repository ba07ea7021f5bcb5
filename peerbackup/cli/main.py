"""`peerbackup`: the command line. Exit codes: 0 ok, 1 error, 2 usage, 3 partial."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from peerbackup import __version__
from peerbackup.cli.officerepo import is_office, open_office
from peerbackup.cli.progress import Progress, human_bytes
from peerbackup.core.crypto import KdfParams
from peerbackup.core.jobs import tally
from peerbackup.core.nodelog import MAX_FAILED, MAX_FAILED_PATH
from peerbackup.core.retention import DEFAULT_GROUP_BY, GroupPlan, Policy, parse_group_by, removals
from peerbackup.core.snapshot import Snapshot
from peerbackup.core.tree import DIR, Node
from peerbackup.engine.backup import Archiver
from peerbackup.engine.check import check
from peerbackup.engine.diff import diff_trees
from peerbackup.engine.excludes import Excluder, read_exclude_file
from peerbackup.engine.memory import tune_allocator
from peerbackup.engine.prescan import count
from peerbackup.engine.prune import forget_by_policy, forget_snapshots, prune
from peerbackup.engine.repository import Repository, add_key, key_files, read_config, unlock
from peerbackup.engine.restore import Restorer
from peerbackup.engine.walk import find_path, walk
from peerbackup.errors import KeyInUse, PartialBackup, PeerBackupError, UsageError
from peerbackup.storage.local import LocalStore
from peerbackup.storage.store import FileType

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


# ---- helpers ---------------------------------------------------------------------


def _kdf() -> KdfParams:
    # Tests only: Argon2id at 64 MiB would dominate a test suite of many repositories.
    return KdfParams.weak() if os.environ.get("PEERBACKUP_INSECURE_TEST_KDF") == "1" else KdfParams()


def _password(args: argparse.Namespace, confirm: bool = False, prompt: str = "Passphrase: ",
              env: str = "PEERBACKUP_PASSWORD", file_opt: str = "password_file") -> bytes:
    path = getattr(args, file_opt, None)
    if path:
        try:
            with open(path, "rb") as f:
                from_file = f.read().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read password file {path}: {exc.strerror}") from None
        if not from_file:
            raise UsageError(f"the password file {path} is empty")
        return from_file
    value = os.environ.get(env)
    if value:
        return value.encode()
    if not sys.stdin.isatty():
        raise UsageError(f"no passphrase: set {env}, use --{file_opt.replace('_', '-')}, or run on a terminal")
    pw = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat " + prompt.lower()) != pw:
        raise UsageError("the passphrases do not match")
    if not pw:
        raise UsageError("empty passphrase")
    return pw.encode()


_closers: list[Callable[[], None]] = []  # office repositories' connections, closed when the command ends


def _repo_arg(args: argparse.Namespace) -> str:
    repo: str | None = args.repo or os.environ.get("PEERBACKUP_REPO")
    if not repo:
        raise UsageError("no repository: give --repo PATH (or office:NODE) or set PEERBACKUP_REPO")
    return repo


def _store(args: argparse.Namespace) -> LocalStore:
    repo = _repo_arg(args)
    if is_office(repo):
        raise UsageError(f"`repo {args.repo_cmd}` is for a local repository: a backup node's repository "
                         "is created with `peerbackup node add` and needs no passphrase")
    return LocalStore(repo)


Ended = Callable[[dict[str, Any]], None]


def _open(args: argparse.Namespace, delete: bool = False, backup: list[str] | None = None,
          ended: list[Ended] | None = None) -> Repository:
    """The repository; for a `backup` into a node's, `ended` gets how to tell its job how it ended."""
    repo = _repo_arg(args)
    if is_office(repo):
        from peerbackup.cli.office import _home

        office = open_office(_home(args), repo, delete=delete, backup=backup)
        _closers.append(office.close)
        if ended is not None:
            ended.append(office.ended)
        return Repository(office.store, office.keys, office.config, cache_root=args.cache_dir)
    store = _store(args)
    read_config(store)  # "not a repository" before asking for a passphrase
    return Repository.open(store, _password(args), cache_root=args.cache_dir)


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _local_time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def _snap_json(s: Snapshot) -> dict[str, Any]:
    return {
        "id": s.id, "short_id": s.short_id, "time": s.time.isoformat(), "host": s.host,
        "user": s.user, "paths": s.paths, "tags": s.tags, "tree": s.tree.hex(),
        "parent": s.parent, "program": s.program, "summary": s.summary.to_wire(), "extra": s.extra,
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


# ---- repo commands ---------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    store = _store(args)
    pw = _password(args, confirm=True, prompt="New passphrase: ")
    repo_id = Repository.init(store, pw, kdf=_kdf())
    if args.json:
        _print_json({"id": repo_id, "repository": store.location})
    else:
        print(f"created peerbackup repository {repo_id[:10]} at {store.location}")
        print("Keep the passphrase safe: without it the repository cannot be read.")
    return EXIT_OK


def _prescan(paths: list[str], excluder: Excluder, progress: Progress) -> None:
    """Count files and bytes ahead of the backup so the display can show an ETA."""

    def update(files: int, size: int) -> None:
        progress.total_files, progress.total_bytes = files, size

    update(*count(paths, excluder, update))


def cmd_backup(args: argparse.Namespace) -> int:
    patterns = list(args.exclude or [])
    for f in args.exclude_file or []:
        try:
            patterns += read_exclude_file(f)
        except OSError as exc:
            raise UsageError(f"cannot read exclude file {f}: {exc.strerror}") from None
    excluder = Excluder(patterns)
    for s in args.source:
        if not os.path.lexists(s):
            raise UsageError(f"source {s} does not exist")
    tune_allocator()  # backup only: restore measured faster without it
    ended: list[Ended] = []  # into a node's repository on an agent: a job of the node (office/adhoc.py)
    repo = _open(args, backup=[os.path.abspath(s) for s in args.source], ended=ended)
    progress = Progress.for_terminal(args.quiet or args.json)
    if progress.enabled:
        import threading

        threading.Thread(
            target=_prescan, args=([os.path.abspath(s) for s in args.source], excluder, progress),
            daemon=True,
        ).start()
    progress.start()
    try:
        result = Archiver(repo, excludes=excluder, progress=progress).backup(args.source, args.tag)
    except BaseException as exc:
        _job_ended(ended, {"state": "failed", "reason": exc.message() if isinstance(exc, PeerBackupError)
                           else f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        progress.stop()
        repo.close()
    snap, errors = result.snapshot, result.errors
    s = snap.summary
    failed = {str(f): f for f in result.failures}
    partial = {"result": "partial", "failures": len(result.failures),
               "failed": [{"path": f.path[-MAX_FAILED_PATH:], "reason": f.reason}
                          for f in result.failures[:MAX_FAILED]]}
    _job_ended(ended, {"state": "done", "snapshots": [snap.id], "errors": len(errors), "added": s.bytes_added,
                       **(partial if result.failures else {})})
    if args.json:
        _print_json({"snapshot": _snap_json(snap), "errors": errors,
                     "failures": [{"path": f.path, "reason": f.reason, "message": f.message}
                                  for f in result.failures]})
    else:
        for e in errors:
            f = failed.get(e)
            print(f"error: {f.path}: {f.reason} ({f.message})" if f else f"error: {e}", file=sys.stderr)
        print(f"Files: {s.files_new} new, {s.files_changed} changed, {s.files_unmodified} unmodified")
        print(f"Dirs:  {s.dirs}")
        print(f"Added: {human_bytes(s.bytes_added)} ({human_bytes(s.bytes_stored)} stored)")
        print(f"Processed {human_bytes(s.bytes_processed)} in {s.duration:.2f} s")
        print(f"snapshot {snap.short_id} saved")
    if errors:
        why = tally([f.reason for f in result.failures])
        print(PartialBackup(snap.short_id, len(errors)).message() + (f" ({why})" if why else ""), file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_OK


def _job_ended(ended: list[Ended], result: dict[str, Any]) -> None:
    """Tell the backup's job how it ended; the backup's own outcome stands if that fails."""
    for end in ended:
        try:
            end(result)
        except PeerBackupError as exc:
            print(f"peerbackup: warning: the end of this backup's job was not logged: {exc.message()}",
                  file=sys.stderr)


def cmd_snapshots(args: argparse.Namespace) -> int:
    repo = _open(args)
    errors: list[str] = []
    snaps = repo.snapshots(errors=errors)
    if args.json:
        _print_json([_snap_json(s) for s in snaps])
    else:
        rows = [[s.short_id, _local_time(s.time_ns), s.host, ",".join(s.tags),
                 ", ".join(s.paths), human_bytes(s.summary.bytes_processed)] for s in snaps]
        print(_table(rows, ["ID", "Time", "Host", "Tags", "Paths", "Size"]))
        print(f"{len(snaps)} snapshot(s)")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return EXIT_ERROR if errors else EXIT_OK


def _node_json(path: str, n: Node) -> dict[str, Any]:
    return {"path": path, "type": n.type, "mode": oct(n.mode), "uid": n.uid, "gid": n.gid,
            "mtime": dt.datetime.fromtimestamp(n.mtime_ns / 1e9, tz=dt.UTC).isoformat(),
            "size": n.size, **({"target": n.target} if n.target else {})}


def cmd_ls(args: argparse.Namespace) -> int:
    repo = _open(args)
    snap = repo.find_snapshot(args.snapshot)
    tree = snap.tree
    prefix = ""
    if args.path and args.path.strip("/"):
        node = find_path(repo, snap.tree, args.path)
        prefix = "/" + "/".join(p for p in args.path.split("/") if p)
        if node is not None and node.type != DIR:
            entries = [(prefix, node)]
            tree = b""
        elif node is not None and node.subtree is not None:
            tree = node.subtree
    items = entries if not tree else list(walk(repo, tree, prefix))
    if args.json:
        _print_json([_node_json(p, n) for p, n in items])
    else:
        for p, n in items:
            if args.long:
                print(f"{n.type[0] if n.type != 'file' else '-'}{oct(n.mode)[2:]:>5} "
                      f"{n.uid:>5} {n.gid:>5} {n.size:>12} {_local_time(n.mtime_ns)} {p}")
            else:
                print(p + ("/" if n.type == DIR else ""))
    return EXIT_OK


def _find(repo: Repository, ref: str, args: argparse.Namespace) -> Snapshot:
    """A snapshot by id prefix or `latest`; with --path/--host, `latest` is the newest snapshot of those
    (a repository or node holding several folders has a latest snapshot per folder)."""
    if ref != "latest" or not (getattr(args, "path", None) or getattr(args, "host", None)):
        return repo.find_snapshot(ref)
    snaps = _selected(repo.snapshots(errors=[]), args)
    if not snaps:
        raise UsageError(f"no snapshot of {', '.join((args.path or []) + (getattr(args, 'host', None) or []))} "
                         "in the repository")
    return snaps[-1]


def cmd_restore(args: argparse.Namespace) -> int:
    repo = _open(args)
    snap = _find(repo, args.snapshot, args)
    progress = Progress.for_terminal(args.quiet or args.json)
    progress.start()
    try:
        s = snap.summary
        total = None if args.include else (s.files_new + s.files_changed + s.files_unmodified, s.bytes_processed)
        stats = Restorer(repo, overwrite=args.overwrite, progress=progress).restore(
            snap.tree, args.target, includes=args.include, total=total
        )
    finally:
        progress.stop()
    if args.json:
        _print_json({"snapshot": snap.id, "target": os.path.abspath(args.target),
                     "files": stats.files, "dirs": stats.dirs, "bytes": stats.bytes,
                     "errors": stats.errors})
    else:
        for e in stats.errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"restored snapshot {snap.short_id}: {stats.files} files, {stats.dirs} dirs, "
              f"{human_bytes(stats.bytes)} to {os.path.abspath(args.target)}")
    on_restored = getattr(args, "on_restored", None)  # `peerbackup restore NODE` logs it in the node's log
    if on_restored is not None:
        on_restored(snap, stats)
    return EXIT_PARTIAL if stats.errors else EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    repo = _open(args)
    a, b = repo.find_snapshot(args.snapshot1), repo.find_snapshot(args.snapshot2)
    changes = list(diff_trees(repo, a.tree, b.tree))
    if args.json:
        _print_json([{"change": c, "path": p} for c, p in changes])
    else:
        for c, p in changes:
            print(f"{c}  {p}")
        counts = {k: sum(1 for c, _ in changes if c == k) for k in "+-MT"}
        print(f"{counts['+']} added, {counts['-']} removed, {counts['M']} modified, "
              f"{counts['T']} type changed")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    repo = _open(args)
    res = check(repo, read_data=args.read_data)
    if args.json:
        _print_json({"ok": res.ok, "errors": res.errors, "warnings": res.warnings,
                     "snapshots": res.snapshots, "trees": res.trees, "packs": res.packs,
                     "packs_read": res.packs_read})
    else:
        for w in res.warnings:
            print(f"warning: {w}")
        for e in res.errors:
            print(f"error: {e}")
        print(f"checked {res.snapshots} snapshots, {res.trees} trees, {res.packs} packs"
              + (f" ({res.packs_read} read in full)" if args.read_data else ""))
        print("no errors found" if res.ok else f"{len(res.errors)} error(s) found")
    return EXIT_OK if res.ok else EXIT_ERROR


def _policy(args: argparse.Namespace) -> Policy:
    return Policy(last=args.keep_last, hourly=args.keep_hourly, daily=args.keep_daily,
                  weekly=args.keep_weekly, monthly=args.keep_monthly, yearly=args.keep_yearly).check()


def _group_json(p: GroupPlan) -> dict[str, Any]:
    group: dict[str, Any] = {k: (v.split(",") if v else []) if k in ("paths", "tags") else v for k, v in p.key}
    return {"group": group, "keep": p.keep, "remove": p.remove, "reasons": p.reasons,
            **({"held": p.held} if p.held else {})}


def _selected(snaps: list[Snapshot], args: argparse.Namespace) -> list[Snapshot]:
    """restic's filters: only snapshots of these hosts / with these paths / tags take part."""
    hosts, tags = getattr(args, "host", None) or [], getattr(args, "tag", None) or []
    paths = [os.path.abspath(p) for p in getattr(args, "path", None) or []]
    return [s for s in snaps if (not hosts or s.host in hosts) and (not paths or sorted(s.paths) == sorted(paths))
            and (not tags or set(tags) <= set(s.tags))]


def cmd_forget(args: argparse.Namespace) -> int:
    repo = _open(args, delete=not args.dry_run)
    snaps = repo.snapshots()
    policy = _policy(args)
    if args.snapshots:
        if not policy.empty():
            raise UsageError("forget takes snapshot ids or --keep-* options, not both")
        remove = [repo.find_snapshot(r).id for r in args.snapshots]
        plans = [GroupPlan((), [s.id for s in reversed(snaps) if s.id not in remove], remove, {})]
        if not args.dry_run:
            forget_snapshots(repo, remove)
    elif policy.empty():
        raise UsageError("forget needs snapshot ids or at least one --keep-* option")
    else:
        plans = forget_by_policy(repo, policy, parse_group_by(args.group_by), _selected(snaps, args),
                                 dry_run=args.dry_run)
    out: dict[str, Any] = {
        "keep": [sid for p in plans for sid in p.keep], "remove": removals(plans),
        "reasons": {sid: r for p in plans for sid, r in p.reasons.items()}, "dry_run": args.dry_run,
        "groups": [_group_json(p) for p in plans]}
    if args.prune and not args.dry_run:
        out["prune"] = _do_prune(repo, args)
    if args.json:
        _print_json(out)
    else:
        by_id = {s.id: s for s in snaps}
        for p in plans:
            if not args.snapshots:
                print(f"{p.describe()}: keep {len(p.keep)}, {'would remove' if args.dry_run else 'remove'} "
                      f"{len(p.remove)}" + (f" (held: {p.held})" if p.held else ""))
            for sid in p.keep:
                print(f"  keep    {sid[:8]}  {_local_time(by_id[sid].time_ns)}  {', '.join(p.reasons.get(sid, []))}")
            for sid in p.remove:
                print(f"  {'would remove' if args.dry_run else 'remove'}  {sid[:8]}  "
                      f"{_local_time(by_id[sid].time_ns)}")
        if "prune" in out:
            _print_prune(out["prune"])
    return EXIT_OK


def _do_prune(repo: Repository, args: argparse.Namespace) -> dict[str, Any]:
    st = prune(repo, grace=args.grace, dry_run=getattr(args, "dry_run", False))
    return dict(st.__dict__)


def _print_prune(p: dict[str, Any]) -> None:
    print(f"prune: {p['packs_marked']} packs marked, {p['packs_repacked']} repacked, "
          f"{p['packs_deleted']} deleted, {human_bytes(p['bytes_freed'])} freed")
    for m in p["messages"]:
        print(f"prune: {m}")


def cmd_prune(args: argparse.Namespace) -> int:
    repo = _open(args, delete=not args.dry_run)
    p = _do_prune(repo, args)
    if args.json:
        _print_json(p)
    else:
        _print_prune(p)
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    store = _store(args)
    read_config(store)
    keys, current = unlock(store, _password(args))
    if args.key_cmd == "list":
        items: list[dict[str, Any]] = [{"id": n, "current": n == current, "created": kf.created, "host": kf.host,
                  "user": kf.user} for n, kf in key_files(store)]
        if args.json:
            _print_json(items)
        else:
            rows = [[("*" if i["current"] else " ") + i["id"][:8], i["user"], i["host"],
                     _local_time(i["created"] * 10**9)] for i in items]
            print(_table(rows, [" ID", "User", "Host", "Created"]))
        return EXIT_OK
    if args.key_cmd == "add":
        new = _password(args, confirm=True, prompt="New passphrase: ",
                        env="PEERBACKUP_NEW_PASSWORD", file_opt="new_password_file")
        name = add_key(store, keys, new, kdf=_kdf())
        print(json.dumps({"id": name}) if args.json else f"added key {name[:8]}")
        return EXIT_OK
    # remove
    matches = [n for n, _ in store.list(FileType.KEY) if n.startswith(args.id)]
    if len(matches) != 1:
        raise UsageError(f"key id {args.id!r} matches {len(matches)} keys")
    if matches[0] == current:
        raise KeyInUse("refusing to remove the key you are using; open the repository with "
                       "another passphrase to remove this one")
    store.delete(FileType.KEY, matches[0])
    print(json.dumps({"removed": matches[0]}) if args.json else f"removed key {matches[0][:8]}")
    return EXIT_OK


# ---- parser ------------------------------------------------------------------------


def _latest_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", action="append", metavar="PATH", help="with latest: the newest snapshot of this path")
    p.add_argument("--host", action="append", metavar="HOST", help="with latest: the newest snapshot of this host")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peerbackup", description=__doc__)
    p.add_argument("--version", action="version", version=f"peerbackup {__version__}")
    top = p.add_subparsers(dest="cmd", required=True)

    demo = top.add_parser("demo", help="an office of three daemons on this machine backing up a sample folder")
    demo.add_argument("--dir", default=".run/demo", help="where the three homes live (default ./.run/demo)")

    from peerbackup.cli.office import add_parsers

    add_parsers(top)

    repo = top.add_parser("repo", help="a standalone local repository (USB disk, NAS mount)")
    sub = repo.add_subparsers(dest="repo_cmd", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", help="repository directory, or office:NODE for a backup node's repository "
                        "in the peer store (or PEERBACKUP_REPO)")
    common.add_argument("--home", help="peer home, for office:NODE (default: PEERBACKUP_HOME or the user data dir)")
    common.add_argument("--password-file", help="read the passphrase from this file")
    common.add_argument("--cache-dir", help="local cache directory (default ~/.cache/peerbackup)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress display")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help)
        sp.set_defaults(func=func)
        return sp

    add("init", cmd_init, "create a repository")
    b = add("backup", cmd_backup, "back up files and directories")
    b.add_argument("source", nargs="+")
    b.add_argument("--exclude", action="append", metavar="PATTERN")
    b.add_argument("--exclude-file", action="append", metavar="FILE")
    b.add_argument("--tag", action="append", default=[])
    add("snapshots", cmd_snapshots, "list snapshots")
    ls = add("ls", cmd_ls, "list the files of a snapshot")
    ls.add_argument("snapshot")
    ls.add_argument("path", nargs="?")
    ls.add_argument("-l", "--long", action="store_true")
    r = add("restore", cmd_restore, "restore a snapshot")
    r.add_argument("snapshot")
    r.add_argument("--target", required=True)
    r.add_argument("--include", action="append", metavar="PATH")
    r.add_argument("--overwrite", action="store_true", help="restore into a non-empty target")
    _latest_filters(r)
    d = add("diff", cmd_diff, "show what changed between two snapshots")
    d.add_argument("snapshot1")
    d.add_argument("snapshot2")
    c = add("check", cmd_check, "verify the repository")
    c.add_argument("--read-data", action="store_true", help="also read and verify every pack")
    f = add("forget", cmd_forget, "remove snapshots by id or by policy")
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
    pr = add("prune", cmd_prune, "delete data no snapshot needs")
    pr.add_argument("--dry-run", action="store_true")
    pr.add_argument("--grace", type=float, default=0.0,
                    help="seconds a mark must age before its packs are deleted (default 0)")
    k = add("key", cmd_key, "manage passphrases")
    k.add_argument("key_cmd", choices=["add", "list", "remove"])
    k.add_argument("id", nargs="?", help="key id (for remove)")
    k.add_argument("--new-password-file", help="new passphrase for `key add`")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.cmd == "demo":
            from peerbackup.cli.officedemo import run_office_demo

            return run_office_demo(args.dir)
        if getattr(args, "repo_cmd", None) == "key" and args.key_cmd == "remove" and not args.id:
            raise UsageError("key remove needs a key id (see `key list`)")
        try:
            rc: int = args.func(args)
        finally:
            while _closers:
                _closers.pop()()
        return rc
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
