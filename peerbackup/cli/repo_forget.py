"""`peerbackup repo forget` and `repo prune`: remove snapshots (by id or by a keep policy), then the data
no snapshot needs."""

from __future__ import annotations

import argparse
from typing import Any

from peerbackup.cli.common import EXIT_OK, local_time, print_json
from peerbackup.cli.progress import human_bytes
from peerbackup.cli.repo import open_repo, selected
from peerbackup.core.retention import GroupPlan, Policy, parse_group_by, removals
from peerbackup.core.snapshot import Snapshot
from peerbackup.engine.prune import forget_by_policy, forget_snapshots, prune
from peerbackup.engine.repository import Repository
from peerbackup.errors import UsageError


def _policy(args: argparse.Namespace) -> Policy:
    return Policy(last=args.keep_last, hourly=args.keep_hourly, daily=args.keep_daily,
                  weekly=args.keep_weekly, monthly=args.keep_monthly, yearly=args.keep_yearly).check()


def _group_json(p: GroupPlan) -> dict[str, Any]:
    group: dict[str, Any] = {k: (v.split(",") if v else []) if k in ("paths", "tags") else v for k, v in p.key}
    return {"group": group, "keep": p.keep, "remove": p.remove, "reasons": p.reasons,
            **({"held": p.held} if p.held else {})}


def _plans(args: argparse.Namespace, repo: Repository, snaps: list[Snapshot]) -> list[GroupPlan]:
    """What forget keeps and removes (and, unless --dry-run, removes it)."""
    policy = _policy(args)
    if args.snapshots:
        if not policy.empty():
            raise UsageError("forget takes snapshot ids or --keep-* options, not both")
        remove = [repo.find_snapshot(r).id for r in args.snapshots]
        plans = [GroupPlan((), [s.id for s in reversed(snaps) if s.id not in remove], remove, {})]
        if not args.dry_run:
            forget_snapshots(repo, remove)
        return plans
    if policy.empty():
        raise UsageError("forget needs snapshot ids or at least one --keep-* option")
    return forget_by_policy(repo, policy, parse_group_by(args.group_by), selected(snaps, args),
                            dry_run=args.dry_run)


def cmd_forget(args: argparse.Namespace) -> int:
    repo = open_repo(args, delete=not args.dry_run)
    snaps = repo.snapshots()
    plans = _plans(args, repo, snaps)
    out: dict[str, Any] = {
        "keep": [sid for p in plans for sid in p.keep], "remove": removals(plans),
        "reasons": {sid: r for p in plans for sid, r in p.reasons.items()}, "dry_run": args.dry_run,
        "groups": [_group_json(p) for p in plans]}
    if args.prune and not args.dry_run:
        out["prune"] = _do_prune(repo, args)
    if args.json:
        print_json(out)
        return EXIT_OK
    by_id = {s.id: s for s in snaps}
    for p in plans:
        if not args.snapshots:
            print(f"{p.describe()}: keep {len(p.keep)}, {'would remove' if args.dry_run else 'remove'} "
                  f"{len(p.remove)}" + (f" (held: {p.held})" if p.held else ""))
        for sid in p.keep:
            print(f"  keep    {sid[:8]}  {local_time(by_id[sid].time_ns)}  {', '.join(p.reasons.get(sid, []))}")
        for sid in p.remove:
            print(f"  {'would remove' if args.dry_run else 'remove'}  {sid[:8]}  "
                  f"{local_time(by_id[sid].time_ns)}")
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
    repo = open_repo(args, delete=not args.dry_run)
    p = _do_prune(repo, args)
    if args.json:
        print_json(p)
    else:
        _print_prune(p)
    return EXIT_OK
