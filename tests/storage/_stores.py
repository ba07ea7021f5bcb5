"""Shared by the Store conformance suite and LocalStore's own tests: a file's bytes and the name a writer
gives it.
"""

from __future__ import annotations

from peerbackup.core.crypto import content_hash
from peerbackup.storage.store import FileType

DATA = bytes(range(256)) * 4
NAME = content_hash(DATA).hex()


def named(ftype: FileType, data: bytes = DATA) -> str:
    """The name a writer gives a file: "config" for the one config file, the BLAKE3 hash of
    the bytes for every other immutable kind (the peer store checks it), anything for a lock."""
    if ftype == FileType.CONFIG:
        return "config"
    return "lock-1" if ftype == FileType.LOCK else content_hash(data).hex()
