"""Key epochs: new data under a new data key, old data still readable, dedup intact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peerbackup.core.keys import KeySet
from peerbackup.core.objects import Kind
from peerbackup.engine.backup import Archiver
from peerbackup.engine.repository import Repository
from peerbackup.engine.restore import Restorer
from peerbackup.errors import DecryptError, FormatError
from peerbackup.storage.memory import MemoryStore
from peerbackup.storage.store import FileType


def test_rotation_keeps_dedup_and_old_data(tmp_path: Path) -> None:
    store = MemoryStore()
    keys = KeySet.generate(os.urandom)
    Repository.init(store, b"unused", keys=keys)
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(200_000)
    (src / "a.bin").write_bytes(data)
    os.utime(src / "a.bin", (1_600_000_000, 1_600_000_000))

    old = Repository(store, keys, _config(store), cache_root=tmp_path / "c1")
    first = Archiver(old).backup([str(src)]).snapshot
    old.close()

    rotated = keys.rotated(os.urandom)
    assert rotated.epoch == 1 and rotated.id_key == keys.id_key
    repo = Repository(store, rotated, _config(store), cache_root=tmp_path / "c2")
    (src / "b.bin").write_bytes(b"new data after rotation" * 1000)
    second = Archiver(repo).backup([str(src)]).snapshot
    # a.bin's chunks were found by id (the id key did not change): not stored again.
    assert second.summary.bytes_added == len(b"new data after rotation" * 1000)
    out = tmp_path / "out"
    assert Restorer(repo).restore(second.tree, str(out)).errors == []
    assert (out / str(src).lstrip("/") / "a.bin").read_bytes() == data

    # New objects name epoch 1; a holder of only the old key cannot read them.
    new_blob = repo.blob_id(b"new data after rotation" * 1000)
    found = repo.index.lookup(new_blob)
    assert found is not None
    sealed = store.get(FileType.DATA, found[0].hex(), found[1].offset, found[1].length)
    assert sealed[3:7] == (1).to_bytes(4, "big")
    # (Already the index files written under epoch 1 are unreadable to it.)
    with pytest.raises((FormatError, DecryptError), match="epoch 1"):
        stale = Repository(store, keys, _config(store), cache_root=tmp_path / "c3")
        stale.load_blob(Kind.DATA, new_blob)
    assert first.tree != second.tree


def _config(store: MemoryStore):  # type: ignore[no-untyped-def]
    from peerbackup.engine.keyfiles import read_config

    return read_config(store)
