"""Prune's mark files: the packs a prune condemned (engine/prune.py), read by every repository that opens.

Below both the repository (which treats blobs in marked packs as absent, so that no new snapshot comes
to depend on them) and prune (which writes and sweeps the marks): it needs only the store.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from peerbackup.core import codec
from peerbackup.core.crypto import content_hash
from peerbackup.errors import PeerBackupError
from peerbackup.storage.store import FileType, Store

MARK_VERSION = 1


@dataclass(frozen=True)
class Mark:
    name: str
    time: float
    packs: frozenset[bytes]


def read_marks(store: Store) -> list[Mark]:
    marks = []
    for name, _ in store.list(FileType.MARK):
        try:
            obj = codec.unpack_map(store.get(FileType.MARK, name), "mark")
            packs = obj["packs"]
            if not isinstance(packs, list) or not all(isinstance(p, bytes) for p in packs):
                continue
            marks.append(Mark(name, float(obj["time"]), frozenset(packs)))
        except (PeerBackupError, KeyError, TypeError, ValueError):
            continue
    return marks


def load_condemned(store: Store) -> set[bytes]:
    out: set[bytes] = set()
    for m in read_marks(store):
        out |= m.packs
    return out


def write_mark(store: Store, packs: list[bytes], time: float) -> None:
    body = codec.pack({"v": MARK_VERSION, "time": time, "host": socket.gethostname(), "packs": packs})
    store.put(FileType.MARK, content_hash(body).hex(), body)
