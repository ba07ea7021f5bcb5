"""The Store protocol: what the engine needs from any place that keeps a repository.

It is owned by its consumer (the engine) and deliberately small. Every backend
(local directory, memory, and the office's peers: office/peerstore.py) passes the same
conformance suite in tests/storage.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import Protocol


class FileType(enum.StrEnum):
    CONFIG = "config"
    KEY = "keys"
    DATA = "data"
    INDEX = "index"
    SNAPSHOT = "snapshots"
    LOCK = "locks"
    MARK = "marks"  # prune's condemned-pack lists (see engine/prune.py)


# What put() accepts: bytes, or a list of pieces to be stored one after the
# other (a pack is written from its blobs without first joining them).
Payload = bytes | bytearray | Sequence[bytes | bytearray]


def payload_bytes(data: Payload) -> bytes:
    return bytes(data) if isinstance(data, bytes | bytearray) else b"".join(data)


# Kinds whose files may be rewritten in place: a lock is refreshed by its owner.
MUTABLE = frozenset({FileType.LOCK})


class Store(Protocol):
    location: str

    def put(self, ftype: FileType, name: str, data: Payload) -> None:
        """Store data atomically: readers see all of it or nothing.

        Raises ObjectExists if the name is taken (except for MUTABLE kinds),
        StoreFull when the medium is full (nothing is left behind).
        """

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read a whole file or a byte range. Raises NoSuchObject."""

    def size(self, ftype: FileType, name: str) -> int:
        """Raises NoSuchObject."""

    def list(self, ftype: FileType) -> Iterator[tuple[str, int]]:
        """Yield (name, size) of every file of a kind, in no particular order."""

    def delete(self, ftype: FileType, name: str) -> None:
        """Remove a file; removing a missing file is not an error."""

    def exists(self, ftype: FileType, name: str) -> bool: ...

    def damaged(self, ftype: FileType, name: str) -> bool:
        """The bytes last read of a file failed the reader's checks (a flipped bit).

        True when the store has another copy that the next get() will return instead
        (the peer store); False when there is no other copy to try (a directory)."""
