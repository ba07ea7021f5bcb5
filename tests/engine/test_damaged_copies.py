"""A blob that fails its checks makes the engine ask the store for another copy (Store.damaged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbackup.core.crypto import KdfParams
from peerbackup.engine.backup import Archiver
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.errors import IntegrityError
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import FileType
from tests.helpers import SMALL_CHUNKS, make_tree, snapshot_of


class TwoCopies(MemoryStore):
    """A store with a second copy of every pack; the first copy of each pack read is damaged."""

    def __init__(self) -> None:
        super().__init__()
        self.on_bad_copy: set[str] = set()  # packs whose next read comes from the damaged copy
        self.reports: list[str] = []

    def get(self, ftype: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = super().get(ftype, name, offset, length)
        if ftype == FileType.DATA and name in self.on_bad_copy and data:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0x10
            return bytes(flipped)
        return data

    def damaged(self, ftype: FileType, name: str) -> bool:
        self.reports.append(name)
        self.on_bad_copy.discard(name)
        return True


@pytest.mark.parametrize("other_copy", [True, False])
def test_restore_reads_another_copy_of_a_damaged_blob(tmp_path: Path, other_copy: bool) -> None:
    store = TwoCopies()
    Repository.init(store, b"pw", kdf=KdfParams.weak(), chunker=SMALL_CHUNKS)
    repo = Repository.open(store, b"pw", cache_root=tmp_path / "cache", pack_size=64 * 1024)
    src = tmp_path / "src"
    make_tree(src)
    snap = Archiver(repo).backup([str(src)]).snapshot
    packs = {n for n, _ in store.list(FileType.DATA)}
    store.on_bad_copy = set(packs)
    if not other_copy:
        store.damaged = lambda ftype, name: False  # type: ignore[method-assign]
        # One copy: the damage is an error, never silently wrong data.
        try:
            stats = Restorer(repo).restore(snap.tree, str(tmp_path / "out"))
        except IntegrityError:
            pass  # a damaged tree stops the restore
        else:
            assert stats.errors and all("altered" in e for e in stats.errors), stats.errors
    else:
        stats = Restorer(repo).restore(snap.tree, str(tmp_path / "out"))
        assert stats.errors == []
        assert snapshot_of(tmp_path / "out" / str(src).lstrip("/")) == snapshot_of(src)
        assert set(store.reports) <= packs and store.reports
    repo.close()
