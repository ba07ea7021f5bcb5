"""An in-memory Store for tests; the conformance suite holds it to the real ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from peerbackup.errors import NoSuchObject, ObjectExists
from peerbackup.storage.store import MUTABLE, FileType, Payload, payload_bytes


class MemoryStore:
    def __init__(self, location: str = "memory:") -> None:
        self.location = location
        self._files: dict[tuple[FileType, str], bytes] = {}
        self._lock = threading.Lock()

    def put(self, ftype: FileType, name: str, data: Payload) -> None:
        with self._lock:
            if (ftype, name) in self._files and ftype not in MUTABLE:
                raise ObjectExists(ftype.value, name)
            self._files[(ftype, name)] = payload_bytes(data)

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._lock:
            try:
                data = self._files[(ftype, name)]
            except KeyError:
                raise NoSuchObject(ftype.value, name) from None
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def size(self, ftype: FileType, name: str) -> int:
        return len(self.get(ftype, name))

    def list(self, ftype: FileType) -> Iterator[tuple[str, int]]:
        with self._lock:
            items = [(n, len(d)) for (t, n), d in self._files.items() if t == ftype]
        yield from items

    def delete(self, ftype: FileType, name: str) -> None:
        with self._lock:
            self._files.pop((ftype, name), None)

    def exists(self, ftype: FileType, name: str) -> bool:
        with self._lock:
            return (ftype, name) in self._files

    def damaged(self, ftype: FileType, name: str) -> bool:
        return False  # one copy: nothing else to read
