"""`peerbackup repo ...`: opening a repository (a local one, or a backup node's as office:NODE) and the
commands that read it: init, snapshots, ls, restore, diff, check, key."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from peerbackup.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARTIAL,
    closers,
    home_of,
    is_office,
    kdf,
    local_time,
    password,
    print_json,
    show,
)
from peerbackup.cli.progress import Progress, human_bytes
from peerbackup.cli.tables import table
from peerbackup.core.snapshot import Snapshot
from peerbackup.core.tree import DIR, Node
from peerbackup.engine.check import check
from peerbackup.engine.diff import diff_trees
from peerbackup.engine.keyfiles import add_key, key_files, read_config, unlock
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.engine.walk import find_path, walk
from peerbackup.errors import KeyInUse, UsageError
from peerbackup.storage.local import LocalStore
from peerbackup.storage.store import FileType

Ended = Callable[[dict[str, Any]], None]


def _repo_arg(args: argparse.Namespace) -> str:
    repo: str | None = args.repo or os.environ.get("PEERBACKUP_REPO")
    if not repo:
        raise UsageError("no repository: give --repo PATH (or office:NODE) or set PEERBACKUP_REPO")
    return repo


def local_store(args: argparse.Namespace) -> LocalStore:
    repo = _repo_arg(args)
    if is_office(repo):
        raise UsageError(f"`repo {args.repo_cmd}` is for a local repository: a backup node's repository "
                         "is created with `peerbackup node add` and needs no passphrase")
    return LocalStore(repo)


def open_repo(args: argparse.Namespace, delete: bool = False, backup: list[str] | None = None,
              ended: list[Ended] | None = None) -> Repository:
    """The repository; for a `backup` into a node's, `ended` gets how to tell its job how it ended."""
    repo = _repo_arg(args)
    if is_office(repo):
        # Imported here: cli/officerepo pulls in aiohttp and the peer store (~0.15 s of imports),
        # which a local repository's commands never use.
        from peerbackup.cli.officerepo import open_office

        office = open_office(home_of(args), repo, delete=delete, backup=backup)
        closers.append(office.close)
        if ended is not None:
            ended.append(office.ended)
        return Repository(office.store, office.keys, office.config, cache_root=args.cache_dir)
    store = local_store(args)
    read_config(store)  # "not a repository" before asking for a passphrase
    return Repository.open(store, password(args), cache_root=args.cache_dir)


def snap_json(s: Snapshot) -> dict[str, Any]:
    return {
        "id": s.id, "short_id": s.short_id, "time": s.time.isoformat(), "host": s.host,
        "user": s.user, "paths": s.paths, "tags": s.tags, "tree": s.tree.hex(),
        "parent": s.parent, "program": s.program, "summary": s.summary.to_wire(), "extra": s.extra,
    }


def selected(snaps: list[Snapshot], args: argparse.Namespace) -> list[Snapshot]:
    """restic's filters: only snapshots of these hosts / with these paths / tags take part."""
    hosts, tags = getattr(args, "host", None) or [], getattr(args, "tag", None) or []
    paths = [os.path.abspath(p) for p in getattr(args, "path", None) or []]
    return [s for s in snaps if (not hosts or s.host in hosts) and (not paths or sorted(s.paths) == sorted(paths))
            and (not tags or set(tags) <= set(s.tags))]


def _find(repo: Repository, ref: str, args: argparse.Namespace) -> Snapshot:
    """A snapshot by id prefix or `latest`; with --path/--host, `latest` is the newest snapshot of those
    (a repository or node holding several folders has a latest snapshot per folder)."""
    if ref != "latest" or not (getattr(args, "path", None) or getattr(args, "host", None)):
        return repo.find_snapshot(ref)
    snaps = selected(repo.snapshots(errors=[]), args)
    if not snaps:
        raise UsageError(f"no snapshot of {', '.join((args.path or []) + (getattr(args, 'host', None) or []))} "
                         "in the repository")
    return snaps[-1]


