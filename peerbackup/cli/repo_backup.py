"""`peerbackup repo backup`: back files up into a local repository or, on an agent, a backup node's."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from peerbackup.cli.common import EXIT_OK, EXIT_PARTIAL, print_json
from peerbackup.cli.progress import Progress, human_bytes
from peerbackup.cli.repo import Ended, open_repo, snap_json
from peerbackup.core.jobs import tally
from peerbackup.core.nodelog import MAX_FAILED, MAX_FAILED_PATH
from peerbackup.engine.backup import Archiver
from peerbackup.engine.backupreport import BackupResult
from peerbackup.engine.excludes import Excluder, read_exclude_file
from peerbackup.engine.memory import tune_allocator
from peerbackup.engine.prescan import count
from peerbackup.errors import PartialBackup, PeerBackupError, UsageError


def _prescan(paths: list[str], excluder: Excluder, progress: Progress) -> None:
    """Count files and bytes ahead of the backup so the display can show an ETA."""

    def update(files: int, size: int) -> None:
        progress.total_files, progress.total_bytes = files, size

    update(*count(paths, excluder, update))


def _excluder(args: argparse.Namespace) -> Excluder:
    patterns = list(args.exclude or [])
    for f in args.exclude_file or []:
        try:
            patterns += read_exclude_file(f)
        except OSError as exc:
            raise UsageError(f"cannot read exclude file {f}: {exc.strerror}") from None
    return Excluder(patterns)


def cmd_backup(args: argparse.Namespace) -> int:
    excluder = _excluder(args)
    for s in args.source:
        if not os.path.lexists(s):
            raise UsageError(f"source {s} does not exist")
    tune_allocator()  # backup only: restore measured faster without it
    ended: list[Ended] = []  # into a node's repository on an agent: a job of the node (office/adhoc.py)
    repo = open_repo(args, backup=[os.path.abspath(s) for s in args.source], ended=ended)
    progress = Progress.for_terminal(args.quiet or args.json)
    if progress.enabled:
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
    return _report(args, result, ended)


def _report(args: argparse.Namespace, result: BackupResult, ended: list[Ended]) -> int:
    snap, errors = result.snapshot, result.errors
    s = snap.summary
    failed = {str(f): f for f in result.failures}
    partial = {"result": "partial", "failures": len(result.failures),
               "failed": [{"path": f.path[-MAX_FAILED_PATH:], "reason": f.reason}
                          for f in result.failures[:MAX_FAILED]]}
    _job_ended(ended, {"state": "done", "snapshots": [snap.id], "errors": len(errors), "added": s.bytes_added,
                       **(partial if result.failures else {})})
    if args.json:
        print_json({"snapshot": snap_json(snap), "errors": errors,
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
