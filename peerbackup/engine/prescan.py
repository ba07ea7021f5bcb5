"""Counting what a backup will read, ahead of it, so progress can be shown as a share with an ETA.

A plain walk of lstat and scandir, honouring the excludes; unreadable entries are
skipped (the backup itself reports them). Pure of the repository.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from peerbackup.engine.excludes import Excluder


def count(paths: list[str], excluder: Excluder | None = None,
          on_update: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """(files, bytes) of the regular files below `paths`; `on_update` sees the totals grow."""
    files = size = 0
    stack = list(paths)
    while stack:
        p = stack.pop()
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            try:
                with os.scandir(p) as it:
                    for e in it:
                        if not (excluder and excluder.excluded(e.path, e.name)):
                            stack.append(e.path)
            except OSError:
                continue
        elif os.path.isfile(p):
            files += 1
            size += st.st_size
            if on_update is not None:
                on_update(files, size)
    return files, size
