"""A pack being filled: its pieces streamed to the store as they come, hashed on the way to its name.

The repository keeps one `Packer` per kind of blob and commits each full pack's `PackStream`.
"""

from __future__ import annotations

import threading

from peerbackup.core.crypto import content_hasher
from peerbackup.core.pack import PackWriter
from peerbackup.storage.store import FileType, Store, open_upload

# A pack's pieces reach the store in writes of about this size (PackStream).
STREAM_WRITE = 1024 * 1024


class PackStream:
    """A pack written to the store as it fills (open_upload), and hashed on the way to its name.

    Only the pack's entries stay in memory: three 16 MiB packs used to (filling, queued, being
    written). Small pieces are gathered into writes of STREAM_WRITE bytes: one write per 10 KiB
    blob cost ~2 CPU s on 50,000 small files. A failed write poisons the stream, so no later
    piece lands at a wrong offset."""

    def __init__(self, store: Store) -> None:
        self._upload = open_upload(store, FileType.DATA)
        self._hash = content_hasher()
        self._failed: BaseException | None = None
        self._pieces: list[bytes | bytearray] = []
        self._gathered = 0

    def write(self, piece: bytes | bytearray) -> None:
        if self._failed is not None:
            raise self._failed
        self._pieces.append(piece)
        self._gathered += len(piece)
        if self._gathered >= STREAM_WRITE:
            self._flush()

    def _flush(self) -> None:
        pieces, self._pieces, self._gathered = self._pieces, [], 0
        if not pieces:
            return
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            self._upload.write(data)
        except BaseException as exc:
            self._failed = exc
            self._upload.abort()
            raise
        self._hash.update(data)

    def commit(self) -> bytes:
        """Store the pack under its hash; returns the pack id."""
        if self._failed is not None:
            raise self._failed
        self._flush()
        pack_id = bytes(self._hash.digest())
        self._upload.commit(pack_id.hex())
        return pack_id

    def abort(self) -> None:
        self._pieces, self._gathered = [], 0
        self._upload.abort()


class Packer:
    """The pack a kind of blob is filling; `lock` keeps its pieces in order in the stream."""

    def __init__(self, store: Store) -> None:
        self.lock = threading.Lock()
        self.stream = PackStream(store)
        self.writer = PackWriter(sink=self.stream.write)

    def take(self, store: Store) -> tuple[PackWriter, PackStream]:
        """The pack so far, replaced by a new one. Under `lock`."""
        full = self.writer, self.stream
        self.stream = PackStream(store)
        self.writer = PackWriter(sink=self.stream.write)
        return full