def cmd_init(args: argparse.Namespace) -> int:
    store = local_store(args)
    pw = password(args, confirm=True, prompt="New passphrase: ")
    repo_id = Repository.init(store, pw, kdf=kdf())
    show(args.json, {"id": repo_id, "repository": store.location},
         f"created peerbackup repository {repo_id[:10]} at {store.location}",
         "Keep the passphrase safe: without it the repository cannot be read.")
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    errors: list[str] = []
    snaps = repo.snapshots(errors=errors)
    if args.json:
        print_json([snap_json(s) for s in snaps])
    else:
        rows = [[s.short_id, local_time(s.time_ns), s.host, ",".join(s.tags),
                 ", ".join(s.paths), human_bytes(s.summary.bytes_processed)] for s in snaps]
        print(table(["ID", "Time", "Host", "Tags", "Paths", "Size"], rows, rule=True))
        print(f"{len(snaps)} snapshot(s)")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return EXIT_ERROR if errors else EXIT_OK


def _node_json(path: str, n: Node) -> dict[str, Any]:
    return {"path": path, "type": n.type, "mode": oct(n.mode), "uid": n.uid, "gid": n.gid,
            "mtime": dt.datetime.fromtimestamp(n.mtime_ns / 1e9, tz=dt.UTC).isoformat(),
            "size": n.size, **({"target": n.target} if n.target else {})}


def cmd_ls(args: argparse.Namespace) -> int:
    repo = open_repo(args)
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
        print_json([_node_json(p, n) for p, n in items])
    else:
        for p, n in items:
            if args.long:
                print(f"{n.type[0] if n.type != 'file' else '-'}{oct(n.mode)[2:]:>5} "
                      f"{n.uid:>5} {n.gid:>5} {n.size:>12} {local_time(n.mtime_ns)} {p}")
            else:
                print(p + ("/" if n.type == DIR else ""))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    snap = _find(repo, args.snapshot, args)
    progress = Progress.for_terminal(args.quiet or args.json)
    progress.start()
    try:
        s = snap.summary
        total = None if args.include else (s.files_new + s.files_changed + s.files_unmodified, s.bytes_processed)
        stats = Restorer(repo, overwrite=args.overwrite, progress=progress, sparse=not args.no_sparse).restore(
            snap.tree, args.target, includes=args.include, total=total
        )
    finally:
        progress.stop()
    if args.json:
        print_json({"snapshot": snap.id, "target": os.path.abspath(args.target),
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
    repo = open_repo(args)
    a, b = repo.find_snapshot(args.snapshot1), repo.find_snapshot(args.snapshot2)
    changes = list(diff_trees(repo, a.tree, b.tree))
    if args.json:
        print_json([{"change": c, "path": p} for c, p in changes])
    else:
        for c, p in changes:
            print(f"{c}  {p}")
        counts = {k: sum(1 for c, _ in changes if c == k) for k in "+-MT"}
        print(f"{counts['+']} added, {counts['-']} removed, {counts['M']} modified, "
              f"{counts['T']} type changed")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    repo = open_repo(args)
    res = check(repo, read_data=args.read_data)
    if args.json:
        print_json({"ok": res.ok, "errors": res.errors, "warnings": res.warnings,
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


def cmd_key(args: argparse.Namespace) -> int:
    store = local_store(args)
    read_config(store)
    keys, current = unlock(store, password(args))
    if args.key_cmd == "list":
        items: list[dict[str, Any]] = [{"id": n, "current": n == current, "created": kf.created, "host": kf.host,
                  "user": kf.user} for n, kf in key_files(store)]
        if args.json:
            print_json(items)
        else:
            rows = [[("*" if i["current"] else " ") + i["id"][:8], i["user"], i["host"],
                     local_time(i["created"] * 10**9)] for i in items]
            print(table([" ID", "User", "Host", "Created"], rows, rule=True))
        return EXIT_OK
    if args.key_cmd == "add":
        new = password(args, confirm=True, prompt="New passphrase: ",
                       env="PEERBACKUP_NEW_PASSWORD", file_opt="new_password_file")
        name = add_key(store, keys, new, kdf=kdf())
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
