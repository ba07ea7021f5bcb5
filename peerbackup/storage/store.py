"""The Store protocol: what the engine needs from any place that keeps a repository.

It is owned by its consumer (the engine) and deliberately small. Every backend
(local directory, memory, and the office's peers: office/peerstore.py) passes the same
conformance suite in tests/storage. A backend may also offer `upload(ftype) -> Upload`, a
file streamed to it piece by piece (LocalStore: into a temp file); open_upload() gives the
others a BufferedUpload over put(), so the engine writes packs the same way to every store.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
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


class Upload(Protocol):
    """A file written piece by piece and named only at the end (a pack: named by its hash)."""

    def write(self, piece: bytes | bytearray) -> None:
        """Append a piece; it must not change until commit() returns (a store may keep it till then).
        May raise StoreFull or StoreError; then call abort()."""

    def commit(self, name: str) -> None:
        """Store what was written under `name`, atomically, as put() would (same errors:
        ObjectExists, StoreFull, and nothing is left behind when it raises)."""

    def abort(self) -> None:
        """Drop what was written; safe to call after a failed write or commit, and twice."""


class BufferedUpload:
    """The Upload of a store that takes whole objects only: the pieces wait in memory for put()."""

    def __init__(self, store: Store, ftype: FileType) -> None:
        self._store, self._ftype = store, ftype
        self._pieces: list[bytes | bytearray] = []

    def write(self, piece: bytes | bytearray) -> None:
        self._pieces.append(piece)

    def commit(self, name: str) -> None:
        pieces, self._pieces = self._pieces, []
        self._store.put(self._ftype, name, pieces)

    def abort(self) -> None:
        self._pieces = []


def open_upload(store: Store, ftype: FileType) -> Upload:
    """The store's own streaming Upload (its `upload` method) if it has one, else a BufferedUpload."""
    upload: Callable[[FileType], Upload] | None = getattr(store, "upload", None)
    return upload(ftype) if upload is not None else BufferedUpload(store, ftype)


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
