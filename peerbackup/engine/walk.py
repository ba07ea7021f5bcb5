"""Walking snapshot trees: shared by restore, ls, diff, check and prune."""

from __future__ import annotations

from collections.abc import Iterator

from peerbackup.core.objects import Kind
from peerbackup.core.tree import DIR, Node, decode_tree
from peerbackup.engine.repository import Repository
from peerbackup.errors import NoSuchObject


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.load_blob(Kind.TREE, tree_id), f"tree {tree_id.hex()[:8]}")


def walk(repo: Repository, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """(path, node) of every entry below a tree, depth first, parents before children."""
    for node in load_tree(repo, tree_id):
        path = f"{prefix}/{node.name}"
        yield path, node
        if node.type == DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, path)


def find_path(repo: Repository, tree_id: bytes, path: str) -> Node | None:
    """The node at an absolute path inside a snapshot, or None for the root itself."""
    parts = [p for p in path.split("/") if p]
    node: Node | None = None
    current = tree_id
    for i, part in enumerate(parts):
        found = next((n for n in load_tree(repo, current) if n.name == part), None)
        if found is None:
            raise NoSuchObject("path", "/" + "/".join(parts[: i + 1]))
        node = found
        if i < len(parts) - 1:
            if found.type != DIR or found.subtree is None:
                raise NoSuchObject("directory", "/" + "/".join(parts[: i + 1]))
            current = found.subtree
    return node


def used_blobs(repo: Repository, roots: list[bytes]) -> tuple[set[bytes], set[bytes]]:
    """(data blob ids, tree ids) reachable from the given root trees."""
    data: set[bytes] = set()
    trees: set[bytes] = set()
    stack = list(roots)
    while stack:
        tid = stack.pop()
        if tid in trees:
            continue
        trees.add(tid)
        for node in load_tree(repo, tid):
            if node.type == DIR and node.subtree is not None:
                stack.append(node.subtree)
            else:
                data.update(node.content)
    return data, trees
