"""What a restore plans as it walks the snapshot's trees, before anything is written.

Which snapshot paths it takes (`included`), each file to write with its chunks' places, offsets and
holes (`FileJob`, cut into segments for the pool), and a directory's subtrees read ahead
(`SubtreeReader`).
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.core.objects import Kind
from peerbackup.core.pack import BlobEntry
from peerbackup.core.tree import Node
from peerbackup.engine.repository import Repository
from peerbackup.engine.sparse import HoleMap
from peerbackup.errors import PeerBackupError

SEGMENT = 64 * 1024 * 1024  # large files are split into segments of about this size


@dataclass
class FileJob:
    """A file to write: where it goes, its node, and where each of its chunks is."""

    path: str
    node: Node
    offsets: list[int]  # start of each chunk in the file
    places: list[tuple[bytes, BlobEntry] | None]  # (pack, entry) of each chunk, None if missing
    holes: HoleMap | None = None  # where the data goes around the file's holes; offsets skip them

    @property
    def sizes(self) -> list[int]:
        """Plaintext size of each chunk; 0 for one the index does not have."""
        return [p[1].raw_length if p else 0 for p in self.places]

    @property
    def hole_bytes(self) -> int:
        return sum(n for _, n in self.holes.holes) if self.holes is not None else 0

    def segments(self) -> list[tuple[int, int]]:
        """The chunks [a, b) of each segment: about SEGMENT bytes each, written by one task."""
        segs = []
        start = 0
        acc = 0
        sizes = self.sizes
        for i, size in enumerate(sizes):
            acc += size
            if acc >= SEGMENT:
                segs.append((start, i + 1))
                start, acc = i + 1, 0
        if start < len(sizes):
            segs.append((start, len(sizes)))
        return segs


def included(path: str, includes: list[str]) -> tuple[bool, bool]:
    """(restore this entry, descend into it) for a snapshot path."""
    if not includes:
        return True, True
    for inc in includes:
        if path == inc or path.startswith(inc + "/"):
            return True, True
        if inc.startswith(path + "/"):
            return False, True  # an ancestor of something included
    return False, False


class SubtreeReader:
    """A directory's subtrees, read ahead a batch at a time (one index query and
    one read per pack range), in the order the walk descends into them."""

    BATCH = 64  # bounds what is held: at most this many trees per level of the walk

    def __init__(self, repo: Repository, tree_ids: list[bytes]) -> None:
        self.repo = repo
        self.pending = tree_ids[::-1]
        self.trees: dict[bytes, bytes | bytearray | PeerBackupError] = {}

    def get(self, tree_id: bytes) -> bytes | bytearray | None:
        """The tree's plaintext, or None: then load_tree reads it (and reports any error)."""
        if tree_id not in self.trees and self.pending:
            # The walk asks in list order, so the next batch holds this tree.
            batch = [self.pending.pop() for _ in range(min(self.BATCH, len(self.pending)))]
            found = self.repo.index.lookup_many(batch, for_reading=True)
            self.trees = self.repo.read_blobs(Kind.TREE, found)
        got = self.trees.get(tree_id)
        return got if isinstance(got, bytes | bytearray) else None
