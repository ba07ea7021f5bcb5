"""Snapshots: the root of one backup and its statistics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from peerbackup.core import codec
from peerbackup.core.crypto import ID_SIZE
from peerbackup.errors import FormatError, UnsupportedVersion

SNAPSHOT_VERSION = 1


@dataclass
class Summary:
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs: int = 0
    data_blobs_added: int = 0
    tree_blobs_added: int = 0
    bytes_processed: int = 0  # plaintext bytes of every file in the snapshot
    bytes_read: int = 0  # bytes actually read (files not skipped by the file cache)
    bytes_added: int = 0  # plaintext bytes of new blobs
    bytes_stored: int = 0  # sealed bytes of new blobs, after compression
    errors: int = 0
    duration: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_wire(cls, obj: Any) -> Summary:
        s = cls()
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in s.__dict__ and isinstance(v, int | float) and not isinstance(v, bool):
                    setattr(s, k, v)
        return s


@dataclass
class Snapshot:
    time_ns: int
    host: str
    user: str
    paths: list[str]
    tree: bytes
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    summary: Summary = field(default_factory=Summary)
    program: str = ""
    # Office mode: who took the snapshot for which backup node. Empty standalone.
    extra: dict[str, str] = field(default_factory=dict)
    id: str = ""  # name of the stored file; not part of its content

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time_ns / 1e9, tz=dt.UTC)

    def to_bytes(self) -> bytes:
        return codec.pack({
            "v": SNAPSHOT_VERSION, "time": self.time_ns, "host": self.host, "user": self.user,
            "paths": self.paths, "tree": self.tree, "tags": self.tags, "parent": self.parent,
            "summary": self.summary.to_wire(), "program": self.program, "extra": self.extra,
        })

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, snap_id: str) -> Snapshot:
        what = f"snapshot {snap_id[:8]}"
        obj = codec.unpack_map(data, what)
        version = codec.field(obj, "v", int, what)
        if version > SNAPSHOT_VERSION:
            raise UnsupportedVersion(what, version, SNAPSHOT_VERSION)
        tree = codec.field(obj, "tree", bytes, what)
        paths = codec.field(obj, "paths", list, what)
        tags = obj.get("tags") or []
        parent = obj.get("parent")
        extra = obj.get("extra") or {}
        if (
            len(tree) != ID_SIZE
            or not all(isinstance(p, str) for p in paths)
            or not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
            or not (parent is None or isinstance(parent, str))
            or not isinstance(extra, dict)
        ):
            raise FormatError(what, "bad field")
        return cls(
            time_ns=codec.field(obj, "time", int, what),
            host=codec.field(obj, "host", str, what),
            user=codec.field(obj, "user", str, what),
            paths=paths, tree=tree, tags=tags, parent=parent,
            summary=Summary.from_wire(obj.get("summary")),
            program=str(obj.get("program", "")),
            extra={str(k): str(v) for k, v in extra.items()},
            id=snap_id,
        )
