"""Differences between two snapshots, by walking both trees in step.

Subtrees with the same id are identical and skipped, so a diff of two
snapshots of a large, mostly unchanged tree reads only what changed.
"""

from __future__ import annotations

from collections.abc import Iterator

from peerbackup.core.tree import DIR, Node
from peerbackup.engine.repository import Repository
from peerbackup.engine.walk import load_tree, walk


def _changed(a: Node, b: Node) -> bool:
    if a.type != b.type:
        return True
    if a.type == DIR:
        return (a.mode, a.uid, a.gid) != (b.mode, b.uid, b.gid)
    return (a.content, a.holes, a.target, a.mode, a.uid, a.gid, a.mtime_ns, a.size) != (
        b.content, b.holes, b.target, b.mode, b.uid, b.gid, b.mtime_ns, b.size
    )


def diff_trees(repo: Repository, a: bytes | None, b: bytes | None, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield (change, path): '+' added, '-' removed, 'M' modified, 'T' type changed."""
    if a == b:
        return
    left = {n.name: n for n in load_tree(repo, a)} if a else {}
    right = {n.name: n for n in load_tree(repo, b)} if b else {}
    for name in sorted(left.keys() | right.keys()):
        path = f"{prefix}/{name}"
        x, y = left.get(name), right.get(name)
        if x is None and y is not None:
            yield "+", path + ("/" if y.type == DIR else "")
            if y.type == DIR and y.subtree:
                for p, n in walk(repo, y.subtree, path):
                    yield "+", p + ("/" if n.type == DIR else "")
        elif y is None and x is not None:
            yield "-", path + ("/" if x.type == DIR else "")
            if x.type == DIR and x.subtree:
                for p, n in walk(repo, x.subtree, path):
                    yield "-", p + ("/" if n.type == DIR else "")
        elif x is not None and y is not None:
            if x.type != y.type:
                yield "T", path
            elif x.type == DIR:
                if _changed(x, y):
                    yield "M", path + "/"
                yield from diff_trees(repo, x.subtree, y.subtree, path)
            elif _changed(x, y):
                yield "M", path
