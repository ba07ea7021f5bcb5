"""Directory trees: one object per directory, listing its entries by name.

Names are kept as the file system's bytes on the wire (Linux names need not be
UTF-8) and as surrogate-escaped str in memory, the way os.fsdecode gives them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import codec
from peerbackup.core.crypto import ID_SIZE
from peerbackup.errors import FormatError, UnsupportedVersion

# 2: a file may record holes ("h"). A tree is written as version 1 unless one of its files has holes, so
# trees without any keep their ids (and deduplicate against older snapshots), and a reader too old for
# holes refuses a tree that has them instead of restoring the data at the wrong offsets.
TREE_VERSION = 2
_PLAIN_TREE_VERSION = 1

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
FIFO = "fifo"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"
SOCKET = "socket"
TYPES = (FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV, SOCKET)


@dataclass(slots=True)
class Node:
    name: str
    type: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    target: str = ""  # symlink target
    content: list[bytes] = field(default_factory=list)  # chunk ids of a file
    subtree: bytes | None = None  # tree id of a directory
    rdev: int = 0
    # Hard links: set only when the file has more than one link.
    links: int = 1
    inode: int = 0
    dev: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    # Holes of a file: (offset, length) ranges of zeros, sorted and apart; content is the rest, in order.
    holes: list[tuple[int, int]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        w: dict[str, Any] = {
            "n": os.fsencode(self.name), "t": self.type, "m": self.mode,
            "u": self.uid, "g": self.gid, "mt": self.mtime_ns,
        }
        if self.type == FILE:
            w["s"] = self.size
            w["c"] = self.content
            if self.holes:
                w["h"] = [[o, n] for o, n in self.holes]
        if self.type == DIR:
            w["st"] = self.subtree
        if self.type == SYMLINK:
            w["l"] = os.fsencode(self.target)
        if self.type in (CHARDEV, BLOCKDEV):
            w["rd"] = self.rdev
        if self.links > 1:
            w["hl"] = [self.links, self.dev, self.inode]
        if self.xattrs:
            w["x"] = {os.fsencode(k): v for k, v in self.xattrs.items()}
        return w

    @classmethod
    def from_wire(cls, w: Any, what: str) -> Node:
        if not isinstance(w, dict):
            raise FormatError(what, "tree entry is not a map")
        name = codec.field(w, "n", bytes, what)
        node = cls(
            name=os.fsdecode(name),
            type=codec.field(w, "t", str, what),
            mode=codec.field(w, "m", int, what),
            uid=codec.field(w, "u", int, what),
            gid=codec.field(w, "g", int, what),
            mtime_ns=codec.field(w, "mt", int, what),
        )
        if node.type not in TYPES:
            raise FormatError(what, f"unknown entry type {node.type!r}")
        if node.type == FILE:
            node.size = codec.field(w, "s", int, what)
            content = codec.field(w, "c", list, what)
            if not all(isinstance(c, bytes) and len(c) == ID_SIZE for c in content):
                raise FormatError(what, "bad chunk id")
            node.content = content
            if "h" in w:
                node.holes = _holes(w["h"], node.size, what)
        elif node.type == DIR:
            subtree = codec.field(w, "st", bytes, what)
            if len(subtree) != ID_SIZE:
                raise FormatError(what, "bad subtree id")
            node.subtree = subtree
        elif node.type == SYMLINK:
            node.target = os.fsdecode(codec.field(w, "l", bytes, what))
        elif node.type in (CHARDEV, BLOCKDEV):
            node.rdev = codec.field(w, "rd", int, what)
        if "hl" in w:
            hl = w["hl"]
            if not (isinstance(hl, list) and len(hl) == 3 and all(isinstance(x, int) for x in hl)):
                raise FormatError(what, "bad hard link record")
            node.links, node.dev, node.inode = hl
        if "x" in w:
            xattrs = w["x"]
            if not isinstance(xattrs, dict) or not all(
                isinstance(k, bytes) and isinstance(v, bytes) for k, v in xattrs.items()
            ):
                raise FormatError(what, "bad xattrs")
            node.xattrs = {os.fsdecode(k): v for k, v in xattrs.items()}
        return node


def _holes(raw: Any, size: int, what: str) -> list[tuple[int, int]]:
    """Holes as a reader may trust them: sorted, apart, non-empty, inside the file."""
    if not isinstance(raw, list):
        raise FormatError(what, "bad holes")
    out: list[tuple[int, int]] = []
    end = 0
    for h in raw:
        if not (isinstance(h, list) and len(h) == 2 and all(type(x) is int for x in h)):
            raise FormatError(what, "bad hole")
        o, n = h
        if o < end or n <= 0 or o + n > size:
            raise FormatError(what, "holes overlap, are out of order or outside the file")
        out.append((o, n))
        end = o + n
    return out


def is_safe_name(name: str) -> bool:
    """A name that, joined to a directory, stays inside it."""
    return name not in ("", ".", "..") and "/" not in name and "\0" not in name


def encode_tree(nodes: list[Node]) -> bytes:
    nodes = sorted(nodes, key=lambda n: os.fsencode(n.name))
    version = TREE_VERSION if any(n.holes for n in nodes) else _PLAIN_TREE_VERSION
    return codec.pack({"v": version, "nodes": [n.to_wire() for n in nodes]})


def decode_tree(data: bytes | bytearray, what: str = "tree") -> list[Node]:
    obj = codec.unpack_map(data, what)
    version = codec.field(obj, "v", int, what)
    if version > TREE_VERSION:
        raise UnsupportedVersion(what, version, TREE_VERSION)
    return [Node.from_wire(w, what) for w in codec.field(obj, "nodes", list, what)]
